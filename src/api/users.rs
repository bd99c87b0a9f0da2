//! `GET /api/users/?q=`: find people to chat with.

use crate::app::access;
use crate::app::AppState;
use crate::http::error::ApiError;
use crate::http::query::Query;
use crate::http::response::{ok, Body};
use hyper::body::Incoming;
use hyper::{Request, Response};

/// Users other than the caller whose email, full name or nickname contain `q`
/// (case-insensitive; a `q` of one or two characters matches their start),
/// oldest accounts first, at most `USER_SEARCH_LIMIT`. An empty `q` finds no
/// one: search is not a way to list the user directory. Searches are limited
/// per user (`RATE_LIMIT_SEARCH_PER_MIN`).
pub async fn search(
    state: &AppState,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let me = access::authenticate(state, request.headers())?;
    let searches = &state.limiters.search;
    searches.check_user(me).map_err(ApiError::Throttled)?;
    let query = Query::parse(request.uri().query());
    let text = query.get("q").unwrap_or("").trim();
    if !crate::input::fields::is_storable(text) {
        return Err(ApiError::field("q", crate::input::fields::NUL_REFUSED));
    }
    if text.chars().count() > 254 {
        return Err(ApiError::field(
            "q",
            "Ensure this field has no more than 254 characters.",
        ));
    }
    if text.is_empty() {
        return Ok(ok(&[(); 0]));
    }
    let limit = state.config.limits.user_search_limit;
    let users = state.store.search_users(text, me, limit).await?;
    Ok(ok(&users))
}
