//! The embedded DERP relay and STUN server: tenant-aware packet forwarding between nodes that
//! cannot reach each other directly.
//!
//! - [`frame`]: the wire codec (no I/O);
//! - [`conn`]: buffered frame reading on top of a byte stream;
//! - [`crypto`]: the NaCl boxes of the ClientInfo/ServerInfo handshake and their JSON;
//! - [`server`]: the relay (admission, forwarding, keep-alives, metrics);
//! - [`client`]: a raw DERP client (tests, benchmarks, the mesh links);
//! - [`mesh`]: the mesh between the instances of a deployment (one region, many relays);
//! - [`stun`]: the STUN binding server;
//! - [`http`]: the plain-HTTP probes, and the 101 that answers a `/derp` upgrade.
//!
//! The connection front takes an upgraded `/derp` connection over; the app writes
//! [`http::switch_protocols`] on it and hands the stream to [`server::serve_client`]. Who may
//! connect is asked through [`server::Admission`] (answered from the store by
//! `netmap::derp_admission`): this plane reads no store.

pub mod bench;
pub mod client;
pub mod conn;
pub mod crypto;
pub mod frame;
pub mod http;
pub mod mesh;
pub mod server;
pub mod stun;

/// Everything that ends a DERP connection. At the wire edge each becomes a closed connection.
#[derive(Debug, thiserror::Error)]
pub enum DerpError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame: {0}")]
    Frame(#[from] frame::FrameError),
    #[error("crypto: {0}")]
    Crypto(#[from] crypto::CryptoError),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("protocol: {0}")]
    Protocol(&'static str),
    #[error("connection refused by the server")]
    Refused,
    #[error("connection closed")]
    Closed,
}

#[cfg(test)]
mod tests;
