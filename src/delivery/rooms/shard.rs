//! One shard of the room map: a task owning `user id → sockets` for its users.

use super::{Command, ConnId, Interest, Outgoing, Subscriber, UserEvent, Watching};
use crate::fast_maps::FastMap;
use crate::metrics::Metrics;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use tokio::sync::mpsc;

type Interests = Option<mpsc::UnboundedSender<Interest>>;
type RoomsOfUsers = FastMap<i64, Vec<Subscriber>>;

/// Runs until every handle to the shard is gone.
pub(super) async fn run(
    mut commands: mpsc::Receiver<Command>,
    interest: Interests,
    metrics: Arc<Metrics>,
) {
    let mut rooms = RoomsOfUsers::default();
    let mut going_away = false;
    let tell = |change: Option<Interest>| {
        match change {
            Some(Interest::Watch(_)) => {
                metrics.rooms_open.inc();
            }
            Some(Interest::Unwatch(_)) => {
                metrics.rooms_open.dec();
            }
            Some(Interest::Confirm { .. }) => {}
            None => return,
        };
        if let (Some(interest), Some(change)) = (interest.as_ref(), change) {
            let _ = interest.send(change);
        }
    };
    // A user socket learns when the bus follows its user: at once without a
    // bus (this node is the deployment), else from the bus once subscribed.
    let confirm = |subscriber: &Subscriber| {
        if subscriber.watching != Watching::AllChats {
            return None;
        }
        if interest.is_none() {
            subscriber.outbox.mark_followed();
            return None;
        }
        let (user, conn) = (subscriber.user_id, subscriber.conn);
        Some(Interest::Confirm { user, conn })
    };
    while let Some(command) = commands.recv().await {
        match command {
            Command::GoAway => {
                going_away = true;
                rooms.values().flatten().for_each(|s| s.outbox.go_away());
            }
            Command::Join(subscriber) if going_away => subscriber.outbox.go_away(),
            Command::Join(subscriber) => {
                let confirmation = confirm(&subscriber);
                tell(join(&mut rooms, subscriber));
                tell(confirmation);
            }
            Command::Confirm { user, conn } => {
                let room = rooms.get(&user).into_iter().flatten();
                room.filter(|s| s.conn == conn)
                    .for_each(|s| s.outbox.mark_followed());
            }
            Command::Leave { user, conn } => tell(leave(&mut rooms, user, conn)),
            Command::Deliver(events) => {
                for (user, event) in events {
                    let (delivered, change) = deliver(&mut rooms, user, &event);
                    if matches!(event, UserEvent::Message { .. }) {
                        metrics.messages_delivered.inc_by(delivered);
                    }
                    tell(change);
                }
            }
            Command::SignOut { user } => {
                let room = rooms.remove(&user);
                let signed_out = room.into_iter().flatten().map(|s| s.outbox.sign_out());
                if signed_out.count() > 0 {
                    tell(Some(Interest::Unwatch(user)));
                }
            }
            Command::Resync { user, followed } => {
                let resync = |s: &Subscriber| {
                    if !followed.contains(&s.conn) {
                        return Some(Outgoing::Resync);
                    }
                    s.outbox.mark_followed();
                    None
                };
                tell(offer_each(&mut rooms, user, resync).1);
            }
        }
    }
}

/// Adds a socket; `Watch` when it is its user's first here.
fn join(rooms: &mut RoomsOfUsers, subscriber: Subscriber) -> Option<Interest> {
    match rooms.entry(subscriber.user_id) {
        Entry::Occupied(mut room) => {
            room.get_mut().push(subscriber);
            None
        }
        Entry::Vacant(room) => {
            let user = subscriber.user_id;
            room.insert(vec![subscriber]);
            Some(Interest::Watch(user))
        }
    }
}

/// Removes a socket; `Unwatch` when it was its user's last here.
fn leave(rooms: &mut RoomsOfUsers, user: i64, conn: ConnId) -> Option<Interest> {
    let Entry::Occupied(mut room) = rooms.entry(user) else {
        return None;
    };
    room.get_mut().retain(|s| s.conn != conn);
    room.get().is_empty().then(|| {
        room.remove();
        Interest::Unwatch(user)
    })
}

/// Offers an event to the user's sockets that want it.
fn deliver(rooms: &mut RoomsOfUsers, user: i64, event: &UserEvent) -> (u64, Option<Interest>) {
    offer_each(rooms, user, |socket| {
        event.wanted_by(socket).then(|| event.outgoing())
    })
}

/// Offers each of the user's sockets what `item_for` gives it, dropping those
/// that cannot take it (full or gone); returns how many took one, and
/// `Unwatch` when that left the room empty.
fn offer_each(
    rooms: &mut RoomsOfUsers,
    user: i64,
    item_for: impl Fn(&Subscriber) -> Option<Outgoing>,
) -> (u64, Option<Interest>) {
    let Entry::Occupied(mut room) = rooms.entry(user) else {
        return (0, None);
    };
    let mut delivered = 0;
    room.get_mut().retain(|socket| {
        let Some(item) = item_for(socket) else {
            return true;
        };
        let took = socket.offer(item);
        delivered += u64::from(took);
        took
    });
    if room.get().is_empty() {
        room.remove();
        return (delivered, Some(Interest::Unwatch(user)));
    }
    (delivered, None)
}
