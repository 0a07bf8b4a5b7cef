//! HPACK and Huffman on their own, faster than through a whole connection (`h2_connection`
//! covers them in context). The first byte's low nibble picks how the rest is cut into header
//! blocks, decoded in turn by ONE decoder (so the dynamic table carries over, as on a
//! connection); bit 4 also runs the bytes through the Huffman decoder alone. Checks: no panic,
//! the dynamic table never holds more than the advertised 4096 bytes, no string longer than
//! the limit comes out, and what our encoder writes (`encode_literal`, `encode_status`, fed
//! with names and values taken from the input) decodes back to itself.

use crate::harness::split_selector;
use tenscale::control::ts2021::hpack::{encode_literal, encode_status, Decoder};
use tenscale::control::ts2021::huffman;

const TABLE: usize = 4096;
const MAX_STRING: usize = 1024;

/// One input: what the module doc says must hold for it.
pub fn check(data: &[u8]) {
    let (selector, rest) = split_selector(data);
    let block = usize::from(selector & 0x0F) * 16 + 1;
    let mut decoder = Decoder::new(TABLE);
    for piece in rest.chunks(block) {
        let result = decoder.decode(piece, MAX_STRING, &mut |name, value| {
            assert!(name.len() <= MAX_STRING && value.len() <= MAX_STRING, "a string over the limit came out");
            Ok(())
        });
        assert!(decoder.table_size() <= TABLE, "dynamic table at {} bytes", decoder.table_size());
        if result.is_err() {
            break; // a connection error: the connection is closed, the table is gone
        }
    }

    if selector & 0x10 != 0 {
        let mut out = Vec::new();
        if huffman::decode(rest, MAX_STRING, &mut out).is_ok() {
            assert!(out.len() <= MAX_STRING);
            // Every 8 bits of input hold at most 8/5 symbols (the shortest code has 5 bits).
            assert!(out.len() * 5 <= rest.len() * 8, "{} symbols from {} bytes", out.len(), rest.len());
        }
    }

    encoder_round_trip(rest);
}

/// A name (lowercase, as our encoder requires) and a value cut from the input, plus a status.
fn encoder_round_trip(rest: &[u8]) {
    let cut = rest.first().map_or(0, |&b| usize::from(b)).min(rest.len());
    let (name, value) = rest.split_at(cut);
    let name: String = String::from_utf8_lossy(name).to_lowercase();
    let status = u16::from_be_bytes([rest.get(1).copied().unwrap_or(2), rest.get(2).copied().unwrap_or(0)]) % 1000;
    let mut block = Vec::new();
    encode_status(status, &mut block);
    encode_literal(&name, value, &mut block);
    let mut fields = Vec::new();
    Decoder::new(TABLE)
        .decode(&block, usize::MAX, &mut |n, v| {
            fields.push((n.to_vec(), v.to_vec()));
            Ok(())
        })
        .expect("our own block decodes");
    let status_text = status.to_string().into_bytes();
    assert_eq!(fields, vec![(b":status".to_vec(), status_text), (name.into_bytes(), value.to_vec())]);
}
