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
//! Questions of some kinds differ a lot in weight (a history page of 10
//! messages or of 100). A batch of such a kind heavier than
//! its [`Weighing::per_statement`] is answered by several statements at
//! once, each part replying to its own callers as soon as it is answered:
//! one statement is one PostgreSQL backend on one core, and a heavy batch
//! read whole would leave PostgreSQL idle while the node encodes the answers,
//! and the node idle while PostgreSQL reads (BENCHMARKS.md, "Heavy history
//! batches"). Light batches stay whole: their cost is mostly per statement.
//!
//! A batch whose statement fails for a reason other than the database being
//! out of reach is asked again in halves, so a question the database refuses
//! (a value it cannot take, say) fails alone and not the callers batched with
//! it. Halving stops when both halves fail: that failure is the database's,
//! not one question's, and costs two more statements, not one per question.
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
/// Statements a heavy batch is split into at most.
const MOST_PARTS: usize = 4;

/// How heavy a kind's questions are, for kinds whose questions differ a lot.
#[derive(Clone, Copy)]
pub struct Weighing<Q> {
    /// A question's weight (rows it reads, say).
    pub weigh: fn(&Q) -> usize,
    /// The most weight one statement answers when a batch is split.
    pub per_statement: usize,
}

struct Pending<Q, A> {
    question: Q,
    reply: oneshot::Sender<Result<A, StoreError>>,
}

type Reply<A> = oneshot::Sender<Result<A, StoreError>>;

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

/// What a kind's lanes share besides the queue.
struct Answering<Q, F> {
    answer: F,
    weighing: Option<Weighing<Q>>,
}

