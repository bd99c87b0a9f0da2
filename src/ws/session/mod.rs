//! One WebSocket session, one task: it reads client events and writes frames
//! from a bounded outbox. fastwebsockets' frame read is not cancel-safe, so the
//! read in progress stays pinned while the loop writes and pings, and is only
//! replaced once it has completed. Shutdown reaches a session through its
//! outbox (see [`crate::delivery::rooms::Rooms::go_away`]): one fewer future to make and
//! drop on every wake-up, and what is queued is sent before the 1001 close.
//!
//! The session is split by job: [`live`] is the loop (client events in,
//! outbox frames and pings out, the close), [`order`] keeps delivery in `seq`
//! order (catch-up, gap filling, resync), [`deadlines`] watches the idle
//! timeout and the token's expiry, and [`client_events`] acts on what the
//! client sends.

mod client_events;
mod deadlines;
mod live;
mod order;

use super::protocol::close;
use super::transport::{self, FrameWriter, MessageReader, UpgradeFut};
use crate::app::AppState;
use crate::delivery::rooms::{Outbox, Subscriber};
use crate::json;
use crate::model::User;
use crate::shutdown::Shutdown;
use crate::store::StoreError;
use client_events::EventHandler;
use fastwebsockets::WebSocketError;
use live::Session;
use std::sync::Arc;
use std::time::Instant;

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
pub(super) enum End {
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
            state.delivery.rooms.leave(spec.chat_id, conn).await;
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
    state.delivery.rooms.leave(spec.chat_id, conn).await;
    state.metrics.connections_open.dec();
    if matches!(end, End::Closed(close::SLOW_CONSUMER)) {
        state.metrics.slow_consumer_closes.inc();
    }
    tracing::info!(conn, chat = spec.chat_id, user = spec.user.id, %end,
        secs = started.elapsed().as_secs_f64(), "websocket session closed");
}
