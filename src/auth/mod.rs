//! Authentication: password hashing ([`password`]), JWTs compatible with the Django
//! backend's SimpleJWT ([`jwt`]), and turning a request's `Authorization` header
//! into the id of the user making it.

pub mod jwt;
pub mod password;

use crate::error::ApiError;
use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;

/// `n` random bytes as lowercase hex (token ids, generated secrets).
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::fill(&mut bytes[..]);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The token of an `Authorization: Bearer <token>` header, as SimpleJWT reads it.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(AUTHORIZATION)
        .ok_or(ApiError::NotAuthenticated)?;
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
