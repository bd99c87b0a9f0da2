//! JSON Web Tokens, the only user of `jsonwebtoken`. HS256 with the claims of the
//! Django backend's SimpleJWT 5.5 (`token_type`, `exp`, `iat`, `jti`, `user_id` as a
//! string), so tokens issued by either server are read by the other when they share
//! `SECRET_KEY`. A refresh token is never accepted where an access token is needed.

use crate::remembered::Remembered;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Verified access tokens remembered before the map starts over.
pub const VERIFIED_CAPACITY: usize = 65_536;

/// Which kind of token, as SimpleJWT's `token_type` claim names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Access,
    Refresh,
}

/// The claims of both token types.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub token_type: TokenType,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    #[serde(deserialize_with = "user_id_from_string_or_number")]
    pub user_id: String,
}

impl Claims {
    /// The user id as a number; `None` when the claim is not one.
    pub fn user_id(&self) -> Option<i64> {
        self.user_id.parse().ok().filter(|id| *id > 0)
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("Token is expired")]
    Expired,
    #[error("Token has wrong type")]
    WrongType,
    #[error("Token is invalid")]
    Invalid,
}

/// Who a valid access token speaks for, and until when (`exp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bearer {
    pub user_id: i64,
    pub expires_at: i64,
}

/// Issues and verifies tokens with one secret.
pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl: Duration,
    refresh_ttl: Duration,
    verified: VerifiedTokens,
}

impl TokenService {
    pub fn new(secret: &str, access_ttl: Duration, refresh_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iat"]);
        TokenService {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            access_ttl,
            refresh_ttl,
            verified: VerifiedTokens::default(),
        }
    }

    /// A new token of the given type for the user.
    pub fn issue(&self, user_id: i64, token_type: TokenType) -> String {
        let ttl = match token_type {
            TokenType::Access => self.access_ttl,
            TokenType::Refresh => self.refresh_ttl,
        };
        let now = unix_now();
        let claims = Claims {
            token_type,
            exp: now + ttl.as_secs() as i64,
            iat: now,
            jti: crate::digest::random_hex(16),
            user_id: user_id.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with an in-memory key cannot fail")
    }

    /// Checks signature, expiry and type.
    pub fn verify(&self, token: &str, expected: TokenType) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        if data.claims.iat > unix_now() + 60 {
            // Issued in the future (beyond clock skew): not valid yet.
            return Err(TokenError::Invalid);
        }
        if data.claims.token_type != expected {
            return Err(TokenError::WrongType);
        }
        if data.claims.user_id().is_none() {
            return Err(TokenError::Invalid);
        }
        Ok(data.claims)
    }

    /// An access token's user and expiry. A token verified before is
    /// remembered until it expires: a client's next requests skip the
    /// signature check and the claims' parsing.
    pub fn verify_access(&self, token: &str) -> Result<Bearer, TokenError> {
        if let Some(bearer) = self.verified.get(token, unix_now())? {
            return Ok(bearer);
        }
        let claims = self.verify(token, TokenType::Access)?;
        let bearer = Bearer {
            user_id: claims.user_id().ok_or(TokenError::Invalid)?,
            expires_at: claims.exp,
        };
        self.verified.remember(token, bearer);
        Ok(bearer)
    }
}

/// Access tokens whose signature and claims were checked. Each is found by
/// its last 32 bytes (inside its signature, which differs between any two
/// tokens this node signs) and matched against the whole token: hashing the
/// whole ~250-byte token was most of a remembered lookup. A forged token that
/// reuses a remembered signature finds that entry, fails the match and is
/// verified in full.
struct VerifiedTokens(Remembered<TokenTail, (Box<str>, Bearer)>);

/// A token's last 32 bytes (zero-padded in front when it is shorter).
type TokenTail = [u8; 32];

fn token_tail(token: &str) -> TokenTail {
    let bytes = token.as_bytes();
    let tail = &bytes[bytes.len().saturating_sub(32)..];
    let mut key = [0u8; 32];
    key[32 - tail.len()..].copy_from_slice(tail);
    key
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        VerifiedTokens(Remembered::new(VERIFIED_CAPACITY))
    }
}

