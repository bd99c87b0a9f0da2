//! One WebSocket session, one task: it reads client events and writes frames
//! from a bounded outbox. fastwebsockets' frame read is not cancel-safe, so the
//! read in progress stays pinned while the loop writes and pings, and is only
//! replaced once it has completed. Shutdown reaches a session through its
//! outbox (see [`crate::delivery::rooms::Rooms::go_away`]): one fewer future to make and
//! drop on every wake-up, and what is queued is sent before the 1001 close.
//!
//! Both kinds of socket run this session: a per-chat socket
//! (`/ws/chats/{id}/`) delivers one chat, a user socket (`/ws/`) every chat
//! of its user, starting with `ready` (once the bus follows the user) and
//! holding everything until the client's first `sync`. The difference is in
//! their [`cursors`].
//!
//! The session is split by job: [`live`] is the loop (client events in,
//! outbox frames and pings out, the close), [`order`] keeps delivery in `seq`
//! order per chat (catch-up, gap filling, resync, new chats), [`sync`] acts on
//! a user socket's `sync`, [`cursors`] is where the socket stands in each
//! chat, [`deadlines`] watches the idle timeout and the token's expiry,
//! [`client_events`] acts on what the client sends, and [`send_gate`] holds
//! its sends back (the send rate, refused sends' holds).

mod client_events;
mod cursors;
mod deadlines;
mod live;
mod order;
mod resync;
mod send_gate;
mod sync;

use super::protocol::close;
use super::transport::{self, FrameWriter, MessageReader, UpgradeFut};
use crate::app::AppState;
use crate::delivery::rooms::{peer_of, Outbox, Subscriber, Watching};
use crate::json;
use crate::model::User;
use crate::shutdown::Shutdown;
use crate::store::{ChatAccess, StoreError};
use client_events::EventHandler;
use cursors::{Cursor, Cursors, KnownMarkers, ANNOUNCED, PLACED, RESUMED};
use fastwebsockets::WebSocketError;
use live::Session;
use send_gate::SendGate;
use std::sync::Arc;
use std::time::Instant;

/// What a socket delivers.
pub enum Scope {
    /// `/ws/chats/{id}/`: one chat.
    Chat {
        chat_id: i64,
        /// The chat as read after the socket joined its user's room: every
        /// later message reaches the outbox, so only `resume_after <
        /// last_seq` needs a catch-up from the store; and, on a plain
        /// connect, the read markers the client is taken to know (a resync
        /// tells only those that moved on).
        access: ChatAccess,
        /// Deliver messages with `seq > resume_after`: `after_seq`, or the
        /// chat's `last_seq` on a plain connect (`None`). A client that
        /// resumes is taken to know no read marker: it is told them after
        /// the messages it missed.
        resume_after: Option<i64>,
    },
    /// `/ws/`: every chat of the user.
    User,
}

/// Who is connected to what, and from where to resume.
pub struct SessionSpec {
    /// The user, held once on the heap: 8 bytes of every session's task
    /// rather than the user's 80 (the task sits near an allocator size class).
    pub user: Arc<User>,
    pub scope: Scope,
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
pub fn subscribe(state: &AppState, user_id: i64, watching: Watching) -> Membership {
    let outbox = Outbox::new(state.config.realtime.outbox_capacity);
    let subscriber = Subscriber {
        conn: state.next_conn_id(),
        user_id,
        watching,
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
    let Membership { subscriber, outbox } = membership;
    let SessionSpec {
        user,
        scope,
        token_expires_at,
        // Held to the end: the socket slot and the connection's permit.
        _slot,
        _connection,
    } = spec;
    // Before the first await, so the scope is not kept in the task beside
    // the cursors made of it.
    let (cursors, stored_through) = cursors_of(scope, user.id);
    let (socket, read_ahead) = match transport::open(upgrade).await {
        Ok(opened) => opened,
        Err(error) => {
            state.delivery.rooms.leave(user.id, subscriber.conn).await;
            return tracing::debug!(%error, "websocket upgrade failed");
        }
    };
    tracing::info!(
        conn = subscriber.conn,
        user = user.id,
        stored_through,
        "websocket session opened"
    );
    state.metrics.connections_open.inc();
    let mut events = EventHandler {
        state: &state,
        me: &subscriber,
        user: &user,
        parser: json::Parser::default(),
        sends: SendGate::default(),
        answered: false,
    };
    let realtime = &state.config.realtime;
    let mut reader = MessageReader::new(&socket, read_ahead, realtime.max_message_bytes);
    let writer = FrameWriter::new(&socket, realtime.write_buffer_bytes, realtime.idle_timeout);
    let mut session = Session {
        state: &state,
        writer,
        user_id: user.id,
        holding: cursors.all_chats(),
        cursors,
        ready_at: 0,
    };
    let opening = Opening {
        stored_through,
        token_expires_at,
    };
    let end = session
        .serve(opening, &mut reader, &outbox, &mut events)
        .await;
    outbox.close();
    state.delivery.rooms.leave(user.id, subscriber.conn).await;
    state.metrics.connections_open.dec();
    if matches!(end, End::Closed(close::SLOW_CONSUMER)) {
        state.metrics.slow_consumer_closes.inc();
    }
    tracing::info!(conn = subscriber.conn, user = user.id, %end,
        secs = started.elapsed().as_secs_f64(), "websocket session closed");
}

/// How a session opens: a per-chat socket catches up through its chat's
/// `last_seq` as read at the handshake (0 for a user socket, which sends
/// `ready`); and when its token expires.
pub(super) struct Opening {
    stored_through: i64,
    token_expires_at: i64,
}

/// The socket's cursors, and for a per-chat socket its chat's `last_seq` at
/// the handshake (0 for a user socket).
fn cursors_of(scope: Scope, user_id: i64) -> (Cursors, i64) {
    match scope {
        Scope::Chat {
            chat_id,
            access,
            resume_after,
        } => {
            let peer = peer_of(access.participants, user_id);
            let (from, flags, known) = match resume_after {
                None => (
                    access.last_seq,
                    0,
                    KnownMarkers::stored_in(&access, user_id),
                ),
                // A cursor past the end (a client's bug, or a store restored
                // from an older backup) resumes from the end: later messages
                // must not be taken for ones the client has.
                Some(after) => (after.min(access.last_seq), RESUMED, KnownMarkers::default()),
            };
            let cursor = Cursor {
                known,
                ..Cursor::new(
                    chat_id,
                    from.saturating_add(1),
                    peer,
                    PLACED | ANNOUNCED | flags,
                )
            };
            (Cursors::One(cursor), access.last_seq)
        }
        Scope::User => (Cursors::Many(Vec::new()), 0),
    }
}
