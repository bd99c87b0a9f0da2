//! A write buffer that exists only while a burst is being written: frames are
//! coalesced into it, `flush` sends them in as few writes as the socket allows
//! and then frees it. An idle socket (the common case at high connection counts)
//! holds no buffer at all, where a `BufWriter` would hold its capacity forever.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::AsyncWrite;

pub struct BurstWriter<W> {
    inner: W,
    buffer: Vec<u8>,
    /// How much of `buffer` the socket has taken so far.
    written: usize,
    /// The most a burst buffers before it is written out; larger writes go
    /// straight to the socket.
    capacity: usize,
}

impl<W: AsyncWrite + Unpin> BurstWriter<W> {
    pub fn new(inner: W, capacity: usize) -> Self {
        BurstWriter {
            inner,
            buffer: Vec::new(),
            written: 0,
            capacity: capacity.max(1),
        }
    }

    /// Bytes buffered and not yet written.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.buffer.len() - self.written
    }

    /// Memory the buffer holds right now.
    #[cfg(test)]
    pub(super) fn allocated(&self) -> usize {
        self.buffer.capacity()
    }

    /// Writes out everything buffered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buffer.len() {
            let rest = &self.buffer[self.written..];
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buffer.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for BurstWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buffer.len() + data.len() > this.capacity {
            ready!(this.poll_drain(cx))?;
        }
        if data.len() >= this.capacity {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        if this.buffer.capacity() == 0 {
            this.buffer.reserve_exact(this.capacity);
        }
        this.buffer.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.buffer = Vec::new();
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A socket that takes at most `chunk` bytes per write and counts the writes.
    struct Trickle {
        received: Vec<u8>,
        chunk: usize,
        writes: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = data.len().min(self.chunk);
            self.received.extend_from_slice(&data[..n]);
            self.writes += 1;
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn trickle(chunk: usize) -> Trickle {
        Trickle {
            received: Vec::new(),
            chunk,
            writes: 0,
        }
    }

    #[tokio::test]
    async fn a_burst_is_one_write_and_the_buffer_is_freed_after_it() {
        let mut writer = BurstWriter::new(trickle(usize::MAX), 64);
        assert_eq!(writer.allocated(), 0, "nothing is held before a burst");
        for frame in [&b"one "[..], b"two ", b"three"] {
            writer.write_all(frame).await.unwrap();
        }
        assert_eq!(writer.inner.writes, 0, "small frames wait for the flush");
        assert_eq!(writer.pending(), 13);
        writer.flush().await.unwrap();
        assert_eq!(writer.inner.received, b"one two three");
        assert_eq!(writer.inner.writes, 1);
        assert_eq!(writer.allocated(), 0, "an idle socket holds no buffer");
    }

    #[tokio::test]
    async fn partial_socket_writes_keep_every_byte_in_order() {
        let mut writer = BurstWriter::new(trickle(3), 16);
        let mut expected = Vec::new();
        for i in 0..40u8 {
            let frame = vec![i; (i % 7) as usize + 1];
            expected.extend_from_slice(&frame);
            writer.write_all(&frame).await.unwrap();
        }
        let big = vec![0xAB; 50];
        expected.extend_from_slice(&big);
        writer.write_all(&big).await.unwrap();
        writer.flush().await.unwrap();
        assert_eq!(writer.inner.received, expected);
        assert_eq!(writer.pending(), 0);
    }

    #[tokio::test]
    async fn frames_larger_than_the_buffer_go_straight_out_after_what_is_queued() {
        let mut writer = BurstWriter::new(trickle(usize::MAX), 8);
        writer.write_all(b"head").await.unwrap();
        writer
            .write_all(b"a frame longer than eight")
            .await
            .unwrap();
        assert_eq!(writer.inner.received, b"heada frame longer than eight");
        assert_eq!(
            writer.allocated(),
            8,
            "the queued bytes were written, not freed yet"
        );
        writer.flush().await.unwrap();
        assert_eq!(writer.allocated(), 0);
    }
}
