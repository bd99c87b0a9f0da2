//! The group-commit writer: every send (REST or WebSocket) goes through it.
//!
//! Chats are split over `WRITER_LANES` lanes by id. Each lane is a task that takes
//! everything queued for it (up to `WRITER_BATCH_MAX`, optionally lingering
//! `WRITER_LINGER_MS` for more) and appends the batch in one statement and one
//! transaction, then settles it: publishes each new message to the room map and
//! answers its sender. While a lane's batch commits, the next one fills up: that
//! is the group commit. Under heavy load (a big batch already queued) the lane
//! appends the next batch while it settles the last one, so its connection does
//! not sit idle while answers go out. Lanes run side by side on pooled
//! connections (pipelining), but one chat's batches commit one after another and
//! are settled in that order, so a sender's messages get ascending `seq`s and
//! reach the rooms in `seq` order.
//!
//! Nothing is acknowledged or delivered before its batch commits. A socket's
//! send that is not stored holds back that socket's later sends to the chat
//! until it comes back (see [`crate::delivery::send_holds`]), so its client's
//! resend is never stored behind them.

use crate::delivery::bus::Bus;
use crate::delivery::events::{error_event, message_event, EventError};
use crate::delivery::rooms::{Audience, Outgoing, Published, Rooms, Subscriber};
use crate::delivery::send_holds::SendHolds;
use crate::metrics::Metrics;
use crate::store::{AppendOutcome, NewMessage, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Requests a lane can queue before senders wait (backpressure).
const LANE_QUEUE: usize = 16_384;
/// Queued requests from which a lane appends its next batch while it settles
/// the last one (below it, settling first keeps light load's latency).
const OVERLAP_MIN: usize = 64;

/// Who hears about the outcome of a send.
pub enum Reply {
    /// A REST request waiting for the stored message.
    Waiter(oneshot::Sender<Result<AppendOutcome, StoreError>>),
    /// A WebSocket: its ack is the echo through the room; only retries and
    /// failures are answered on the socket directly.
    Socket(Subscriber),
}

struct Request {
    message: NewMessage,
    /// The chat's participants, who get the message.
    audience: Audience,
    reply: Reply,
}

/// What became of one message of a committed batch.
enum Settled {
    /// Stored now, or found stored (a retry), or refused for its client id.
    Stored(AppendOutcome),
    /// Not stored.
    Failed {
        detail: String,
        client_msg_id: Option<String>,
        chat: i64,
        /// The store was unreachable (worth retrying as is).
        unavailable: bool,
    },
}

impl Settled {
    fn failed(error: &StoreError, message: NewMessage) -> Self {
        Settled::Failed {
            detail: error.to_string(),
            client_msg_id: message.client_msg_id,
            chat: message.chat_id,
            unavailable: error.is_unavailable(),
        }
    }
}

/// Who to answer for a message of a batch, and who gets it.
type Recipients = (Reply, Audience);

/// A batch's messages, settled or failed, in batch order, with who to answer.
type SettledBatch = Vec<(Settled, Recipients)>;

/// Lane tuning.
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    pub lanes: usize,
    pub batch_max: usize,
    pub linger: Duration,
}

/// Handle to the lanes; cheap to clone.
#[derive(Clone)]
pub struct MessagePipeline {
    lanes: Arc<[mpsc::Sender<Request>]>,
}

/// The pipeline stopped (the server is shutting down); the refused send's
/// client id, if it had one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the message pipeline has stopped")]
pub struct PipelineClosed(pub Option<String>);