impl<Q: Clone + Send + Sync + 'static, A: Send + 'static> ReadBatcher<Q, A> {
    /// Spawns `lanes` lanes on the current runtime; `answer` answers a batch,
    /// one answer per question, in order (the questions come shared, so a
    /// failed batch can be asked again in halves without copying them first).
    /// With `weighing`, heavy batches are split (see the module note).
    pub fn start<F, Fut>(lanes: usize, weighing: Option<Weighing<Q>>, answer: F) -> Self
    where
        F: Fn(Arc<[Q]>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<A>, StoreError>> + Send + 'static,
    {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let shared: SharedQueue<Q, A> = Arc::new(Mutex::new(receiver));
        let answering = Arc::new(Answering { answer, weighing });
        for _ in 0..lanes.max(1) {
            tokio::spawn(run_lane(shared.clone(), answering.clone()));
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

async fn run_lane<Q, A, F, Fut>(queue: SharedQueue<Q, A>, answering: Arc<Answering<Q, F>>)
where
    Q: Clone + Send + Sync + 'static,
    A: Send + 'static,
    F: Fn(Arc<[Q]>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<A>, StoreError>> + Send + 'static,
{
    while let Some(batch) = next_batch(&queue).await {
        let parts = match &answering.weighing {
            Some(w) => split_by_weight(batch, |p| (w.weigh)(&p.question), w.per_statement),
            None => vec![batch],
        };
        let mut parts = parts.into_iter();
        let Some(first) = parts.next() else {
            continue;
        };
        // The other parts run beside this lane's, each replying when it is
        // answered; the lane takes its next batch once its own part is.
        for part in parts {
            tokio::spawn(answer_part(answering.clone(), part));
        }
        answer_part(answering.clone(), first).await;
    }
}

/// Answers one statement's questions and replies to their callers; a
/// failure that may be one question's is narrowed down (see the module note).
async fn answer_part<Q, A, F, Fut>(answering: Arc<Answering<Q, F>>, part: Vec<Pending<Q, A>>)
where
    Q: Clone,
    F: Fn(Arc<[Q]>) -> Fut,
    Fut: Future<Output = Result<Vec<A>, StoreError>>,
{
    let (questions, replies): (Vec<Q>, Vec<_>) =
        part.into_iter().map(|p| (p.question, p.reply)).unzip();
    let questions: Arc<[Q]> = questions.into();
    match answered(&answering.answer, questions.clone()).await {
        Ok(answers) => reply_all(replies, answers),
        Err(error) => narrow_down(&answering.answer, questions, replies, error).await,
    }
}

/// The answers to `questions`, one each, or why there are none.
async fn answered<Q, A, F, Fut>(answer: &F, questions: Arc<[Q]>) -> Result<Vec<A>, StoreError>
where
    F: Fn(Arc<[Q]>) -> Fut,
    Fut: Future<Output = Result<Vec<A>, StoreError>>,
{
    let asked = questions.len();
    match answer(questions).await {
        Ok(answers) if answers.len() == asked => Ok(answers),
        Ok(_) => Err(StoreError::Inconsistent("a question got no answer")),
        Err(error) => Err(error),
    }
}

/// Asks a failed batch again in halves, answering each half that succeeds
/// and going on into the one that fails, until the failing half is a single
/// question (which gets the error) or both halves fail (everyone does). A
/// database out of reach is not asked again: everyone gets that at once.
async fn narrow_down<Q, A, F, Fut>(
    answer: &F,
    mut questions: Arc<[Q]>,
    mut replies: Vec<Reply<A>>,
    mut error: StoreError,
) where
    Q: Clone,
    F: Fn(Arc<[Q]>) -> Fut,
    Fut: Future<Output = Result<Vec<A>, StoreError>>,
{
    while questions.len() > 1 && !error.is_unavailable() {
        let middle = questions.len() / 2;
        let later_replies = replies.split_off(middle);
        let (earlier, later): (Arc<[Q]>, Arc<[Q]>) =
            (questions[..middle].into(), questions[middle..].into());
        // One after the other: a failing database is not asked twice at once.
        let earlier_answers = answered(answer, earlier.clone()).await;
        let later_answers = answered(answer, later.clone()).await;
        (questions, replies, error) = match (earlier_answers, later_answers) {
            (Ok(answers), Ok(more)) => {
                reply_all(replies, answers);
                return reply_all(later_replies, more);
            }
            (Ok(answers), Err(failed)) => {
                reply_all(replies, answers);
                (later, later_replies, failed)
            }
            (Err(failed), Ok(answers)) => {
                reply_all(later_replies, answers);
                (earlier, replies, failed)
            }
            (Err(failed), Err(_)) => {
                replies.extend(later_replies);
                return fail_all(replies, &failed);
            }
        };
    }
    fail_all(replies, &error);
}

fn reply_all<A>(replies: Vec<Reply<A>>, answers: Vec<A>) {
    for (reply, found) in replies.into_iter().zip(answers) {
        let _ = reply.send(Ok(found));
    }
}

/// A batch cut into parts of about equal weight, in order, when it weighs
/// more than `per_statement` (at most [`MOST_PARTS`]); otherwise whole.
fn split_by_weight<T>(
    batch: Vec<T>,
    weigh: impl Fn(&T) -> usize,
    per_statement: usize,
) -> Vec<Vec<T>> {
    let weights: Vec<usize> = batch.iter().map(|t| weigh(t).max(1)).collect();
    let total: usize = weights.iter().sum();
    let parts = total
        .div_ceil(per_statement.max(1))
        .clamp(1, MOST_PARTS.min(batch.len().max(1)));
    if parts == 1 {
        return vec![batch];
    }
    let share = total.div_ceil(parts);
    let mut out = Vec::with_capacity(parts);
    let mut current = Vec::new();
    let mut taken = 0;
    let last = batch.len() - 1;
    for (index, (item, weight)) in batch.into_iter().zip(weights).enumerate() {
        current.push(item);
        taken += weight;
        if taken >= share && index < last {
            out.push(std::mem::take(&mut current));
            taken = 0;
        }
    }
    out.push(current);
    out
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
fn fail_all<A>(replies: Vec<Reply<A>>, error: &StoreError) {
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
        let doubled = ReadBatcher::start(2, None, |xs: Arc<[i64]>| async move {
            Ok(xs.iter().map(|x| x * 2).collect())
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
        let down = ReadBatcher::start(1, None, |_: Arc<[i64]>| async {
            Err::<Vec<i64>, _>(StoreError::Unavailable("down".into()))
        });
        assert!(matches!(down.ask(1).await, Err(StoreError::Unavailable(c)) if c == "down"));
        let short = ReadBatcher::start(1, None, |_: Arc<[i64]>| async { Ok(Vec::<i64>::new()) });
        assert!(matches!(short.ask(1).await, Err(StoreError::Failed(_))));
    }

    fn weighing(per_statement: usize) -> Weighing<usize> {
        Weighing {
            weigh: |rows| *rows,
            per_statement,
        }
    }

    #[test]
    fn light_batches_stay_whole_and_heavy_ones_split_by_weight_in_order() {
        let whole = |batch: Vec<usize>| split_by_weight(batch, |rows| *rows, 1_600);
        assert_eq!(whole(vec![25; 64]), [vec![25; 64]]);
        assert_eq!(whole(vec![100; 64]).len(), 4);
        assert!(whole(vec![100; 64]).iter().all(|p| p.len() == 16));
        // Never more than four parts, however heavy.
        assert_eq!(
            whole(vec![100; 256])
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>(),
            [64, 64, 64, 64]
        );
        // By weight, not by count; each question once, in order.
        let mixed = vec![1_000, 1_000, 10, 10, 10];
        assert_eq!(whole(mixed), [vec![1_000, 1_000], vec![10, 10, 10]]);
        assert_eq!(whole(vec![5_000]), [vec![5_000]]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_heavy_batchs_parts_answer_their_callers_each_as_soon_as_it_is_read() {
        // Question 0 is read only once `open` lets it; so is 9, which keeps
        // the one lane busy while 0 and 1 queue into one batch. On paused
        // time, each sleep returns once the other tasks have gone as far as
        // they can, and the timeout below fires only if 1 cannot be answered.
        let open = Arc::new(tokio::sync::Semaphore::new(0));
        let gate = open.clone();
        let heavy = ReadBatcher::start(1, Some(weighing(1)), move |xs: Arc<[usize]>| {
            let gate = gate.clone();
            async move {
                if xs.contains(&0) || xs.contains(&9) {
                    gate.acquire().await.expect("open").forget();
                }
                Ok(xs.to_vec())
            }
        });
        let ask = |x: usize| {
            let heavy = heavy.clone();
            tokio::spawn(async move { heavy.ask(x).await })
        };
        let busy = ask(9);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let (slow, quick) = (ask(0), ask(1));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        open.add_permits(1);
        assert_eq!(busy.await.unwrap().unwrap(), 9);
        // 1 is answered while 0, in the same batch, is still being read.
        let quick = tokio::time::timeout(std::time::Duration::from_secs(5), quick).await;
        assert_eq!(
            quick
                .expect("answered beside the slow part")
                .unwrap()
                .unwrap(),
            1
        );
        assert!(!slow.is_finished());
        open.add_permits(1);
        assert_eq!(slow.await.unwrap().unwrap(), 0);
    }

    /// A batcher on one lane whose statements fail as `fails` says, with the
    /// statements it ran counted; its first question (0) waits for `open`,
    /// so the questions asked meanwhile make one batch. (The tests using it
    /// run on paused time: a sleep returns once every other task has gone as
    /// far as it can, so "meanwhile" does not depend on the machine's speed.)
    fn refusing(
        fails: fn(&[u32]) -> Option<StoreError>,
    ) -> (
        ReadBatcher<u32, u32>,
        Arc<tokio::sync::Semaphore>,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let open = Arc::new(tokio::sync::Semaphore::new(0));
        let statements = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (gate, count) = (open.clone(), statements.clone());
        let batcher = ReadBatcher::start(1, None, move |xs: Arc<[u32]>| {
            let (gate, count) = (gate.clone(), count.clone());
            async move {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if xs.contains(&0) {
                    gate.acquire().await.expect("open").forget();
                }
                match fails(&xs) {
                    Some(error) => Err(error),
                    None => Ok(xs.to_vec()),
                }
            }
        });
        (batcher, open, statements)
    }

    /// Asks 0 (which holds the lane), then 1..=32 as one batch; their answers.
    async fn ask_one_batch(
        batcher: &ReadBatcher<u32, u32>,
        open: &tokio::sync::Semaphore,
    ) -> Vec<Result<u32, StoreError>> {
        let ask = |x: u32| {
            let batcher = batcher.clone();
            tokio::spawn(async move { batcher.ask(x).await })
        };
        let first = ask(0);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let asked: Vec<_> = (1..=32).map(ask).collect();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        open.add_permits(1);
        assert_eq!(first.await.unwrap().unwrap(), 0);
        let mut answers = Vec::new();
        for asked in asked {
            answers.push(asked.await.unwrap());
        }
        answers
    }

    #[tokio::test(start_paused = true)]
    async fn a_question_the_database_refuses_fails_alone() {
        let (batcher, open, statements) = refusing(|xs| {
            xs.contains(&13)
                .then(|| StoreError::Failed("value out of range".into()))
        });
        let answers = ask_one_batch(&batcher, &open).await;
        assert_eq!(answers.iter().filter(|a| a.is_err()).count(), 1, "13 alone");
        for (x, answer) in (1..=32).zip(answers) {
            match answer {
                Ok(found) => assert_eq!(found, x),
                Err(error) => assert!(x == 13 && matches!(error, StoreError::Failed(_))),
            }
        }
        // The held question, the batch, then two halves per step down to 13.
        let ran = statements.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(ran, 2 + 2 * 5, "32 questions narrow down in five steps");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_database_is_not_asked_again_question_by_question() {
        let (everything, open, statements) =
            refusing(|xs| (xs != [0]).then(|| StoreError::Failed("relation missing".into())));
        let answers = ask_one_batch(&everything, &open).await;
        assert!(answers.iter().all(Result::is_err));
        // Both halves failed: the failure is not one question's.
        assert_eq!(statements.load(std::sync::atomic::Ordering::SeqCst), 2 + 2);

        let (unreachable, open, statements) =
            refusing(|xs| (xs != [0]).then(|| StoreError::Unavailable("down".into())));
        let answers = ask_one_batch(&unreachable, &open).await;
        assert!(answers
            .iter()
            .all(|a| matches!(a, Err(StoreError::Unavailable(_)))));
        assert_eq!(statements.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
