//! The WebSocket side of the tool: the library's client (bound to a chosen local
//! address, so many sockets can spread over 127.0.0.x) and a small reader for the
//! server's events.

use crate::endpoint::Endpoint;
use crate::Result;
use bytes::Bytes;
use chat_client as client;
use chat_server::ws::transport::{self, FrameWriter, Inbound, MessageReader};
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::{watch, Mutex};

pub type Socket = chat_client::ClientSocket;

/// Opens a WebSocket to `path` on the endpoint, from `local` when given.
pub async fn connect(endpoint: &Endpoint, path: &str, local: Option<IpAddr>) -> Result<Socket> {
    Ok(chat_client::connect(endpoint.addr, &endpoint.authority, path, local).await?)
}

/// The same, for a socket that is only held: no buffers while it is idle.
pub async fn connect_idle(
    endpoint: &Endpoint,
    path: &str,
    local: Option<IpAddr>,
) -> Result<IdleSocket> {
    let (socket, read_ahead) =
        client::connect_lean(endpoint.addr, &endpoint.authority, path, local).await?;
    Ok(IdleSocket { socket, read_ahead })
}

/// A socket held open, and any bytes the server sent right behind the 101.
pub struct IdleSocket {
    socket: transport::Socket,
    read_ahead: Bytes,
}

impl IdleSocket {
    /// Answers pings until the server closes the socket (or it fails); a
    /// reader, with its buffer, exists only while a frame is being read and a
    /// writer only while a pong is sent.
    pub async fn hold(self) {
        let (held, read_ahead) = self.parts();
        held.hold_from(read_ahead, None::<fn()>).await
    }

    /// [`IdleSocket::hold`] for a user socket: its `sync` goes first, so
    /// the socket is live (not holding its events) while it idles. Once
    /// `asked` is raised (after the storm: the question is the tool's, not
    /// part of a client's connect), a `ping` event follows; the server acts on
    /// a socket's events in order, so its `pong` says the `sync` was
    /// answered, and `answered` is called then.
    pub async fn hold_synced(
        self,
        sync: Bytes,
        asked: watch::Receiver<bool>,
        answered: impl FnOnce(),
    ) {
        let (held, read_ahead) = self.parts();
        if held.write_alone(&sync).await.is_err() {
            return;
        }
        let asking = async {
            let mut asked = asked;
            if asked.wait_for(|raised| *raised).await.is_ok() {
                let _ = held.write_alone(&Bytes::from_static(PING_EVENT)).await;
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            () = held.hold_from(read_ahead, Some(answered)) => {}
            () = asking => {}
        }
    }

    /// The socket, shared by its reader and writers, and the bytes read ahead
    /// (handed to the reader, not kept).
    fn parts(self) -> (Held, Bytes) {
        let held = Held {
            socket: self.socket,
            writing: Mutex::new(()),
        };
        (held, self.read_ahead)
    }
}

/// A socket being held: one reader, and a writer at a time.
struct Held {
    socket: transport::Socket,
    /// Held while a frame is written (see [`Held::write_alone`]).
    writing: Mutex<()>,
}

impl Held {
    /// Writes a text frame and flushes it, one writer at a time (the
    /// question of [`IdleSocket::hold_synced`] and the reader's pongs
    /// share the socket).
    async fn write_alone(
        &self,
        text: &Bytes,
    ) -> std::result::Result<(), fastwebsockets::WebSocketError> {
        let _alone = self.writing.lock().await;
        let mut writer = FrameWriter::client(&self.socket, 512, Duration::from_secs(5));
        writer.text(text).await?;
        writer.flush().await
    }

    /// Answers pings until the server closes the socket (or it fails), and
    /// calls `answered` at the first `pong` event.
    async fn hold_from(&self, read_ahead: Bytes, mut answered: Option<impl FnOnce()>) {
        let mut reader = MessageReader::client(&self.socket, read_ahead, 1 << 20);
        while let Ok(inbound) = reader.next().await {
            match inbound {
                Inbound::Ping(payload) => {
                    let _alone = self.writing.lock().await;
                    let mut pong = FrameWriter::client(&self.socket, 256, Duration::from_secs(5));
                    if pong.pong(payload).await.is_err() || pong.flush().await.is_err() {
                        return;
                    }
                }
                Inbound::Text(text) if text == PONG_EVENT => {
                    if let Some(answered) = answered.take() {
                        answered();
                    }
                }
                Inbound::Close => return,
                Inbound::Text(_) | Inbound::Binary | Inbound::Pong => {}
            }
        }
    }
}

/// The client's `ping` event and the server's answer (not WebSocket pings).
const PING_EVENT: &[u8] = br#"{"type":"ping"}"#;
const PONG_EVENT: &[u8] = br#"{"type":"pong"}"#;

/// `/ws/chats/{chat}/?token=..[&after_seq=N]` (the same on both route sets).
pub fn chat_path(chat: i64, token: &str, after_seq: Option<i64>) -> String {
    match after_seq {
        Some(seq) => format!("/ws/chats/{chat}/?token={token}&after_seq={seq}"),
        None => format!("/ws/chats/{chat}/?token={token}"),
    }
}

/// The parts of a server event the tool looks at.
#[derive(Deserialize)]
pub struct Event<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub data: Option<Data<'a>>,
}

