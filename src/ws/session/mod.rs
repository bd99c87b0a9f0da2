//! One WebSocket session, one task: it reads client events and writes frames
//! from a bounded outbox. fastwebsockets' frame read is not cancel-safe, so the
//! read in progress stays pinned while the loop writes and pings, and is only
//! replaced once it has completed. Shutdown reaches a session through its
//! outbox (see [`crate::delivery::rooms::Rooms::go_away`]): one fewer future to make and
//! drop on every wake-up, and what is queued is sent before the 1001 close.
//!
//! Delivery order: the socket joins its chat's room before the chat's `last_seq`
//! is read, so every message committed after that read queues in its outbox. The
//! writer keeps `next_seq`, the next message this socket must get: when the
//! client resumes from before `last_seq` it first replays the store from
//! `after_seq + 1` to the end, then takes live messages from the outbox. One
//! below `next_seq` was already sent (dropped); one above it means a gap, filled
//! from the store first. So each message arrives once, in `seq` order, with no
//! gap or duplicate at the seam between history and live delivery.

use super::protocol::{close, ClientEvent};
use super::transport::{self, FrameWriter, Inbound, MessageReader, ReadError, UpgradeFut};
use crate::app::AppState;
use crate::delivery::events::{error_event, message_event, typing_event, EventError};
use crate::delivery::pipeline::Submitted;
use crate::delivery::rooms::{Alarm, Except, Outbox, Outgoing, Subscriber, Taken};
use crate::json;
use crate::model::User;
use crate::shutdown::Shutdown;
use crate::store::StoreError;

use fastwebsockets::WebSocketError;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages read from the store per query while catching up.
const CATCH_UP_CHUNK: i64 = 500;
/// Frames written before a flush while draining a busy outbox.
const WRITE_BURST: usize = 256;
/// After the server's close frame, how long the client's own close (or the end
/// of its stream) is awaited while what it still sends is read and dropped.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Who is connected to which chat, and from where to resume.
pub struct SessionSpec {
    pub chat_id: i64,
    pub user: User,
    /// Deliver messages with `seq > resume_after`.
    pub resume_after: i64,
    /// The chat's `last_seq`, read after the socket joined its room: every later
    /// message reaches the outbox, so only `resume_after < stored_through` needs
    /// a catch-up from the store.
    pub stored_through: i64,
    /// When the access token expires (Unix seconds).
    pub token_expires_at: i64,
    /// This user's socket slot, given back when the session ends.
    pub _slot: crate::ratelimit::SocketSlot,
    /// The connection's place under `MAX_CONNECTIONS`, held while the socket is
    /// open (a handle to the connection's permit: 8 bytes of the session's task,
    /// which sits just under an allocator size class).
    pub _connection: Option<Arc<crate::http::connection::ConnectionPermit>>,
}

/// The socket's entry in the room map (already joined) and its outbox.
pub struct Membership {
    pub subscriber: Subscriber,
    pub outbox: Arc<Outbox>,
}

/// A new socket's room entry and its (empty) outbox.
pub fn subscribe(state: &AppState, user_id: i64) -> Membership {
    let outbox = Outbox::new(state.config.realtime.outbox_capacity);
    let subscriber = Subscriber {
        conn: state.next_conn_id(),
        user_id,
        outbox: outbox.clone(),
    };
    Membership { subscriber, outbox }
}

/// Why the session stopped.
#[derive(Debug)]
enum End {
    Closed(u16),
    Transport(WebSocketError),
    Store(StoreError),
    ConnectionLost,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Closed(code) => write!(f, "closed with {code}"),
            End::Transport(error) => write!(f, "transport: {error}"),
            End::Store(error) => write!(f, "store: {error}"),
            End::ConnectionLost => f.write_str("connection lost"),
        }
    }
}

impl From<WebSocketError> for End {
    fn from(error: WebSocketError) -> Self {
        End::Transport(error)
    }
}

impl From<StoreError> for End {
    fn from(error: StoreError) -> Self {
        End::Store(error)
    }
}

