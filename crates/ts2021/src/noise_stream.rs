//! The ts2021 record layer as a byte stream: [`NoiseStream`] turns any tokio
//! `AsyncRead + AsyncWrite` into an encrypted one (what h2 runs on), plus the optional early
//! payload the server writes as the very first plaintext.
//!
//! Record frame (after the handshake, each direction):
//! ```text
//! +------+---------------+------------------------------------------+
//! | 0x04 | len (u16 BE)  | ChaCha20-Poly1305(plaintext) ‖ tag (16)  |
//! +------+---------------+------------------------------------------+
//!   1      2               len <= 4093, so a frame is <= 4096 bytes and plaintext <= 4077
//! ```
//! A type-3 frame (`0x03 | u16 BE len | text`) is the peer's error; any other type is fatal.
//! Frame boundaries carry no meaning: writes are split into <= 4077-byte chunks and reads
//! hand out whatever was decrypted.
//!
//! Early payload (server -> client, first plaintext bytes, optional):
//! ```text
//! FF FF FF 54 53 | u32 BE len (<= 10 MiB) | JSON {"nodeKeyChallenge":"chalpub:<hex>"}
//! ```

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::noise::{parse_error_message, CipherState, NoiseError, TransportKeys, MSG_ERROR, MSG_RECORD};
use tenscale_base::keys::ChallengePublic;

/// The early payload's JSON (a lowerCamel key, unlike the map protocol's).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EarlyNoise {
    #[serde(rename = "nodeKeyChallenge", default)]
    pub node_key_challenge: ChallengePublic,
}

/// Largest frame on the wire, header included.
pub const MAX_FRAME: usize = 4096;
/// Largest ciphertext (frame minus the 3-byte header).
pub const MAX_CIPHERTEXT: usize = MAX_FRAME - 3;
/// Largest plaintext per frame (ciphertext minus the tag).
pub const MAX_PLAINTEXT: usize = MAX_CIPHERTEXT - 16;
/// Magic that opens the early payload; it can never start an HTTP/2 frame.
pub const EARLY_PAYLOAD_MAGIC: &[u8; 5] = b"\xff\xff\xffTS";
/// Largest early payload JSON a client accepts.
pub const MAX_EARLY_PAYLOAD: usize = 10 << 20;

/// How much encrypted output may sit unwritten before `poll_write` pushes back.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Bytes asked of `io` per read (a stack buffer: idle connections hold no read buffer).
const READ_CHUNK: usize = 8 * 1024;
/// An emptied buffer keeps at most this much capacity. A map stream sits idle nearly all
/// its life; thousands of them must not each keep the high-water mark of their last burst.
const IDLE_CAPACITY: usize = 1024;

/// An encrypted, framed byte stream over `T`.
pub struct NoiseStream<T> {
    io: T,
    send: CipherState,
    recv: CipherState,
    /// Raw bytes read from `io` that do not yet form a whole frame.
    rbuf: BytesMut,
    /// Decrypted bytes not yet handed to the reader.
    plain: BytesMut,
    /// Framed ciphertext (and any queued raw bytes) not yet written to `io`.
    wbuf: BytesMut,
    read_eof: bool,
    /// Set once a fatal error was seen; the stream is dead after that.
    broken: bool,
}

impl<T> NoiseStream<T> {
    /// Wraps `io` with the transport keys of a finished handshake.
    pub fn new(io: T, keys: TransportKeys) -> Self {
        Self {
            io,
            send: keys.send,
            recv: keys.recv,
            rbuf: BytesMut::new(),
            plain: BytesMut::new(),
            wbuf: BytesMut::new(),
            read_eof: false,
            broken: false,
        }
    }

    /// Seeds the read side with bytes that were read from `io` before the stream existed
    /// (e.g. records that arrived in the same TCP segment as the HTTP 101).
    pub fn with_read_prefix(mut self, prefix: &[u8]) -> Self {
        self.rbuf.extend_from_slice(prefix);
        self
    }

    /// Queues unencrypted bytes (the 51-byte handshake response) ahead of any record.
    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    /// Encrypts `data` into records and queues them; nothing is written until a flush.
    pub fn queue_plaintext(&mut self, data: &[u8]) -> Result<(), NoiseError> {
        for chunk in data.chunks(MAX_PLAINTEXT) {
            self.seal_frame(chunk)?;
        }
        Ok(())
    }

    /// Queues the early payload carrying `challenge` as the first plaintext.
    pub fn queue_early_payload(&mut self, challenge: &ChallengePublic) -> Result<(), NoiseError> {
        self.queue_plaintext(&early_payload_bytes(challenge))
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }

    fn seal_frame(&mut self, chunk: &[u8]) -> Result<(), NoiseError> {
        let mut buf = Vec::with_capacity(chunk.len() + 16);
        buf.extend_from_slice(chunk);
        self.send.encrypt(&mut buf)?;
        self.wbuf.reserve(3 + buf.len());
        self.wbuf.extend_from_slice(&[MSG_RECORD]);
        // buf.len() <= MAX_CIPHERTEXT, which fits a u16.
        self.wbuf.extend_from_slice(&(buf.len() as u16).to_be_bytes());
        self.wbuf.extend_from_slice(&buf);
        Ok(())
    }

