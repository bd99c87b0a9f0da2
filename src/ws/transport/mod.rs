//! WebSocket framing, the only user of `fastwebsockets`: the upgrade response,
//! a reader of whole messages (fragments reassembled under a size cap) and a
//! buffered writer (frames are queued, then flushed together), both over the
//! connection's [`Socket`].
//!
//! The writer has fastwebsockets format each frame's head and puts head and
//! payload straight into the burst buffer. fastwebsockets' own frame writer
//! copies every frame of up to 1 KiB into a buffer of its own first, which
//! it keeps, at the size of the largest such frame, for the socket's life.
//!
//! fastwebsockets' frame reader allocates an 8 KiB buffer when it is made and
//! keeps it while it lives. The message reader therefore makes one only when the
//! socket is readable, and drops it again when it waits for the socket holding
//! no unread bytes (the socket's read handle tells when), so an idle socket
//! holds no read buffer at all, at no extra system call.

mod burst;
mod frame_bounds;
mod socket;

use burst::BurstWriter;
use bytes::Bytes;
use fastwebsockets::{upgrade, Frame, OpCode, Payload, Role, WebSocketError, WebSocketRead};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
pub use socket::Socket;
use socket::{SocketRead, SocketWrite};
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub use fastwebsockets::upgrade::UpgradeFut;

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

/// Finishes the upgrade: the connection's socket and the bytes the client sent
/// right behind its handshake (already read off the socket by the HTTP layer).
pub async fn open(upgrade: UpgradeFut) -> Result<(Socket, Bytes), WebSocketError> {
    into_socket(upgrade.await?.into_inner().into_inner())
}

/// The TCP socket under an upgraded connection and the bytes the HTTP layer
/// had already read past the handshake.
fn into_socket(upgraded: Upgraded) -> Result<(Socket, Bytes), WebSocketError> {
    let parts = upgraded
        .downcast::<TokioIo<TcpStream>>()
        .map_err(|_| WebSocketError::IoError(std::io::ErrorKind::Unsupported.into()))?;
    // `read_buf` is a view of the HTTP layer's whole read buffer, even when
    // empty: keeping it would keep that buffer for the life of the socket.
    let read_ahead = Bytes::copy_from_slice(&parts.read_buf);
    Ok((Socket::new(parts.io.into_inner()), read_ahead))
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
pub struct MessageReader<'a> {
    socket: &'a Socket,
    /// Bytes to hand to the next frame reader before the socket's.
    read_ahead: Bytes,
    /// The frame reader, while the socket has unread bytes.
    frames: Option<WebSocketRead<SocketRead<'a>>>,
    /// Frames the current frame reader has returned.
    frames_returned: u64,
    max_message_bytes: usize,
    partial: Option<(OpCode, Vec<u8>)>,
    /// Which end reads: a server reads masked frames, a client unmasked ones.
    role: Role,
}

/// The longest frame head: 2 bytes, an 8-byte length and a 4-byte mask.
const MAX_HEAD_BYTES: usize = 14;

/// Writes frames into a buffer; `flush` sends them.
pub struct FrameWriter<'a> {
    out: BurstWriter<SocketWrite<'a>>,
    /// A client masks what it sends; a server does not.
    role: Role,
    /// A close frame was written: nothing but another close may follow (the
    /// rule fastwebsockets' writer keeps).
    closed: bool,
    /// Longest a single write may wait on the socket: a client that stopped
    /// reading (its receive window is full) would otherwise hold the session,
    /// which cannot read or time out while it writes, forever.
    stall_limit: Duration,
}

impl<'a> MessageReader<'a> {
    /// Reads a client's messages of at most `max_message_bytes` from `socket`,
    /// starting with `read_ahead`.
    pub fn new(socket: &'a Socket, read_ahead: Bytes, max_message_bytes: usize) -> Self {
        Self::with_role(socket, read_ahead, max_message_bytes, Role::Server)
    }