/// Runs a session to its end.
pub async fn run(
    state: Arc<AppState>,
    upgrade: UpgradeFut,
    spec: SessionSpec,
    membership: Membership,
    // Held to the end: the shutdown drain waits for every session to finish.
    _shutdown: Shutdown,
) {
    let started = Instant::now();
    let realtime = &state.config.realtime;
    let Membership { subscriber, outbox } = membership;
    let conn = subscriber.conn;
    let (socket, read_ahead) = match transport::open(upgrade).await {
        Ok(opened) => opened,
        Err(error) => {
            state.rooms.leave(spec.chat_id, conn).await;
            return tracing::debug!(%error, "websocket upgrade failed");
        }
    };
    tracing::info!(
        conn,
        chat = spec.chat_id,
        user = spec.user.id,
        after_seq = spec.resume_after,
        "websocket session opened"
    );
    state.metrics.connections_open.inc();
    let mut events = EventHandler {
        state: &state,
        me: &subscriber,
        spec: &spec,
        parser: json::Parser::default(),
        throttled_in_a_row: 0,
    };
    let mut reader = MessageReader::new(&socket, read_ahead, realtime.max_message_bytes);
    let writer = FrameWriter::new(&socket, realtime.write_buffer_bytes, realtime.idle_timeout);
    let mut session = Session {
        state: &state,
        writer,
        next_seq: spec.resume_after.saturating_add(1),
        chat_id: spec.chat_id,
        user_id: spec.user.id,
    };
    let end = session
        .serve(&spec, &mut reader, &outbox, &mut events)
        .await;
    outbox.close();
    state.rooms.leave(spec.chat_id, conn).await;
    state.metrics.connections_open.dec();
    if matches!(end, End::Closed(close::SLOW_CONSUMER)) {
        state.metrics.slow_consumer_closes.inc();
    }
    tracing::info!(conn, chat = spec.chat_id, user = spec.user.id, %end,
        secs = started.elapsed().as_secs_f64(), "websocket session closed");
}

/// The close code for an outbox's alarm: overflowed, or the server going away.
fn close_code(alarm: Alarm) -> u16 {
    match alarm {
        Alarm::Overflowed => close::SLOW_CONSUMER,
        Alarm::GoingAway => close::GOING_AWAY,
    }
}

/// After the server's close frame: reads and drops what the client still sends,
/// until its close, the end of its stream or [`CLOSE_LINGER`]. Closing a socket
/// with unread data makes the kernel send a reset, and a client that is sent a
/// reset loses the close frame still in its receive buffer (it saw 1006, not the
/// code). A client-initiated close (`NORMAL`) needs none of this.
async fn linger(reader: &mut MessageReader<'_>) {
    let drain = async {
        while let Ok(inbound) = reader.next().await {
            if matches!(inbound, Inbound::Close) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, drain).await;
}

/// The session's state: the socket's write half and where delivery stands.
struct Session<'a> {
    state: &'a AppState,
    writer: FrameWriter<'a>,
    next_seq: i64,
    chat_id: i64,
    user_id: i64,
}

