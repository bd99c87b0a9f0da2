//! The WebSocket handshake: `GET /ws/chats/{id}/?token=...[&after_seq=N]` is
//! checked before the upgrade (401 bad token, 404 no chat, 403 not a
//! participant, 400 bad `after_seq`), then the session runs on its own task.

use super::session::{self, SessionSpec};
use super::transport;
use crate::app::AppState;
use crate::http::connection::ConnectionPermit;
use crate::http::error::ApiError;
use crate::http::query::Query;
use crate::http::response::Body;
use crate::shutdown::Shutdown;
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::sync::Arc;

/// Authenticates, authorizes and upgrades; the session starts once the 101 is sent.
///
/// The socket joins its chat's room *before* the chat's `last_seq` is read: every
/// message committed after that read is published to the room after the join,
/// so it reaches the outbox. A client that wants nothing older than `last_seq`
/// (a plain connect, or `after_seq` at or past it) therefore needs no catch-up
/// query; if the bus might have missed something meanwhile (a new or renewed
/// subscription), the room is told to resync anyway.
pub async fn handshake(
    state: &Arc<AppState>,
    mut request: Request<Incoming>,
    chat_id: i64,
    shutdown: &Shutdown,
) -> Result<Response<Body>, ApiError> {
    let query = Query::parse(request.uri().query());
    let token = query
        .get("token")
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::NotAuthenticated)?;
    let bearer = crate::app::access::bearer(state, token)?;
    let user_id = bearer.user_id;
    let membership = session::subscribe(state, user_id);
    let entry = state
        .delivery
        .rooms
        .join(chat_id, membership.subscriber.clone())
        .await;
    let admitted = admit(
        state,
        &mut request,
        &query,
        (user_id, bearer.expires_at),
        chat_id,
    )
    .await;
    let Admission {
        spec,
        response,
        upgrade,
    } = match admitted {
        Ok(admission) => admission,
        // Dropping the entry leaves the room.
        Err(error) => return Err(error),
    };
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

/// The checks after authentication, in the order their errors are reported:
/// 404/403 membership, 429 sockets per user, 400 `after_seq`, 426 not an
/// upgrade, 400 bad WebSocket handshake.
async fn admit(
    state: &AppState,
    request: &mut Request<Incoming>,
    query: &Query,
    (user_id, token_expires_at): (i64, i64),
    chat_id: i64,
) -> Result<Admission, ApiError> {
    let (user, access) = crate::app::access::member_of(state, user_id, chat_id).await?;
    let slot = state
        .limiters
        .sockets
        .acquire(user.id)
        .ok_or(ApiError::TooManySockets)?;
    let resume_after = match query.get("after_seq") {
        None => access.last_seq,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::field("after_seq", "A valid integer >= 0 is required."))?,
    };
    if !transport::is_upgrade_request(request) {
        return Err(ApiError::UpgradeRequired);
    }
    let (response, upgrade) = transport::accept(request).ok_or(ApiError::BadRequest(
        "Invalid WebSocket handshake (Sec-WebSocket-Key / Sec-WebSocket-Version 13).".into(),
    ))?;
    let connection = request.extensions().get::<Arc<ConnectionPermit>>().cloned();
    let spec = SessionSpec {
        chat_id,
        user,
        resume_after,
        stored_through: access.last_seq,
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
