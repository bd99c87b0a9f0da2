//! The domain values a client sees (User, Chat, Message) and their exact JSON shapes.
//!
//! Times are RFC 3339 UTC with microseconds and a `Z`, as Django REST Framework
//! renders them. Message metadata is kept as already-validated JSON text so it is
//! never re-parsed on the way out.

use serde::Serialize;
use serde_json::value::RawValue;
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
        self.with_text(str::to_owned)
    }

    /// Hands the rendered text to `use_text` without allocating for years 0-9999.
    fn with_text<R>(&self, use_text: impl FnOnce(&str) -> R) -> R {
        match self.rfc3339_micros() {
            // ASCII digits and separators: always UTF-8.
            Some(bytes) => use_text(std::str::from_utf8(&bytes).unwrap_or_default()),
            None => use_text(&self.render_any_year()),
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ` written digit by digit: every message and
    /// page carries timestamps, and the general formatter was ~4% of a history
    /// read's server CPU. `None` for years outside 0..=9999.
    fn rfc3339_micros(&self) -> Option<[u8; 27]> {
        let utc = self.0.to_offset(time::UtcOffset::UTC);
        let year = u32::try_from(utc.year()).ok().filter(|y| *y <= 9999)?;
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut value: u32| {
            for slot in out[at..at + width].iter_mut().rev() {
                *slot = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, u8::from(utc.month()).into());
        put(8, 2, utc.day().into());
        put(11, 2, utc.hour().into());
        put(14, 2, utc.minute().into());
        put(17, 2, utc.second().into());
        put(20, 6, utc.microsecond());
        Some(out)
    }

    fn render_any_year(&self) -> String {
        const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        let utc = self.0.to_offset(time::UtcOffset::UTC);
        utc.format(FORMAT).unwrap_or_else(|_| utc.to_string())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.with_text(|text| serializer.serialize_str(text))
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
    crate::digest::hex(&crate::digest::sha256(
        format!("pair:{low}:{high}").as_bytes(),
    ))
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
        let offset = Timestamp(time::macros::datetime!(2024-01-02 01:00:00 +02:00));
        assert_eq!(offset.render(), "2024-01-01T23:00:00.000000Z");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2024-01-02T03:04:05.123456Z\"");
    }

    #[test]
    fn the_digit_writer_agrees_with_the_general_formatter() {
        // Every 7,919,993 seconds (+ varying micros) from year 1 to 9999: all
        // months, days, leap years and digit widths.
        let mut unix = time::macros::datetime!(0001-01-01 00:00:00 UTC).unix_timestamp();
        let end = time::macros::datetime!(9999-12-31 23:59:59 UTC).unix_timestamp();
        let mut checked = 0;
        while unix <= end {
            let at = OffsetDateTime::from_unix_timestamp(unix).unwrap()
                + time::Duration::microseconds(unix.rem_euclid(1_000_000));
            let t = Timestamp(at);
            assert_eq!(t.render(), t.render_any_year(), "{at}");
            unix += 7_919_993;
            checked += 1;
        }
        assert!(checked > 39_000, "{checked}");
    }
}
