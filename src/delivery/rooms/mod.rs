//! The room map: which local sockets watch which chat. Chats are split over N
//! shards by id; each shard is one task owning its rooms, fed by its own channel,
//! so there is no global lock. A message is encoded once and the same bytes are
//! queued on every watching socket's outbox. A socket whose outbox is full is
//! dropped from its room and told so (it then closes with a resumable code);
//! the shard never waits on a slow consumer.

mod outbox;
mod shard;

pub use outbox::{Alarm, Outbox, Taken};

use crate::metrics::Metrics;
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A committed message on its way to a room: from this node's writer, or from
/// another node over the bus.
#[derive(Debug, Clone)]
pub struct Published {
    pub chat: i64,
    pub seq: i64,
    pub frame: Bytes,
}

/// What the room map tells the bus about local interest in a chat (the bus
/// subscribes to the chats this node watches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// The chat's first local socket joined.
    Watch(i64),
    /// Its last local socket left.
    Unwatch(i64),
}

/// Identifies one WebSocket connection on this node.
pub type ConnId = u64;

/// What a socket's writer receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A stored message (`{"type":"message",...}`), delivered in `seq` order.
    Message { seq: i64, frame: Bytes },
    /// Anything else (read markers, typing, errors, replies): sent as is.
    Event(Bytes),
    /// Messages may have been missed (the bus reconnected or just subscribed):
    /// catch up from the store.
    Resync,
}

/// A socket watching a chat.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub conn: ConnId,
    pub user_id: i64,
    pub outbox: Arc<Outbox>,
}

impl Subscriber {
    /// Queues a frame without waiting; a full outbox wakes its session to close.
    /// Returns whether the socket can still receive.
    pub fn offer(&self, item: Outgoing) -> bool {
        self.outbox.offer(item)
    }
}

/// A socket's place in a room while its handshake runs: dropped, it leaves.
#[must_use = "dropping the entry leaves the room"]
pub struct RoomEntry {
    rooms: Rooms,
    chat: i64,
    conn: ConnId,
}

impl RoomEntry {
    /// The session takes over: it leaves the room itself when it ends (which
    /// keeps this handle out of every session's task).
    pub fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for RoomEntry {
    fn drop(&mut self) {
        self.rooms.leave_soon(self.chat, self.conn);
    }
}

/// Who of a room should not receive an ephemeral event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Except {
    /// Skip the connection it came from.
    Conn(ConnId),
    /// Skip every socket of this user.
    User(i64),
}

enum Command {
    Join {
        chat: i64,
        subscriber: Subscriber,
    },
    Leave {
        chat: i64,
        conn: ConnId,
    },
    Publish {
        chat: i64,
        seq: i64,
        frame: Bytes,
    },
    /// A committed batch's messages for this shard's chats, in batch order.
    PublishAll(Vec<Published>),
    Broadcast {
        chat: i64,
        frame: Bytes,
        except: Except,
    },
    Resync {
        chat: i64,
    },
    /// The server is shutting down: every socket, and any that joins later,
    /// closes once it has sent what is queued.
    GoAway,
}

/// Handle to the shards; cheap to clone.
#[derive(Clone)]
pub struct Rooms {
    shards: Arc<[mpsc::Sender<Command>]>,
}

/// Commands a shard can queue before senders wait.
const SHARD_QUEUE: usize = 8192;

