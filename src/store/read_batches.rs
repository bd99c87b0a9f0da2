//! Reads batched the way writes are. Every REST send and WebSocket handshake
//! asks the store "who is this user, and what is this chat", and every history
//! request reads a page; on PostgreSQL each such query costs more in
//! per-statement overhead (a round trip, a wake-up, executor start) than in
//! work. So concurrent questions of one kind are answered together: a few lanes
//! share one queue, and each takes every question waiting when it becomes free
//! and answers them with one store call (one statement). A lone question goes
//! straight through (a batch of one), so nothing waits for company. Fewer
//! lanes make bigger batches under load (what queues while a lane's statement
//! is in flight is the next batch), so `READER_LANES` is a lane per four cores.
//!
//! Each batch's statement starts after every question in it was queued, so an
//! answer never shows the store as it was before the question was asked (the
//! WebSocket handshake relies on this to read `last_seq` after joining its room).

use crate::store::StoreError;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

/// Questions that can wait in the queue before callers do.
const QUEUE: usize = 16_384;
/// Most questions answered by one store call.
const BATCH_MAX: usize = 256;

struct Pending<Q, A> {
    question: Q,
    reply: oneshot::Sender<Result<A, StoreError>>,
}

/// Handle to the lanes answering one kind of question; cheap to clone.
pub struct ReadBatcher<Q, A> {
    queue: mpsc::Sender<Pending<Q, A>>,
}

impl<Q, A> Clone for ReadBatcher<Q, A> {
    fn clone(&self) -> Self {
        ReadBatcher {
            queue: self.queue.clone(),
        }
    }
}

type SharedQueue<Q, A> = Arc<Mutex<mpsc::Receiver<Pending<Q, A>>>>;

impl<Q: Send + 'static, A: Send + 'static> ReadBatcher<Q, A> {
    /// Spawns `lanes` lanes on the current runtime; `answer` answers a batch,
    /// one answer per question, in order.
    pub fn start<F, Fut>(lanes: usize, answer: F) -> Self
    where
        F: Fn(Vec<Q>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<A>, StoreError>> + Send + 'static,
    {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let shared: SharedQueue<Q, A> = Arc::new(Mutex::new(receiver));
        for _ in 0..lanes.max(1) {
            tokio::spawn(run_lane(shared.clone(), answer.clone()));
        }
        ReadBatcher { queue }
    }

    /// Queues a question and waits for its answer.
    pub async fn ask(&self, question: Q) -> Result<A, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the server is shutting down".into());
        let pending = Pending { question, reply };
        self.queue.send(pending).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run_lane<Q, A, F, Fut>(queue: SharedQueue<Q, A>, answer: F)
where
    F: Fn(Vec<Q>) -> Fut,
    Fut: Future<Output = Result<Vec<A>, StoreError>>,
{
    while let Some(batch) = next_batch(&queue).await {
        let (questions, replies): (Vec<Q>, Vec<_>) =
            batch.into_iter().map(|p| (p.question, p.reply)).unzip();
        match answer(questions).await {
            Ok(answers) if answers.len() == replies.len() => {
                for (reply, found) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(found));
                }
            }
            Ok(_) => fail_all(
                replies,
                &StoreError::Inconsistent("a question got no answer"),
            ),
            Err(error) => fail_all(replies, &error),
        }
    }
}

/// Waits for a question, then takes whatever else is already queued.
async fn next_batch<Q, A>(queue: &SharedQueue<Q, A>) -> Option<Vec<Pending<Q, A>>> {
    let mut queue = queue.lock().await;
    let mut batch = vec![queue.recv().await?];
    while batch.len() < BATCH_MAX {
        match queue.try_recv() {
            Ok(pending) => batch.push(pending),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Every caller of a failed batch gets the failure; a connection problem stays
/// "unavailable" (503, retry), anything else is an opaque failure.
fn fail_all<A>(replies: Vec<oneshot::Sender<Result<A, StoreError>>>, error: &StoreError) {
    tracing::warn!(%error, size = replies.len(), "a batch of reads failed");
    for reply in replies {
        let shared = match error {
            StoreError::Unavailable(cause) => StoreError::Unavailable(cause.clone()),
            StoreError::Interrupted(cause) => StoreError::Interrupted(cause.clone()),
            other => StoreError::Failed(other.to_string()),
        };
        let _ = reply.send(Err(shared));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_question_gets_its_own_answer() {
        let doubled = ReadBatcher::start(2, |xs: Vec<i64>| async move {
            Ok(xs.into_iter().map(|x| x * 2).collect())
        });
        let asks: Vec<_> = (0..200)
            .map(|i| {
                let doubled = doubled.clone();
                tokio::spawn(async move { (i, doubled.ask(i).await) })
            })
            .collect();
        for ask in asks {
            let (i, answer) = ask.await.unwrap();
            assert_eq!(answer.unwrap(), i * 2);
        }
    }

    #[tokio::test]
    async fn a_failed_batch_fails_every_caller_and_keeps_unavailable() {
        let down = ReadBatcher::start(1, |_: Vec<i64>| async {
            Err::<Vec<i64>, _>(StoreError::Unavailable("down".into()))
        });
        assert!(matches!(down.ask(1).await, Err(StoreError::Unavailable(c)) if c == "down"));
        let short = ReadBatcher::start(1, |_: Vec<i64>| async { Ok(Vec::<i64>::new()) });
        assert!(matches!(short.ask(1).await, Err(StoreError::Failed(_))));
    }
}
