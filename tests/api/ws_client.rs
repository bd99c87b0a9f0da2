//! A real WebSocket client for the tests (the library's fastwebsockets client),
//! with helpers that read JSON events and close codes with timeouts.

use crate::helpers::TestApp;
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::time::Duration;

/// How long a test waits for the next frame before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// What the server sent.
#[derive(Debug)]
pub enum Received {
    Json(Value),
    Close(u16),
}

pub struct WsClient {
    ws: FragmentCollector<TokioIo<Upgraded>>,
}

/// `/ws/chats/{chat}/?token=...[&after_seq=N]`
pub fn socket_path(chat: i64, token: &str, after_seq: Option<i64>) -> String {
    match after_seq {
        Some(n) => format!("/ws/chats/{chat}/?token={token}&after_seq={n}"),
        None => format!("/ws/chats/{chat}/?token={token}"),
    }
}

impl WsClient {
    pub async fn connect(
        app: &TestApp,
        chat: i64,
        token: &str,
        after_seq: Option<i64>,
    ) -> WsClient {
        Self::open(app, chat, token, after_seq, true).await
    }

    /// A user socket (`/ws/?token=...`), before its `ready` is read.
    pub async fn user(app: &TestApp, token: &str) -> WsClient {
        let authority = app.addr.to_string();
        let path = format!("/ws/?token={token}");
        let ws = chat_client::connect(app.addr, &authority, &path, None)
            .await
            .expect("websocket handshake succeeds");
        WsClient {
            ws: FragmentCollector::new(ws),
        }
    }

    /// A user socket that has read its `ready` and sent `sync` with `chats`
    /// (`{"<chat id>": after_seq}`).
    pub async fn user_synced(app: &TestApp, token: &str, chats: Value) -> WsClient {
        let mut socket = Self::user(app, token).await;
        let ready = socket.event().await;
        assert_eq!(ready["type"], "ready", "{ready}");
        socket
            .send_json(&serde_json::json!({"type": "sync", "chats": chats}))
            .await;
        socket
    }

    /// A client that never answers pings (a half-dead peer).
    pub async fn silent(app: &TestApp, chat: i64, token: &str) -> WsClient {
        Self::open(app, chat, token, None, false).await
    }

    async fn open(
        app: &TestApp,
        chat: i64,
        token: &str,
        after_seq: Option<i64>,
        pong: bool,
    ) -> WsClient {
        let path = socket_path(chat, token, after_seq);
        let authority = app.addr.to_string();
        let mut ws = chat_client::connect(app.addr, &authority, &path, None)
            .await
            .expect("websocket handshake succeeds");
        ws.set_auto_pong(pong);
        WsClient {
            ws: FragmentCollector::new(ws),
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        let frame = Frame::text(Payload::Owned(text.as_bytes().to_vec()));
        self.ws.write_frame(frame).await.expect("send");
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) {
        let frame = Frame::binary(Payload::Owned(bytes.to_vec()));
        self.ws.write_frame(frame).await.expect("send");
    }

    /// The next event or close, failing the test after `WAIT`.
    pub async fn recv(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.next())
            .await
            .expect("the server sent something in time")
    }

    /// The next frame within `wait`, if any.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Received> {
        tokio::time::timeout(wait, self.next()).await.ok()
    }

    async fn next(&mut self) -> Received {
        loop {
            let frame = match self.ws.read_frame().await {
                Ok(frame) => frame,
                Err(_) => return Received::Close(1006),
            };
            match frame.opcode {
                OpCode::Text => {
                    return Received::Json(serde_json::from_slice(&frame.payload).unwrap())
                }
                OpCode::Close => {
                    let code = frame
                        .payload
                        .get(..2)
                        .map_or(1005, |b| u16::from_be_bytes([b[0], b[1]]));
                    return Received::Close(code);
                }
                _ => continue,
            }
        }
    }

    /// The next JSON event; fails on a close.
    pub async fn event(&mut self) -> Value {
        match self.recv().await {
            Received::Json(value) => value,
            Received::Close(code) => {
                panic!("socket closed with {code} while an event was expected")
            }
        }
    }

    /// The next `message` event's data.
    pub async fn message(&mut self) -> Value {
        let event = self.event().await;
        assert_eq!(
            event["type"], "message",
            "expected a message event, got {event}"
        );
        event["data"].clone()
    }

    /// The next event of `kind`, skipping others (failing after `WAIT`).
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let event = self.event().await;
            if event["type"] == kind {
                return event;
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn closed(&mut self) -> u16 {
        loop {
            if let Received::Close(code) = self.recv().await {
                return code;
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.write_frame(Frame::close(1000, b"")).await;
    }
}

/// Reads `n` message seqs from a user socket of `token` on `app`; when it
/// closes with 4009 (the bus may have lost events) it resumes, as a client
/// does, with `sync` from the last seq it saw in `chat`. The seqs, and how
/// many times it resumed.
pub async fn seqs_resuming(
    socket: &mut WsClient,
    app: &TestApp,
    token: &str,
    chat: i64,
    n: usize,
) -> (Vec<i64>, usize) {
    let (mut seen, mut resumed) = (Vec::with_capacity(n), 0);
    while seen.len() < n {
        match socket.recv().await {
            Received::Json(event) if event["type"] == "message" => {
                seen.push(event["data"]["seq"].as_i64().unwrap());
            }
            Received::Json(_) => {}
            Received::Close(code) => {
                assert_eq!(code, 4009, "the bus may have lost events");
                resumed += 1;
                let last = seen.last().copied().unwrap_or(0);
                let cursors = serde_json::json!({chat.to_string(): last});
                *socket = WsClient::user_synced(app, token, cursors).await;
            }
        }
    }
    (seen, resumed)
}
