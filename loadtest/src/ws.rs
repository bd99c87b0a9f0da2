//! The WebSocket side of the tool: the library's client (bound to a chosen local
//! address, so many sockets can spread over 127.0.0.x) and a small reader for the
//! server's events.

use crate::endpoint::Endpoint;
use crate::Result;
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::borrow::Cow;
use std::net::IpAddr;

pub type Socket = chat_server::ws::client::ClientSocket;

/// Opens a WebSocket to `path` on the endpoint, from `local` when given.
pub async fn connect(endpoint: &Endpoint, path: &str, local: Option<IpAddr>) -> Result<Socket> {
    Ok(chat_server::ws::client::connect(endpoint.addr, &endpoint.authority, path, local).await?)
}

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

/// A `message.send` event.
pub fn send_frame(content: &str, client_msg_id: &str) -> Frame<'static> {
    let body = serde_json::json!({"type": "message.send", "content": content, "client_msg_id": client_msg_id});
    Frame::text(Payload::Owned(body.to_string().into_bytes()))
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
