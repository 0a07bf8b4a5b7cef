//! A whole HTTP/2 connection's byte stream, fed to our connection task (`h2conn`) inside a
//! valid Noise channel: frame reader, HPACK and Huffman, stream states, flow control, body
//! limits, all at once. The first byte's bit 0 prepends the client preface and an empty
//! SETTINGS (so the fuzzer spends its time past them); its upper bits set the record size the
//! bytes are cut into. The connection must end once the client has gone, and never panic.

use tokio::io::AsyncWriteExt;

use crate::harness::{drain, must_end, run, split_selector, ts2021_client};
use tenscale::control::ts2021::h2frame::PREFACE;
use tenscale::control::ts2021::noise_stream::NoiseStream;

/// An empty SETTINGS frame, as every client sends after the preface.
const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

/// One input: what the module doc says must hold for it.
pub fn check(data: &[u8]) {
    let (selector, rest) = split_selector(data);
    let mut bytes = Vec::with_capacity(rest.len() + 33);
    if selector & 1 == 1 {
        bytes.extend_from_slice(PREFACE);
        bytes.extend_from_slice(&EMPTY_SETTINGS);
    }
    bytes.extend_from_slice(rest);
    let record = usize::from(selector >> 1) * 64 + 1;
    run(async move {
        let client = ts2021_client().await;
        let served = client.served;
        let (read, mut write) = tokio::io::split(NoiseStream::new(client.io, client.keys));
        let reader = tokio::spawn(drain(read));
        for piece in bytes.chunks(record) {
            if write.write_all(piece).await.is_err() || write.flush().await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
        let _ = must_end(served, "the HTTP/2 connection").await;
        must_end(reader, "the client's reader").await;
    });
}
