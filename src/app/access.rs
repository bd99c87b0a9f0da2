//! The questions both edges ask of every request: who is asking (a bearer
//! token, read as SimpleJWT reads it, and verified), and may they see this
//! chat (401 when the user is gone, 404 without the chat, 403 for outsiders).

use super::AppState;
use crate::auth::jwt::Bearer;
use crate::http::error::ApiError;
use crate::model::User;
use crate::store::ChatAccess;
use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;

/// The user and expiry of a valid access token of a user not known to be
/// inactive.
pub fn bearer(state: &AppState, token: &str) -> Result<Bearer, ApiError> {
    let bearer = state
        .auth
        .tokens
        .verify_access(token)
        .map_err(ApiError::InvalidAccessToken)?;
    refuse_inactive(state, bearer.user_id)?;
    Ok(bearer)
}

/// 401 for a user the last poll found inactive (SimpleJWT's answer).
pub fn refuse_inactive(state: &AppState, user_id: i64) -> Result<(), ApiError> {
    if state.auth.inactive.contains(user_id) {
        return Err(ApiError::UserInactive);
    }
    Ok(())
}

/// The id of the user whose access token the request carries.
pub fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<i64, ApiError> {
    let token = bearer_token(headers)?;
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
    let (user, access) = state.reads.lookups.ask((user_id, chat_id)).await?;
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

/// The token of an `Authorization: Bearer <token>` header, as SimpleJWT reads it.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::NotAuthenticated)?;
    if let Some(token) = plain_bearer(header.as_bytes()) {
        return Ok(token);
    }
    let value = header.to_str().map_err(|_| {
        ApiError::BadAuthHeader(
            "Invalid Authorization header. Token string should not contain invalid characters.",
        )
    })?;
    let mut parts = value.split_ascii_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(scheme), Some(token), None) if scheme.eq_ignore_ascii_case("bearer") => Ok(token),
        (Some(scheme), None, None) if scheme.eq_ignore_ascii_case("bearer") => Err(
            ApiError::BadAuthHeader("Invalid Authorization header. No credentials provided."),
        ),
        (Some(scheme), _, Some(_)) if scheme.eq_ignore_ascii_case("bearer") => {
            Err(ApiError::BadAuthHeader(
                "Invalid Authorization header. Credentials string should not contain spaces.",
            ))
        }
        _ => Err(ApiError::NotAuthenticated),
    }
}

/// The common form, `Bearer <token>` with one space and a token of visible
/// ASCII, checked in one pass that the compiler vectorizes; anything else
/// goes through the general reading above.
fn plain_bearer(value: &[u8]) -> Option<&str> {
    let (scheme, token) = value.split_at_checked(7)?;
    // One flag over every byte, with no early exit and no widening: the
    // compiler turns it into 16 bytes per step.
    let invisible = token.iter().fold(0u8, |seen, &byte| {
        seen | u8::from(byte.wrapping_sub(0x21) > 0x7e - 0x21)
    });
    if !scheme.eq_ignore_ascii_case(b"bearer ") || token.is_empty() || invisible != 0 {
        return None;
    }
    std::str::from_utf8(token).ok()
}

#[cfg(test)]
mod tests {
    use super::bearer_token;
    use crate::http::error::ApiError;
    use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION};

    fn read(value: &[u8]) -> Result<String, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
        bearer_token(&headers).map(str::to_owned)
    }

    #[test]
    fn a_bearer_token_is_read_as_simplejwt_reads_it() {
        assert_eq!(read(b"Bearer abc.def-_").unwrap(), "abc.def-_");
        assert_eq!(read(b"bEaReR abc").unwrap(), "abc", "any case");
        assert_eq!(read(b"Bearer   abc  ").unwrap(), "abc", "more spaces");
        assert_eq!(read(b"Bearer\tabc").unwrap(), "abc", "a tab");
        let header_error = |value: &[u8]| match read(value) {
            Err(ApiError::BadAuthHeader(detail)) => detail,
            other => panic!("{other:?}"),
        };
        assert!(header_error(b"Bearer").contains("No credentials"));
        assert!(header_error(b"Bearer ").contains("No credentials"));
        assert!(header_error(b"Bearer a b").contains("should not contain spaces"));
        assert!(header_error(b"Bearer a\xffb").contains("invalid characters"));
        assert!(matches!(
            read(b"Token abc"),
            Err(ApiError::NotAuthenticated)
        ));
        assert!(matches!(
            read(b"Bearerabc"),
            Err(ApiError::NotAuthenticated)
        ));
        assert!(matches!(
            bearer_token(&HeaderMap::new()),
            Err(ApiError::NotAuthenticated)
        ));
    }
}