impl VerifiedTokens {
    /// The remembered bearer; `Expired` (and forgotten) once past its `exp`,
    /// as `jsonwebtoken` would say with no leeway.
    fn get(&self, token: &str, now: i64) -> Result<Option<Bearer>, TokenError> {
        let key = token_tail(token);
        let found = self
            .0
            .read(&key, |(remembered, bearer)| {
                (**remembered == *token).then_some(*bearer)
            })
            .flatten();
        match found {
            Some(bearer) if bearer.expires_at < now => {
                self.0.remove(&key);
                Err(TokenError::Expired)
            }
            found => Ok(found),
        }
    }

    fn remember(&self, token: &str, bearer: Bearer) {
        self.0.insert(token_tail(token), (token.into(), bearer));
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// SimpleJWT 5.5 writes `user_id` as a string; older versions wrote a number.
fn user_id_from_string_or_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(i64),
    }
    Ok(match Id::deserialize(deserializer)? {
        Id::Text(text) => text,
        Id::Number(number) => number.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> TokenService {
        TokenService::new("k", Duration::from_secs(60), Duration::from_secs(600))
    }

    #[test]
    fn tokens_carry_simplejwt_claims() {
        let svc = service();
        let token = svc.issue(42, TokenType::Access);
        let claims = svc.verify(&token, TokenType::Access).unwrap();
        assert_eq!(claims.user_id, "42");
        assert_eq!(claims.jti.len(), 32);
        assert_eq!(claims.exp - claims.iat, 60);
    }

    #[test]
    fn refresh_is_not_access_and_other_secrets_fail() {
        let svc = service();
        let refresh = svc.issue(1, TokenType::Refresh);
        assert_eq!(
            svc.verify(&refresh, TokenType::Access).unwrap_err(),
            TokenError::WrongType
        );
        let other = TokenService::new("other", Duration::from_secs(60), Duration::from_secs(60));
        let forged = other.issue(1, TokenType::Access);
        assert_eq!(
            svc.verify(&forged, TokenType::Access).unwrap_err(),
            TokenError::Invalid
        );
    }

    #[test]
    fn a_remembered_access_token_still_expires_and_refuses_look_alikes() {
        let svc = TokenService::new("k", Duration::from_secs(1), Duration::from_secs(1));
        let token = svc.issue(7, TokenType::Access);
        let first = svc.verify_access(&token).unwrap();
        assert_eq!(first.user_id, 7);
        assert_eq!(svc.verify_access(&token).unwrap(), first, "remembered");
        // Another user's claims under this token's (remembered) signature.
        let other = svc.issue(8, TokenType::Access);
        let parts = |t: &str| t.split('.').map(str::to_string).collect::<Vec<_>>();
        let (mine, theirs) = (parts(&token), parts(&other));
        let forged = format!("{}.{}.{}", mine[0], theirs[1], mine[2]);
        assert_eq!(svc.verify_access(&forged), Err(TokenError::Invalid));
        assert_eq!(
            svc.verify_access(&token).unwrap(),
            first,
            "still remembered"
        );
        let refresh = svc.issue(7, TokenType::Refresh);
        assert_eq!(svc.verify_access(&refresh), Err(TokenError::WrongType));
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(svc.verify_access(&token), Err(TokenError::Expired));
        assert_eq!(svc.verify_access(&token), Err(TokenError::Expired));
    }

    #[test]
    fn token_tails_are_the_last_32_bytes_padded_in_front() {
        let long = format!("{}{}", "x".repeat(40), "y".repeat(32));
        assert_eq!(token_tail(&long), [b'y'; 32]);
        let mut short = [0u8; 32];
        short[29..].copy_from_slice(b"abc");
        assert_eq!(token_tail("abc"), short);
    }

    #[test]
    fn expired_tokens_are_refused() {
        let svc = TokenService::new("k", Duration::ZERO, Duration::ZERO);
        let token = svc.issue(1, TokenType::Access);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(
            svc.verify(&token, TokenType::Access).unwrap_err(),
            TokenError::Expired
        );
    }
}
