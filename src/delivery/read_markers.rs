//! Read markers, coalesced: a `read` event costs a store write and a broadcast,
//! so a flood of them must not turn into a flood of either. Sockets hand their
//! markers to one task, which keeps only the highest per (chat, user) while a
//! round runs and writes each at most once per round, rounds at most
//! `WS_READ_MARKER_INTERVAL_MS` apart. A marker that arrives after a quiet
//! spell is written at once; one that arrives during a round waits for the
//! next, and only the highest of those survives: only the highest matters.

use crate::delivery::events::{error_event, EventError};
use crate::delivery::notices::Notices;
use crate::delivery::rooms::{Audience, Outgoing, Subscriber};
use crate::store::Store;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// One socket's request to move its user's marker.
struct Mark {
    chat: i64,
    audience: Audience,
    user: i64,
    seq: i64,
    /// The socket it came from: told of a failure, skipped by the broadcast.
    from: Subscriber,
}

/// Handle to the coalescing task; cheap to clone.
#[derive(Clone)]
pub struct ReadMarkers {
    marks: mpsc::UnboundedSender<Mark>,
}

impl ReadMarkers {
    /// Spawns the task on the current runtime.
    pub fn start(store: Arc<dyn Store>, notices: Notices, interval: Duration) -> Self {
        let (marks, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(queue, store, notices, interval));
        ReadMarkers { marks }
    }

    /// Asks for `user`'s marker in `chat` (whose participants are
    /// `audience`) to move to `seq` (never back).
    pub fn mark(&self, (chat, audience): (i64, Audience), user: i64, seq: i64, from: &Subscriber) {
        let _ = self.marks.send(Mark {
            chat,
            audience,
            user,
            seq,
            from: from.clone(),
        });
    }
}

async fn run(
    mut queue: mpsc::UnboundedReceiver<Mark>,
    store: Arc<dyn Store>,
    notices: Notices,
    interval: Duration,
) {
    while let Some(first) = queue.recv().await {
        let mut highest: HashMap<(i64, i64), Mark> = HashMap::new();
        let mut keep = |mark: Mark| {
            let key = (mark.chat, mark.user);
            match highest.get(&key) {
                Some(held) if held.seq >= mark.seq => {}
                _ => {
                    highest.insert(key, mark);
                }
            }
        };
        keep(first);
        while let Ok(mark) = queue.try_recv() {
            keep(mark);
        }
        let writes = highest
            .into_values()
            .map(|mark| store_and_tell(store.clone(), &notices, mark));
        futures_util::future::join_all(writes).await;
        tokio::time::sleep(interval).await;
    }
}

/// Stores a marker and tells the chat's other sockets, on every node, where
/// it now stands.
async fn store_and_tell(store: Arc<dyn Store>, notices: &Notices, mark: Mark) {
    match store.mark_read(mark.chat, mark.user, mark.seq).await {
        Ok(marker) => {
            let (chat, audience) = (mark.chat, mark.audience);
            notices
                .read(chat, audience, (mark.user, marker), mark.from.conn)
                .await;
        }
        Err(_) => {
            let error =
                EventError::new("unavailable", "The read marker could not be stored; retry.")
                    .in_chat(mark.chat);
            mark.from.offer(Outgoing::Event(error_event(&error)));
        }
    }
}
