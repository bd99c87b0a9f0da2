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
    crate::digest::hex(&bytes)
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

#[cfg(test)]
mod tests {
    use super::random_hex;

    #[test]
    fn random_hex_is_two_lowercase_digits_per_byte_and_differs_per_call() {
        let (a, b) = (random_hex(8), random_hex(8));
        assert_eq!(a.len(), 16);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
            "{a}"
        );
        assert_ne!(a, b, "64 random bits twice in a row");
        assert_eq!(random_hex(0), "");
    }
}
