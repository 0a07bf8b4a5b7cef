//! The ts2021 coordination channel: Noise transport, HTTP/2 serving, wire types and framing.
pub mod client;
pub mod framing;
pub mod h2server;
pub mod noise;
pub mod noise_stream;
pub mod tailcfg;
