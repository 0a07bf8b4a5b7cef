//! A byte stream with some already-read bytes put back in front.
//!
//! The front reads more than the first request head off a socket before it knows who
//! should own the connection (a client may send its first Noise or DERP bytes in the same
//! packet as the head). [`Replay`] gives those bytes back to whoever reads next, then reads
//! from the socket itself. Writes always go straight to the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Anything a connection can run on: plain TCP or TLS, possibly wrapped in [`Replay`].
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + ?Sized> Io for T {}

/// The type-erased stream handed to actix-http and to takeover handlers.
pub type BoxedIo = Box<dyn Io>;

/// `inner`, with `prefix` read first.
pub struct Replay<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Replay<T> {
    pub fn new(prefix: Bytes, inner: T) -> Self {
        Replay { prefix, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Replay<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.has_remaining() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            if !this.prefix.has_remaining() {
                // The prefix is a slice of the sniffing buffer: let that go for the
                // connection's remaining (possibly days-long) life.
                this.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Replay<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn prefix_comes_first_then_the_stream() {
        let (mut far, near) = tokio::io::duplex(64);
        far.write_all(b" world").await.unwrap();
        drop(far);
        let mut io = Replay::new(Bytes::from_static(b"hello"), near);
        let mut out = String::new();
        io.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }

    #[tokio::test]
    async fn small_reads_drain_the_prefix_in_pieces() {
        let (_far, near) = tokio::io::duplex(64);
        let mut io = Replay::new(Bytes::from_static(b"abc"), near);
        let mut one = [0u8; 2];
        io.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"ab");
        let mut two = [0u8; 1];
        io.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"c");
    }
}
