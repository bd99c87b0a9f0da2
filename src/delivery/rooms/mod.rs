//! The room map: which local sockets belong to which user. Every user with a
//! socket on this node has a room here, holding all of that user's sockets:
//! user sockets (every chat of the user) and per-chat sockets (one chat).
//! Rooms are keyed by user, not by chat, so that a node follows users (one
//! bus subscription per connected user, however many chats they have) and a
//! chat created later reaches a user socket with nothing to join.
//!
//! Users are split over N shards by id; each shard is one task owning its
//! rooms, fed by its own channel, so there is no global lock. An event is for
//! an audience (a chat's participants); it is encoded once and the same bytes
//! are queued on every socket of every member that watches its chat. A socket
//! whose outbox is full is dropped from its room and told so (it then closes
//! with a resumable code); the shard never waits on a slow consumer.

mod outbox;
mod shard;

pub use outbox::{Alarm, Outbox, Taken};

use crate::metrics::Metrics;
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Who an event of a chat is for: its participants. A one-to-one chat has two;
/// a group chat would make this a list, and nothing that takes an audience
/// would change but this type.
pub type Audience = [i64; 2];

/// The participant of `audience` other than `user` (for a one-to-one chat).
pub fn peer_of(audience: Audience, user: i64) -> i64 {
    if audience[0] == user {
        audience[1]
    } else {
        audience[0]
    }
}

/// A committed message on its way to its chat's participants: from this
/// node's writer, or from another node over the bus.
#[derive(Debug, Clone)]
pub struct Published {
    pub chat: i64,
    pub seq: i64,
    pub audience: Audience,
    pub frame: Bytes,
}

/// What the room map tells the bus about local interest in a user (the bus
/// subscribes to the users this node has sockets of).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// The user's first local socket joined.
    Watch(i64),
    /// Their last local socket left.
    Unwatch(i64),
    /// A user socket joined: tell it (through [`Rooms::confirm`]) once the
    /// user's subscription is in effect, which is when it sends `ready`.
    Confirm { user: i64, conn: ConnId },
}

/// Identifies one WebSocket connection on this node.
pub type ConnId = u64;

/// Which chats a socket receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watching {
    /// A per-chat socket (`/ws/chats/{id}/`).
    Chat(i64),
    /// A user socket (`/ws/`): every chat of its user, and `chat` events.
    AllChats,
}

impl Watching {
    fn covers(self, chat: i64) -> bool {
        match self {
            Watching::Chat(watched) => watched == chat,
            Watching::AllChats => true,
        }
    }
}

/// What a socket's writer receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A stored message (`{"type":"message",...}`), delivered in `seq` order
    /// per chat.
    Message { chat: i64, seq: i64, frame: Bytes },
    /// A chat the user is in was created (`{"type":"chat",...}`); user sockets
    /// only, sent before the chat's first message on the socket.
    Chat { chat: i64, peer: i64, frame: Bytes },
    /// Anything else (read markers, typing, errors, replies): sent as is.
    Event(Bytes),
    /// Messages may have been missed (the bus reconnected or just subscribed):
    /// catch up from the store.
    Resync,
}

/// What reaches the sockets of one user.
#[derive(Debug, Clone)]
pub enum UserEvent {
    /// A stored message: to the sockets watching its chat.
    Message { chat: i64, seq: i64, frame: Bytes },
    /// A new chat: to user sockets.
    Chat { chat: i64, peer: i64, frame: Bytes },
    /// A read marker or typing: to the sockets watching the chat, except the
    /// one it came from.
    Ephemeral {
        chat: i64,
        frame: Bytes,
        except: Option<ConnId>,
    },
}

impl UserEvent {
    fn wanted_by(&self, socket: &Subscriber) -> bool {
        match self {
            UserEvent::Message { chat, .. } => socket.watching.covers(*chat),
            UserEvent::Chat { .. } => socket.watching == Watching::AllChats,
            UserEvent::Ephemeral { chat, except, .. } => {
                socket.watching.covers(*chat) && Some(socket.conn) != *except
            }
        }
    }

