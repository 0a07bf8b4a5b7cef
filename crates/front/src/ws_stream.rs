//! A byte stream carried in WebSocket messages.
//!
//! The browser variants of ts2021 and DERP put a plain byte stream into binary messages:
//! message boundaries carry no meaning, the concatenated payloads are the stream. [`WsStream`]
//! turns a pair "stream of incoming payloads + sink of outgoing payloads" into a tokio
//! `AsyncRead + AsyncWrite`, so `NoiseStream`, h2 and the DERP frame codec run on it exactly
//! as they do on TCP.
//!
//! ```text
//! incoming: [msg 1      ][msg 2][msg 3   ]  ──poll_read──▶  one continuous byte stream
//! poll_write(buf)  ──▶  one outgoing message of min(buf.len(), MAX_MESSAGE) bytes
//! ```
//!
//! It knows nothing about WebSocket framing itself: the server side feeds it from actix-ws
//! (see `websocket.rs`), a test client from tokio-tungstenite. Empty messages are skipped;
//! the end of the incoming stream is EOF; an incoming `Err` is a read error.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest payload one `poll_write` puts into a message (a DERP frame with a full-size
/// packet fits; Noise records are at most 4 KiB each).
pub const MAX_MESSAGE: usize = 128 * 1024;

/// A byte stream over `incoming` message payloads and an `outgoing` message sink.
pub struct WsStream<St, Si> {
    incoming: St,
    outgoing: Si,
    /// What is left of the message being read.
    pending: Bytes,
    eof: bool,
}

impl<St, Si> WsStream<St, Si> {
    pub fn new(incoming: St, outgoing: Si) -> Self {
        WsStream { incoming, outgoing, pending: Bytes::new(), eof: false }
    }
}

impl<St, Si> AsyncRead for WsStream<St, Si>
where
    St: Stream<Item = io::Result<Bytes>> + Unpin,
    Si: Unpin,
{
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.pending.is_empty() {
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.incoming).poll_next(cx)) {
                Some(Ok(message)) => this.pending = message,
                Some(Err(err)) => return Poll::Ready(Err(err)),
                None => this.eof = true,
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<St, Si> AsyncWrite for WsStream<St, Si>
where
    St: Unpin,
    Si: Sink<Bytes, Error = io::Error> + Unpin,
{
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = self.get_mut();
        ready!(Pin::new(&mut this.outgoing).poll_ready(cx))?;
        let n = buf.len().min(MAX_MESSAGE);
        Pin::new(&mut this.outgoing).start_send(Bytes::copy_from_slice(&buf[..n]))?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().outgoing).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().outgoing).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures::channel::mpsc;
    use futures::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    type Incoming = mpsc::UnboundedReceiver<io::Result<Bytes>>;
    type Outgoing = futures::sink::SinkMapErr<mpsc::UnboundedSender<Bytes>, fn(mpsc::SendError) -> io::Error>;

    fn pair() -> (mpsc::UnboundedSender<io::Result<Bytes>>, WsStream<Incoming, Outgoing>, mpsc::UnboundedReceiver<Bytes>)
    {
        let (in_tx, in_rx) = mpsc::unbounded();
        let (out_tx, out_rx) = mpsc::unbounded();
        let to_io: fn(mpsc::SendError) -> io::Error = |_| io::ErrorKind::BrokenPipe.into();
        (in_tx, WsStream::new(in_rx, out_tx.sink_map_err(to_io)), out_rx)
    }

    #[tokio::test]
    async fn messages_read_as_one_stream_then_eof() {
        let (tx, mut io, _out) = pair();
        for m in [&b"hel"[..], b"", b"lo w", b"orld"] {
            tx.unbounded_send(Ok(Bytes::copy_from_slice(m))).unwrap();
        }
        drop(tx);
        let mut first = [0u8; 2];
        io.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"he");
        let mut rest = String::new();
        io.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "llo world");
        assert_eq!(io.read(&mut first).await.unwrap(), 0, "EOF stays EOF");
    }

    #[tokio::test]
    async fn incoming_error_is_a_read_error() {
        let (tx, mut io, _out) = pair();
        tx.unbounded_send(Err(io::Error::new(io::ErrorKind::InvalidData, "text message"))).unwrap();
        let err = io.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn each_write_is_one_message_capped_in_size() {
        let (_tx, mut io, mut out) = pair();
        io.write_all(b"abc").await.unwrap();
        io.write_all(&vec![7u8; MAX_MESSAGE + 10]).await.unwrap();
        io.write_all(b"").await.unwrap();
        io.flush().await.unwrap();
        io.shutdown().await.unwrap();
        let sizes: Vec<usize> = out.by_ref().map(|m| m.len()).collect().await;
        assert_eq!(sizes, vec![3, MAX_MESSAGE, 10]);
    }

    #[tokio::test]
    async fn write_after_the_sink_closed_fails() {
        let (_tx, mut io, out) = pair();
        drop(out);
        assert_eq!(io.write(b"x").await.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}
