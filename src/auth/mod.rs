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
    use super::{bearer_token, random_hex};
    use crate::error::ApiError;
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
