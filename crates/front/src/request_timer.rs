//! A time limit on every HTTP/1 request a connection carries, the later ones of a kept-alive
//! connection included.
//!
//! Why: actix-http times only a connection's first request head (which the front has already
//! read, under `header_timeout`). A later head that trickles in a byte at a time would hold
//! its connection for as long as the client likes. [`TimedIo`] wraps the stream actix reads:
//! a request *opens* when bytes arrive while none is open, and *closes* when the server
//! writes (its answer, or a `100 Continue`, begins). A request still open after `limit` (its
//! head's and body's time) fails the next read, and actix drops the connection. Between
//! requests nothing is timed here: the idle keep-alive is actix's.
//!
//! A WebSocket connection stays an HTTP request to actix for its whole life (actix-ws streams
//! the request body), and its client may send for hours without an answer: its handler sets
//! the connection's [`UpgradeMark`] (found in the connection's extensions) before the 101,
//! and a marked connection is never timed again.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::replay::BoxedIo;

/// Set once a connection has been upgraded (WebSocket): its requests are no longer timed.
#[derive(Debug, Clone, Default)]
pub struct UpgradeMark(Arc<AtomicBool>);

impl UpgradeMark {
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The stream actix-http serves, with the request time limit of the module doc.
pub struct TimedIo {
    inner: BoxedIo,
    limit: Duration,
    mark: UpgradeMark,
    /// When the open request runs out of time; `None` while no request is open.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl TimedIo {
    pub fn new(inner: BoxedIo, limit: Duration) -> Self {
        Self { inner, limit, mark: UpgradeMark::default(), deadline: None }
    }

    /// The mark a handler sets to take this connection out of the time limit.
    pub fn upgrade_mark(&self) -> &UpgradeMark {
        &self.mark
    }

    fn answered(&mut self, written: usize) {
        if written > 0 {
            self.deadline = None;
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.mark.is_set() {
            this.deadline = None;
            return read;
        }
        match read {
            Poll::Ready(Ok(())) if buf.filled().len() > before && this.deadline.is_none() => {
                this.deadline = Some(Box::pin(tokio::time::sleep(this.limit)));
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let expired = this.deadline.as_mut().is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the request did not arrive within its time limit",
                    )))
                } else {
                    Poll::Pending
                }
            }
            other => other,
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            this.answered(n);
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = written {
            this.answered(n);
        }
        written
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    const LIMIT: Duration = Duration::from_secs(10);

    fn timed() -> (DuplexStream, TimedIo) {
        let (client, server) = tokio::io::duplex(1024);
        (client, TimedIo::new(Box::new(server), LIMIT))
    }

    async fn read_some(io: &mut TimedIo) -> io::Result<Vec<u8>> {
        let mut buf = [0u8; 64];
        let n = io.read(&mut buf).await?;
        Ok(buf[..n].to_vec())
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_request_fails_the_read_after_the_limit() {
        let (mut client, mut io) = timed();
        client.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        assert_eq!(read_some(&mut io).await.unwrap(), b"GET / HTTP/1.1\r\nHo");
        let started = tokio::time::Instant::now();
        let err = read_some(&mut io).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_stops_the_clock_and_idle_time_is_not_timed() {
        let (mut client, mut io) = timed();
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        read_some(&mut io).await.unwrap();
        tokio::time::advance(LIMIT / 2).await;
        io.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        // Idle for longer than the limit: only actix's keep-alive ends this.
        let waiting = tokio::time::timeout(LIMIT * 3, read_some(&mut io)).await;
        assert!(waiting.is_err(), "an idle connection was timed: {waiting:?}");
        // The next request has a fresh limit.
        client.write_all(b"GET /again").await.unwrap();
        read_some(&mut io).await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(read_some(&mut io).await.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn an_upgraded_connection_is_never_timed() {
        let (mut client, mut io) = timed();
        client.write_all(b"GET /ws HTTP/1.1\r\n\r\n").await.unwrap();
        read_some(&mut io).await.unwrap();
        io.upgrade_mark().set();
        io.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").await.unwrap();
        for _ in 0..5 {
            client.write_all(b"frame").await.unwrap();
            assert_eq!(read_some(&mut io).await.unwrap(), b"frame");
            tokio::time::advance(LIMIT).await;
        }
        let waiting = tokio::time::timeout(LIMIT * 3, read_some(&mut io)).await;
        assert!(waiting.is_err(), "an upgraded connection was timed: {waiting:?}");
    }
}
