//! One shard of the room map: a task owning `chat id → sockets` for its chats.

use super::{Command, ConnId, Except, Outgoing, Subscriber};
use super::{Interest, Published};
use crate::metrics::Metrics;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

type Interests = Option<mpsc::UnboundedSender<Interest>>;

/// Runs until every handle to the shard is gone.
pub(super) async fn run(
    mut commands: mpsc::Receiver<Command>,
    interest: Interests,
    metrics: Arc<Metrics>,
) {
    let mut rooms: HashMap<i64, Vec<Subscriber>> = HashMap::new();
    let mut going_away = false;
    let tell = |change: Option<Interest>| {
        match change {
            Some(Interest::Watch(_)) => metrics.rooms_open.inc(),
            Some(Interest::Unwatch(_)) => metrics.rooms_open.dec(),
            None => return,
        };
        if let (Some(interest), Some(change)) = (interest.as_ref(), change) {
            let _ = interest.send(change);
        }
    };
    while let Some(command) = commands.recv().await {
        match command {
            Command::GoAway => {
                going_away = true;
                rooms.values().flatten().for_each(|s| s.outbox.go_away());
            }
            Command::Join { subscriber, .. } if going_away => subscriber.outbox.go_away(),
            Command::PublishAll(messages) => {
                for Published { chat, seq, frame } in messages {
                    let publish = Command::Publish { chat, seq, frame };
                    tell(apply(&mut rooms, publish, &metrics));
                }
            }
            command => tell(apply(&mut rooms, command, &metrics)),
        }
    }
}

/// Applies a command with one lookup of its room; says when the room was
/// made (its first socket joined) or removed (its last one left or was dropped).
fn apply(
    rooms: &mut HashMap<i64, Vec<Subscriber>>,
    command: Command,
    metrics: &Metrics,
) -> Option<Interest> {
    match command {
        Command::Join { chat, subscriber } => match rooms.entry(chat) {
            Entry::Occupied(mut room) => {
                room.get_mut().push(subscriber);
                None
            }
            Entry::Vacant(room) => {
                room.insert(vec![subscriber]);
                Some(Interest::Watch(chat))
            }
        },
        Command::Leave { chat, conn } => leave(rooms, chat, conn),
        Command::Publish { chat, seq, frame } => {
            let message = || Outgoing::Message {
                seq,
                frame: frame.clone(),
            };
            let (delivered, change) = deliver(rooms, chat, |_| true, message);
            metrics.messages_delivered.inc_by(delivered);
            change
        }
        Command::Resync { chat } => deliver(rooms, chat, |_| true, || Outgoing::Resync).1,
        Command::Broadcast {
            chat,
            frame,
            except,
        } => {
            let wanted = |s: &Subscriber| match except {
                Except::Conn(conn) => s.conn != conn,
                Except::User(user) => s.user_id != user,
            };
            deliver(rooms, chat, wanted, || Outgoing::Event(frame.clone())).1
        }
        // Handled by `run`: it keeps whether the server is going away, and
        // publishes a batch message by message.
        Command::GoAway | Command::PublishAll(_) => None,
    }
}

fn leave(rooms: &mut HashMap<i64, Vec<Subscriber>>, chat: i64, conn: ConnId) -> Option<Interest> {
    let Entry::Occupied(mut room) = rooms.entry(chat) else {
        return None;
    };
    room.get_mut().retain(|s| s.conn != conn);
    room.get().is_empty().then(|| {
        room.remove();
        Interest::Unwatch(chat)
    })
}

/// Offers an item to the wanted sockets of a room, dropping those that cannot
/// take it (full or gone); returns how many took it, and `Unwatch` when that
/// left the room empty.
fn deliver(
    rooms: &mut HashMap<i64, Vec<Subscriber>>,
    chat: i64,
    wanted: impl Fn(&Subscriber) -> bool,
    item: impl Fn() -> Outgoing,
) -> (u64, Option<Interest>) {
    let Entry::Occupied(mut room) = rooms.entry(chat) else {
        return (0, None);
    };
    let mut delivered = 0;
    room.get_mut().retain(|s| {
        if !wanted(s) {
            return true;
        }
        let took = s.offer(item());
        delivered += u64::from(took);
        took
    });
    if room.get().is_empty() {
        room.remove();
        return (delivered, Some(Interest::Unwatch(chat)));
    }
    (delivered, None)
}
