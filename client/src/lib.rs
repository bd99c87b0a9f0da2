//! WebSocket clients for chat-server's load tester and tests:
//! fastwebsockets' client handshake (through hyper) for sockets that talk, and
//! a lean one done by hand ([`lean_handshake`]) for sockets that are only
//! held, which then use the server's own frame reader and writer
//! ([`chat_server::ws::transport`]). Both speak to this server and to others.
//!
//! A crate of its own so the server binary carries none of the client-only
//! crates (hyper's client, `sha1`, `base64`, `httparse`).

mod lean_handshake;

use bytes::Bytes;
use fastwebsockets::{WebSocket, WebSocketError};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use chat_server::ws::transport::Socket;
use tokio::net::TcpStream;

/// A client socket after the handshake.
pub type ClientSocket = WebSocket<TokioIo<Upgraded>>;

/// Runs hyper's connection task on tokio.
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

/// Opens a WebSocket to `path` at `addr` (`authority` goes in the `Host`
/// header), from the local address `local` when given.
pub async fn connect(
    addr: SocketAddr,
    authority: &str,
    path: &str,
    local: Option<IpAddr>,
) -> Result<ClientSocket, WebSocketError> {
    let stream = open_stream(addr, local).await?;
    let request = hyper::Request::get(path)
        .header("host", authority)
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header(
            "sec-websocket-key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("sec-websocket-version", "13")
        .body(Empty::<Bytes>::new())
        .map_err(|_| WebSocketError::InvalidValue)?;
    let (ws, _) = fastwebsockets::handshake::client(&SpawnExecutor, request, stream).await?;
    Ok(ws)
}

/// The same handshake done by hand ([`lean_handshake`]), giving back the bare
/// socket (and any bytes read past the handshake) for
/// [`MessageReader::client`](chat_server::ws::transport::MessageReader::client) and
/// [`FrameWriter::client`](chat_server::ws::transport::FrameWriter::client): a socket
/// that is only held then costs no buffers while nothing arrives, and opening
/// it costs no connection task.
pub async fn connect_lean(
    addr: SocketAddr,
    authority: &str,
    path: &str,
    local: Option<IpAddr>,
) -> Result<(Socket, Bytes), WebSocketError> {
    let mut stream = open_stream(addr, local).await?;
    let read_ahead = lean_handshake::upgrade(&mut stream, authority, path).await?;
    Ok((Socket::new(stream), read_ahead))
}

/// A TCP connection to `addr` from `local` when given (its port chosen at
/// connect time, so many sockets can share one address), without Nagle.
async fn open_stream(addr: SocketAddr, local: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if let Some(ip) = local {
        chat_server::net::socket_options::defer_port_choice(&socket);
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
