//! Membership lookups, batched the way writes are. Every REST send and every
//! WebSocket handshake first asks the store "who is this user, and what is this
//! chat" (`Store::user_and_chat`). On PostgreSQL each such query costs far more
//! in per-statement overhead (a round trip, a wake-up, executor start) than in
//! work, so concurrent lookups are answered together: a few lanes share one
//! queue, and each takes every lookup waiting when it becomes free and answers
//! them with one `Store::users_and_chats` call. A lone lookup goes straight
//! through (a batch of one), so nothing waits for company.
//!
//! Each batch is one statement that starts after every request in it was
//! queued, so a lookup never sees the store as it was before it was asked
//! (the WebSocket handshake relies on this to read `last_seq` after joining
//! its room).

use crate::model::User;
use crate::store::{ChatAccess, Store, StoreError};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

/// Lookups that can wait in the queue before callers do.
const QUEUE: usize = 16_384;
/// Most lookups answered by one statement.
const BATCH_MAX: usize = 256;

/// What a lookup finds: the user and the chat, each `None` when missing.
pub type Membership = (Option<User>, Option<ChatAccess>);

struct Lookup {
    user_id: i64,
    chat_id: i64,
    reply: oneshot::Sender<Result<Membership, StoreError>>,
}

/// Handle to the lookup lanes; cheap to clone.
#[derive(Clone)]
pub struct Lookups {
    queue: mpsc::Sender<Lookup>,
}

type SharedQueue = Arc<Mutex<mpsc::Receiver<Lookup>>>;

impl Lookups {
    /// Spawns `lanes` lanes on the current runtime.
    pub fn start(store: Arc<dyn Store>, lanes: usize) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let shared: SharedQueue = Arc::new(Mutex::new(receiver));
        for _ in 0..lanes.max(1) {
            tokio::spawn(run_lane(store.clone(), shared.clone()));
        }
        Lookups { queue }
    }

    /// The user and the chat, as `Store::user_and_chat` would answer.
    pub async fn user_and_chat(
        &self,
        user_id: i64,
        chat_id: i64,
    ) -> Result<Membership, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the server is shutting down".into());
        let lookup = Lookup {
            user_id,
            chat_id,
            reply,
        };
        self.queue.send(lookup).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run_lane(store: Arc<dyn Store>, queue: SharedQueue) {
    while let Some(batch) = next_batch(&queue).await {
        answer(store.as_ref(), batch).await;
    }
}

/// Waits for a lookup, then takes whatever else is already queued.
async fn next_batch(queue: &SharedQueue) -> Option<Vec<Lookup>> {
    let mut queue = queue.lock().await;
    let mut batch = vec![queue.recv().await?];
    while batch.len() < BATCH_MAX {
        match queue.try_recv() {
            Ok(lookup) => batch.push(lookup),
            Err(_) => break,
        }
    }
    Some(batch)
}

async fn answer(store: &dyn Store, batch: Vec<Lookup>) {
    let pairs: Vec<(i64, i64)> = batch.iter().map(|l| (l.user_id, l.chat_id)).collect();
    match store.users_and_chats(&pairs).await {
        Ok(found) if found.len() == batch.len() => {
            for (lookup, membership) in batch.into_iter().zip(found) {
                let _ = lookup.reply.send(Ok(membership));
            }
        }
        Ok(_) => fail_all(batch, &StoreError::Inconsistent("a lookup got no answer")),
        Err(error) => fail_all(batch, &error),
    }
}

/// Every caller of a failed batch gets the failure; a connection problem stays
/// "unavailable" (503, retry), anything else is an opaque failure.
fn fail_all(batch: Vec<Lookup>, error: &StoreError) {
    tracing::warn!(%error, size = batch.len(), "membership lookups failed");
    for lookup in batch {
        let shared = match error {
            StoreError::Unavailable(cause) => StoreError::Unavailable(cause.clone()),
            other => StoreError::Failed(other.to_string()),
        };
        let _ = lookup.reply.send(Err(shared));
    }
}
