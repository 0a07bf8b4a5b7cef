//! The Noise IK handshake and record layer, server side. The first byte picks what the rest is:
//! - even: the initiation itself (the 101 raw bytes, base64-encoded as a client would, or when
//!   the selector's bit 1 is set, the header value as text, not necessarily base64);
//! - odd: the bytes after a valid handshake, raw, so the record framing (type, length,
//!   ciphertext, nonces) sees everything a broken or hostile client could send.
//!
//! The server must answer or close, and its task must end once the client has gone.

use base64::Engine as _;
use tokio::io::AsyncWriteExt;

use crate::harness::{control_secret, drain, must_end, run, spawn_ts2021, split_selector, ts2021_client};
use tenscale::control::ts2021::noise::{accept, decode_handshake_header};

/// One input: what the module doc says must hold for it.
pub fn check(data: &[u8]) {
    let (selector, rest) = split_selector(data);
    if selector & 1 == 0 {
        initiation(selector & 2 != 0, rest);
    } else {
        records(rest);
    }
}

fn initiation(as_text: bool, bytes: &[u8]) {
    let header = if as_text {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    if let Ok(init) = decode_handshake_header(&header) {
        let _ = accept(&control_secret(), &init);
    }
    run(async move {
        let (io, served) = spawn_ts2021(header);
        let reader = tokio::spawn(drain(io));
        let _ = must_end(served, "the ts2021 server").await;
        must_end(reader, "the client's reader").await;
    });
}

fn records(bytes: &[u8]) {
    let bytes = bytes.to_vec();
    run(async move {
        let client = ts2021_client().await;
        let served = client.served;
        let (read, mut write) = tokio::io::split(client.io);
        let reader = tokio::spawn(drain(read));
        let _ = write.write_all(&bytes).await;
        let _ = write.shutdown().await;
        let _ = must_end(served, "the ts2021 server").await;
        must_end(reader, "the client's reader").await;
    });
}
