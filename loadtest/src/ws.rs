//! The WebSocket client: fastwebsockets' client handshake over a TCP socket bound
//! to a chosen local address (so many sockets can spread over 127.0.0.x), and a
//! small reader for the server's events.

use crate::endpoint::Endpoint;
use crate::Result;
use bytes::Bytes;
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload, WebSocket};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::borrow::Cow;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};

pub type Socket = WebSocket<TokioIo<Upgraded>>;

struct SpawnExecutor;

impl<F> hyper::rt::Executor<F> for SpawnExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(future);
    }
}

/// Opens a WebSocket to `path` on the endpoint, from `local` when given.
pub async fn connect(endpoint: &Endpoint, path: &str, local: Option<IpAddr>) -> Result<Socket> {
    let socket = match endpoint.addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if let Some(ip) = local {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(endpoint.addr).await?;
    stream.set_nodelay(true)?;
    let request = hyper::Request::get(path)
        .header("host", &endpoint.authority)
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header(
            "sec-websocket-key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("sec-websocket-version", "13")
        .body(Empty::<Bytes>::new())?;
    let (ws, _) = fastwebsockets::handshake::client(&SpawnExecutor, request, stream).await?;
    Ok(ws)
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
