//! The coordination plane: the ts2021 channel (Noise transport, HTTP/2 inside), the wire
//! types and framing, and the register/map logic behind them.
//!
//! - [`noise`], [`noise_stream`]: Noise IK handshake and the big-endian-nonce record layer;
//! - [`h2server`]: the ts2021 server, dispatching to a [`h2server::ControlHandler`];
//! - [`h2conn`], [`h2frame`], [`hpack`], [`huffman`]: our own HTTP/2 server connection, frames and
//!   header compression (a control connection idles for days, so it keeps no codec buffers);
//! - [`tailcfg`], [`framing`]: the JSON types and the zstd map-message framing;
//! - [`service`]: registration and map sessions (the business logic);
//! - [`mapper`]: how stored nodes look on the wire;
//! - [`http`]: `GET /key` and plain answers for non-upgraded `/ts2021`;
//! - [`client`]: our own client of the protocol, for tests and the load generator.
pub mod client;
pub mod framing;
mod h2conn;
pub mod h2frame;
pub mod h2server;
pub mod hpack;
pub mod http;
pub mod huffman;
pub mod mapper;
pub mod noise;
pub mod noise_stream;
pub mod service;
pub mod tailcfg;