#[derive(Deserialize)]
pub struct Data<'a> {
    pub seq: Option<i64>,
    #[serde(borrow)]
    pub content: Cow<'a, str>,
}

/// A message event's `seq` and `content`; `None` for other events. Reads the
/// two fields straight from the bytes when the event has this server's compact
/// shape and the content has no escapes (what the tool sends), and parses the
/// whole event otherwise: a full parse of every arrival was a quarter of the
/// tool's CPU, which it takes from the server on a shared machine.
pub fn message_fields(bytes: &[u8]) -> Option<(Option<i64>, Cow<'_, str>)> {
    if let Some(fields) = compact_message_fields(bytes) {
        return Some(fields);
    }
    let event: Event = serde_json::from_slice(bytes).ok()?;
    let data = event.data.filter(|_| event.kind == "message")?;
    Some((data.seq, data.content))
}

/// `{"type":"message","data":{..."seq":N,..."content":"..."...}}`. Inside a JSON
/// string every quote is escaped, so the first `"seq":` and `"content":"` after
/// that prefix are the message's own keys.
fn compact_message_fields(bytes: &[u8]) -> Option<(Option<i64>, Cow<'_, str>)> {
    let data = bytes.strip_prefix(br#"{"type":"message","data":{"#)?;
    let seq_at = find(data, br#""seq":"#)?;
    let digits = &data[seq_at..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    let seq = std::str::from_utf8(&digits[..end]).ok()?.parse().ok()?;
    let content_at = find(data, br#""content":""#)?;
    let text = &data[content_at..];
    let close = text.iter().position(|&b| b == b'"' || b == b'\\')?;
    if text[close] != b'"' {
        return None;
    }
    let content = std::str::from_utf8(&text[..close]).ok()?;
    Some((Some(seq), Cow::Borrowed(content)))
}

/// A message event's chat, read like its `seq` (the server's compact shape,
/// else a full parse).
pub fn message_chat(bytes: &[u8]) -> Option<i64> {
    if let Some(data) = bytes.strip_prefix(br#"{"type":"message","data":{"#) {
        if let Some(at) = find(data, br#""chat":"#) {
            let digits = &data[at..];
            let end = digits
                .iter()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(digits.len());
            if let Some(chat) = std::str::from_utf8(&digits[..end])
                .ok()
                .and_then(|d| d.parse().ok())
            {
                return Some(chat);
            }
        }
    }
    let event: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    event["data"]["chat"].as_i64()
}

/// `/ws/?token=..`: a user socket.
pub fn user_path(token: &str) -> String {
    format!("/ws/?token={token}")
}

/// One socket of a connect storm: the path it upgrades on, and for a user
/// socket the `sync` it sends once open (so it idles live, not holding its
/// events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    pub path: String,
    pub first_sync: Option<Bytes>,
}

impl Opening {
    /// A socket that sends nothing first: a per-chat socket, or a bare upgrade.
    pub fn plain(path: String) -> Self {
        Opening {
            path,
            first_sync: None,
        }
    }

    /// A user socket whose `sync` names each of `chats` at 0 (`{}` for none).
    pub fn user_socket(token: &str, chats: &[i64]) -> Self {
        let cursors: Vec<String> = chats.iter().map(|chat| format!(r#""{chat}":0"#)).collect();
        let sync = format!(r#"{{"type":"sync","chats":{{{}}}}}"#, cursors.join(","));
        Opening {
            path: user_path(token),
            first_sync: Some(Bytes::from(sync)),
        }
    }
}

/// Where `needle` ends in `haystack`. (A byte-by-byte window search here was
/// a tenth of the tool's CPU in `chat`.)
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle).map(|at| at + needle.len())
}

/// A `message.send` event, written straight into its frame's buffer (the
/// strings escaped as JSON requires) rather than through a `serde_json::Value`.
pub fn send_frame(content: &str, client_msg_id: &str) -> Frame<'static> {
    send_frame_in(None, content, client_msg_id)
}

/// A `message.send` event naming its chat (a user socket's), or not.
pub fn send_frame_in(chat: Option<i64>, content: &str, client_msg_id: &str) -> Frame<'static> {
    let mut body = Vec::with_capacity(content.len() + client_msg_id.len() + 80);
    body.extend_from_slice(br#"{"type":"message.send","#);
    if let Some(chat) = chat {
        body.extend_from_slice(br#""chat":"#);
        chat_server::json::append(&mut body, &chat);
        body.push(b',');
    }
    body.extend_from_slice(br#""content":"#);
    chat_server::json::append(&mut body, content);
    body.extend_from_slice(br#","client_msg_id":"#);
    chat_server::json::append(&mut body, client_msg_id);
    body.push(b'}');
    Frame::text(Payload::Owned(body))
}

/// Reads frames, answering pings, until a text frame (or the end).
pub async fn next_text(ws: &mut FragmentCollector<TokioIo<Upgraded>>) -> Option<Vec<u8>> {
    loop {
        let frame = ws.read_frame().await.ok()?;
        match frame.opcode {
            OpCode::Text => return Some(frame.payload.to_vec()),
            OpCode::Close => return None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{message_fields, send_frame, Opening};

    #[test]
    fn a_user_socket_opening_syncs_the_chats_it_names() {
        let opening = Opening::user_socket("t", &[7, 9]);
        assert_eq!(opening.path, "/ws/?token=t");
        let sync: serde_json::Value =
            serde_json::from_slice(opening.first_sync.as_ref().unwrap()).unwrap();
        assert_eq!(
            sync,
            serde_json::json!({"type": "sync", "chats": {"7": 0, "9": 0}})
        );
        let opening = Opening::user_socket("t", &[]);
        assert_eq!(
            &opening.first_sync.unwrap()[..],
            &br#"{"type":"sync","chats":{}}"#[..]
        );
        assert_eq!(
            Opening::plain("/ws/chat/1/?token=t".into()).first_sync,
            None
        );
    }

    #[test]
    fn send_frames_are_the_json_event_with_their_strings_escaped() {
        let frame = send_frame("say \"hi\"\n\\ é", "c-1");
        let event: serde_json::Value = serde_json::from_slice(&frame.payload).unwrap();
        assert_eq!(
            event,
            serde_json::json!({"type": "message.send", "content": "say \"hi\"\n\\ é", "client_msg_id": "c-1"})
        );
    }

    #[test]
    fn a_user_sockets_send_names_its_chat_and_a_message_events_chat_is_read() {
        let frame = super::send_frame_in(Some(7), "x", "c");
        let event: serde_json::Value = serde_json::from_slice(&frame.payload).unwrap();
        assert_eq!(
            event,
            serde_json::json!({"type": "message.send", "chat": 7, "content": "x", "client_msg_id": "c"})
        );
        let compact = br#"{"type":"message","data":{"id":3,"chat":42,"seq":1,"content":"a"}}"#;
        assert_eq!(super::message_chat(compact), Some(42));
        let spaced = br#"{"type": "message", "data": {"seq": 1, "chat": 9}}"#;
        assert_eq!(super::message_chat(spaced), Some(9));
    }

    #[test]
    fn message_fields_read_compact_events_and_fall_back_to_a_full_parse() {
        let ours = br#"{"type":"message","data":{"id":7,"sender":{"id":1,"nickname":"\"seq\":9 \"content\":\"x"},"seq":42,"content":"lt:123:4:xx","metadata":{}}}"#;
        let (seq, content) = message_fields(ours).unwrap();
        assert_eq!((seq, content.as_ref()), (Some(42), "lt:123:4:xx"));
        let escaped = br#"{"type":"message","data":{"seq":5,"content":"a\"b"}}"#;
        let (seq, content) = message_fields(escaped).unwrap();
        assert_eq!(
            (seq, content.as_ref()),
            (Some(5), "a\"b"),
            "escapes: full parse"
        );
        let spaced = br#"{"type": "message", "data": {"content": "lt:1:2:", "seq": 8}}"#;
        let (seq, content) = message_fields(spaced).unwrap();
        assert_eq!((seq, content.as_ref()), (Some(8), "lt:1:2:"));
        assert!(message_fields(br#"{"type":"typing","data":{"user_id":1}}"#).is_none());
        assert!(message_fields(b"not json").is_none());
    }
}