impl Session<'_> {
    async fn serve(
        &mut self,
        spec: &SessionSpec,
        reader: &mut MessageReader<'_>,
        outbox: &Outbox,
        events: &mut EventHandler<'_>,
    ) -> End {
        let result = async {
            if spec.resume_after < spec.stored_through {
                Box::pin(self.replay_until(spec.stored_through)).await?;
            }
            self.live(spec, reader, outbox, events).await
        }
        .await;
        match result {
            Ok(code) | Err(End::Closed(code)) => {
                if self.writer.close(code, reason(code)).await.is_ok() && code != close::NORMAL {
                    linger(reader).await;
                }
                End::Closed(code)
            }
            Err(other) => other,
        }
    }

    /// Until the session must close: client events in, outbox frames and pings
    /// out. A read in progress is never dropped half-way (see the module note).
    async fn live(
        &mut self,
        spec: &SessionSpec,
        reader: &mut MessageReader<'_>,
        outbox: &Outbox,
        events: &mut EventHandler<'_>,
    ) -> Result<u16, End> {
        let realtime = &self.state.config.realtime;
        let mut ping = tokio::time::interval(realtime.ping_interval);
        ping.tick().await;
        let mut limits = Deadlines {
            idle: realtime.idle_timeout,
            heard_at: tokio::time::Instant::now(),
            token_expires: token_deadline(spec.token_expires_at),
        };
        let deadline = tokio::time::sleep_until(limits.next());
        tokio::pin!(deadline);
        // Writing a burst, pinging and acting on a client event are boxed below:
        // each is one allocation per wake-up, where their futures held inline
        // (1.3, 0.9 and 1.1 KB) would be part of every idle session's task.
        loop {
            // A client that keeps sending keeps the read branch ready, which
            // the select below polls before the outbox: check here too, so such
            // a socket is closed as soon as it misses a frame, or at once when
            // the server goes away (what is queued is resent on resume).
            if let Some(alarm) = outbox.alarm() {
                return Ok(close_code(alarm));
            }
            let read = reader.next();
            tokio::pin!(read);
            let inbound = loop {
                tokio::select! {
                    biased;
                    () = &mut deadline => match limits.passed() {
                        Some(code) => return Ok(code),
                        None => deadline.as_mut().reset(limits.next()),
                    },
                    inbound = &mut read => break inbound,
                    taken = outbox.take() => match taken {
                        Taken::Item(item) => Box::pin(self.write_burst(item, outbox)).await?,
                        Taken::Alarm(alarm) => return Ok(close_code(alarm)),
                    },
                    _ = ping.tick() => {
                        events.parser.release();
                        Box::pin(self.writer.ping()).await?
                    }
                }
            };
            limits.heard_at = tokio::time::Instant::now();
            if let Some(code) = Box::pin(self.act_on(inbound, events)).await? {
                return Ok(code);
            }
        }
    }

    /// Acts on what the client sent; `Some(code)` when the socket must close.
    async fn act_on(
        &mut self,
        inbound: Result<Inbound, ReadError>,
        events: &mut EventHandler<'_>,
    ) -> Result<Option<u16>, End> {
        let code = match inbound {
            Ok(Inbound::Text(mut bytes)) => match events.handle(&mut bytes).await {
                None => return Ok(None),
                Some(code) => code,
            },
            Ok(Inbound::Ping(payload)) => {
                self.writer.pong(payload).await?;
                self.writer.flush().await?;
                return Ok(None);
            }
            Ok(Inbound::Pong) => return Ok(None),
            Ok(Inbound::Binary) => close::UNSUPPORTED_DATA,
            Ok(Inbound::Close) => close::NORMAL,
            Err(ReadError::TooBig) => close::MESSAGE_TOO_BIG,
            Err(ReadError::InvalidUtf8) => close::INVALID_PAYLOAD,
            Err(ReadError::Protocol) => close::PROTOCOL_ERROR,
            Err(ReadError::Closed) => return Err(End::ConnectionLost),
        };
        Ok(Some(code))
    }

    /// Writes one item and whatever else is already queued, then flushes once.
    async fn write_burst(&mut self, first: Outgoing, outbox: &Outbox) -> Result<(), End> {
        self.write(first).await?;
        for _ in 1..WRITE_BURST {
            match outbox.try_take() {
                Some(item) => self.write(item).await?,
                None => break,
            }
        }
        self.writer.flush().await?;
        Ok(())
    }

    async fn write(&mut self, item: Outgoing) -> Result<(), End> {
        match item {
            Outgoing::Event(frame) => self.writer.text(&frame).await?,
            Outgoing::Resync => Box::pin(self.resync()).await?,
            Outgoing::Message { seq, .. } if seq < self.next_seq => {}
            Outgoing::Message { seq, frame } => {
                if seq > self.next_seq {
                    Box::pin(self.replay_until(seq - 1)).await?;
                }
                self.writer.text(&frame).await?;
                self.next_seq = seq + 1;
            }
        }
        Ok(())
    }

    /// After the bus may have missed messages: catches up when the store holds
    /// any from `next_seq` on. (A session's first catch-up needs no such check:
    /// its handshake has just read `last_seq`.)
    async fn resync(&mut self) -> Result<(), End> {
        let stored_through = self.stored_through().await?;
        if stored_through >= self.next_seq {
            self.replay_until(stored_through).await?;
        }
        self.state.metrics.ws_resyncs.inc();
        Ok(())
    }

    /// The chat's `last_seq` now, through the batched lookups: a resync usually
    /// finds nothing new (a new room on a node: every socket of a connect storm
    /// across nodes), and many sockets' questions cost one statement together,
    /// where a message read each cost PostgreSQL a statement per socket. The
    /// answer's statement starts after the question was asked, so it sees every
    /// message committed before the resync. `i64::MAX` when the chat is gone
    /// (the message read then tells).
    async fn stored_through(&self) -> Result<i64, End> {
        let (_, access) = self.state.lookups.ask((self.user_id, self.chat_id)).await?;
        Ok(access.map_or(i64::MAX, |access| access.last_seq))
    }

    /// Sends the stored messages from `next_seq` through `last` (a catch-up
    /// after a resume or a resync, or a gap), in chunks of at most
    /// `CATCH_UP_CHUNK` messages and about `WS_CATCH_UP_BYTES` bytes, all
    /// within `WS_CATCH_UP_TIMEOUT_SECS`: a socket that cannot take them that
    /// fast is closed with 4008 (resumable), so many slow resuming sockets
    /// hold bounded memory each, for a bounded time. Later messages reach the
    /// outbox (the socket joined its room before `last` was read).
    ///
    /// Catch-up and gap filling are the rare paths; callers box their futures,
    /// which would otherwise add their size to every idle session's task.
    async fn replay_until(&mut self, last: i64) -> Result<(), End> {
        // Checked between messages, never by cancelling a write: a frame cut
        // half-way would leave no way to send the close.
        let deadline = Instant::now() + self.state.config.realtime.catch_up_timeout;
        while self.next_seq <= last {
            let to = last.min(self.next_seq.saturating_add(CATCH_UP_CHUNK - 1));
            if self.replay(to, deadline).await? == 0 {
                return Err(End::Store(StoreError::Inconsistent(
                    "a committed message is missing",
                )));
            }
            self.writer.flush().await?;
        }
        Ok(())
    }

    async fn replay(&mut self, to: i64, deadline: Instant) -> Result<i64, End> {
        let max_bytes = self.state.config.realtime.catch_up_bytes;
        let messages = self
            .state
            .store
            .messages_between(self.chat_id, self.next_seq, to, max_bytes)
            .await?;
        for message in &messages {
            if Instant::now() > deadline {
                return Err(End::Closed(close::SLOW_CONSUMER));
            }
            self.writer.text(&message_event(message)).await?;
            self.next_seq = message.seq + 1;
        }
        Ok(messages.len() as i64)
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        close::GOING_AWAY => "server shutting down; reconnect with after_seq",
        close::SLOW_CONSUMER => "too slow to keep up; reconnect with after_seq",
        close::TOKEN_EXPIRED => "token expired; reconnect with a fresh token and after_seq",
        close::IDLE_TIMEOUT => "idle timeout",
        close::MESSAGE_TOO_BIG => "message too big",
        close::UNSUPPORTED_DATA => "binary frames are not supported",
        close::INVALID_PAYLOAD => "text frames must be UTF-8",
        close::PROTOCOL_ERROR => "protocol error",
        close::POLICY_VIOLATION => "too many throttled events",
        _ => "",
    }
}

