//! `register`, `login`, `refresh` and `logout` (refresh-token blacklist), with
//! SimpleJWT's request and response shapes.

use crate::app::AppState;
use crate::auth::jwt::{TokenError, TokenType};
use crate::auth::password::Verdict;
use crate::http::body::RawBody;
use crate::http::error::ApiError;
use crate::http::response::{created, ok, Body};
use crate::input::fields::{is_valid_email, Fields, Text};
use crate::store::{Credentials, NewUser};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::json;
use std::time::Duration;

/// The window in which the store counts an account's failed logins
/// (`RATE_LIMIT_LOGIN_FAILURES_PER_EMAIL_PER_MIN` of them at most).
const FAILED_LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// `POST /auth/register/`: 201 with the new user.
pub async fn register(
    state: &AppState,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    throttle_by_address(state, &request)?;
    let limits = &state.config.limits;
    let mut body = RawBody::read(request, limits).await?;
    let value = body.object()?;
    let mut fields = Fields::new(&value);
    let email = fields.text("email", Text::required(254));
    if email.as_deref().is_some_and(|e| !is_valid_email(e)) {
        fields.reject("email", "Enter a valid email address.");
    }
    let password = fields.text(
        "password",
        Text {
            trim: false,
            ..Text::required(4096)
        },
    );
    if password
        .as_ref()
        .is_some_and(|p| p.chars().count() < limits.password_min_length)
    {
        let min = limits.password_min_length;
        fields.reject(
            "password",
            format!("This password is too short. It must contain at least {min} characters."),
        );
    }
    let full_name = fields.text("full_name", Text::required(255));
    let nickname = fields
        .text("nickname", Text::optional(100))
        .filter(|n| !n.is_empty());
    let other_info = fields.json(
        "other_info",
        "{}",
        limits.max_metadata_bytes,
        limits.max_metadata_depth,
    );
    fields.finish()?;
    let (Some(email), Some(password), Some(full_name), Some(other_info)) =
        (email, password, full_name, other_info)
    else {
        return Err(ApiError::Internal("validated fields missing".into()));
    };
    let password_hash = state.auth.passwords.hash(password).await?;
    let user = state
        .store
        .create_user(NewUser {
            email: normalize_email(&email),
            password_hash,
            full_name,
            nickname,
            other_info,
        })
        .await?;
    Ok(created(&user))
}

/// `POST /auth/login/`: `{email, password}` → `{refresh, access}`.
pub async fn login(
    state: &AppState,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    throttle_by_address(state, &request)?;
    let mut body = RawBody::read(request, &state.config.limits).await?;
    let value = body.object()?;
    let mut fields = Fields::new(&value);
    let email = fields.text("email", Text::required(254));
    let password = fields.text(
        "password",
        Text {
            trim: false,
            ..Text::required(4096)
        },
    );
    fields.finish()?;
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::Internal("validated fields missing".into()));
    };
    // Emails are unique without case: one count per account however spelled.
    let account = email.to_lowercase();
    refuse_while_failing(state, &account).await?;
    let credentials = state.store.credentials(&email).await?;
    let stored_hash = credentials.as_ref().map(|c| c.password_hash.clone());
    let verdict = state
        .auth
        .passwords
        .verify(password.clone(), stored_hash)
        .await?;
    match credentials {
        Some(c) if verdict.matches() && c.is_active => {
            if verdict == Verdict::MatchesRehash {
                rehash(state, &c, password).await;
            }
            Ok(ok(&json!({
                "refresh": state.auth.tokens.issue(c.user.id, TokenType::Refresh),
                "access": state.auth.tokens.issue(c.user.id, TokenType::Access),
            })))
        }
        _ => {
            count_failure(state, &account).await;
            Err(ApiError::InvalidCredentials)
        }
    }
}