    /// The same on the client's end: reads a server's messages.
    pub fn client(socket: &'a Socket, read_ahead: Bytes, max_message_bytes: usize) -> Self {
        Self::with_role(socket, read_ahead, max_message_bytes, Role::Client)
    }

    fn with_role(socket: &'a Socket, read_ahead: Bytes, max: usize, role: Role) -> Self {
        MessageReader {
            socket,
            read_ahead,
            frames: None,
            frames_returned: 0,
            max_message_bytes: max,
            partial: None,
            role,
        }
    }

    /// Whether a frame reader (and its buffer) exists right now: from the
    /// socket's becoming readable until a read waits with nothing buffered.
    #[cfg(test)]
    pub fn holds_a_buffer(&self) -> bool {
        self.frames.is_some()
    }

    /// Makes the frame reader, once the socket has something to read.
    async fn open_frame_reader(&mut self) -> Result<(), ReadError> {
        if self.frames.is_none() {
            if self.read_ahead.is_empty() {
                self.socket
                    .readable()
                    .await
                    .map_err(|_| ReadError::Closed)?;
            }
            let read = self
                .socket
                .read_handle(std::mem::take(&mut self.read_ahead));
            // fastwebsockets makes readers in pairs with a writer; this one's
            // writer is never used (the session writes through `FrameWriter`).
            let (mut frames, _) =
                fastwebsockets::after_handshake_split(read, tokio::io::sink(), self.role);
            frames.set_auto_close(false);
            frames.set_auto_pong(false);
            frames.set_max_message_size(self.max_message_bytes.saturating_add(1));
            self.frames_returned = 0;
            self.frames = Some(frames);
        }
        Ok(())
    }

