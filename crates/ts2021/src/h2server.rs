//! The ts2021 channel's server side: takes a connection after the HTTP 101, finishes the Noise
//! handshake, and serves its HTTP/2 streams concurrently over our own HTTP/2 (`h2conn`),
//! asking a [`Ts2021Service`] for every answer. The service owns what the paths mean; the
//! connection owns framing, body limits, flow control, flushing and pings.
//!
//! Every request on a connection is tied to the machine key learned in the handshake.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::h2frame::ConnectionError;
use crate::noise::{accept, decode_handshake_header, error_message, NoiseError};
use crate::noise_stream::NoiseStream;
use crate::Ts2021Service;
use tenscale_base::keys::ChallengePublic;

/// Why a connection ended badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("noise: {0}")]
    Noise(#[from] NoiseError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("http/2: {0}")]
    Protocol(#[from] ConnectionError),
    #[error("peer did not complete the handshake in time")]
    HandshakeTimeout,
    #[error("peer did not answer a ping in time")]
    PingTimeout,
    #[error("peer did not take our writes in time")]
    WriteTimeout,
}

impl ServeError {
    /// A short name for the `reason` label of metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Noise(_) => "noise",
            Self::Io(_) => "io",
            Self::Protocol(_) => "protocol",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::PingTimeout => "ping_timeout",
            Self::WriteTimeout => "write_timeout",
        }
    }
}

/// Tunables of one connection.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Budget for writing the Noise response and reading the h2 preface.
    pub handshake_timeout: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Write the early payload (`nodeKeyChallenge`) after the handshake, as Headscale does.
    pub early_payload: bool,
    pub max_concurrent_streams: u32,
    /// Send an h2 PING this often to find dead peers; `None` disables it.
    pub ping_interval: Option<Duration>,
    /// How long a PING may go unanswered before the connection is dropped.
    pub ping_timeout: Duration,
    /// How long one write (a batch of frames) may wait for a peer that stopped reading, and
    /// how long a stream's body may wait for a peer that stopped granting it flow-control
    /// window (the stream is then reset). Generous: a full map of many peers over a slow
    /// link takes a while.
    pub write_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            max_body_bytes: 1 << 20,
            early_payload: true,
            max_concurrent_streams: 64,
            ping_interval: Some(Duration::from_secs(120)),
            ping_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(120),
        }
    }
}

/// Runs the ts2021 channel on `io`, the connection right after the HTTP 101 was written:
/// decodes the `X-Tailscale-Handshake` value, answers the Noise initiation (51-byte response +
/// early payload in one write), then serves HTTP/2 until the client goes away.
pub async fn accept_ts2021<T>(
    mut io: T,
    server_static: &StaticSecret,
    init_b64_header: &str,
    service: Arc<dyn Ts2021Service>,
    opts: ServeOptions,
) -> Result<(), ServeError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake = decode_handshake_header(init_b64_header).and_then(|init| accept(server_static, &init));
    let (response, machine, version, keys) = match handshake {
        Ok(done) => done,
        Err(err) => {
            // Like the Go server: tell the peer about malformed messages, then close.
            if matches!(err, NoiseError::BadLength(..) | NoiseError::BadType(_) | NoiseError::BadLengthField(_)) {
                let _ = timeout(opts.handshake_timeout, io.write_all(&error_message(&err.to_string()))).await;
            }
            return Err(err.into());
        }
    };
    tracing::debug!(%machine, version, "ts2021 handshake done");
    let mut stream = NoiseStream::new(io, keys);
    stream.queue_raw(&response);
    if opts.early_payload {
        stream.queue_early_payload(&fresh_challenge())?;
    }
    timeout(opts.handshake_timeout, stream.flush_queued()).await.map_err(|_| ServeError::HandshakeTimeout)??;
    super::h2conn::serve(stream, machine, service, opts).await
}

/// A throw-away challenge key: clients at 1.90 parse it but never use it.
fn fresh_challenge() -> ChallengePublic {
    let secret = StaticSecret::random_from_rng(rand::rngs::OsRng);
    ChallengePublic::from_bytes(PublicKey::from(&secret).to_bytes())
}
