//! The TCP socket under an upgraded WebSocket, shared by the session's frame
//! reader and frame writer through borrowed handles (no split, no lock: one
//! task drives both). The read handle follows the frame boundaries of the bytes
//! it hands over ([`FrameBounds`]), so the session can tell when its frame
//! reader holds nothing and can be dropped with its buffer.

use super::frame_bounds::FrameBounds;
use bytes::{Buf, Bytes};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// `boundary` while the bytes handed over end in the middle of a frame.
const MID_FRAME: u64 = u64::MAX;

/// An upgraded connection's socket.
pub struct Socket {
    stream: TcpStream,
    /// Whole frames handed to the current read handle when its bytes end on a
    /// frame boundary, else [`MID_FRAME`]. Written by the read handle, read by
    /// the session (same task; atomic only so the handle can share `&Socket`).
    boundary: AtomicU64,
}

impl Socket {
    pub fn new(stream: TcpStream) -> Self {
        Socket {
            stream,
            boundary: AtomicU64::new(0),
        }
    }

    /// Waits until the socket has something to read (or has failed), through
    /// the socket's one read-readiness slot, the one the read handle uses too.
    /// Waiting there also drops the waker the HTTP layer's last read left in
    /// that slot: it pointed at the finished connection task, and kept that
    /// task's memory alive until the socket next became readable,
    /// which for an idle socket is its first pong.
    pub async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.stream.poll_read_ready(cx)).await
    }

    /// A read handle that first hands over `read_ahead` (bytes already taken off
    /// the socket), then reads the socket; it starts counting frames from zero.
    pub fn read_handle(&self, read_ahead: Bytes) -> SocketRead<'_> {
        self.boundary.store(0, Ordering::Relaxed);
        SocketRead {
            socket: self,
            read_ahead,
            bounds: FrameBounds::default(),
        }
    }

    pub fn write_handle(&self) -> SocketWrite<'_> {
        SocketWrite(&self.stream)
    }

    /// Whether `frames` whole frames are exactly what the current read handle
    /// has handed over: then its reader has nothing buffered.
    pub fn handed_over_exactly(&self, frames: u64) -> bool {
        self.boundary.load(Ordering::Relaxed) == frames
    }
}

/// Reads the socket, following frame boundaries.
pub struct SocketRead<'a> {
    socket: &'a Socket,
    read_ahead: Bytes,
    bounds: FrameBounds,
}

impl SocketRead<'_> {
    fn read_into(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.read_ahead.is_empty() {
            let n = self.read_ahead.len().min(buf.remaining());
            buf.put_slice(&self.read_ahead[..n]);
            self.read_ahead.advance(n);
            return Poll::Ready(Ok(()));
        }
        let stream = &self.socket.stream;
        nonblocking(
            cx,
            |cx| stream.poll_read_ready(cx),
            || read_noting_drained(stream, buf),
        )
        .map_ok(drop)
    }
}

