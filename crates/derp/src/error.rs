//! What ends a DERP connection.

use crate::crypto::CryptoError;
use crate::frame::FrameError;

/// Everything that ends a DERP connection. At the wire edge each becomes a closed connection.
#[derive(Debug, thiserror::Error)]
pub enum DerpError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame: {0}")]
    Frame(#[from] FrameError),
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("protocol: {0}")]
    Protocol(&'static str),
    #[error("connection refused by the server")]
    Refused,
    #[error("connection closed")]
    Closed,
}