impl MessagePipeline {
    /// Spawns the lanes on the current runtime.
    pub fn start(
        store: Arc<dyn Store>,
        rooms: Rooms,
        bus: Bus,
        metrics: Arc<Metrics>,
        settings: WriterSettings,
    ) -> Self {
        let lanes = (0..settings.lanes.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(LANE_QUEUE);
                let lane = Lane {
                    store: store.clone(),
                    rooms: rooms.clone(),
                    bus: bus.clone(),
                    metrics: metrics.clone(),
                    settings,
                };
                tokio::spawn(lane.run(rx));
                tx
            })
            .collect();
        MessagePipeline { lanes }
    }

    async fn submit(&self, request: Request) -> Result<(), PipelineClosed> {
        let lane = self.lane_of(request.message.chat_id);
        lane.send(request).await.map_err(closed_with)
    }

    /// Stores a message and returns once it is committed (and published to
    /// the chat's participants, `audience`).
    pub async fn send(
        &self,
        message: NewMessage,
        audience: Audience,
    ) -> Result<AppendOutcome, StoreError> {
        let (tx, rx) = oneshot::channel();
        let closed = || StoreError::Unavailable("the server is shutting down".into());
        let request = Request {
            message,
            audience,
            reply: Reply::Waiter(tx),
        };
        self.submit(request).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Queues a message from a WebSocket; the room echo is its ack. Only when
    /// the lane's queue is full is there anything to wait for: the returned
    /// future, boxed, so the common path adds nothing to the session's
    /// per-event future (which above 1 KiB took the allocator's slow path).
    pub fn send_from_socket(
        &self,
        message: NewMessage,
        audience: Audience,
        socket: Subscriber,
    ) -> Submitted {
        let lane = self.lane_of(message.chat_id);
        let request = Request {
            message,
            audience,
            reply: Reply::Socket(socket),
        };
        match lane.try_send(request) {
            Ok(()) => Submitted::Queued,
            Err(mpsc::error::TrySendError::Closed(request)) => {
                Submitted::Closed(request.message.client_msg_id)
            }
            Err(mpsc::error::TrySendError::Full(request)) => {
                // Only a waiting send holds a sender of its own.
                let lane = lane.clone();
                Submitted::Full(Box::pin(async move {
                    lane.send(request).await.map_err(closed_with)
                }))
            }
        }
    }

    fn lane_of(&self, chat_id: i64) -> &mpsc::Sender<Request> {
        &self.lanes[chat_id.unsigned_abs() as usize % self.lanes.len()]
    }
}

/// The refusal of a request a stopped lane did not take.
fn closed_with(refused: mpsc::error::SendError<Request>) -> PipelineClosed {
    PipelineClosed(refused.0.message.client_msg_id)
}

/// What became of a socket's message handed to the pipeline.
pub enum Submitted {
    Queued,
    /// The pipeline stopped (the server is shutting down); the send's client
    /// id, if it had one.
    Closed(Option<String>),
    /// The lane's queue is full: queued once this completes (backpressure).
    Full(std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), PipelineClosed>> + Send>>),
}

struct Lane {
    store: Arc<dyn Store>,
    rooms: Rooms,
    bus: Bus,
    metrics: Arc<Metrics>,
    settings: WriterSettings,
}

impl Lane {
    /// Commits batch after batch, settling each. When at least `OVERLAP_MIN`
    /// requests (or a full batch, if `WRITER_BATCH_MAX` is smaller) are queued
    /// once a batch has committed, the next batch is appended while the last
    /// one is settled, both on this task; a smaller one waits for the settling,
    /// which keeps light load's latency as it is. Either way the next batch is
    /// sent only after the last one committed.
    ///
    /// A batch is screened against the lane's holds just before it is
    /// appended, and its failures are noted as soon as it committed, so the
    /// next batch is screened against them.
    async fn run(self, mut queue: mpsc::Receiver<Request>) {
        let mut batch = Vec::with_capacity(self.settings.batch_max);
        let mut committed: Option<SettledBatch> = None;
        let mut holds = SendHolds::default();
        loop {
            if let Some(last) = committed.take() {
                self.fill_ready(&mut queue, &mut batch);
                if batch.len() >= OVERLAP_MIN.min(self.settings.batch_max) {
                    self.metrics.overlapped_batches.inc();
                    let next = self.commit(std::mem::take(&mut batch), &mut holds);
                    let (next, ()) = tokio::join!(next, self.settle_batch(last));
                    committed = Some(next);
                    continue;
                }
                self.settle_batch(last).await;
            }
            if batch.is_empty() {
                let Some(first) = queue.recv().await else {
                    return;
                };
                batch.push(first);
            }
            self.fill(&mut queue, &mut batch).await;
            let next = self.commit(std::mem::take(&mut batch), &mut holds);
            committed = Some(next.await);
        }
    }

