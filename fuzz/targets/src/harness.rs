//! What the fuzz targets share: a runtime whose clock only moves when every task waits (so a
//! timeout is reached at once, and a task that never ends is caught as a hang in virtual
//! time, not after minutes of real time), the ts2021 and DERP servers on an in-memory pipe,
//! and a reader that hands its bytes over in fuzzer-chosen pieces.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures::future::BoxFuture;
use http::StatusCode;
use tokio::io::{
    duplex, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf, ReadHalf, WriteHalf,
};
use tokio::task::JoinHandle;
use x25519_dalek::{PublicKey, StaticSecret};

use tenscale::control::ts2021::h2server::{accept_ts2021, ServeError, ServeOptions};
use tenscale::control::ts2021::noise::{Initiator, TransportKeys, RESPONSE_LEN};
use tenscale::control::ts2021::{Abort, Request, Response, Ts2021Service};
use tenscale::keys::MachinePublic;

/// Longer than every timeout of the servers under test: a server task still running after
/// this much virtual time, with its peer gone, is stuck.
pub const HANG: Duration = Duration::from_secs(24 * 3600);

/// Runs `future` on a fresh single-threaded runtime with the clock paused.
pub fn run<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime")
        .block_on(future)
}

/// Waits for a server task; a panic inside it, or no end within [`HANG`], fails the input.
pub async fn must_end<T>(task: JoinHandle<T>, what: &str) -> T {
    match tokio::time::timeout(HANG, task).await {
        Ok(Ok(value)) => value,
        Ok(Err(err)) => std::panic::resume_unwind(err.into_panic()),
        Err(_) => panic!("{what} did not end after its peer went away"),
    }
}

/// Reads `io` to its end, discarding what arrives, so the server never blocks on a full pipe.
pub async fn drain<R: AsyncRead + Unpin>(mut io: R) {
    let mut sink = vec![0u8; 16 * 1024];
    while let Ok(n) = io.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

/// The server's ts2021 key (fixed: the fuzzer learns nothing from a random one).
pub fn control_secret() -> StaticSecret {
    StaticSecret::from([3; 32])
}

/// A valid initiation for [`control_secret`], as the base64 `X-Tailscale-Handshake` value.
pub fn valid_initiation() -> (Initiator, String) {
    let server = MachinePublic::from_bytes(PublicKey::from(&control_secret()).to_bytes());
    let (initiator, init) = Initiator::start(&StaticSecret::from([4; 32]), &server, 130).expect("initiation");
    (initiator, base64::engine::general_purpose::STANDARD.encode(init))
}

/// Short timeouts, so that virtual time is cheap; limits as in production otherwise.
pub fn serve_options() -> ServeOptions {
    ServeOptions { ping_interval: Some(Duration::from_secs(30)), ..ServeOptions::default() }
}

/// Starts the ts2021 server on one end of a pipe with `header` as the handshake header.
pub fn spawn_ts2021(header: String) -> (DuplexStream, JoinHandle<Result<(), ServeError>>) {
    let (ours, theirs) = duplex(1 << 16);
    let served =
        tokio::spawn(
            async move { accept_ts2021(ours, &control_secret(), &header, Arc::new(Echo), serve_options()).await },
        );
    (theirs, served)
}

/// A client connection past the Noise handshake: the server's response has been read, the
/// early payload not (it is the first record on `io`). `keys` encrypt what the client sends.
pub struct Ts2021Client {
    pub io: DuplexStream,
    pub keys: TransportKeys,
    pub served: JoinHandle<Result<(), ServeError>>,
}

pub async fn ts2021_client() -> Ts2021Client {
    let (initiator, header) = valid_initiation();
    let (mut io, served) = spawn_ts2021(header);
    let mut response = [0u8; RESPONSE_LEN];
    io.read_exact(&mut response).await.expect("the server answers a valid initiation");
    let keys = initiator.finish(&response).expect("a valid response");
    Ts2021Client { io, keys, served }
}

/// Answers every path from the request it decoded, so that bodies and heads reach a handler:
/// `/stream` with a streamed body, `/abort` by resetting the stream, the rest with an echo.
struct Echo;

impl Ts2021Service for Echo {
    fn call(&self, _: MachinePublic, request: Request) -> BoxFuture<'static, Result<Response, Abort>> {
        Box::pin(async move {
            match request.path.as_str() {
                "/abort" => Err(Abort),
                "/stream" => {
                    let chunks = [Ok(Bytes::from_static(b"one")), Ok(Bytes::from_static(b"two"))];
                    Ok(Response::json_stream(Box::pin(futures::stream::iter(chunks))))
                }
                path => Ok(Response::text(StatusCode::OK, format!("{path} {}", request.body.len()))),
            }
        })
    }
}

/// Hands out `data` in pieces whose sizes cycle through `sizes` (each at least one byte),
/// as a TCP peer would: a parser must not care where the reads split.
pub struct Pieces<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    turn: usize,
}

impl<'a> Pieces<'a> {
    pub fn new(data: &'a [u8], sizes: &'a [u8]) -> Self {
        Self { data, sizes, turn: 0 }
    }

    /// How many bytes have not been handed out yet.
    pub fn remaining(&self) -> usize {
        self.data.len()
    }
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let size = match self.sizes {
            [] => self.data.len(),
            sizes => usize::from(sizes[self.turn % sizes.len()]).max(1),
        };
        let n = size.min(self.data.len()).min(buf.remaining());
        let (piece, rest) = self.data.split_at(n);
        buf.put_slice(piece);
        self.data = rest;
        self.turn += 1;
        Poll::Ready(Ok(()))
    }
}

/// Splits a fuzz input at its first byte: `(selector, rest)`; empty input selects 0.
pub fn split_selector(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((first, rest)) => (*first, rest),
        None => (0, data),
    }
}

/// A client's end of a pipe whose sending side the harness can close while the client still
/// holds it: a client split into halves cannot end its sending by dropping one half (the pipe
/// closes only once both are gone), and its reader must keep draining until the server ends.
pub struct ClientEnd {
    read: ReadHalf<DuplexStream>,
    write: Arc<Mutex<Option<WriteHalf<DuplexStream>>>>,
}

/// Closes a [`ClientEnd`]'s sending side: the server reads the end of the stream.
pub struct Closer(Arc<Mutex<Option<WriteHalf<DuplexStream>>>>);

impl ClientEnd {
    pub fn new(io: DuplexStream) -> (Self, Closer) {
        let (read, write) = tokio::io::split(io);
        let write = Arc::new(Mutex::new(Some(write)));
        (Self { read, write: write.clone() }, Closer(write))
    }
}

impl Closer {
    pub async fn close(self) {
        let write = self.0.lock().expect("not poisoned").take();
        if let Some(mut write) = write {
            let _ = write.shutdown().await;
        }
    }
}

impl AsyncRead for ClientEnd {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl ClientEnd {
    fn with_write<T>(
        &self,
        f: impl FnOnce(Pin<&mut WriteHalf<DuplexStream>>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match self.write.lock().expect("not poisoned").as_mut() {
            Some(write) => f(Pin::new(write)),
            None => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }
}

impl AsyncWrite for ClientEnd {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.with_write(|w| w.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with_write(|w| w.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with_write(|w| w.poll_shutdown(cx))
    }
}