impl Rooms {
    /// Spawns `shards` shard tasks on the current runtime. With `interest`, the
    /// bus hears when a chat gets its first local socket and loses its last.
    pub fn start(
        shards: usize,
        interest: Option<mpsc::UnboundedSender<Interest>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let shards = (0..shards.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(SHARD_QUEUE);
                tokio::spawn(shard::run(rx, interest.clone(), metrics.clone()));
                tx
            })
            .collect();
        Rooms { shards }
    }

    fn shard_index(&self, chat: i64) -> usize {
        chat.unsigned_abs() as usize % self.shards.len()
    }

    fn shard(&self, chat: i64) -> &mpsc::Sender<Command> {
        &self.shards[self.shard_index(chat)]
    }

    async fn send(&self, chat: i64, command: Command) {
        // A shard only stops when the runtime does; nothing to do then.
        let _ = self.shard(chat).send(command).await;
    }

    /// Adds a socket to its chat's room. The entry leaves the room when
    /// dropped, unless [`RoomEntry::keep`] hands that job to the session: a
    /// handshake abandoned at any await after this (the client gone while its
    /// lookup is in flight, which drops the handshake's future) leaves nothing
    /// behind.
    pub async fn join(&self, chat: i64, subscriber: Subscriber) -> RoomEntry {
        let conn = subscriber.conn;
        self.send(chat, Command::Join { chat, subscriber }).await;
        // No await between the join being queued and the entry existing.
        RoomEntry {
            rooms: self.clone(),
            chat,
            conn,
        }
    }

    /// Leaves without waiting (from a `Drop`): queued at once when the shard
    /// has room, else by a task of its own. Either way after the join, which
    /// is already queued on the same channel.
    fn leave_soon(&self, chat: i64, conn: ConnId) {
        let shard = self.shard(chat).clone();
        if let Err(mpsc::error::TrySendError::Full(command)) =
            shard.try_send(Command::Leave { chat, conn })
        {
            tokio::spawn(async move {
                let _ = shard.send(command).await;
            });
        }
    }

    pub async fn leave(&self, chat: i64, conn: ConnId) {
        self.send(chat, Command::Leave { chat, conn }).await;
    }

    /// Delivers a committed message to every socket in the chat.
    pub async fn publish(&self, chat: i64, seq: i64, frame: Bytes) {
        self.send(chat, Command::Publish { chat, seq, frame }).await;
    }

    /// Delivers a committed batch: one command per shard that has any of its
    /// chats, each shard's messages in batch order.
    pub async fn publish_all(&self, batch: &[Published]) {
        let mut per_shard: Vec<Vec<Published>> = vec![Vec::new(); self.shards.len()];
        for message in batch {
            per_shard[self.shard_index(message.chat)].push(message.clone());
        }
        for (shard, messages) in self.shards.iter().zip(per_shard) {
            if !messages.is_empty() {
                let _ = shard.send(Command::PublishAll(messages)).await;
            }
        }
    }

    /// Asks every socket of the chat to catch up from the store.
    pub async fn resync(&self, chat: i64) {
        self.send(chat, Command::Resync { chat }).await;
    }

    /// Tells every socket of this node to close (1001) once it has sent what
    /// is queued for it; a socket joining afterwards is told at once.
    pub async fn go_away(&self) {
        for shard in self.shards.iter() {
            let _ = shard.send(Command::GoAway).await;
        }
    }

    /// Delivers an ephemeral event to the chat's sockets, except some.
    pub async fn broadcast(&self, chat: i64, frame: Bytes, except: Except) {
        self.send(
            chat,
            Command::Broadcast {
                chat,
                frame,
                except,
            },
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscriber(conn: ConnId, user_id: i64, capacity: usize) -> (Subscriber, Arc<Outbox>) {
        let outbox = Outbox::new(capacity);
        let subscriber = Subscriber {
            conn,
            user_id,
            outbox: outbox.clone(),
        };
        (subscriber, outbox)
    }

    async fn next(outbox: &Outbox) -> Outgoing {
        match outbox.take().await {
            Taken::Item(item) => item,
            other => panic!("{other:?}"),
        }
    }

    fn seq_of(item: Outgoing) -> i64 {
        match item {
            Outgoing::Message { seq, .. } => seq,
            Outgoing::Event(_) | Outgoing::Resync => -1,
        }
    }

    #[tokio::test]
    async fn publish_reaches_every_socket_of_the_chat_only() {
        let rooms = Rooms::start(2, None, Default::default());
        let (a, a_rx) = subscriber(1, 10, 8);
        let (b, b_rx) = subscriber(2, 20, 8);
        let (other, other_rx) = subscriber(3, 30, 8);
        rooms.join(7, a).await.keep();
        rooms.join(7, b).await.keep();
        rooms.join(8, other).await.keep();
        let frame = Bytes::from_static(b"{}");
        rooms.publish(7, 1, frame.clone()).await;
        assert_eq!(seq_of(next(&a_rx).await), 1);
        let Outgoing::Message { frame: got, .. } = next(&b_rx).await else {
            panic!()
        };
        assert_eq!(got.as_ptr(), frame.as_ptr(), "the same bytes, not a copy");
        rooms.leave(7, 1).await;
        rooms.publish(7, 2, frame).await;
        assert_eq!(seq_of(next(&b_rx).await), 2);
        rooms.publish(8, 5, Bytes::new()).await;
        assert_eq!(seq_of(next(&other_rx).await), 5);
        assert!(a_rx.try_take().is_none(), "left sockets get nothing more");
    }

    #[tokio::test]
    async fn a_published_batch_reaches_each_chat_on_its_shard_in_batch_order() {
        let rooms = Rooms::start(2, None, Default::default());
        let (odd, odd_rx) = subscriber(1, 10, 8);
        let (even, even_rx) = subscriber(2, 20, 8);
        rooms.join(1, odd).await.keep();
        rooms.join(2, even).await.keep();
        let message = |chat, seq| Published {
            chat,
            seq,
            frame: Bytes::from(format!("{chat}:{seq}")),
        };
        rooms
            .publish_all(&[message(1, 1), message(2, 1), message(1, 2), message(3, 1)])
            .await;
        assert_eq!(seq_of(next(&odd_rx).await), 1);
        assert_eq!(seq_of(next(&odd_rx).await), 2);
        let Outgoing::Message { seq, frame } = next(&even_rx).await else {
            panic!()
        };
        assert_eq!((seq, &frame[..]), (1, &b"2:1"[..]));
        assert!(odd_rx.try_take().is_none() && even_rx.try_take().is_none());
    }

    #[tokio::test]
    async fn broadcast_skips_the_excepted() {
        let rooms = Rooms::start(1, None, Default::default());
        let (a, a_rx) = subscriber(1, 10, 8);
        let (a2, a2_rx) = subscriber(2, 10, 8);
        let (b, b_rx) = subscriber(3, 20, 8);
        for s in [a, a2, b] {
            rooms.join(1, s).await.keep();
        }
        rooms
            .broadcast(1, Bytes::from_static(b"t"), Except::User(10))
            .await;
        rooms
            .broadcast(1, Bytes::from_static(b"r"), Except::Conn(1))
            .await;
        assert!(matches!(next(&b_rx).await, Outgoing::Event(f) if f == "t"));
        assert!(matches!(next(&b_rx).await, Outgoing::Event(f) if f == "r"));
        assert!(matches!(next(&a2_rx).await, Outgoing::Event(f) if f == "r"));
        assert!(a_rx.try_take().is_none());
    }

    #[tokio::test]
    async fn going_away_reaches_every_socket_after_its_queue_and_any_later_one_at_once() {
        let rooms = Rooms::start(2, None, Default::default());
        let (a, a_rx) = subscriber(1, 10, 8);
        let (b, b_rx) = subscriber(2, 20, 8);
        rooms.join(1, a).await.keep();
        rooms.join(2, b).await.keep();
        rooms.publish(1, 1, Bytes::new()).await;
        rooms.go_away().await;
        assert_eq!(seq_of(next(&a_rx).await), 1, "queued first");
        assert_eq!(a_rx.take().await, Taken::Alarm(Alarm::GoingAway));
        assert_eq!(b_rx.take().await, Taken::Alarm(Alarm::GoingAway));
        let (late, late_rx) = subscriber(3, 30, 8);
        rooms.join(1, late).await.keep();
        let told = tokio::time::timeout(std::time::Duration::from_secs(1), late_rx.take()).await;
        assert_eq!(told.expect("told at once"), Taken::Alarm(Alarm::GoingAway));
    }

    #[tokio::test]
    async fn a_full_outbox_drops_the_socket_and_signals_overflow() {
        let rooms = Rooms::start(1, None, Default::default());
        let (slow, slow_rx) = subscriber(1, 10, 2);
        rooms.join(1, slow).await.keep();
        for seq in 1..=5 {
            rooms.publish(1, seq, Bytes::new()).await;
        }
        let taken = tokio::time::timeout(std::time::Duration::from_secs(1), slow_rx.take())
            .await
            .expect("the session is woken");
        assert_eq!(
            taken,
            Taken::Alarm(Alarm::Overflowed),
            "overflow comes before the queued frames"
        );
        assert!(slow_rx.try_take().is_none(), "nothing more is handed out");
    }
}

#[cfg(test)]
mod interest_tests {
    use super::*;

    #[tokio::test]
    async fn the_bus_hears_first_join_and_last_leave_only() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let rooms = Rooms::start(1, Some(tx), Default::default());
        let socket = |conn| Subscriber {
            conn,
            user_id: 1,
            outbox: Outbox::new(4),
        };
        rooms.join(5, socket(1)).await.keep();
        rooms.join(5, socket(2)).await.keep();
        rooms.leave(5, 1).await;
        rooms.leave(5, 2).await;
        rooms.resync(5).await;
        assert_eq!(rx.recv().await, Some(Interest::Watch(5)));
        assert_eq!(rx.recv().await, Some(Interest::Unwatch(5)));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_room_emptied_by_dropping_its_slow_socket_is_unwatched() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let rooms = Rooms::start(1, Some(tx), Default::default());
        let slow = Subscriber {
            conn: 1,
            user_id: 1,
            outbox: Outbox::new(1),
        };
        rooms.join(6, slow).await.keep();
        rooms.publish(6, 1, Bytes::new()).await;
        assert_eq!(rx.recv().await, Some(Interest::Watch(6)));
        assert!(rx.try_recv().is_err(), "the first message fits");
        rooms.publish(6, 2, Bytes::new()).await;
        assert_eq!(rx.recv().await, Some(Interest::Unwatch(6)), "dropped: full");
        rooms.publish(6, 3, Bytes::new()).await;
        rooms
            .join(
                6,
                Subscriber {
                    conn: 2,
                    user_id: 1,
                    outbox: Outbox::new(1),
                },
            )
            .await
            .keep();
        assert_eq!(rx.recv().await, Some(Interest::Watch(6)), "a new room");
    }

    #[tokio::test]
    async fn an_entry_dropped_before_it_is_kept_leaves_its_room() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let rooms = Rooms::start(2, Some(tx), Arc::new(Metrics::new()));
        let socket = |conn| Subscriber {
            conn,
            user_id: 1,
            outbox: Outbox::new(4),
        };
        let entry = rooms.join(3, socket(1)).await;
        assert_eq!(rx.recv().await, Some(Interest::Watch(3)));
        drop(entry);
        assert_eq!(rx.recv().await, Some(Interest::Unwatch(3)), "left on drop");
        rooms.join(3, socket(2)).await.keep();
        assert_eq!(rx.recv().await, Some(Interest::Watch(3)));
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(50), rx.recv()).await;
        assert!(quiet.is_err(), "a kept entry stays: {quiet:?}");
    }
}
