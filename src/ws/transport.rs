//! WebSocket framing, the only user of `fastwebsockets`: the upgrade response,
//! splitting a socket into a reader that reassembles fragmented messages under a
//! size cap, and a buffered writer (frames are queued, then flushed together).

use super::burst::BurstWriter;
use bytes::Bytes;
use fastwebsockets::{
    upgrade, Frame, OpCode, Payload, WebSocketError, WebSocketRead, WebSocketWrite,
};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::io::{ReadHalf, WriteHalf};

pub use fastwebsockets::upgrade::UpgradeFut;

type Io = TokioIo<Upgraded>;

/// Whether the request asks for a WebSocket upgrade.
pub fn is_upgrade_request<B>(request: &hyper::Request<B>) -> bool {
    upgrade::is_upgrade_request(request)
}

/// The 101 response and the future that yields the socket once it is sent.
/// `None` when the handshake headers are invalid.
pub fn accept<B>(request: &mut hyper::Request<B>) -> Option<(hyper::Response<()>, UpgradeFut)> {
    let (response, upgrade) = upgrade::upgrade(request).ok()?;
    Some((response.map(|_| ()), upgrade))
}

/// What the reader hands over.
#[derive(Debug)]
pub enum Inbound {
    Text(Vec<u8>),
    Binary,
    Ping(Vec<u8>),
    Pong,
    Close,
}

/// Why reading stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    TooBig,
    InvalidUtf8,
    Protocol,
    /// The connection is gone.
    Closed,
}

/// Reads whole messages.
pub struct MessageReader {
    inner: WebSocketRead<ReadHalf<Io>>,
    max_message_bytes: usize,
    partial: Option<(OpCode, Vec<u8>)>,
}

/// Writes frames into a buffer; `flush` sends them.
pub struct FrameWriter {
    inner: WebSocketWrite<BurstWriter<WriteHalf<Io>>>,
    /// Longest a single write may wait on the socket: a client that stopped
    /// reading (its receive window is full) would otherwise hold the session,
    /// which cannot read or time out while it writes, forever.
    stall_limit: Duration,
}

/// Finishes the upgrade and splits the socket.
/// `write_buffer_bytes`: small frames of a burst are coalesced up to this size,
/// larger ones go straight to the socket; the buffer is freed after each flush.
/// A write that waits longer than `stall_limit` fails with `TimedOut`.
pub async fn open(
    upgrade: UpgradeFut,
    max_message_bytes: usize,
    write_buffer_bytes: usize,
    stall_limit: Duration,
) -> Result<(MessageReader, FrameWriter), WebSocketError> {
    let ws = upgrade.await?;
    let (mut read, write) = ws.split(|io| {
        let (r, w) = tokio::io::split(io);
        (r, BurstWriter::new(w, write_buffer_bytes))
    });
    read.set_auto_close(false);
    read.set_auto_pong(false);
    read.set_max_message_size(max_message_bytes.saturating_add(1));
    let reader = MessageReader {
        inner: read,
        max_message_bytes,
        partial: None,
    };
    let writer = FrameWriter {
        inner: write,
        stall_limit,
    };
    Ok((reader, writer))
}

impl MessageReader {
    /// The next whole message or control frame.
    pub async fn next(&mut self) -> Result<Inbound, ReadError> {
        loop {
            let frame = self
                .inner
                .read_frame(&mut |_| std::future::ready(Ok::<(), std::convert::Infallible>(())))
                .await
                .map_err(classify)?;
            let step = accumulate(
                &mut self.partial,
                self.max_message_bytes,
                frame.opcode,
                frame.fin,
                &frame.payload,
            );
            if let Some(inbound) = step? {
                return Ok(inbound);
            }
        }
    }
}

/// Adds a frame to the message being reassembled; a whole message or control
/// frame comes out.
fn accumulate(
    partial: &mut Option<(OpCode, Vec<u8>)>,
    max_message_bytes: usize,
    opcode: OpCode,
    fin: bool,
    payload: &[u8],
) -> Result<Option<Inbound>, ReadError> {
    {
        match opcode {
            OpCode::Ping => return Ok(Some(Inbound::Ping(payload.to_vec()))),
            OpCode::Pong => return Ok(Some(Inbound::Pong)),
            OpCode::Close => return Ok(Some(Inbound::Close)),
            OpCode::Text | OpCode::Binary if partial.is_some() => return Err(ReadError::Protocol),
            OpCode::Text | OpCode::Binary => *partial = Some((opcode, Vec::new())),
            OpCode::Continuation if partial.is_none() => return Err(ReadError::Protocol),
            OpCode::Continuation => {}
        }
        let (_, data) = partial.as_mut().ok_or(ReadError::Protocol)?;
        if data.len() + payload.len() > max_message_bytes {
            return Err(ReadError::TooBig);
        }
        data.extend_from_slice(payload);
        if !fin {
            return Ok(None);
        }
        let (opcode, data) = partial.take().ok_or(ReadError::Protocol)?;
        if opcode == OpCode::Binary {
            return Ok(Some(Inbound::Binary));
        }
        std::str::from_utf8(&data).map_err(|_| ReadError::InvalidUtf8)?;
        Ok(Some(Inbound::Text(data)))
    }
}

fn classify(error: WebSocketError) -> ReadError {
    match error {
        WebSocketError::FrameTooLarge => ReadError::TooBig,
        WebSocketError::InvalidUTF8 => ReadError::InvalidUtf8,
        WebSocketError::IoError(_)
        | WebSocketError::UnexpectedEOF
        | WebSocketError::ConnectionClosed => ReadError::Closed,
        _ => ReadError::Protocol,
    }
}

impl FrameWriter {
    /// Queues a text frame holding `payload`.
    pub async fn text(&mut self, payload: &Bytes) -> Result<(), WebSocketError> {
        self.write(Frame::text(Payload::Borrowed(payload))).await
    }

    pub async fn ping(&mut self) -> Result<(), WebSocketError> {
        self.write(Frame::new(true, OpCode::Ping, None, Payload::Borrowed(&[])))
            .await
    }

    pub async fn pong(&mut self, payload: Vec<u8>) -> Result<(), WebSocketError> {
        self.write(Frame::pong(Payload::Owned(payload))).await
    }

    /// Sends a close frame and flushes.
    pub async fn close(&mut self, code: u16, reason: &str) -> Result<(), WebSocketError> {
        self.write(Frame::close(code, reason.as_bytes())).await?;
        self.flush().await
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> Result<(), WebSocketError> {
        within(self.stall_limit, self.inner.flush()).await
    }

    async fn write(&mut self, frame: Frame<'_>) -> Result<(), WebSocketError> {
        within(self.stall_limit, self.inner.write_frame(frame)).await
    }
}

/// A socket write, failed with `TimedOut` when it waits longer than `limit`.
async fn within(
    limit: Duration,
    write: impl std::future::Future<Output = Result<(), WebSocketError>>,
) -> Result<(), WebSocketError> {
    match tokio::time::timeout(limit, write).await {
        Ok(result) => result,
        Err(_) => Err(WebSocketError::IoError(std::io::ErrorKind::TimedOut.into())),
    }
}