    /// Decrypts one whole frame from `rbuf` into `plain`; `Ok(false)` if more bytes are needed.
    fn open_frame(&mut self) -> Result<bool, NoiseError> {
        if self.rbuf.len() < 3 {
            return Ok(false);
        }
        let kind = self.rbuf[0];
        let len = u16::from_be_bytes([self.rbuf[1], self.rbuf[2]]) as usize;
        if kind != MSG_RECORD && kind != MSG_ERROR {
            return Err(NoiseError::BadType(kind));
        }
        if len > MAX_CIPHERTEXT {
            return Err(NoiseError::FrameTooLarge(len + 3));
        }
        if self.rbuf.len() < 3 + len {
            return Ok(false);
        }
        if kind == MSG_ERROR {
            let text = parse_error_message(&self.rbuf[..3 + len]).unwrap_or_default();
            return Err(NoiseError::PeerError(text));
        }
        self.rbuf.advance(3);
        let mut buf = self.rbuf.split_to(len).to_vec();
        release_if_idle(&mut self.rbuf);
        self.recv.decrypt(&mut buf)?;
        self.plain.extend_from_slice(&buf);
        Ok(true)
    }

    fn fail(&mut self, err: NoiseError) -> io::Error {
        self.broken = true;
        err.into()
    }
}

impl<T: AsyncRead + Unpin> NoiseStream<T> {
    /// Makes progress on the read side: `Ok(true)` once a new record was decrypted,
    /// `Ok(false)` on a clean end of stream at a frame boundary.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if self.broken {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "noise stream failed")));
        }
        loop {
            match self.open_frame() {
                Ok(true) => return Poll::Ready(Ok(true)),
                Ok(false) => {}
                Err(err) => return Poll::Ready(Err(self.fail(err))),
            }
            if self.read_eof {
                if self.rbuf.is_empty() {
                    return Poll::Ready(Ok(false));
                }
                let err = NoiseError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated noise frame"));
                return Poll::Ready(Err(self.fail(err)));
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                self.read_eof = true;
            } else {
                self.rbuf.extend_from_slice(read.filled());
            }
        }
    }

    /// Reads until at least `n` plaintext bytes are buffered; `false` if the stream ended first.
    async fn fill_plain(&mut self, n: usize) -> io::Result<bool> {
        while self.plain.len() < n {
            if !std::future::poll_fn(|cx| self.poll_fill(cx)).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Client side: reads the early payload if the server sent one. Bytes that turn out not to
    /// be the magic stay buffered for the next reader (they are the start of HTTP/2).
    pub async fn read_early_payload(&mut self) -> Result<Option<EarlyNoise>, NoiseError> {
        if !self.fill_plain(9).await? || &self.plain[..5] != EARLY_PAYLOAD_MAGIC {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.plain[5], self.plain[6], self.plain[7], self.plain[8]]) as usize;
        if len > MAX_EARLY_PAYLOAD {
            return Err(NoiseError::EarlyPayload(format!("length {len} too large")));
        }
        if !self.fill_plain(9 + len).await? {
            return Err(NoiseError::EarlyPayload("stream ended inside early payload".into()));
        }
        self.plain.advance(9);
        let json = self.plain.split_to(len);
        serde_json::from_slice(&json).map(Some).map_err(|err| NoiseError::EarlyPayload(err.to_string()))
    }
}

impl<T: AsyncWrite + Unpin> NoiseStream<T> {
    /// Writes out queued bytes until `wbuf` is empty or `io` would block.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.wbuf.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.wbuf))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wbuf.advance(n);
        }
        release_if_idle(&mut self.wbuf);
        Poll::Ready(Ok(()))
    }

    /// Writes every queued byte and flushes `io`.
    pub async fn flush_queued(&mut self) -> io::Result<()> {
        tokio::io::AsyncWriteExt::flush(self).await
    }
}

/// Gives an emptied buffer's memory back when it grew past [`IDLE_CAPACITY`].
fn release_if_idle(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > IDLE_CAPACITY {
        *buf = BytesMut::new();
    }
}

/// The early payload bytes: magic, u32 BE length, JSON.
pub fn early_payload_bytes(challenge: &ChallengePublic) -> Vec<u8> {
    let json = format!("{{\"nodeKeyChallenge\":\"{challenge}\"}}");
    let mut out = Vec::with_capacity(9 + json.len());
    out.extend_from_slice(EARLY_PAYLOAD_MAGIC);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(json.as_bytes());
    out
}

impl<T: AsyncRead + Unpin> AsyncRead for NoiseStream<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.plain.is_empty() {
            if !ready!(this.poll_fill(cx))? {
                return Poll::Ready(Ok(()));
            }
        }
        let n = this.plain.len().min(out.remaining());
        out.put_slice(&this.plain[..n]);
        this.plain.advance(n);
        release_if_idle(&mut this.plain);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for NoiseStream<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.broken {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "noise stream failed")));
        }
        if this.wbuf.len() >= WRITE_HIGH_WATER {
            // Only returns Pending when `io` did, so a wake-up is registered.
            ready!(this.poll_drain(cx))?;
        }
        let mut taken = 0;
        while taken < buf.len() && this.wbuf.len() < WRITE_HIGH_WATER {
            let end = buf.len().min(taken + MAX_PLAINTEXT);
            if let Err(err) = this.seal_frame(&buf[taken..end]) {
                return Poll::Ready(Err(this.fail(err)));
            }
            taken = end;
        }
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "noise_stream_tests.rs"]
mod tests;
