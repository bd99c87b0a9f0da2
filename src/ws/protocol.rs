//! The client's side of the WebSocket protocol: its events decoded (simd-json,
//! with the same field rules as REST), and the close codes it can act on. The
//! server's events are encoded in [`crate::delivery::events`].

use crate::config::Limits;
use crate::delivery::events::EventError;
use crate::input::fields::Fields;
use crate::input::message::MessageInput;
use crate::json::{self, Value};
use crate::model::FieldErrors;

/// Close codes. Every close but [`close::USER_INACTIVE`] is resumable:
/// reconnect with `after_seq` = the last `seq` received (or `sync`) and
/// nothing is missed.
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
    /// The server could not start the socket in time (a user socket whose
    /// bus subscription was not confirmed); reconnect later.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// Nothing received (not even a pong) for `WS_IDLE_TIMEOUT_SECS`.
    pub const IDLE_TIMEOUT: u16 = 4000;
    /// The access token expired; reconnect with a fresh one.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// The user was deactivated (`is_active` false): do not reconnect.
    pub const USER_INACTIVE: u16 = 4003;
    /// The socket did not read fast enough and its outbox filled up.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// A user socket: the bus between nodes may have lost events (it
    /// reconnected, or a node dropped some) in a chat the socket has no
    /// position in; reconnect and `sync`.
    pub const RESYNC: u16 = 4009;
}

/// What a client can send. `chat` names the chat on a user socket (a
/// per-chat socket's events are about its chat, whatever they name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    Send {
        chat: Option<i64>,
        input: MessageInput,
    },
    Read {
        chat: Option<i64>,
        seq: i64,
    },
    Typing {
        chat: Option<i64>,
    },
    /// Where each listed chat resumes: `(chat, after_seq)` (user sockets).
    Sync {
        chats: Vec<(i64, i64)>,
    },
    /// Asks for a `pong` on this socket: a browser cannot see WebSocket
    /// pings, so this is how its client tells a live connection from a dead one.
    Ping,
}

/// Chats one `sync` may name at most.
pub const SYNC_MAX_CHATS: usize = 1_000;

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
    if kind == "sync" {
        return sync_of(&value);
    }
    let mut fields = Fields::new(&value);
    let chat = fields.optional_integer("chat");
    let event = match kind {
        "message.send" => {
            MessageInput::read(&mut fields, limits).map(|input| ClientEvent::Send { chat, input })
        }
        "read" => fields
            .integer("seq")
            .map(|seq| ClientEvent::Read { chat, seq }),
        "typing" => Some(ClientEvent::Typing { chat }),
        // Last: the hot path (`message.send`) pays nothing for it.
        "ping" => Some(ClientEvent::Ping),
        other => {
            let detail = format!(
                "Unknown event type {other:?}; expected message.send, read, typing, sync or ping."
            );
            return Err(EventError::new("unknown_type", detail));
        }
    };
    match event {
        Some(event) if fields.all_valid() => Ok(event),
        _ => {
            let error = invalid_fields(fields);
            Err(match chat {
                Some(chat) => error.in_chat(chat),
                None => error,
            })
        }
    }
}

/// `{"type":"sync","chats":{"<chat id>":<after_seq>,...}}`: chat ids of 1 or
/// more, `after_seq` of 0 or more, at most [`SYNC_MAX_CHATS`] of them.
fn sync_of(value: &Value<'_>) -> Result<ClientEvent, EventError> {
    let invalid = |detail: &str| EventError {
        fields: Some(vec![("chats".to_string(), vec![detail.to_string()])]),
        ..EventError::new("invalid_fields", format!("chats: {detail}"))
    };
    let Some(Value::Object(listed)) = json::get(value, "chats") else {
        return Err(invalid(
            "An object of chat ids to after_seq values is required.",
        ));
    };
    if listed.len() > SYNC_MAX_CHATS {
        let detail = format!("A sync may name at most {SYNC_MAX_CHATS} chats.");
        return Err(EventError::new("too_many_chats", detail));
    }
    let mut chats = Vec::with_capacity(listed.len());
    for (key, after) in listed.iter() {
        let chat = key.parse::<i64>().ok().filter(|chat| *chat >= 1);
        let after = match after {
            Value::Static(simd_json::StaticNode::I64(n)) => Some(*n),
            Value::Static(simd_json::StaticNode::U64(n)) => i64::try_from(*n).ok(),
            _ => None,
        };
        match (chat, after) {
            (Some(chat), Some(after)) if after >= 0 => chats.push((chat, after)),
            _ => {
                return Err(invalid(&format!(
                    "{key:?}: keys must be chat ids and values integers >= 0."
                )))
            }
        }
    }
    Ok(ClientEvent::Sync { chats })
}

/// The error for an event with invalid fields, carrying its client id back
/// when it has a usable one (copied only here, off the common path).
fn invalid_fields(fields: Fields<'_, '_>) -> EventError {
    let client_msg_id = MessageInput::client_msg_id_of(&fields);
    match fields.finish() {
        Err(crate::http::error::ApiError::Validation(errors)) => EventError {
            code: "invalid_fields",
            detail: describe(&errors),
            fields: Some(errors),
            client_msg_id,
            chat: None,
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
            ClientEvent::Send {
                chat: None,
                input: MessageInput {
                    content: "hi".into(),
                    metadata: r#"{"a":1}"#.into(),
                    client_msg_id: Some("c1".into())
                }
            }
        );
        assert_eq!(
            decode_str(r#"{"type":"read","seq":4,"chat":7}"#).unwrap(),
            ClientEvent::Read {
                chat: Some(7),
                seq: 4
            }
        );
        assert_eq!(
            decode_str(r#"{"type":"typing","chat":null}"#).unwrap(),
            ClientEvent::Typing { chat: None }
        );
        let sync = decode_str(r#"{"type":"sync","chats":{"3":0,"9":12}}"#).unwrap();
        let ClientEvent::Sync { mut chats } = sync else {
            panic!("{sync:?}")
        };
        chats.sort_unstable();
        assert_eq!(chats, vec![(3, 0), (9, 12)]);
        assert_eq!(decode_str(r#"{"type":"ping"}"#).unwrap(), ClientEvent::Ping);
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
            (r#"{"type":"typing","chat":"x"}"#, "invalid_fields"),
            (r#"{"type":"sync"}"#, "invalid_fields"),
            (r#"{"type":"sync","chats":[1]}"#, "invalid_fields"),
            (r#"{"type":"sync","chats":{"x":1}}"#, "invalid_fields"),
            (r#"{"type":"sync","chats":{"0":1}}"#, "invalid_fields"),
            (r#"{"type":"sync","chats":{"5":-1}}"#, "invalid_fields"),
            (r#"{"type":"sync","chats":{"5":"1"}}"#, "invalid_fields"),
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
        let named = decode_str(r#"{"type":"read","chat":4,"seq":0.5}"#).unwrap_err();
        assert_eq!(named.chat, Some(4), "the error names the chat");
        let many: String = (1..=SYNC_MAX_CHATS + 1)
            .map(|chat| format!("\"{chat}\":0"))
            .collect::<Vec<_>>()
            .join(",");
        let too_many = decode_str(&format!(r#"{{"type":"sync","chats":{{{many}}}}}"#));
        assert_eq!(too_many.unwrap_err().code, "too_many_chats");
    }
}
