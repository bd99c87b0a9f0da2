//! The events the server sends, encoded once into frame payloads: a stored
//! message (encoded by the writer, once for every recipient on every node),
//! `chat`, `read`, `typing`, `ready`, `pong` and `error`. Shared by the writer, the read-marker
//! coalescer and the sessions, so each shape is written in one place.

use crate::json;
use crate::model::{Chat, FieldErrors, Message};
use bytes::Bytes;

/// Why an event was refused; becomes an `error` event, the socket stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    pub code: &'static str,
    pub detail: String,
    pub fields: Option<FieldErrors>,
    pub client_msg_id: Option<String>,
    /// The chat the refused event named, when it named one.
    pub chat: Option<i64>,
}

impl EventError {
    pub fn new(code: &'static str, detail: impl Into<String>) -> Self {
        EventError {
            code,
            detail: detail.into(),
            fields: None,
            client_msg_id: None,
            chat: None,
        }
    }

    /// The same error, naming the chat it is about.
    pub fn in_chat(self, chat: i64) -> Self {
        EventError {
            chat: Some(chat),
            ..self
        }
    }
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

/// `{"type":"error","code":...,"detail":...,"chat":...,"client_msg_id":...}`
/// (+ `fields`).
pub fn error_event(error: &EventError) -> Bytes {
    let mut body = serde_json::json!({
        "type": "error",
        "code": error.code,
        "detail": error.detail,
        "chat": error.chat,
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

/// `{"type":"read","chat":..,"user_id":..,"seq":..}`.
pub fn read_event(chat: i64, user_id: i64, seq: i64) -> Bytes {
    Bytes::from(json::encode(&serde_json::json!(
        {"type": "read", "chat": chat, "user_id": user_id, "seq": seq}
    )))
}

/// `{"type":"typing","chat":..,"user_id":..}`.
pub fn typing_event(chat: i64, user_id: i64) -> Bytes {
    Bytes::from(json::encode(
        &serde_json::json!({"type": "typing", "chat": chat, "user_id": user_id}),
    ))
}

/// `{"type":"chat","data":Chat}`.
pub fn chat_event(chat: &Chat) -> Bytes {
    Bytes::from(json::encode(
        &serde_json::json!({"type": "chat", "data": chat}),
    ))
}

/// `{"type":"pong"}`: the answer to a client's `ping`, on its socket only.
pub fn pong_event() -> Bytes {
    Bytes::from_static(br#"{"type":"pong"}"#)
}

/// `{"type":"ready","user_id":..}`: a user socket's first event.
pub fn ready_event(user_id: i64) -> Bytes {
    Bytes::from(json::encode(
        &serde_json::json!({"type": "ready", "user_id": user_id}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_encode_to_the_documented_shapes() {
        let read: serde_json::Value = serde_json::from_slice(&read_event(5, 3, 9)).unwrap();
        assert_eq!(
            read,
            serde_json::json!({"type": "read", "chat": 5, "user_id": 3, "seq": 9})
        );
        let error = error_event(&EventError::new("invalid_json", "bad"));
        let error: serde_json::Value = serde_json::from_slice(&error).unwrap();
        assert_eq!(error["type"], "error");
        assert_eq!(error["client_msg_id"], serde_json::Value::Null);
        assert_eq!(error["chat"], serde_json::Value::Null);
        let named = error_event(&EventError::new("forbidden", "no").in_chat(4));
        let named: serde_json::Value = serde_json::from_slice(&named).unwrap();
        assert_eq!(named["chat"], 4);
        let typing: serde_json::Value = serde_json::from_slice(&typing_event(5, 3)).unwrap();
        assert_eq!(
            typing,
            serde_json::json!({"type": "typing", "chat": 5, "user_id": 3})
        );
    }

    #[test]
    fn a_message_event_fits_its_size_hint_when_nothing_needs_escaping() {
        use crate::model::{metadata_from_text, Timestamp, User};
        let message = Message {
            id: i64::MAX,
            chat: i64::MAX,
            seq: i64::MAX,
            sender: std::sync::Arc::new(User {
                id: i64::MAX,
                email: "a-long-address@example.com".into(),
                full_name: "Somebody With A Long Name".into(),
                nickname: Some("nick".into()),
            }),
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
