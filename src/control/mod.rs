//! The coordination plane's edge: the ts2021 channel (Noise transport, HTTP/2 inside) and the
//! register/map logic that turns its requests into [`crate::state::Writer`] calls and
//! [`crate::netmap`] sessions. The wire types and framing live in [`crate::netmap`].
//!
//! - [`ts2021`]: the transport, a room of its own: Noise, the record layer, our HTTP/2 server
//!   connection, HPACK and Huffman;
//! - [`routes`]: the route table the transport calls ([`routes::Routes`], a
//!   [`ts2021::Ts2021Service`]): one function per endpoint, JSON bodies, map framing and the
//!   long poll's keep-alives, in front of a [`routes::ControlHandler`];
//! - [`service`]: registration and map sessions (the business logic), the `ControlHandler`;
//! - [`http`]: `GET /key` and plain answers for non-upgraded `/ts2021`;
//! - [`client`]: our own client of the protocol, for tests and the load generator.
//!
//! # What real clients were seen to do (tests/realclient)
//! - **tsnet 1.90.9** (capability version 130): the captures in `tests/fixtures/`.
//! - **tailscaled + tailscale CLI v1.102.3** (capability version 142): `up --authkey`, `set
//!   --ssh`, `status`, `ping`, `nc`, `ssh`, `logout`, key expiry and server restarts call only
//!   `/machine/register` and `/machine/map` over Noise; the request fields it added since 130
//!   (hardware attestation keys and the like) are optional and ignored. `tailscale ssh` runs
//!   OpenSSH with `StrictHostKeyChecking yes` against a known_hosts file made from the peers'
//!   `Hostinfo.sshHostKeys`, so peers must get each node's Hostinfo as it sent it; the hub's
//!   SSH server needs `https://tailscale.com/cap/ssh` in its self CapMap and refuses by the
//!   `SSHPolicy` (an empty rule list, never an omitted one, takes SSH away again).
//!   `tailscale ping` exits non-zero when it gets pongs over DERP only, unless
//!   `--until-direct=false`.
//! - **tailscale-rs 0.6.1** (crate `tailscale`, capability version 130): request targets in
//!   absolute form (`POST http://host:port/ts2021`, `Host` without a port) for `/key`,
//!   `/ts2021` and `POST /derp` (the front takes all of them over); needs both
//!   `legacyPublicKey` and `publicKey` from `/key`; sends no `Compress`, so its map messages
//!   are plain JSON behind the length ([`crate::netmap::framing::Compression`]); spells `HostInfo`,
//!   `IpnVersion` and `NetInfo.PreferredDerp` (Go's decoder ignores case, so ours does for
//!   those keys); speaks DERP over TLS only and picks a home region only after `GET
//!   https://<HostName>/derp/latency-check` on that TLS connection answered 2xx, then reports
//!   it in a `Stream: false, OmitPeers: true` update. It trusts no self-signed control
//!   certificate, so its test runs control over plain HTTP.
#[cfg(feature = "testkit")]
pub mod client;
pub mod http;
pub mod routes;
pub mod service;
/// The transport, a crate of its own (`crates/ts2021`).
pub use tenscale_ts2021 as ts2021;