/// The two limits on a session's life, watched by one timer: silence for the
/// idle timeout, and the access token's expiry. The timer is not moved on every
/// client event: when it fires early (the client spoke meanwhile) it is set again.
struct Deadlines {
    idle: Duration,
    /// When the client last sent anything (a pong included).
    heard_at: tokio::time::Instant,
    token_expires: tokio::time::Instant,
}

impl Deadlines {
    /// When one of the limits is next due.
    fn next(&self) -> tokio::time::Instant {
        (self.heard_at + self.idle).min(self.token_expires)
    }

    /// The close code of a limit that has passed, if one has.
    fn passed(&self) -> Option<u16> {
        let now = tokio::time::Instant::now();
        if now >= self.token_expires {
            Some(close::TOKEN_EXPIRED)
        } else if now >= self.heard_at + self.idle {
            Some(close::IDLE_TIMEOUT)
        } else {
            None
        }
    }
}

fn token_deadline(expires_at: i64) -> tokio::time::Instant {
    let left = expires_at - crate::auth::jwt::unix_now();
    tokio::time::Instant::now() + Duration::from_secs(left.clamp(0, 10 * 365 * 86_400) as u64)
}

/// Acts on decoded client events.
struct EventHandler<'a> {
    state: &'a AppState,
    me: &'a Subscriber,
    /// The chat and user, borrowed from the session's spec.
    spec: &'a SessionSpec,
    /// Keeps its buffers while the socket sends; freed at each ping.
    parser: json::Parser,
    throttled_in_a_row: u32,
}

