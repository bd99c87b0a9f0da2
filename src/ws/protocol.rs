//! The WebSocket protocol: client events decoded (simd-json, with the same field
//! rules as REST), server events encoded once into frame payloads, and the close
//! codes a client can act on.

use crate::config::Limits;
use crate::draft::Draft;
use crate::error::FieldErrors;
use crate::http::input::Fields;
use crate::json::{self, Value};
use crate::model::Message;
use bytes::Bytes;

/// Close codes. Every close is resumable: reconnect with `after_seq` = the last
/// `seq` received and nothing is missed.
pub mod close {
    /// The client closed, or a normal end.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down; reconnect (to another node).
    pub const GOING_AWAY: u16 = 1001;
    /// A frame broke the WebSocket protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A binary frame: this protocol is JSON text only.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A text frame that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A flood: too many throttled events in a row.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message larger than `WS_MAX_MESSAGE_BYTES`.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Nothing received (not even a pong) for `WS_IDLE_TIMEOUT_SECS`.
    pub const IDLE_TIMEOUT: u16 = 4000;
    /// The access token expired; reconnect with a fresh one.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// The socket did not read fast enough and its outbox filled up.
    pub const SLOW_CONSUMER: u16 = 4008;
}

/// What a client can send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    Send(Draft),
    Read { seq: i64 },
    Typing,
}

/// Why an event was refused; becomes an `error` event, the socket stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    pub code: &'static str,
    pub detail: String,
    pub fields: Option<FieldErrors>,
    pub client_msg_id: Option<String>,
}

impl EventError {
    pub fn new(code: &'static str, detail: impl Into<String>) -> Self {
        EventError {
            code,
            detail: detail.into(),
            fields: None,
            client_msg_id: None,
        }
    }
}

/// Decodes one text message (parsed in place, with the socket's parser).
pub fn decode(
    parser: &mut json::Parser,
    bytes: &mut [u8],
    limits: &Limits,
) -> Result<ClientEvent, EventError> {
    let value = parser
        .parse(bytes)
        .map_err(|e| EventError::new("invalid_json", e.to_string()))?;
    let Value::Object(_) = &value else {
        return Err(EventError::new(
            "invalid_event",
            "An event must be a JSON object.",
        ));
    };
    let kind = match json::get(&value, "type") {
        Some(Value::String(kind)) => kind.as_ref(),
        Some(_) => {
            return Err(EventError::new(
                "invalid_event",
                "\"type\" must be a string.",
            ))
        }
        None => return Err(EventError::new("invalid_event", "\"type\" is required.")),
    };
    let mut fields = Fields::new(&value);
    let event = match kind {
        "message.send" => Draft::read(&mut fields, limits).map(ClientEvent::Send),
        "read" => fields.integer("seq").map(|seq| ClientEvent::Read { seq }),
        "typing" => Some(ClientEvent::Typing),
        other => {
            let detail =
                format!("Unknown event type {other:?}; expected message.send, read or typing.");
            return Err(EventError::new("unknown_type", detail));
        }
    };
    match event {
        Some(event) if fields.all_valid() => Ok(event),
        _ => Err(invalid_fields(fields)),
    }
}

/// The error for an event with invalid fields, carrying its client id back
/// when it has a usable one (copied only here, off the common path).
fn invalid_fields(fields: Fields<'_, '_>) -> EventError {
    let client_msg_id = Draft::client_msg_id_of(&fields);
    match fields.finish() {
        Err(crate::error::ApiError::Validation(errors)) => EventError {
            code: "invalid_fields",
            detail: describe(&errors),
            fields: Some(errors),
            client_msg_id,
        },
        _ => EventError::new("invalid_event", "The event could not be read."),
    }
}

