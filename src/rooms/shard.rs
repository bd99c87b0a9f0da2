//! One shard of the room map: a task owning `chat id → sockets` for its chats.

use super::{Command, ConnId, Except, Outgoing, Subscriber};
use crate::bus::Interest;
use crate::metrics::Metrics;
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
    while let Some(command) = commands.recv().await {
        let chat = command.chat();
        let was_watched = rooms.contains_key(&chat);
        apply(&mut rooms, command, &metrics);
        let watched = rooms.contains_key(&chat);
        if let Some(interest) = interest.as_ref().filter(|_| was_watched != watched) {
            let change = if watched {
                Interest::Watch(chat)
            } else {
                Interest::Unwatch(chat)
            };
            let _ = interest.send(change);
        }
    }
}

fn apply(rooms: &mut HashMap<i64, Vec<Subscriber>>, command: Command, metrics: &Metrics) {
    match command {
        Command::Join { chat, subscriber } => rooms.entry(chat).or_default().push(subscriber),
        Command::Leave { chat, conn } => leave(rooms, chat, conn),
        Command::Publish { chat, seq, frame } => {
            let message = || Outgoing::Message {
                seq,
                frame: frame.clone(),
            };
            let delivered = deliver(rooms, chat, |_| true, message);
            metrics.messages_delivered.inc_by(delivered);
        }
        Command::Resync { chat } => {
            deliver(rooms, chat, |_| true, || Outgoing::Resync);
        }
        Command::Broadcast {
            chat,
            frame,
            except,
        } => {
            let wanted = |s: &Subscriber| match except {
                Except::Conn(conn) => s.conn != conn,
                Except::User(user) => s.user_id != user,
            };
            deliver(rooms, chat, wanted, || Outgoing::Event(frame.clone()));
        }
    }
}

fn leave(rooms: &mut HashMap<i64, Vec<Subscriber>>, chat: i64, conn: ConnId) {
    if let Some(subscribers) = rooms.get_mut(&chat) {
        subscribers.retain(|s| s.conn != conn);
        if subscribers.is_empty() {
            rooms.remove(&chat);
        }
    }
}

/// Offers an item to the wanted sockets of a room, dropping those that cannot
/// take it (full or gone); returns how many took it.
fn deliver(
    rooms: &mut HashMap<i64, Vec<Subscriber>>,
    chat: i64,
    wanted: impl Fn(&Subscriber) -> bool,
    item: impl Fn() -> Outgoing,
) -> u64 {
    let Some(subscribers) = rooms.get_mut(&chat) else {
        return 0;
    };
    let mut delivered = 0;
    subscribers.retain(|s| {
        if !wanted(s) {
            return true;
        }
        let took = s.offer(item());
        delivered += u64::from(took);
        took
    });
    if subscribers.is_empty() {
        rooms.remove(&chat);
    }
    delivered
}

impl Command {
    fn chat(&self) -> i64 {
        match self {
            Command::Join { chat, .. }
            | Command::Leave { chat, .. }
            | Command::Publish { chat, .. }
            | Command::Broadcast { chat, .. }
            | Command::Resync { chat } => *chat,
        }
    }
}
