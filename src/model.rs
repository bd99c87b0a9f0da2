//! The domain values a client sees (User, Chat, Message) and their exact JSON shapes.
//!
//! Times are RFC 3339 UTC with microseconds and a `Z`, as Django REST Framework
//! renders them. Message metadata is kept as already-validated JSON text so it is
//! never re-parsed on the way out.

use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// A registered user as the API shows it (the password hash never leaves the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub full_name: String,
    pub nickname: Option<String>,
}

/// A one-to-one conversation. `participants` is ordered by user id.
#[derive(Debug, Clone, Serialize)]
pub struct Chat {
    pub id: i64,
    pub participants: [User; 2],
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_message: Option<Message>,
}

/// A stored message. `seq` is its gap-free position in its chat (1, 2, 3, ...).
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub id: i64,
    pub chat: i64,
    pub seq: i64,
    pub sender: User,
    pub content: String,
    pub metadata: Box<RawValue>,
    pub client_msg_id: Option<String>,
    pub created_at: Timestamp,
}

/// A point in time rendered as `2024-01-02T03:04:05.123456Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub OffsetDateTime);

impl Timestamp {
    pub fn now() -> Self {
        let now = OffsetDateTime::now_utc();
        let micros = now.microsecond();
        Timestamp(now.replace_microsecond(micros).unwrap_or(now))
    }

    pub fn render(&self) -> String {
        const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        let utc = self.0.to_offset(time::UtcOffset::UTC);
        utc.format(FORMAT).unwrap_or_else(|_| utc.to_string())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.render())
    }
}

/// Metadata text for a message that carries none.
pub fn empty_metadata() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("`{}` is valid JSON")
}

/// Wraps JSON text that the store or the decoder already validated.
pub fn metadata_from_text(text: String) -> Box<RawValue> {
    RawValue::from_string(text).unwrap_or_else(|_| empty_metadata())
}

/// The unique key of a pair of users, identical to the Django backend's:
/// lowercase hex SHA-256 of `pair:{min_id}:{max_id}`.
pub fn pair_key(a: i64, b: i64) -> String {
    let (low, high) = (a.min(b), a.max(b));
    let digest = Sha256::digest(format!("pair:{low}:{high}").as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_key_is_symmetric_and_matches_the_original() {
        // Expected values from `printf 'pair:1:2' | sha256sum` (min id first, as the original).
        assert_eq!(
            pair_key(2, 1),
            "a9ae0e45c78840dc0bb200fa0cd0ac34a15eb10e140a051b380122db4af1c570"
        );
        assert_eq!(
            pair_key(30, 7),
            "2d85e3d3df636c1c4676ff75bdc6b955d5b4aa92a4ad10b4eeef9679eac87225"
        );
    }

    #[test]
    fn timestamps_have_microseconds_and_z() {
        let t = Timestamp(time::macros::datetime!(2024-01-02 03:04:05.123456789 UTC));
        assert_eq!(t.render(), "2024-01-02T03:04:05.123456Z");
    }
}
