//! REST handlers, one file per resource. Each takes the shared state and the
//! request and returns `Result<Response, ApiError>`; this module holds what they
//! share: who is asking, and may they see this chat.

pub mod auth;
pub mod chats;
pub mod demo;
pub mod health;
pub mod messages;
pub mod pagination;
pub mod users;

use crate::auth::jwt::Bearer;
use crate::error::ApiError;
use crate::model::User;
use crate::state::AppState;
use crate::store::ChatAccess;
use hyper::HeaderMap;

/// The user and expiry of a valid access token.
pub fn bearer(state: &AppState, token: &str) -> Result<Bearer, ApiError> {
    state
        .tokens
        .verify_access(token)
        .map_err(ApiError::InvalidAccessToken)
}

/// The id of the user whose access token the request carries.
pub fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<i64, ApiError> {
    let token = crate::auth::bearer_token(headers)?;
    Ok(bearer(state, token)?.user_id)
}

/// The full user behind the request's access token; a token whose user no longer
/// exists is refused like an invalid one.
pub async fn current_user(state: &AppState, headers: &HeaderMap) -> Result<User, ApiError> {
    let user_id = authenticate(state, headers)?;
    state
        .store
        .user(user_id)
        .await?
        .ok_or_else(ApiError::user_gone)
}

/// The user behind the token and the chat they address, checked in one round
/// trip: 401 when the user is gone, 404 without the chat, 403 for outsiders.
pub async fn member_of(
    state: &AppState,
    user_id: i64,
    chat_id: i64,
) -> Result<(User, ChatAccess), ApiError> {
    let (user, access) = state.lookups.ask((user_id, chat_id)).await?;
    let user = user.ok_or_else(ApiError::user_gone)?;
    let access = admitted(access, user.id)?;
    Ok((user, access))
}

/// The chat, when it exists (404) and the user takes part in it (403).
pub fn admitted(access: Option<ChatAccess>, user_id: i64) -> Result<ChatAccess, ApiError> {
    let access = access.ok_or(ApiError::NotFound)?;
    if !access.includes(user_id) {
        return Err(ApiError::PermissionDenied);
    }
    Ok(access)
}
