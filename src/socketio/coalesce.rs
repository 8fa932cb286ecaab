//! A write buffer that exists only between two flushes, under tungstenite.
//!
//! tungstenite runs with `write_buffer_size(0)`, so each frame is written to the stream as
//! soon as it is handed over: one `send` per frame, and tungstenite's own buffer stays the
//! size of one frame. When a connection's outbox holds several frames (a burst, a busy
//! room, a server running behind), the loop of `pump.rs` hands them all over and flushes
//! once; this layer gathers what is written between those two points and sends it in one
//! `send` (at most [`LIMIT`] bytes each), and lets its buffer go once it is written out,
//! so an idle connection holds no buffer here. The kernel's loopback/TCP path, not our
//! code, is most of a delivery's cost: fewer sends for the same frames is what lowers it.
//!
//! A frame that is the only one before the next flush (most deliveries: one event to an
//! idle connection) has nothing to be gathered with: the pump says so
//! ([`Coalesce::set_direct`]) and it goes straight to the socket, without the copy, the
//! allocation and the free of a buffer.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most bytes gathered before they are written out without waiting for the flush.
pub(super) const LIMIT: usize = 16 * 1024;

/// A stream whose writes are gathered until the next flush (or [`LIMIT`]).
#[derive(Debug)]
pub(super) struct Coalesce<S> {
    inner: S,
    /// Gathered bytes; `buf[..pos]` is already written.
    buf: Vec<u8>,
    pos: usize,
    /// Writes go straight to the inner stream while nothing is gathered.
    direct: bool,
}

impl<S> Coalesce<S> {
    pub(super) fn new(inner: S) -> Self {
        Coalesce {
            inner,
            buf: Vec::new(),
            pos: 0,
            direct: false,
        }
    }

    /// Whether what is written next is all there will be before the next flush: then it
    /// is not gathered (unless something already is, which it must follow).
    pub(super) fn set_direct(&mut self, direct: bool) {
        self.direct = direct;
    }

    /// Bytes accepted and not yet written to the inner stream.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes out everything gathered; frees the buffer when done.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pos < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pos += n;
        }
        // An idle connection keeps nothing allocated here.
        self.buf = Vec::new();
        self.pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() >= LIMIT {
            ready!(this.poll_drain(cx))?;
        }
        if this.buf.is_empty() && (this.direct || data.len() >= LIMIT) {
            // Alone before the flush, or large enough to be its own send: no copy.
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        let n = data.len().min(LIMIT - this.buf.len());
        this.buf.extend_from_slice(&data[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the writes that reach the inner stream.
    #[derive(Default)]
    struct Counting {
        writes: Vec<Vec<u8>>,
        /// Accept at most this many bytes per write (a full socket buffer).
        max: Option<usize>,
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = self.max.map_or(data.len(), |m| m.min(data.len()));
            self.get_mut().writes.push(data[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn writes_between_flushes_go_out_as_one() {
        let mut c = Coalesce::new(Counting::default());
        c.write_all(b"one").await.unwrap();
        c.write_all(b"two").await.unwrap();
        c.write_all(b"three").await.unwrap();
        assert!(
            c.inner.writes.is_empty(),
            "nothing written before the flush"
        );
        c.flush().await.unwrap();
        assert_eq!(c.inner.writes, vec![b"onetwothree".to_vec()]);
        assert_eq!(c.buf.capacity(), 0, "the buffer is freed once written out");
    }

    #[tokio::test]
    async fn partial_writes_keep_order_and_bytes() {
        let mut c = Coalesce::new(Counting {
            max: Some(4),
            ..Counting::default()
        });
        c.write_all(b"abcdefghij").await.unwrap();
        c.write_all(b"klm").await.unwrap();
        c.flush().await.unwrap();
        assert_eq!(c.inner.writes.concat(), b"abcdefghijklm".to_vec());
        assert_eq!(c.pending(), 0);
    }

    #[tokio::test]
    async fn the_buffer_is_bounded() {
        let mut c = Coalesce::new(Counting::default());
        let chunk = vec![7u8; 1000];
        for _ in 0..200 {
            c.write_all(&chunk).await.unwrap();
            assert!(c.buf.len() <= LIMIT, "buffer grew to {}", c.buf.len());
        }
        c.flush().await.unwrap();
        assert_eq!(c.inner.writes.concat().len(), 200_000);
        assert!(c.inner.writes.len() <= 200_000 / LIMIT + 1);
        // A write of LIMIT or more with nothing gathered goes straight through.
        let big = vec![1u8; LIMIT + 10];
        c.write_all(&big).await.unwrap();
        assert_eq!(c.pending(), 0);
        assert_eq!(c.inner.writes.last().map(Vec::len), Some(LIMIT + 10));
    }

    #[tokio::test]
    async fn a_direct_write_skips_the_buffer_but_never_overtakes_it() {
        let mut c = Coalesce::new(Counting::default());
        c.set_direct(true);
        c.write_all(b"alone").await.unwrap();
        assert_eq!(c.inner.writes, vec![b"alone".to_vec()], "written at once");
        assert_eq!(c.buf.capacity(), 0, "no buffer for a direct write");
        // Something gathered before: a direct write goes behind it, in one send.
        c.set_direct(false);
        c.write_all(b"one").await.unwrap();
        c.set_direct(true);
        c.write_all(b"two").await.unwrap();
        assert_eq!(c.inner.writes.len(), 1, "gathered bytes are not overtaken");
        c.flush().await.unwrap();
        assert_eq!(c.inner.writes, vec![b"alone".to_vec(), b"onetwo".to_vec()]);
    }

    #[tokio::test]
    async fn reads_pass_through() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut c = Coalesce::new(a);
        b.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        c.write_all(b"back").await.unwrap();
        c.shutdown().await.unwrap();
        let mut back = Vec::new();
        b.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"back");
    }
}