fn describe(errors: &FieldErrors) -> String {
    errors
        .iter()
        .map(|(field, messages)| format!("{field}: {}", messages.join(" ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `{"type":"message","data":Message}`, encoded once for every recipient.
pub fn message_event(message: &Message) -> Bytes {
    let mut out = Vec::with_capacity(message_event_size_hint(message));
    out.extend_from_slice(MESSAGE_EVENT_HEAD);
    message.append_json(&mut out);
    out.push(b'}');
    Bytes::from(out)
}

const MESSAGE_EVENT_HEAD: &[u8] = br#"{"type":"message","data":"#;

/// About how long a message event is.
fn message_event_size_hint(message: &Message) -> usize {
    MESSAGE_EVENT_HEAD.len() + message.json_size_hint() + 1
}

/// `{"type":"error","code":...,"detail":...,"client_msg_id":...}` (+ `fields`).
pub fn error_event(error: &EventError) -> Bytes {
    let mut body = serde_json::json!({
        "type": "error",
        "code": error.code,
        "detail": error.detail,
        "client_msg_id": error.client_msg_id,
    });
    if let Some(fields) = &error.fields {
        body["fields"] = fields
            .iter()
            .map(|(name, messages)| (name.clone(), serde_json::json!(messages)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    Bytes::from(json::encode(&body))
}

/// `{"type":"read","user_id":..,"seq":..}`.
pub fn read_event(user_id: i64, seq: i64) -> Bytes {
    Bytes::from(json::encode(
        &serde_json::json!({"type": "read", "user_id": user_id, "seq": seq}),
    ))
}

/// `{"type":"typing","user_id":..}`.
pub fn typing_event(user_id: i64) -> Bytes {
    Bytes::from(json::encode(
        &serde_json::json!({"type": "typing", "user_id": user_id}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn limits() -> Limits {
        let vars = [("SECRET_KEY".to_string(), "k".to_string())]
            .into_iter()
            .collect();
        Config::from_vars(vars).unwrap().limits
    }

    fn decode_str(text: &str) -> Result<ClientEvent, EventError> {
        decode(
            &mut json::Parser::default(),
            &mut text.as_bytes().to_vec(),
            &limits(),
        )
    }

    #[test]
    fn decodes_each_event_type() {
        let send = decode_str(
            r#"{"type":"message.send","content":" hi ","metadata":{"a":1},"client_msg_id":"c1"}"#,
        );
        assert_eq!(
            send.unwrap(),
            ClientEvent::Send(Draft {
                content: "hi".into(),
                metadata: r#"{"a":1}"#.into(),
                client_msg_id: Some("c1".into())
            })
        );
        assert_eq!(
            decode_str(r#"{"type":"read","seq":4}"#).unwrap(),
            ClientEvent::Read { seq: 4 }
        );
        assert_eq!(
            decode_str(r#"{"type":"typing"}"#).unwrap(),
            ClientEvent::Typing
        );
    }

    #[test]
    fn bad_events_have_codes_and_keep_the_client_id() {
        let cases = [
            ("{nope", "invalid_json"),
            ("[1]", "invalid_event"),
            (r#"{"content":"x"}"#, "invalid_event"),
            (r#"{"type":5}"#, "invalid_event"),
            (r#"{"type":"dance"}"#, "unknown_type"),
            (r#"{"type":"read","seq":"x"}"#, "invalid_fields"),
            (
                r#"{"type":"message.send","content":"  ","client_msg_id":"c9"}"#,
                "invalid_fields",
            ),
        ];
        for (text, code) in cases {
            assert_eq!(decode_str(text).unwrap_err().code, code, "{text}");
        }
        let blank = decode_str(r#"{"type":"message.send","content":"  ","client_msg_id":"c9"}"#)
            .unwrap_err();
        assert_eq!(blank.client_msg_id.as_deref(), Some("c9"));
        assert!(blank.detail.contains("content"));
    }

    #[test]
    fn events_encode_to_the_documented_shapes() {
        let read: serde_json::Value = serde_json::from_slice(&read_event(3, 9)).unwrap();
        assert_eq!(
            read,
            serde_json::json!({"type": "read", "user_id": 3, "seq": 9})
        );
        let error = error_event(&EventError::new("invalid_json", "bad"));
        let error: serde_json::Value = serde_json::from_slice(&error).unwrap();
        assert_eq!(error["type"], "error");
        assert_eq!(error["client_msg_id"], serde_json::Value::Null);
    }

    #[test]
    fn a_message_event_fits_its_size_hint_when_nothing_needs_escaping() {
        use crate::model::{metadata_from_text, Timestamp, User};
        let message = Message {
            id: i64::MAX,
            chat: i64::MAX,
            seq: i64::MAX,
            sender: User {
                id: i64::MAX,
                email: "a-long-address@example.com".into(),
                full_name: "Somebody With A Long Name".into(),
                nickname: Some("nick".into()),
            },
            content: "word ".repeat(200),
            metadata: metadata_from_text(r#"{"reply_to":1234,"mentions":[1,2,3]}"#.into()),
            client_msg_id: Some("3f2b9c1e-8d4a-4f7e-9b1a-2c3d4e5f6a7b".into()),
            created_at: Timestamp::now(),
        };
        let event = message_event(&message);
        let expected = format!(
            r#"{{"type":"message","data":{}}}"#,
            serde_json::to_string(&message).unwrap()
        );
        assert_eq!(std::str::from_utf8(&event).unwrap(), expected);
        let hint = message_event_size_hint(&message);
        assert!(event.len() <= hint, "{} bytes, hint {hint}", event.len());
        assert!(
            hint < event.len() + event.len() / 4 + 64,
            "hint {hint} for {}",
            event.len()
        );
    }
}
