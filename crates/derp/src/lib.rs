//! The DERP relay and the STUN server: packet forwarding between nodes that cannot reach each
//! other directly, one tenant (namespace) at a time, across every instance of a deployment.
//!
//! From the bytes up:
//! - [`frame`]: the wire codec (no I/O);
//! - [`conn`]: buffered frame reading and writing on top of a byte stream;
//! - [`crypto`]: the NaCl boxes of the ClientInfo/ServerInfo handshake and their JSON;
//! - [`client`]: a raw DERP client (the mesh links, tests, benchmarks);
//! - [`server`]: the relay's registry of connections and the forwarding between them, its
//!   configuration, metrics and the [`server::Admission`] question;
//! - [`mesh`]: the links to the deployment's other instances, and the service of theirs;
//! - [`session`]: one client connection, handshake to PeerGone ([`serve_client`]);
//! - [`stun`]: the STUN binding server;
//! - `testkit` (feature `testkit`): a plain-TCP listener and in-memory admission tables for
//!   tests and benchmarks.
//!
//! The layers point one way: `session` and `mesh` drive `server`, which knows neither.
//!
//! **Boundary:** a leaf crate. It reads no store, no configuration file and no clock of the
//! server's: who may connect, and under which tenant, is asked through
//! [`server::Admission`] (the server answers it from its store), and its tunables come in
//! as a [`server::DerpConfig`]. It speaks no HTTP: the server writes the 101 of a `/derp`
//! upgrade and hands the stream over. It imports only `tenscale-base` (keys) of tenscale.
#![warn(unreachable_pub)]

pub mod client;
pub mod conn;
pub mod crypto;
mod error;
pub mod frame;
pub mod mesh;
pub mod server;
pub mod session;
pub mod stun;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use error::DerpError;
pub use session::serve_client;