    fn outgoing(&self) -> Outgoing {
        match self {
            UserEvent::Message { chat, seq, frame } => Outgoing::Message {
                chat: *chat,
                seq: *seq,
                frame: frame.clone(),
            },
            UserEvent::Chat { chat, peer, frame } => Outgoing::Chat {
                chat: *chat,
                peer: *peer,
                frame: frame.clone(),
            },
            UserEvent::Ephemeral { frame, .. } => Outgoing::Event(frame.clone()),
        }
    }
}

/// A socket of a user.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub conn: ConnId,
    pub user_id: i64,
    pub watching: Watching,
    pub outbox: Arc<Outbox>,
}

impl Subscriber {
    /// Queues a frame without waiting; a full outbox wakes its session to close.
    /// Returns whether the socket can still receive.
    pub fn offer(&self, item: Outgoing) -> bool {
        self.outbox.offer(item)
    }
}

/// A socket's place in its user's room while its handshake runs: dropped, it
/// leaves.
#[must_use = "dropping the entry leaves the room"]
pub struct RoomEntry {
    rooms: Rooms,
    user: i64,
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
        self.rooms.leave_soon(self.user, self.conn);
    }
}

enum Command {
    Join(Subscriber),
    Leave {
        user: i64,
        conn: ConnId,
    },
    /// Events for this shard's users, in order.
    Deliver(Vec<(i64, UserEvent)>),
    /// The user's sockets catch up from the store, but for the user
    /// sockets in `followed`: they learn that the bus follows their user
    /// (they have sent no `ready`, so they have nothing to catch up on).
    Resync {
        user: i64,
        followed: Vec<ConnId>,
    },
    Confirm {
        user: i64,
        conn: ConnId,
    },
    /// The user was deactivated: their sockets close at once.
    SignOut {
        user: i64,
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
    /// bus hears when a user gets their first local socket and loses their last.
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

    fn shard_index(&self, user: i64) -> usize {
        user.unsigned_abs() as usize % self.shards.len()
    }

    fn shard(&self, user: i64) -> &mpsc::Sender<Command> {
        &self.shards[self.shard_index(user)]
    }

    async fn send(&self, user: i64, command: Command) {
        // A shard only stops when the runtime does; nothing to do then.
        let _ = self.shard(user).send(command).await;
    }

    /// Adds a socket to its user's room. The entry leaves the room when
    /// dropped, unless [`RoomEntry::keep`] hands that job to the session: a
    /// handshake abandoned at any await after this (the client gone while its
    /// lookup is in flight, which drops the handshake's future) leaves nothing
    /// behind.
    pub async fn join(&self, subscriber: Subscriber) -> RoomEntry {
        let (user, conn) = (subscriber.user_id, subscriber.conn);
        self.send(user, Command::Join(subscriber)).await;
        // No await between the join being queued and the entry existing.
        RoomEntry {
            rooms: self.clone(),
            user,
            conn,
        }
    }

    /// Leaves without waiting (from a `Drop`): queued at once when the shard
    /// has room, else by a task of its own. Either way after the join, which
    /// is already queued on the same channel.
    fn leave_soon(&self, user: i64, conn: ConnId) {
        let shard = self.shard(user).clone();
        if let Err(mpsc::error::TrySendError::Full(command)) =
            shard.try_send(Command::Leave { user, conn })
        {
            tokio::spawn(async move {
                let _ = shard.send(command).await;
            });
        }
    }

    pub async fn leave(&self, user: i64, conn: ConnId) {
        self.send(user, Command::Leave { user, conn }).await;
    }

    /// Delivers events to users' sockets: one command per shard that has any
    /// of the users, each shard's events in the order given.
    pub async fn deliver(&self, events: impl IntoIterator<Item = (i64, UserEvent)>) {
        let per_shard = self.split_by_shard(events);
        self.send_per_shard(per_shard).await;
    }

    /// Events grouped by the shard of their user, in the order given (done
    /// before any await, so no iterator over borrowed data lives across one).
    fn split_by_shard(
        &self,
        events: impl IntoIterator<Item = (i64, UserEvent)>,
    ) -> Vec<Vec<(i64, UserEvent)>> {
        let mut per_shard: Vec<Vec<(i64, UserEvent)>> = vec![Vec::new(); self.shards.len()];
        for (user, event) in events {
            per_shard[self.shard_index(user)].push((user, event));
        }
        per_shard
    }

    async fn send_per_shard(&self, per_shard: Vec<Vec<(i64, UserEvent)>>) {
        for (shard, events) in self.shards.iter().zip(per_shard) {
            if !events.is_empty() {
                let _ = shard.send(Command::Deliver(events)).await;
            }
        }
    }

    /// Delivers a committed batch to every participant of each message's chat,
    /// each user's messages in batch order.
    pub async fn publish_all(&self, batch: &[Published]) {
        let per_shard = self.split_by_shard(batch.iter().flat_map(|message| {
            message.audience.iter().map(|&user| {
                let event = UserEvent::Message {
                    chat: message.chat,
                    seq: message.seq,
                    frame: message.frame.clone(),
                };
                (user, event)
            })
        }));
        self.send_per_shard(per_shard).await;
    }

    /// Tells both participants' user sockets of a new chat.
    pub async fn announce_chat(&self, chat: i64, audience: Audience, frame: Bytes) {
        let events = audience.map(|user| {
            let peer = peer_of(audience, user);
            let frame = frame.clone();
            (user, UserEvent::Chat { chat, peer, frame })
        });
        self.deliver(events).await;
    }

    /// Asks every socket of the user to catch up from the store.
    pub async fn resync(&self, user: i64) {
        self.resync_confirming(user, Vec::new()).await;
    }

    /// A new subscription to the user took effect: asks their sockets to
    /// catch up from the store, and tells the user sockets in `followed`
    /// (which waited for it, see [`Interest::Confirm`]) that it did, in one
    /// command rather than a resync and a confirmation each.
    pub async fn resync_confirming(&self, user: i64, followed: Vec<ConnId>) {
        self.send(user, Command::Resync { user, followed }).await;
    }

    /// Tells a user socket that the bus follows its user (see
    /// [`Interest::Confirm`]).
    pub async fn confirm(&self, user: i64, conn: ConnId) {
        self.send(user, Command::Confirm { user, conn }).await;
    }

    /// Closes every socket of the user on this node at once (the user was
    /// deactivated); they leave the room.
    pub async fn sign_out(&self, user: i64) {
        self.send(user, Command::SignOut { user }).await;
    }

    /// Tells every socket of this node to close (1001) once it has sent what
    /// is queued for it; a socket joining afterwards is told at once.
    pub async fn go_away(&self) {
        for shard in self.shards.iter() {
            let _ = shard.send(Command::GoAway).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(
        conn: ConnId,
        user_id: i64,
        watching: Watching,
        capacity: usize,
    ) -> (Subscriber, Arc<Outbox>) {
        let outbox = Outbox::new(capacity);
        let subscriber = Subscriber {
            conn,
            user_id,
            watching,
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
            _ => -1,
        }
    }

    fn message(chat: i64, seq: i64, audience: Audience) -> Published {
        Published {
            chat,
            seq,
            audience,
            frame: Bytes::from(format!("{chat}:{seq}")),
        }
    }

    #[tokio::test]
    async fn a_message_reaches_every_socket_of_both_participants_that_watches_its_chat() {
        let rooms = Rooms::start(2, None, Default::default());
        let (a_chat, a_chat_rx) = socket(1, 10, Watching::Chat(7), 8);
        let (a_all, a_all_rx) = socket(2, 10, Watching::AllChats, 8);
        let (b_other, b_other_rx) = socket(3, 20, Watching::Chat(8), 8);
        let (b_all, b_all_rx) = socket(4, 20, Watching::AllChats, 8);
        let (c_all, c_all_rx) = socket(5, 30, Watching::AllChats, 8);
        for s in [a_chat, a_all, b_other, b_all, c_all] {
            rooms.join(s).await.keep();
        }
        let sent = message(7, 1, [10, 20]);
        rooms.publish_all(std::slice::from_ref(&sent)).await;
        assert_eq!(seq_of(next(&a_chat_rx).await), 1);
        assert_eq!(seq_of(next(&a_all_rx).await), 1);
        let Outgoing::Message { chat, frame, .. } = next(&b_all_rx).await else {
            panic!()
        };
        assert_eq!(chat, 7);
        assert_eq!(
            frame.as_ptr(),
            sent.frame.as_ptr(),
            "the same bytes, not a copy"
        );
        rooms.leave(10, 1).await;
        rooms.publish_all(&[message(7, 2, [10, 20])]).await;
        assert_eq!(seq_of(next(&a_all_rx).await), 2);
        assert_eq!(seq_of(next(&b_all_rx).await), 2);
        assert!(
            a_chat_rx.try_take().is_none(),
            "left sockets get nothing more"
        );
        assert!(b_other_rx.try_take().is_none(), "another chat's socket");
        assert!(c_all_rx.try_take().is_none(), "not a participant");
    }

    #[tokio::test]
    async fn a_published_batch_reaches_each_user_in_batch_order() {
        let rooms = Rooms::start(2, None, Default::default());
        let (odd, odd_rx) = socket(1, 1, Watching::AllChats, 8);
        let (even, even_rx) = socket(2, 2, Watching::AllChats, 8);
        rooms.join(odd).await.keep();
        rooms.join(even).await.keep();
        rooms
            .publish_all(&[
                message(5, 1, [1, 3]),
                message(6, 1, [2, 3]),
                message(5, 2, [1, 3]),
                message(9, 1, [3, 4]),
            ])
            .await;
        assert_eq!(seq_of(next(&odd_rx).await), 1);
        assert_eq!(seq_of(next(&odd_rx).await), 2);
        let Outgoing::Message { seq, frame, .. } = next(&even_rx).await else {
            panic!()
        };
        assert_eq!((seq, &frame[..]), (1, &b"6:1"[..]));
        assert!(odd_rx.try_take().is_none() && even_rx.try_take().is_none());
    }

    #[tokio::test]
    async fn ephemeral_events_skip_the_excepted_socket_and_other_chats_sockets() {
        let rooms = Rooms::start(1, None, Default::default());
        let (a, a_rx) = socket(1, 10, Watching::Chat(1), 8);
        let (a2, a2_rx) = socket(2, 10, Watching::AllChats, 8);
        let (a3, a3_rx) = socket(3, 10, Watching::Chat(2), 8);
        for s in [a, a2, a3] {
            rooms.join(s).await.keep();
        }
        let read = UserEvent::Ephemeral {
            chat: 1,
            frame: Bytes::from_static(b"r"),
            except: Some(1),
        };
        rooms.deliver([(10, read)]).await;
        assert!(matches!(next(&a2_rx).await, Outgoing::Event(f) if f == "r"));
        assert!(a_rx.try_take().is_none(), "the socket it came from");
        assert!(a3_rx.try_take().is_none(), "a socket of another chat");
    }

    #[tokio::test]
    async fn a_new_chat_is_announced_to_both_users_sockets_only() {
        let rooms = Rooms::start(2, None, Default::default());
        let (a, a_rx) = socket(1, 10, Watching::AllChats, 8);
        let (b, b_rx) = socket(2, 20, Watching::AllChats, 8);
        let (b_chat, b_chat_rx) = socket(3, 20, Watching::Chat(9), 8);
        for s in [a, b, b_chat] {
            rooms.join(s).await.keep();
        }
        rooms
            .announce_chat(9, [10, 20], Bytes::from_static(b"c"))
            .await;
        assert!(matches!(
            next(&a_rx).await,
            Outgoing::Chat {
                chat: 9,
                peer: 20,
                ..
            }
        ));
        assert!(matches!(
            next(&b_rx).await,
            Outgoing::Chat {
                chat: 9,
                peer: 10,
                ..
            }
        ));
        assert!(
            b_chat_rx.try_take().is_none(),
            "per-chat sockets get no chat events"
        );
    }

    #[tokio::test]
    async fn going_away_reaches_every_socket_after_its_queue_and_any_later_one_at_once() {
        let rooms = Rooms::start(2, None, Default::default());
        let (a, a_rx) = socket(1, 10, Watching::Chat(1), 8);
        let (b, b_rx) = socket(2, 20, Watching::AllChats, 8);
        rooms.join(a).await.keep();
        rooms.join(b).await.keep();
        rooms.publish_all(&[message(1, 1, [10, 30])]).await;
        rooms.go_away().await;
        assert_eq!(seq_of(next(&a_rx).await), 1, "queued first");
        assert_eq!(a_rx.take().await, Taken::Alarm(Alarm::GoingAway));
        assert_eq!(b_rx.take().await, Taken::Alarm(Alarm::GoingAway));
        let (late, late_rx) = socket(3, 30, Watching::AllChats, 8);
        rooms.join(late).await.keep();
        let told = tokio::time::timeout(std::time::Duration::from_secs(1), late_rx.take()).await;
        assert_eq!(told.expect("told at once"), Taken::Alarm(Alarm::GoingAway));
    }

    #[tokio::test]
    async fn signing_a_user_out_closes_their_sockets_before_anything_queued_and_no_one_elses() {
        let (interest_tx, mut interest) = mpsc::unbounded_channel();
        let rooms = Rooms::start(2, Some(interest_tx), Default::default());
        let (a_chat, a_chat_rx) = socket(1, 10, Watching::Chat(1), 8);
        let (a_all, a_all_rx) = socket(2, 10, Watching::AllChats, 8);
        let (b, b_rx) = socket(3, 20, Watching::Chat(1), 8);
        for s in [a_chat, a_all, b] {
            rooms.join(s).await.keep();
        }
        rooms.publish_all(&[message(1, 1, [10, 20])]).await;
        rooms.sign_out(10).await;
        rooms.publish_all(&[message(1, 2, [10, 20])]).await;
        assert_eq!(a_chat_rx.take().await, Taken::Alarm(Alarm::SignedOut));
        assert_eq!(a_all_rx.take().await, Taken::Alarm(Alarm::SignedOut));
        assert_eq!(seq_of(next(&b_rx).await), 1);
        assert_eq!(seq_of(next(&b_rx).await), 2, "the peer keeps receiving");
        let mut told = Vec::new();
        while let Ok(change) = interest.try_recv() {
            told.push(change);
        }
        assert!(told.contains(&Interest::Unwatch(10)), "{told:?}");
        assert!(!told.contains(&Interest::Unwatch(20)), "{told:?}");
    }

    #[tokio::test]
    async fn a_full_outbox_drops_the_socket_and_signals_overflow() {
        let rooms = Rooms::start(1, None, Default::default());
        let (slow, slow_rx) = socket(1, 10, Watching::Chat(1), 2);
        rooms.join(slow).await.keep();
        for seq in 1..=5 {
            rooms.publish_all(&[message(1, seq, [10, 20])]).await;
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

    /// A per-chat socket (a user socket also asks the bus to confirm it).
    fn socket(conn: ConnId, user_id: i64, capacity: usize) -> Subscriber {
        Subscriber {
            conn,
            user_id,
            watching: Watching::Chat(1),
            outbox: Outbox::new(capacity),
        }
    }

    fn user_socket(conn: ConnId, user_id: i64) -> Subscriber {
        Subscriber {
            watching: Watching::AllChats,
            ..socket(conn, user_id, 4)
        }
    }

    #[tokio::test]
    async fn the_bus_hears_a_users_first_join_and_last_leave_only() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let rooms = Rooms::start(1, Some(tx), Default::default());
        rooms.join(socket(1, 5, 4)).await.keep();
        rooms.join(socket(2, 5, 4)).await.keep();
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
        rooms.join(socket(1, 6, 1)).await.keep();
        let message = |seq| Published {
            chat: 1,
            seq,
            audience: [6, 7],
            frame: Bytes::new(),
        };
        rooms.publish_all(&[message(1)]).await;
        assert_eq!(rx.recv().await, Some(Interest::Watch(6)));
        assert!(rx.try_recv().is_err(), "the first message fits");
        rooms.publish_all(&[message(2)]).await;
        assert_eq!(rx.recv().await, Some(Interest::Unwatch(6)), "dropped: full");
        rooms.join(socket(2, 6, 1)).await.keep();
        assert_eq!(rx.recv().await, Some(Interest::Watch(6)), "a new room");
    }

    #[tokio::test]
    async fn a_user_socket_is_followed_at_once_without_a_bus_and_when_the_bus_confirms_with_one() {
        let alone = Rooms::start(1, None, Default::default());
        let socket = user_socket(1, 4);
        let outbox = socket.outbox.clone();
        alone.join(socket).await.keep();
        let followed = tokio::time::timeout(std::time::Duration::from_secs(1), outbox.followed());
        assert_eq!(followed.await.expect("at once"), Ok(()));

        let (tx, mut rx) = mpsc::unbounded_channel();
        let rooms = Rooms::start(1, Some(tx), Default::default());
        let (first, second) = (user_socket(1, 4), user_socket(2, 4));
        let waiting = second.outbox.clone();
        rooms.join(first).await.keep();
        rooms.join(second).await.keep();
        assert_eq!(rx.recv().await, Some(Interest::Watch(4)));
        assert_eq!(
            rx.recv().await,
            Some(Interest::Confirm { user: 4, conn: 1 })
        );
        assert_eq!(
            rx.recv().await,
            Some(Interest::Confirm { user: 4, conn: 2 })
        );
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), waiting.followed());
        assert!(early.await.is_err(), "not before the bus says so");
        rooms.confirm(4, 2).await;
        let followed = tokio::time::timeout(std::time::Duration::from_secs(1), waiting.followed());
        assert_eq!(followed.await.expect("confirmed"), Ok(()));
    }

    #[tokio::test]
    async fn a_resync_confirming_a_user_socket_tells_it_it_is_followed_and_the_others_to_catch_up()
    {
        let (tx, _rx) = mpsc::unbounded_channel();
        let rooms = Rooms::start(1, Some(tx), Default::default());
        let (waiting, per_chat, other) = (user_socket(1, 4), socket(2, 4, 4), user_socket(3, 4));
        let outboxes = [&waiting, &per_chat, &other].map(|s| s.outbox.clone());
        for socket in [waiting, per_chat, other] {
            rooms.join(socket).await.keep();
        }
        rooms.resync_confirming(4, vec![1]).await;
        let followed =
            tokio::time::timeout(std::time::Duration::from_secs(1), outboxes[0].followed());
        assert_eq!(followed.await.expect("confirmed"), Ok(()));
        assert_eq!(outboxes[0].try_take(), None, "nothing to catch up on");
        assert_eq!(outboxes[1].try_take(), Some(Outgoing::Resync));
        assert_eq!(outboxes[2].try_take(), Some(Outgoing::Resync));
        let unconfirmed =
            tokio::time::timeout(std::time::Duration::from_millis(50), outboxes[2].followed());
        assert!(unconfirmed.await.is_err(), "only the sockets named");
    }

    #[tokio::test]
    async fn an_entry_dropped_before_it_is_kept_leaves_its_room() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let rooms = Rooms::start(2, Some(tx), Arc::new(Metrics::new()));
        let entry = rooms.join(socket(1, 3, 4)).await;
        assert_eq!(rx.recv().await, Some(Interest::Watch(3)));
        drop(entry);
        assert_eq!(rx.recv().await, Some(Interest::Unwatch(3)), "left on drop");
        rooms.join(socket(2, 3, 4)).await.keep();
        assert_eq!(rx.recv().await, Some(Interest::Watch(3)));
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(50), rx.recv()).await;
        assert!(quiet.is_err(), "a kept entry stays: {quiet:?}");
    }
}