/// Refuses a login, before its password is checked, while the account has
/// had its fill of failures: those this node saw (its bucket, which spares
/// the store a flood) or those every node sharing the store counted in the
/// account's window.
async fn refuse_while_failing(state: &AppState, account: &str) -> Result<(), ApiError> {
    let limiter = &state.limiters.login_failures;
    if !limiter.is_enabled() {
        return Ok(());
    }
    limiter.has_token(account).map_err(ApiError::Throttled)?;
    let limit = state.config.limits.login_failures_per_email_per_minute;
    match state.store.failed_logins(account).await? {
        Some(counted) if f64::from(counted.count) >= limit => {
            Err(ApiError::Throttled(counted.window_left))
        }
        _ => Ok(()),
    }
}

/// Counts a failed login in this node's bucket and in the store. A store
/// that cannot count it leaves the answer a 401: the bucket counted it.
async fn count_failure(state: &AppState, account: &str) {
    let limiter = &state.limiters.login_failures;
    if !limiter.is_enabled() {
        return;
    }
    let _ = limiter.check(account);
    let counted = state
        .store
        .count_failed_login(account, FAILED_LOGIN_WINDOW)
        .await;
    if let Err(error) = counted {
        tracing::warn!(%error, "counting a failed login in the store failed");
    }
}

/// Replaces a hash of the Django backend's (just matched) with an argon2id
/// one, as Django does at login. The login succeeds even when this fails:
/// the old hash still verifies, and the next login tries again.
async fn rehash(state: &AppState, credentials: &Credentials, password: String) {
    let user_id = credentials.user.id;
    let rehashed = match state.auth.passwords.hash(password).await {
        Ok(hash) => hash,
        Err(error) => return tracing::warn!(%error, user_id, "rehashing a password failed"),
    };
    let replaced = &credentials.password_hash;
    if let Err(error) = state
        .store
        .replace_password_hash(user_id, replaced, &rehashed)
        .await
    {
        tracing::warn!(%error, user_id, "storing a rehashed password failed");
    }
}

/// `POST /auth/refresh/`: `{refresh}` → `{access}`.
pub async fn refresh(
    state: &AppState,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let claims = valid_refresh_token(state, request).await?;
    let user_id = claims.user_id().ok_or(ApiError::InvalidRefreshToken)?;
    if state.store.user(user_id).await?.is_none() {
        return Err(ApiError::InvalidRefreshToken);
    }
    Ok(ok(
        &json!({ "access": state.auth.tokens.issue(user_id, TokenType::Access) }),
    ))
}

/// `POST /auth/logout/`: `{refresh}` → `{}`; that refresh token stops working.
pub async fn logout(
    state: &AppState,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let claims = valid_refresh_token(state, request).await?;
    state.store.blacklist_token(&claims.jti, claims.exp).await?;
    Ok(ok(&json!({})))
}

/// Reads `{refresh}` and checks it is a live, non-blacklisted refresh token.
async fn valid_refresh_token(
    state: &AppState,
    request: Request<Incoming>,
) -> Result<crate::auth::jwt::Claims, ApiError> {
    let mut body = RawBody::read(request, &state.config.limits).await?;
    let value = body.object()?;
    let mut fields = Fields::new(&value);
    let token = fields.text("refresh", Text::required(4096));
    fields.finish()?;
    let token = token.ok_or(ApiError::InvalidRefreshToken)?;
    let claims = state
        .auth
        .tokens
        .verify(&token, TokenType::Refresh)
        .map_err(|_: TokenError| ApiError::InvalidRefreshToken)?;
    if state.store.is_token_blacklisted(&claims.jti).await? {
        return Err(ApiError::BlacklistedToken);
    }
    Ok(claims)
}

/// Register and login cost an argon2 hash each: limit them per client address.
fn throttle_by_address(state: &AppState, request: &Request<Incoming>) -> Result<(), ApiError> {
    let address = crate::http::connection::client_addr(request);
    state
        .limiters
        .auth
        .check_address(address)
        .map_err(ApiError::Throttled)
}

/// Django's `normalize_email`: the domain part is lowercased.
fn normalize_email(email: &str) -> String {
    match email.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_lowercase()),
        None => email.to_owned(),
    }
}
