//! The ts2021 transport: everything between the bytes after the HTTP 101 and a request a
//! control handler can answer. Tailscale's Noise IK handshake, its record layer, and our own
//! HTTP/2 server connection inside it, with HPACK and Huffman for the request heads.
//!
//! - [`noise`]: the Noise IK handshake (initiator and responder) and the transport ciphers;
//! - [`noise_stream`]: the big-endian-nonce record layer as a byte stream, and the early payload;
//! - [`h2server`]: the server side of the channel (handshake, options, errors), handing each
//!   connection to `h2conn`, our HTTP/2 server connection (one task, no codec buffers while
//!   idle: a control connection idles for days);
//! - [`Ts2021Service`], [`Request`], [`Response`], [`Body`]: what the connection asks of the
//!   layer above for every request, and the answer it turns into frames: a whole body, or a
//!   stream of chunks for a long poll;
//! - [`h2frame`]: HTTP/2 frames (RFC 9113), read into buffers sized to the frame;
//! - [`hpack`], [`huffman`]: header compression (RFC 7541).
//!
//! **Boundary:** a leaf crate. It knows the machine key learnt in the handshake and nothing of
//! register or map — no path, JSON body or map type appears here; which path means what is the
//! service's business (`control::routes` in the server). It imports only `tenscale-base`
//! (keys), so Cargo, not a script, keeps it from reaching any plane. It reads no store and no
//! configuration: the server passes its key and options in.
#![warn(unreachable_pub)]
mod h2conn;
pub mod h2frame;
pub mod h2server;
pub mod hpack;
pub mod huffman;
pub mod noise;
pub mod noise_stream;
mod request;
mod serve;

pub use request::{Abort, Body, Request, Response, Ts2021Service};