/// Reads what the socket holds into `buf`. A read that leaves `buf` room has
/// emptied the socket's receive queue, so it also clears the socket's read
/// readiness: the next read waits for the socket instead of asking it and
/// getting `EAGAIN` (a system call per frame at low rates). tokio's own
/// `AsyncRead` for a socket does the same, but it needs the socket by `&mut`,
/// and the read handle shares it with the write handle. The readiness is
/// cleared through `try_io`'s `WouldBlock` path, which clears only the readiness
/// seen before the read: bytes that arrive after it raise a new one. (`try_io`'s
/// documentation wants `WouldBlock` only from an operation that found the socket
/// not ready; a short read is the same sign that tokio's own read acts on.)
fn read_noting_drained(stream: &TcpStream, buf: &mut ReadBuf<'_>) -> io::Result<usize> {
    let room = buf.remaining();
    let mut read = 0;
    let outcome = stream.try_io(Interest::READABLE, || {
        read = stream.try_read_buf(buf)?;
        if read > 0 && read < room {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(read)
    });
    match outcome {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && read > 0 => Ok(read),
        outcome => outcome,
    }
}

impl AsyncRead for SocketRead<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(this.read_into(cx, buf))?;
        this.bounds.feed(&buf.filled()[before..]);
        let boundary = this.bounds.frames_at_boundary().unwrap_or(MID_FRAME);
        this.socket.boundary.store(boundary, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

/// Writes to the socket.
pub struct SocketWrite<'a>(&'a TcpStream);

impl AsyncWrite for SocketWrite<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let stream = self.0;
        nonblocking(
            cx,
            |cx| stream.poll_write_ready(cx),
            || stream.try_write_vectored(data),
        )
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Writes are not buffered here.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// The socket closes when the session drops it.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Waits for readiness (`ready`), then tries `attempt`, again until it does not
/// block: a `WouldBlock` clears tokio's readiness, so the next wait registers
/// the task to be woken.
fn nonblocking<T>(
    cx: &mut Context<'_>,
    ready: impl Fn(&mut Context<'_>) -> Poll<io::Result<()>>,
    mut attempt: impl FnMut() -> io::Result<T>,
) -> Poll<io::Result<T>> {
    loop {
        ready!(ready(cx))?;
        match attempt() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return Poll::Ready(result),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    /// The server's end of a fresh loopback connection, and the client's.
    async fn connected() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (accepted.unwrap().0, client.unwrap())
    }

    async fn read_some(read: &mut SocketRead<'_>, room: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; room];
        let mut buf = ReadBuf::new(&mut bytes);
        std::future::poll_fn(|cx| Pin::new(&mut *read).poll_read(cx, &mut buf))
            .await
            .unwrap();
        buf.filled().to_vec()
    }

    #[tokio::test]
    async fn a_read_that_empties_the_socket_waits_for_more_without_asking_it_again() {
        use tokio::io::AsyncWriteExt;
        let (server, mut client) = connected().await;
        let socket = Socket::new(server);
        let mut read = socket.read_handle(Bytes::new());
        client.write_all(b"hello").await.unwrap();
        assert_eq!(read_some(&mut read, 64).await, b"hello");
        let waker = Waker::from(Arc::new(Noop));
        let again = socket
            .stream
            .poll_read_ready(&mut Context::from_waker(&waker));
        assert!(again.is_pending(), "a short read drained the socket");

        client.write_all(b"0123456789").await.unwrap();
        assert_eq!(read_some(&mut read, 4).await, b"0123", "a full read");
        let more = socket
            .stream
            .poll_read_ready(&mut Context::from_waker(&waker));
        assert!(more.is_ready(), "a read that filled its buffer keeps it");
        assert_eq!(read_some(&mut read, 64).await, b"456789");
        client.shutdown().await.unwrap();
        assert_eq!(read_some(&mut read, 64).await, b"", "the end is still seen");
    }

    #[tokio::test]
    async fn waiting_to_read_lets_go_of_the_http_layers_waker() {
        let (stream, _client) = connected().await;
        // The HTTP layer read until the socket had nothing more, then waited
        // on it with its own task's waker, which the socket keeps until it
        // next becomes readable.
        let drained = stream.try_read(&mut [0u8; 16]);
        assert!(matches!(drained, Err(e) if e.kind() == io::ErrorKind::WouldBlock));
        let http_task = Arc::new(Noop);
        let waker = Waker::from(http_task.clone());
        let pending = stream.poll_read_ready(&mut Context::from_waker(&waker));
        assert!(pending.is_pending(), "nothing was sent");
        drop(waker);
        assert_eq!(Arc::strong_count(&http_task), 2, "the socket holds it");

        let socket = Socket::new(stream);
        let mut readable = std::pin::pin!(socket.readable());
        let session_waker = Waker::from(Arc::new(Noop));
        let waiting = readable
            .as_mut()
            .poll(&mut Context::from_waker(&session_waker));
        assert!(waiting.is_pending());
        assert_eq!(
            Arc::strong_count(&http_task),
            1,
            "the finished task's waker (and its memory) is let go"
        );
    }
}
