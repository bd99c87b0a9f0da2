//! `POST /api/chat/start/` and `GET /api/chat/chats/`.

use crate::app::access;
use crate::app::AppState;
use crate::http::body::RawBody;
use crate::http::error::ApiError;
use crate::http::response::{created, ok, Body};
use crate::input::fields::Fields;
use hyper::body::Incoming;
use hyper::{Request, Response};

/// `{user_id}` → 201 with a new chat, or 200 with the existing one (whoever
/// started it). Starting chats is limited per user
/// (`RATE_LIMIT_NEW_CHATS_PER_MIN`): each new one notifies someone else, so
/// one account must not reach every user. Past the limit an existing chat is
/// still answered; a new one gets 429.
pub async fn start(
    state: &AppState,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let me = access::current_user(state, request.headers()).await?;
    let mut body = RawBody::read(request, &state.config.limits).await?;
    let value = body.object()?;
    let mut fields = Fields::new(&value);
    let other_id = fields.integer("user_id");
    fields.finish()?;
    let other_id = other_id.ok_or(ApiError::Internal("validated field missing".into()))?;
    if other_id == me.id {
        return Err(ApiError::BadRequest(
            "Cannot start chat with yourself".into(),
        ));
    }
    let other = state
        .store
        .user(other_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let started = match state.limiters.new_chats.check_user(me.id) {
        Ok(()) => state.store.start_chat(&me, &other).await?,
        Err(wait) => {
            return match state.store.chat_between(&me, &other).await? {
                Some(chat) => Ok(ok(&chat)),
                None => Err(ApiError::Throttled(wait)),
            }
        }
    };
    if !started.created {
        return Ok(ok(&started.chat));
    }
    state.delivery.notices.new_chat(&started.chat).await;
    Ok(created(&started.chat))
}

/// The caller's chats, most recent activity first, each with its last message.
pub async fn list(
    state: &AppState,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let me = access::authenticate(state, request.headers())?;
    let chats = state.store.chats_of(me).await?;
    Ok(ok(&chats))
}
