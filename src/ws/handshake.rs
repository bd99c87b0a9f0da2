//! The WebSocket handshakes: `GET /ws/chats/{id}/?token=...[&after_seq=N]`
//! (a per-chat socket) and `GET /ws/?token=...` (a user socket) are checked
//! before the upgrade (401 bad token, 404 no chat, 403 not a participant, 400
//! bad `after_seq`, 429 too many sockets), then the session runs on its own
//! task.

use super::session::{self, Scope, SessionSpec};
use super::transport;
use crate::app::AppState;
use crate::auth::jwt::Bearer;
use crate::delivery::rooms::{RoomEntry, Watching};
use crate::http::connection::ConnectionPermit;
use crate::http::error::ApiError;
use crate::http::query::Query;
use crate::http::response::Body;
use crate::model::User;
use crate::shutdown::Shutdown;
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::sync::Arc;

/// `GET /ws/chats/{id}/`: authenticates, authorizes and upgrades; the
/// session starts once the 101 is sent.
///
/// The socket joins its user's room *before* the chat's `last_seq` is read:
/// every message committed after that read is published to the room after the
/// join, so it reaches the outbox. A client that wants nothing older than
/// `last_seq` (a plain connect, or `after_seq` at or past it) therefore needs
/// no catch-up query; if the bus might have missed something meanwhile (a new
/// or renewed subscription), the room is told to resync anyway.
pub async fn handshake(
    state: &Arc<AppState>,
    mut request: Request<Incoming>,
    chat_id: i64,
    shutdown: &Shutdown,
) -> Result<Response<Body>, ApiError> {
    let query = Query::parse(request.uri().query());
    let bearer = bearer_of(state, &query)?;
    let user_id = bearer.user_id;
    let membership = session::subscribe(state, user_id, Watching::Chat(chat_id));
    let entry = state
        .delivery
        .rooms
        .join(membership.subscriber.clone())
        .await;
    let (user, access) = crate::app::access::member_of(state, user_id, chat_id).await?;
    let resume_after = resume_after(&query)?;
    let scope = Scope::Chat {
        chat_id,
        access,
        resume_after,
    };
    let spec = (user, scope, bearer.expires_at);
    // Dropping the entry on an error leaves the room.
    let admission = admit(state, &mut request, spec)?;
    start(state, admission, membership, entry, shutdown)
}

/// `GET /ws/`: the user socket. It joins its user's room before the 101; the
/// session sends `ready` once the bus follows the user (at once on one
/// node), so every message stored after `ready`, in any chat of the user,
/// including chats created later, reaches it. Nothing about the user's chats
/// is read here: a connect costs the same however many chats the user has.
pub async fn user_handshake(
    state: &Arc<AppState>,
    mut request: Request<Incoming>,
    shutdown: &Shutdown,
) -> Result<Response<Body>, ApiError> {
    let query = Query::parse(request.uri().query());
    let bearer = bearer_of(state, &query)?;
    let (user, _) = state.reads.lookups.ask((bearer.user_id, 0)).await?;
    let user = user.ok_or_else(ApiError::user_gone)?;
    let membership = session::subscribe(state, user.id, Watching::AllChats);
    let entry = state
        .delivery
        .rooms
        .join(membership.subscriber.clone())
        .await;
    let admission = admit(state, &mut request, (user, Scope::User, bearer.expires_at))?;
    start(state, admission, membership, entry, shutdown)
}

/// The access token of the query: 401 when missing or invalid.
fn bearer_of(state: &AppState, query: &Query) -> Result<Bearer, ApiError> {
    let token = query
        .get("token")
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::NotAuthenticated)?;
    crate::app::access::bearer(state, token)
}

/// Where a per-chat socket resumes: `after_seq`; `None` for a plain connect
/// (from the chat's end).
fn resume_after(query: &Query) -> Result<Option<i64>, ApiError> {
    let Some(raw) = query.get("after_seq") else {
        return Ok(None);
    };
    raw.parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .map(Some)
        .ok_or_else(|| ApiError::field("after_seq", "A valid integer >= 0 is required."))
}

/// Spawns the session of an admitted socket and answers 101.
fn start(
    state: &Arc<AppState>,
    admission: Admission,
    membership: session::Membership,
    entry: RoomEntry,
    shutdown: &Shutdown,
) -> Result<Response<Body>, ApiError> {
    let Admission {
        spec,
        response,
        upgrade,
    } = admission;
    // After the join: a poll that finds the user inactive from here on
    // reaches the room; one that found it before is seen here.
    crate::app::access::refuse_inactive(state, spec.user.id)?;
    state.metrics.handshakes.inc();
    let session = session::run(state.clone(), upgrade, spec, membership, shutdown.clone());
    // From here the session leaves the room when it ends (nothing can cancel
    // this function between the two lines).
    entry.keep();
    tokio::spawn(session);
    Ok(response.map(|()| Body::default()))
}

/// A handshake that passed every check.
struct Admission {
    spec: SessionSpec,
    response: Response<()>,
    upgrade: transport::UpgradeFut,
}

/// The checks after authentication and membership, in the order their errors
/// are reported: 429 sockets per user, 426 not an upgrade, 400 bad WebSocket
/// handshake.
fn admit(
    state: &AppState,
    request: &mut Request<Incoming>,
    (user, scope, token_expires_at): (User, Scope, i64),
) -> Result<Admission, ApiError> {
    let slot = state
        .limiters
        .sockets
        .acquire(user.id)
        .ok_or(ApiError::TooManySockets)?;
    if !transport::is_upgrade_request(request) {
        return Err(ApiError::UpgradeRequired);
    }
    let (response, upgrade) = transport::accept(request).ok_or(ApiError::BadRequest(
        "Invalid WebSocket handshake (Sec-WebSocket-Key / Sec-WebSocket-Version 13).".into(),
    ))?;
    let connection = request.extensions().get::<Arc<ConnectionPermit>>().cloned();
    let spec = SessionSpec {
        user: Arc::new(user),
        scope,
        token_expires_at,
        _slot: slot,
        _connection: connection,
    };
    Ok(Admission {
        spec,
        response,
        upgrade,
    })
}