    /// The next whole message or control frame.
    pub async fn next(&mut self) -> Result<Inbound, ReadError> {
        loop {
            self.open_frame_reader().await?;
            let frames = self.frames.as_mut().expect("opened above");
            let mut no_replies = |_| std::future::ready(Ok::<(), std::convert::Infallible>(()));
            let read = frames.read_frame(&mut no_replies);
            let Some(frame) = unless_drained(read, self.socket, self.frames_returned).await else {
                self.frames = None;
                continue;
            };
            let frame = frame.map_err(classify)?;
            self.frames_returned += 1;
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

/// Polls a frame read until it completes, or gives it up (`None`) when it waits
/// for the socket with nothing buffered: every byte handed over belongs to one
/// of the `returned` frames. Given up there, the read loses nothing, and its
/// reader (with its buffer) can be dropped until the socket is readable again.
async fn unless_drained<F: Future>(read: F, socket: &Socket, returned: u64) -> Option<F::Output> {
    let mut read = pin!(read);
    poll_fn(|cx| match read.as_mut().poll(cx) {
        Poll::Ready(frame) => Poll::Ready(Some(frame)),
        Poll::Pending if socket.handed_over_exactly(returned) => Poll::Ready(None),
        Poll::Pending => Poll::Pending,
    })
    .await
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

impl<'a> FrameWriter<'a> {
    /// `write_buffer_bytes`: small frames of a burst are coalesced up to this
    /// size, larger ones go straight to the socket; the buffer is freed after
    /// each flush. A write that waits longer than `stall_limit` fails with
    /// `TimedOut`.
    pub fn new(socket: &'a Socket, write_buffer_bytes: usize, stall_limit: Duration) -> Self {
        Self::with_role(socket, write_buffer_bytes, stall_limit, Role::Server)
    }

    /// The same on the client's end: frames are masked.
    pub fn client(socket: &'a Socket, write_buffer_bytes: usize, stall_limit: Duration) -> Self {
        Self::with_role(socket, write_buffer_bytes, stall_limit, Role::Client)
    }

    fn with_role(socket: &'a Socket, buffer: usize, stall_limit: Duration, role: Role) -> Self {
        FrameWriter {
            out: BurstWriter::new(socket.write_handle(), buffer),
            role,
            closed: false,
            stall_limit,
        }
    }

    /// Queues a text frame holding `payload`.
    pub async fn text(&mut self, payload: &Bytes) -> Result<(), WebSocketError> {
        self.write(Frame::text(Payload::Borrowed(payload))).await
    }

    /// Sends a ping right away.
    pub async fn ping(&mut self) -> Result<(), WebSocketError> {
        self.write(Frame::new(true, OpCode::Ping, None, Payload::Borrowed(&[])))
            .await?;
        self.flush().await
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
        within(self.stall_limit, async { Ok(self.out.flush().await?) }).await
    }

    /// Queues `frame`: its head, then its payload, into the burst buffer (a
    /// payload of the buffer's size or more goes straight to the socket).
    async fn write(&mut self, mut frame: Frame<'_>) -> Result<(), WebSocketError> {
        if frame.opcode == OpCode::Close {
            self.closed = true;
        } else if self.closed {
            return Err(WebSocketError::ConnectionClosed);
        }
        if self.role == Role::Client {
            frame.mask();
        }
        let mut head = [0u8; MAX_HEAD_BYTES];
        let head_len = frame.fmt_head(&mut head);
        let out = &mut self.out;
        within(self.stall_limit, async {
            out.write_all(&head[..head_len]).await?;
            Ok(out.write_all(&frame.payload).await?)
        })
        .await
    }
}

/// A socket write, failed with `TimedOut` when it waits longer than `limit`.
/// Most writes land in the write buffer at once: only one that has to wait
/// reads the clock and sets a timer, and its timer is boxed, so the futures of
/// every write (part of the session's per-burst future) do not hold one.
async fn within(
    limit: Duration,
    write: impl std::future::Future<Output = Result<(), WebSocketError>>,
) -> Result<(), WebSocketError> {
    let mut write = pin!(write);
    let mut stall: Option<Pin<Box<tokio::time::Sleep>>> = None;
    poll_fn(|cx| {
        if let Poll::Ready(done) = write.as_mut().poll(cx) {
            return Poll::Ready(done);
        }
        let timer = stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(WebSocketError::IoError(
                std::io::ErrorKind::TimedOut.into(),
            ))),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// A masked text frame, as a client sends it.
    fn client_text(payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mask = [7u8, 1, 9, 4];
        let mut frame = vec![0x81, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        frame
    }

    /// A connected pair over loopback: (client, server side).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    async fn text(reader: &mut MessageReader<'_>) -> Vec<u8> {
        match reader.next().await {
            Ok(Inbound::Text(bytes)) => bytes,
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_read_buffer_exists_only_while_bytes_are_unread() {
        let (mut client, server) = pair().await;
        let socket = Socket::new(server);
        let mut reader = MessageReader::new(&socket, Bytes::new(), 1024);
        assert!(!reader.holds_a_buffer(), "nothing read yet");

        client.write_all(&client_text(b"one")).await.unwrap();
        assert_eq!(text(&mut reader).await, b"one");
        assert!(reader.next().now_or_never().is_none(), "nothing more sent");
        assert!(!reader.holds_a_buffer(), "the only frame was read");

        let (two, three) = (client_text(b"two"), client_text(b"three"));
        let mut burst = two.clone();
        burst.extend_from_slice(&three[..4]);
        client.write_all(&burst).await.unwrap();
        assert_eq!(text(&mut reader).await, b"two");
        assert!(
            reader.holds_a_buffer(),
            "a returned frame leaves the reader in place until a read waits"
        );

        client.write_all(&three[4..]).await.unwrap();
        assert_eq!(text(&mut reader).await, b"three");
        assert!(reader.next().now_or_never().is_none());
        assert!(!reader.holds_a_buffer(), "both frames were read");
    }

    #[tokio::test]
    async fn bytes_sent_behind_the_handshake_are_read_first_and_in_order() {
        let (mut client, server) = pair().await;
        let socket = Socket::new(server);
        let (first, second) = (client_text(b"first"), client_text(b"second"));
        let mut read_ahead = first.clone();
        read_ahead.extend_from_slice(&second[..3]);
        let mut reader = MessageReader::new(&socket, Bytes::from(read_ahead), 1024);
        client.write_all(&second[3..]).await.unwrap();
        assert_eq!(text(&mut reader).await, b"first");
        assert_eq!(text(&mut reader).await, b"second");
        assert!(reader.next().now_or_never().is_none());
        assert!(!reader.holds_a_buffer());
    }

    #[tokio::test]
    async fn a_frame_split_across_reader_lifetimes_is_never_cut() {
        let (mut client, server) = pair().await;
        let socket = Socket::new(server);
        let mut reader = MessageReader::new(&socket, Bytes::new(), 1024);
        for round in 0..20u8 {
            let payload = vec![b'a' + round; usize::from(round) + 1];
            let frame = client_text(&payload);
            let (head, tail) = frame.split_at(usize::from(round) % frame.len());
            client.write_all(head).await.unwrap();
            let write_tail = async {
                tokio::task::yield_now().await;
                client.write_all(tail).await.unwrap();
            };
            let (got, ()) = tokio::join!(text(&mut reader), write_tail);
            assert_eq!(got, payload, "round {round}");
            assert!(reader.next().now_or_never().is_none());
            assert!(!reader.holds_a_buffer(), "round {round}");
        }
    }

    #[tokio::test]
    async fn frames_of_each_length_form_arrive_whole_and_only_a_close_follows_a_close() {
        let (client, server) = pair().await;
        let (client, server) = (Socket::new(client), Socket::new(server));
        let mut writes = FrameWriter::new(&server, 4096, Duration::from_secs(5));
        // Heads with a 7-bit, a 16-bit and a 64-bit length; the last payload
        // is past the burst buffer, so it goes straight to the socket.
        let payloads: Vec<Bytes> = [(b'a', 5), (b'b', 300), (b'c', 70_000)]
            .into_iter()
            .map(|(byte, n)| Bytes::from(vec![byte; n]))
            .collect();
        let mut reads = MessageReader::client(&client, Bytes::new(), 1 << 20);
        let reading = async {
            let mut got = Vec::new();
            for _ in 0..payloads.len() {
                got.push(text(&mut reads).await);
            }
            got
        };
        let writing = async {
            for payload in &payloads {
                writes.text(payload).await.unwrap();
            }
            writes.flush().await.unwrap();
        };
        let (got, ()) = tokio::join!(reading, writing);
        assert_eq!(got, payloads, "each payload whole, in order");
        assert_eq!(writes.out.allocated(), 0, "no buffer outlives a flush");

        writes.close(1000, "bye").await.unwrap();
        assert!(matches!(reads.next().await, Ok(Inbound::Close)));
        let refused = writes.text(&payloads[0]).await;
        assert!(matches!(refused, Err(WebSocketError::ConnectionClosed)));
        assert!(writes.close(1000, "").await.is_ok(), "a close may follow");
    }

    #[tokio::test]
    async fn the_client_end_reads_server_frames_and_writes_masked_ones() {
        use tokio::io::AsyncReadExt;
        let (client, mut server) = pair().await;
        let client = Socket::new(client);
        let mut unmasked = vec![0x81, 5];
        unmasked.extend_from_slice(b"hello");
        unmasked.extend_from_slice(&[0x89, 1, b'p']);
        server.write_all(&unmasked).await.unwrap();
        let mut reads = MessageReader::client(&client, Bytes::new(), 1024);
        assert_eq!(text(&mut reads).await, b"hello");
        assert!(matches!(reads.next().await, Ok(Inbound::Ping(p)) if p == b"p"));

        let mut writes = FrameWriter::client(&client, 256, Duration::from_secs(5));
        writes.pong(b"p".to_vec()).await.unwrap();
        writes.flush().await.unwrap();
        let mut pong = [0u8; 2 + 4 + 1];
        server.read_exact(&mut pong).await.unwrap();
        assert_eq!(pong[0], 0x8A, "a final pong frame");
        assert_eq!(pong[1], 0x80 | 1, "masked, one byte of payload");
        assert_eq!(pong[6] ^ pong[2], b'p', "the payload under its mask");
    }
}
