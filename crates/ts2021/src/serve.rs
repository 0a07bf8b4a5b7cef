//! What a served connection is given (its options) and how it can end (its errors): shared by
//! the channel's server side (`h2server`) and the HTTP/2 connection it runs (`h2conn`), so
//! that neither imports the other's module for them.

use std::time::Duration;

use crate::h2frame::ConnectionError;
use crate::noise::NoiseError;

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
