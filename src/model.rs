//! The domain values a client sees (User, Chat, Message) and their exact JSON shapes.
//!
//! Times are RFC 3339 UTC with microseconds and a `Z`, as Django REST Framework
//! renders them. Message metadata is kept as already-validated JSON text so it is
//! never re-parsed on the way out.

use crate::json;
use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Arc;
use time::OffsetDateTime;

/// Field errors in request order: `[("email", ["Enter a valid email address."])]`.
pub type FieldErrors = Vec<(String, Vec<String>)>;

/// A registered user as the API shows it (the password hash never leaves the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub full_name: String,
    pub nickname: Option<String>,
}

/// A one-to-one conversation as one of its participants (the reader) sees it.
/// `participants` is ordered by user id; `read_seq` is the reader's read
/// marker and `unread_count` is `last_seq - read_seq`; `peer_read_seq` is the
/// other participant's marker (the reader's messages up to it were seen), so
/// a client that missed `read` events (a reload, a reconnect) learns it from
/// the store.
#[derive(Debug, Clone, Serialize)]
pub struct Chat {
    pub id: i64,
    pub participants: [User; 2],
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_message: Option<Message>,
    pub last_seq: i64,
    pub read_seq: i64,
    pub unread_count: i64,
    pub peer_read_seq: i64,
}

impl Chat {
    /// The unread count for a reader whose marker is at `read_seq`.
    pub fn unread(last_seq: i64, read_seq: i64) -> i64 {
        (last_seq - read_seq).max(0)
    }

    /// The participant who is not `user` (0 when neither is someone else).
    pub fn peer_of(&self, user: i64) -> i64 {
        let other = self.participants.iter().find(|u| u.id != user);
        other.map_or(0, |u| u.id)
    }
}

/// A stored message. `seq` is its gap-free position in its chat (1, 2, 3, ...).
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub id: i64,
    pub chat: i64,
    pub seq: i64,
    /// Shared, not copied: a sender's messages (a socket's sends, a history
    /// page's rows) all point at one copy of the user.
    pub sender: Arc<User>,
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

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(&self) -> i64 {
        (self.0.unix_timestamp_nanos() / 1000) as i64
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
    /// page carries timestamps, and the general formatter showed in every
    /// history read's profile. `None` for years outside 0..=9999.
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

/// The hot path's encoders: the same bytes the `Serialize` derives write
/// (tests hold them to it), field by field without serde's per-field calls and
/// per-byte escaping of names that never need it. A message is encoded once for
/// every event and every history page that carries it, so its encoding is on
/// every hot path (serde's cost is in BENCHMARKS.md).
impl Message {
    /// This message as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.json_size_hint());
        self.append_json(&mut out);
        out
    }

    /// About how long this message's JSON is: its variable parts plus the
    /// names, numbers and timestamp around them (~200 bytes), with room for
    /// some escaping.
    pub fn json_size_hint(&self) -> usize {
        let sender = &self.sender;
        let variable = self.content.len()
            + self.metadata.get().len()
            + self.client_msg_id.as_ref().map_or(0, String::len)
            + sender.email.len()
            + sender.full_name.len()
            + sender.nickname.as_ref().map_or(0, String::len);
        290 + variable + variable / 8
    }

    /// This message's JSON onto the end of `out`.
    pub fn append_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"id\":");
        json::append(out, &self.id);
        out.extend_from_slice(b",\"chat\":");
        json::append(out, &self.chat);
        out.extend_from_slice(b",\"seq\":");
        json::append(out, &self.seq);
        out.extend_from_slice(b",\"sender\":");
        self.sender.append_json(out);
        out.extend_from_slice(b",\"content\":");
        json::append_str(out, &self.content);
        out.extend_from_slice(b",\"metadata\":");
        out.extend_from_slice(self.metadata.get().as_bytes());
        out.extend_from_slice(b",\"client_msg_id\":");
        append_optional_str(out, self.client_msg_id.as_deref());
        out.extend_from_slice(b",\"created_at\":");
        self.created_at.append_json(out);
        out.push(b'}');
    }
}

impl User {
    /// This user's JSON onto the end of `out`.
    pub fn append_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"id\":");
        json::append(out, &self.id);
        out.extend_from_slice(b",\"email\":");
        json::append_str(out, &self.email);
        out.extend_from_slice(b",\"full_name\":");
        json::append_str(out, &self.full_name);
        out.extend_from_slice(b",\"nickname\":");
        append_optional_str(out, self.nickname.as_deref());
        out.push(b'}');
    }
}

impl Timestamp {
    /// This time as a JSON string onto the end of `out`.
    pub fn append_json(&self, out: &mut Vec<u8>) {
        self.with_text(|text| json::append_str(out, text));
    }
}

fn append_optional_str(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => json::append_str(out, text),
        None => out.extend_from_slice(b"null"),
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

    fn message(content: &str, nickname: Option<&str>, client_msg_id: Option<&str>) -> Message {
        Message {
            id: i64::MAX,
            chat: 7,
            seq: -1,
            sender: std::sync::Arc::new(User {
                id: 42,
                email: "ann+\"quoted\"@example.com".into(),
                full_name: "Ann Ümlaut \u{1F600}".into(),
                nickname: nickname.map(str::to_owned),
            }),
            content: content.into(),
            metadata: metadata_from_text(r#"{"a": [1, "\u00e9"], "b":{}}"#.into()),
            client_msg_id: client_msg_id.map(str::to_owned),
            created_at: Timestamp(time::macros::datetime!(2024-02-29 23:59:59.000001 UTC)),
        }
    }

    #[test]
    fn the_hand_encoders_write_what_the_derives_write() {
        let contents = [
            "plain",
            "",
            "quote \" backslash \\ slash /",
            "only a back\\slash",
            "only a \"quote\"",
            "only a new\nline",
            "controls \n\r\t\u{0}\u{1f} and \u{7f}",
            "unicode é 日本 \u{1F600} \u{2028}",
            "x",
        ];
        for content in contents {
            for (nickname, client_msg_id) in [
                (None, None),
                (Some("an\tn"), Some("c-1\"")),
                (Some(""), Some("")),
            ] {
                let message = message(content, nickname, client_msg_id);
                let mut ours = Vec::new();
                message.append_json(&mut ours);
                let theirs = serde_json::to_vec(&message).unwrap();
                assert_eq!(
                    String::from_utf8(ours).unwrap(),
                    String::from_utf8(theirs).unwrap(),
                    "{content:?} {nickname:?} {client_msg_id:?}"
                );
            }
        }
        let far = Timestamp(time::macros::datetime!(-0001-01-01 00:00:00 UTC));
        let mut ours = Vec::new();
        far.append_json(&mut ours);
        assert_eq!(ours, serde_json::to_vec(&far).unwrap(), "a year before 0");
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