impl EventHandler<'_> {
    /// Acts on one event; `Some(code)` when the socket must be closed.
    async fn handle(&mut self, bytes: &mut [u8]) -> Option<u16> {
        match super::protocol::decode(&mut self.parser, bytes, &self.state.config.limits) {
            Ok(ClientEvent::Send(draft)) => return self.send(draft).await,
            Ok(ClientEvent::Read { seq }) => self.read(seq),
            Ok(ClientEvent::Typing) => self.typing().await,
            Err(error) => {
                self.me.offer(Outgoing::Event(error_event(&error)));
            }
        }
        None
    }

    /// Queues a message unless the user is over the send rate; a flood of
    /// throttled sends closes the socket.
    async fn send(&mut self, draft: crate::input::draft::Draft) -> Option<u16> {
        if let Err(wait) = self.state.send_limiter.check(self.spec.user.id) {
            self.state.metrics.rate_limited.inc();
            self.throttled_in_a_row += 1;
            if self.throttled_in_a_row > self.state.config.limits.flood_close_after {
                return Some(close::POLICY_VIOLATION);
            }
            let detail = format!(
                "Too many messages; retry in {} ms.",
                wait.as_millis().max(1)
            );
            let error = EventError {
                client_msg_id: draft.client_msg_id,
                ..EventError::new("rate_limited", detail)
            };
            self.me.offer(Outgoing::Event(error_event(&error)));
            return None;
        }
        self.throttled_in_a_row = 0;
        let message = draft.into_message(self.spec.chat_id, self.spec.user.clone());
        let queued = match self
            .state
            .pipeline
            .send_from_socket(message, self.me.clone())
        {
            Submitted::Queued => true,
            Submitted::Closed => false,
            Submitted::Full(waiting) => waiting.await.is_ok(),
        };
        if !queued {
            self.reply_error("unavailable", "The server is shutting down.");
        }
        None
    }

    /// Hands the marker to the coalescing task (see [`crate::delivery::read_markers`]).
    fn read(&mut self, seq: i64) {
        if seq < 1 {
            return self.reply_error(
                "invalid_fields",
                "seq: Ensure this value is greater than or equal to 1.",
            );
        }
        let (chat, user) = (self.spec.chat_id, self.spec.user.id);
        self.state.read_markers.mark(chat, user, seq, self.me);
    }

    /// Forwards `typing` to the chat's other users, at most once per
    /// `WS_TYPING_INTERVAL_MS` per user and chat, whatever its sockets send.
    async fn typing(&mut self) {
        let (chat, user) = (self.spec.chat_id, self.spec.user.id);
        if self.state.typing_limiter.check((user, chat)).is_err() {
            return;
        }
        let frame = typing_event(user);
        self.state
            .rooms
            .broadcast(chat, frame, Except::User(user))
            .await;
    }

    fn reply_error(&self, code: &'static str, detail: &str) {
        let error = EventError {
            code,
            detail: detail.into(),
            fields: None,
            client_msg_id: None,
        };
        self.me.offer(Outgoing::Event(error_event(&error)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    const IDLE: Duration = Duration::from_secs(75);

    #[test]
    fn the_one_timer_is_due_at_whichever_limit_comes_first() {
        let now = Instant::now();
        let expiring_soon = Deadlines {
            idle: IDLE,
            heard_at: now,
            token_expires: now + Duration::from_secs(2),
        };
        assert_eq!(expiring_soon.next(), now + Duration::from_secs(2));
        let long_lived = Deadlines {
            token_expires: now + Duration::from_secs(3_600),
            ..expiring_soon
        };
        assert_eq!(long_lived.next(), now + IDLE);
    }

    #[test]
    fn an_expired_token_closes_even_a_client_heard_just_now() {
        let now = Instant::now();
        let expired = Deadlines {
            idle: IDLE,
            heard_at: now,
            token_expires: now - Duration::from_millis(1),
        };
        assert_eq!(expired.passed(), Some(close::TOKEN_EXPIRED));
        let silent = Deadlines {
            idle: IDLE,
            heard_at: now - IDLE - Duration::from_millis(1),
            token_expires: now + Duration::from_secs(3_600),
        };
        assert_eq!(silent.passed(), Some(close::IDLE_TIMEOUT));
        let fine = Deadlines {
            heard_at: now,
            ..silent
        };
        assert_eq!(fine.passed(), None, "an early wake-up re-arms instead");
    }
}