    /// Adds what is already queued, up to `WRITER_BATCH_MAX`.
    fn fill_ready(&self, queue: &mut mpsc::Receiver<Request>, batch: &mut Vec<Request>) {
        while batch.len() < self.settings.batch_max {
            match queue.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
    }

    /// Adds what is already queued, then lingers for more if configured.
    async fn fill(&self, queue: &mut mpsc::Receiver<Request>, batch: &mut Vec<Request>) {
        let max = self.settings.batch_max;
        self.fill_ready(queue, batch);
        if self.settings.linger.is_zero() || batch.len() >= max {
            return;
        }
        let deadline = tokio::time::Instant::now() + self.settings.linger;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(request)) => batch.push(request),
                _ => break,
            }
        }
    }

    /// Appends a batch, less the sends held behind failed ones (refused at
    /// once); says, message by message, what became of it, and notes its
    /// failed socket sends in `holds`.
    async fn commit(&self, batch: Vec<Request>, holds: &mut SendHolds) -> SettledBatch {
        let batch = screen(holds, batch);
        if batch.is_empty() {
            return SettledBatch::new(); // every send in it was held back
        }
        let settled = self.append(batch, holds).await;
        note_failures(holds, &settled);
        settled
    }

    async fn append(&self, batch: Vec<Request>, holds: &mut SendHolds) -> SettledBatch {
        let (messages, replies): (Vec<NewMessage>, Vec<Recipients>) = batch
            .into_iter()
            .map(|r| (r.message, (r.reply, r.audience)))
            .unzip();
        let started = std::time::Instant::now();
        let stored = self.store.append_messages(&messages).await;
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.batch_size.observe(messages.len() as f64);
        self.metrics.messages_received.inc_by(messages.len() as u64);
        match stored {
            Ok(said) => crate::store::outcomes(said, messages)
                .into_iter()
                .map(Settled::Stored)
                .zip(replies)
                .collect(),
            Err(error) if messages.len() > 1 && !error.is_unavailable() => {
                tracing::warn!(%error, size = messages.len(), "batch failed; storing its messages one by one");
                self.commit_one_by_one(messages, replies, holds).await
            }
            Err(error) => {
                tracing::warn!(%error, size = messages.len(), "batch failed; nothing was stored");
                messages
                    .into_iter()
                    .map(|message| Settled::failed(&error, message))
                    .zip(replies)
                    .collect()
            }
        }
    }

    /// After a batch was refused as a whole because of one of its messages (a
    /// chat or user deleted directly in the database), stores the messages one
    /// at a time, in batch order, so only the refused one fails (and what its
    /// socket sent after it to the same chat, held behind it).
    async fn commit_one_by_one(
        &self,
        messages: Vec<NewMessage>,
        replies: Vec<Recipients>,
        holds: &mut SendHolds,
    ) -> SettledBatch {
        let mut settled = Vec::with_capacity(messages.len());
        for (message, reply) in messages.into_iter().zip(replies) {
            if held_back(holds, &message, &reply.0) {
                let held = StoreError::Failed("held behind an earlier send".into());
                settled.push((Settled::failed(&held, message), reply));
                continue;
            }
            let stored = self
                .store
                .append_messages(std::slice::from_ref(&message))
                .await;
            let outcome = match stored.map(|said| said.into_iter().next()) {
                Ok(Some(said)) => Settled::Stored(said.outcome(message)),
                Ok(None) => Settled::Failed {
                    detail: "no outcome".into(),
                    client_msg_id: message.client_msg_id,
                    chat: message.chat_id,
                    unavailable: false,
                },
                Err(error) => Settled::failed(&error, message),
            };
            note_failure(holds, &outcome, &reply.0);
            settled.push((outcome, reply));
        }
        settled
    }

    /// Publishes a committed batch to the local rooms (one command per room
    /// shard) and the bus, and answers its senders, in batch order. A REST
    /// sender is answered after its message reached the rooms.
    async fn settle_batch(&self, batch: SettledBatch) {
        let mut published = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        for (settled, (reply, audience)) in batch {
            match settled {
                Settled::Stored(outcome) => {
                    // A duplicate is published again: its first send may
                    // have been stored by a node that died before publishing
                    // it (the client retried elsewhere), or by an attempt
                    // whose connection died (the batch was repeated). A
                    // socket drops a message it already has (by `seq`).
                    let (AppendOutcome::Created(message) | AppendOutcome::Duplicate(message)) =
                        &outcome;
                    published.push(Published {
                        chat: message.chat,
                        seq: message.seq,
                        audience,
                        frame: message_event(message),
                    });
                    answers.push((outcome, reply));
                }
                Settled::Failed {
                    detail,
                    client_msg_id,
                    chat,
                    unavailable,
                } => fail(reply, &detail, (chat, client_msg_id), unavailable),
            }
        }
        self.rooms.publish_all(&published).await;
        for (outcome, reply) in answers {
            answer(outcome, reply);
        }
        self.bus.publish(published);
    }
}

