//! Real-time delivery over WebSocket: `GET /ws/chats/{id}/?token=...[&after_seq=N]`.
//! Everything is checked before the upgrade (401 bad token, 404 no chat, 403 not a
//! participant, 400 bad `after_seq`), then the session runs on its own task.

mod burst;
pub mod client;
pub mod protocol;
pub mod session;
pub mod transport;

use crate::error::ApiError;
use crate::http::query::Query;
use crate::http::response::Body;
use crate::shutdown::Shutdown;
use crate::state::AppState;
use hyper::body::Incoming;
use hyper::{Request, Response};
use session::SessionSpec;
use std::sync::Arc;

/// Authenticates, authorizes and upgrades; the session starts once the 101 is sent.
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
    let (user_id, claims) = crate::api::access_claims(state, token)?;
    let (user, access) = crate::api::member_of(state, user_id, chat_id).await?;
    let slot = state
        .socket_slots
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
    if !transport::is_upgrade_request(&request) {
        return Err(ApiError::UpgradeRequired);
    }
    let (response, upgrade) = transport::accept(&mut request).ok_or(ApiError::BadRequest(
        "Invalid WebSocket handshake (Sec-WebSocket-Key / Sec-WebSocket-Version 13).".into(),
    ))?;
    // Join the room before the 101 goes out: anything the client's peer does once
    // the client sees the upgrade (messages, typing, read markers) reaches it.
    let membership = session::subscribe(state, user.id);
    state
        .rooms
        .join(chat_id, membership.subscriber.clone())
        .await;
    let spec = SessionSpec {
        chat_id,
        user,
        resume_after,
        token_expires_at: claims.exp,
        _slot: slot,
    };
    state.metrics.handshakes.inc();
    let session = session::run(state.clone(), upgrade, spec, membership, shutdown.clone());
    tokio::spawn(session);
    Ok(response.map(|()| Body::default()))
}