/// Refuses, now, the sends in `batch` that are held behind a failed one (see
/// [`SendHolds`]); returns the others, in order.
fn screen(holds: &mut SendHolds, batch: Vec<Request>) -> Vec<Request> {
    if holds.is_empty() {
        return batch;
    }
    holds.forget_expired();
    let mut kept = Vec::with_capacity(batch.len());
    for request in batch {
        if !held_back(holds, &request.message, &request.reply) {
            kept.push(request);
            continue;
        }
        if let Reply::Socket(socket) = &request.reply {
            let detail =
                "An earlier message to this chat could not be stored; send it again first.";
            let message = request.message;
            refuse_on_socket(socket, detail, (message.chat_id, message.client_msg_id));
        }
    }
    kept
}

/// Notes each socket's send that a committed batch did not store.
fn note_failures(holds: &mut SendHolds, batch: &SettledBatch) {
    for (settled, (reply, _)) in batch {
        note_failure(holds, settled, reply);
    }
}

#[inline]
fn note_failure(holds: &mut SendHolds, settled: &Settled, reply: &Reply) {
    if let (
        Settled::Failed {
            client_msg_id,
            chat,
            ..
        },
        Reply::Socket(socket),
    ) = (settled, reply)
    {
        holds.failed(socket.conn, *chat, client_msg_id.as_deref());
    }
}

/// Whether a socket's send must wait behind an earlier one that failed.
fn held_back(holds: &mut SendHolds, message: &NewMessage, reply: &Reply) -> bool {
    let client_id = message.client_msg_id.as_deref();
    match reply {
        Reply::Socket(socket) => holds.holds_back(socket.conn, message.chat_id, client_id),
        Reply::Waiter(_) => false,
    }
}

/// Tells a sender what became of its message.
fn answer(outcome: AppendOutcome, reply: Reply) {
    match reply {
        Reply::Waiter(tx) => {
            let _ = tx.send(Ok(outcome));
        }
        Reply::Socket(socket) => answer_socket(outcome, &socket),
    }
}

/// A socket learns of retries (the original again) directly.
fn answer_socket(outcome: AppendOutcome, socket: &Subscriber) {
    let frame = match outcome {
        AppendOutcome::Created(_) => return,
        AppendOutcome::Duplicate(original) => message_event(&original),
    };
    socket.offer(Outgoing::Event(frame));
}

fn fail(
    reply: Reply,
    detail: &str,
    (chat, client_msg_id): (i64, Option<String>),
    unavailable: bool,
) {
    match reply {
        Reply::Waiter(tx) => {
            let error = if unavailable {
                StoreError::Unavailable(detail.to_owned())
            } else {
                StoreError::Failed(detail.to_owned())
            };
            let _ = tx.send(Err(error));
        }
        Reply::Socket(socket) => {
            let detail = "The message could not be stored; retry with the same client_msg_id.";
            refuse_on_socket(&socket, detail, (chat, client_msg_id));
        }
    }
}

/// An `unavailable` error event for a send that was not stored: its client
/// sends it again (the same client id), in order with what followed it.
fn refuse_on_socket(
    socket: &Subscriber,
    detail: &str,
    (chat, client_msg_id): (i64, Option<String>),
) {
    let error = EventError {
        client_msg_id,
        ..EventError::new("unavailable", detail).in_chat(chat)
    };
    socket.offer(Outgoing::Event(error_event(&error)));
}
