//! HPACK's static Huffman code (RFC 7541 §5.2, Appendix B): the decoder the HPACK string
//! reader uses for literals with the H bit set, and an encoder for the tests.
//!
//! The code is canonical (codes of one length are consecutive, and each length continues
//! where the shorter one stopped), so decoding needs no tree: a few per-length tables, built
//! at compile time from [`CODES`], map a 32-bit look-ahead window straight to a symbol.

/// The end-of-string symbol: valid only as padding (its leading ones), never inside a string.
const EOS: usize = 256;
/// Shortest and longest code lengths in [`CODES`].
const MIN_CODE_LEN: usize = 5;
const MAX_CODE_LEN: usize = 30;

/// RFC 7541 Appendix B, the Huffman code: `(code, bit length)` for symbols 0..=255 (the byte
/// values) and 256 (EOS). Codes are right-aligned in the `u32`.
#[rustfmt::skip]
const CODES: [(u32, u8); 257] = [
    (0x00001ff8, 13), (0x007fffd8, 23), (0x0fffffe2, 28), (0x0fffffe3, 28),  // 0..=3
    (0x0fffffe4, 28), (0x0fffffe5, 28), (0x0fffffe6, 28), (0x0fffffe7, 28),  // 4..=7
    (0x0fffffe8, 28), (0x00ffffea, 24), (0x3ffffffc, 30), (0x0fffffe9, 28),  // 8..=11
    (0x0fffffea, 28), (0x3ffffffd, 30), (0x0fffffeb, 28), (0x0fffffec, 28),  // 12..=15
    (0x0fffffed, 28), (0x0fffffee, 28), (0x0fffffef, 28), (0x0ffffff0, 28),  // 16..=19
    (0x0ffffff1, 28), (0x0ffffff2, 28), (0x3ffffffe, 30), (0x0ffffff3, 28),  // 20..=23
    (0x0ffffff4, 28), (0x0ffffff5, 28), (0x0ffffff6, 28), (0x0ffffff7, 28),  // 24..=27
    (0x0ffffff8, 28), (0x0ffffff9, 28), (0x0ffffffa, 28), (0x0ffffffb, 28),  // 28..=31
    (0x00000014,  6), (0x000003f8, 10), (0x000003f9, 10), (0x00000ffa, 12),  // 32..=35
    (0x00001ff9, 13), (0x00000015,  6), (0x000000f8,  8), (0x000007fa, 11),  // 36..=39
    (0x000003fa, 10), (0x000003fb, 10), (0x000000f9,  8), (0x000007fb, 11),  // 40..=43
    (0x000000fa,  8), (0x00000016,  6), (0x00000017,  6), (0x00000018,  6),  // 44..=47
    (0x00000000,  5), (0x00000001,  5), (0x00000002,  5), (0x00000019,  6),  // 48..=51
    (0x0000001a,  6), (0x0000001b,  6), (0x0000001c,  6), (0x0000001d,  6),  // 52..=55
    (0x0000001e,  6), (0x0000001f,  6), (0x0000005c,  7), (0x000000fb,  8),  // 56..=59
    (0x00007ffc, 15), (0x00000020,  6), (0x00000ffb, 12), (0x000003fc, 10),  // 60..=63
    (0x00001ffa, 13), (0x00000021,  6), (0x0000005d,  7), (0x0000005e,  7),  // 64..=67
    (0x0000005f,  7), (0x00000060,  7), (0x00000061,  7), (0x00000062,  7),  // 68..=71
    (0x00000063,  7), (0x00000064,  7), (0x00000065,  7), (0x00000066,  7),  // 72..=75
    (0x00000067,  7), (0x00000068,  7), (0x00000069,  7), (0x0000006a,  7),  // 76..=79
    (0x0000006b,  7), (0x0000006c,  7), (0x0000006d,  7), (0x0000006e,  7),  // 80..=83
    (0x0000006f,  7), (0x00000070,  7), (0x00000071,  7), (0x00000072,  7),  // 84..=87
    (0x000000fc,  8), (0x00000073,  7), (0x000000fd,  8), (0x00001ffb, 13),  // 88..=91
    (0x0007fff0, 19), (0x00001ffc, 13), (0x00003ffc, 14), (0x00000022,  6),  // 92..=95
    (0x00007ffd, 15), (0x00000003,  5), (0x00000023,  6), (0x00000004,  5),  // 96..=99
    (0x00000024,  6), (0x00000005,  5), (0x00000025,  6), (0x00000026,  6),  // 100..=103
    (0x00000027,  6), (0x00000006,  5), (0x00000074,  7), (0x00000075,  7),  // 104..=107
    (0x00000028,  6), (0x00000029,  6), (0x0000002a,  6), (0x00000007,  5),  // 108..=111
    (0x0000002b,  6), (0x00000076,  7), (0x0000002c,  6), (0x00000008,  5),  // 112..=115
    (0x00000009,  5), (0x0000002d,  6), (0x00000077,  7), (0x00000078,  7),  // 116..=119
    (0x00000079,  7), (0x0000007a,  7), (0x0000007b,  7), (0x00007ffe, 15),  // 120..=123
    (0x000007fc, 11), (0x00003ffd, 14), (0x00001ffd, 13), (0x0ffffffc, 28),  // 124..=127
    (0x000fffe6, 20), (0x003fffd2, 22), (0x000fffe7, 20), (0x000fffe8, 20),  // 128..=131
    (0x003fffd3, 22), (0x003fffd4, 22), (0x003fffd5, 22), (0x007fffd9, 23),  // 132..=135
    (0x003fffd6, 22), (0x007fffda, 23), (0x007fffdb, 23), (0x007fffdc, 23),  // 136..=139
    (0x007fffdd, 23), (0x007fffde, 23), (0x00ffffeb, 24), (0x007fffdf, 23),  // 140..=143
    (0x00ffffec, 24), (0x00ffffed, 24), (0x003fffd7, 22), (0x007fffe0, 23),  // 144..=147
    (0x00ffffee, 24), (0x007fffe1, 23), (0x007fffe2, 23), (0x007fffe3, 23),  // 148..=151
    (0x007fffe4, 23), (0x001fffdc, 21), (0x003fffd8, 22), (0x007fffe5, 23),  // 152..=155
    (0x003fffd9, 22), (0x007fffe6, 23), (0x007fffe7, 23), (0x00ffffef, 24),  // 156..=159
    (0x003fffda, 22), (0x001fffdd, 21), (0x000fffe9, 20), (0x003fffdb, 22),  // 160..=163
    (0x003fffdc, 22), (0x007fffe8, 23), (0x007fffe9, 23), (0x001fffde, 21),  // 164..=167
    (0x007fffea, 23), (0x003fffdd, 22), (0x003fffde, 22), (0x00fffff0, 24),  // 168..=171
    (0x001fffdf, 21), (0x003fffdf, 22), (0x007fffeb, 23), (0x007fffec, 23),  // 172..=175
    (0x001fffe0, 21), (0x001fffe1, 21), (0x003fffe0, 22), (0x001fffe2, 21),  // 176..=179
    (0x007fffed, 23), (0x003fffe1, 22), (0x007fffee, 23), (0x007fffef, 23),  // 180..=183
    (0x000fffea, 20), (0x003fffe2, 22), (0x003fffe3, 22), (0x003fffe4, 22),  // 184..=187
    (0x007ffff0, 23), (0x003fffe5, 22), (0x003fffe6, 22), (0x007ffff1, 23),  // 188..=191
    (0x03ffffe0, 26), (0x03ffffe1, 26), (0x000fffeb, 20), (0x0007fff1, 19),  // 192..=195
    (0x003fffe7, 22), (0x007ffff2, 23), (0x003fffe8, 22), (0x01ffffec, 25),  // 196..=199
    (0x03ffffe2, 26), (0x03ffffe3, 26), (0x03ffffe4, 26), (0x07ffffde, 27),  // 200..=203
    (0x07ffffdf, 27), (0x03ffffe5, 26), (0x00fffff1, 24), (0x01ffffed, 25),  // 204..=207
    (0x0007fff2, 19), (0x001fffe3, 21), (0x03ffffe6, 26), (0x07ffffe0, 27),  // 208..=211
    (0x07ffffe1, 27), (0x03ffffe7, 26), (0x07ffffe2, 27), (0x00fffff2, 24),  // 212..=215
    (0x001fffe4, 21), (0x001fffe5, 21), (0x03ffffe8, 26), (0x03ffffe9, 26),  // 216..=219
    (0x0ffffffd, 28), (0x07ffffe3, 27), (0x07ffffe4, 27), (0x07ffffe5, 27),  // 220..=223
    (0x000fffec, 20), (0x00fffff3, 24), (0x000fffed, 20), (0x001fffe6, 21),  // 224..=227
    (0x003fffe9, 22), (0x001fffe7, 21), (0x001fffe8, 21), (0x007ffff3, 23),  // 228..=231
    (0x003fffea, 22), (0x003fffeb, 22), (0x01ffffee, 25), (0x01ffffef, 25),  // 232..=235
    (0x00fffff4, 24), (0x00fffff5, 24), (0x03ffffea, 26), (0x007ffff4, 23),  // 236..=239
    (0x03ffffeb, 26), (0x07ffffe6, 27), (0x03ffffec, 26), (0x03ffffed, 26),  // 240..=243
    (0x07ffffe7, 27), (0x07ffffe8, 27), (0x07ffffe9, 27), (0x07ffffea, 27),  // 244..=247
    (0x07ffffeb, 27), (0x0ffffffe, 28), (0x07ffffec, 27), (0x07ffffed, 27),  // 248..=251
    (0x07ffffee, 27), (0x07ffffef, 27), (0x07fffff0, 27), (0x03ffffee, 26),  // 252..=255
    (0x3fffffff, 30),  // 256 = EOS
];

/// Per-length view of the canonical code, derived from [`CODES`] at compile time.
struct CanonicalCode {
    /// `first_code[len]`: the numerically first code of that length (right-aligned). Defined
    /// for lengths without codes too, which keeps `limit` monotonic.
    first_code: [u32; MAX_CODE_LEN + 1],
    /// `limit[len]`: one past the last code of that length, left-aligned in 32 bits. A 32-bit
    /// window holds a code of length `len` exactly when it is below `limit[len]` and not below
    /// `limit[len - 1]`. `u64` because the last one is 2^32 (the code is complete).
    limit: [u64; MAX_CODE_LEN + 1],
    /// `offset[len]`: where the symbols of that length start in `symbols`.
    offset: [u16; MAX_CODE_LEN + 1],
    /// All symbols ordered by (length, code), which for a canonical code is (length, symbol).
    symbols: [u16; 257],
}

const CANONICAL: CanonicalCode = build_canonical_code();

const fn build_canonical_code() -> CanonicalCode {
    let mut table = CanonicalCode {
        first_code: [0; MAX_CODE_LEN + 1],
        limit: [0; MAX_CODE_LEN + 1],
        offset: [0; MAX_CODE_LEN + 1],
        symbols: [0; 257],
    };
    let mut next_code: u32 = 0;
    let mut placed: usize = 0;
    let mut len = MIN_CODE_LEN;
    while len <= MAX_CODE_LEN {
        table.first_code[len] = next_code;
        table.offset[len] = placed as u16;
        let mut count: u32 = 0;
        let mut symbol = 0;
        while symbol < CODES.len() {
            if CODES[symbol].1 as usize == len {
                // The canonical construction must reproduce the RFC's code exactly, or the
                // window arithmetic below would decode garbage: fail the build instead.
                assert!(CODES[symbol].0 == next_code + count, "CODES is not canonical");
                table.symbols[placed] = symbol as u16;
                placed += 1;
                count += 1;
            }
            symbol += 1;
        }
        table.limit[len] = ((next_code + count) as u64) << (32 - len);
        next_code = (next_code + count) << 1;
        len += 1;
    }
    assert!(placed == CODES.len(), "a code length lies outside MIN_CODE_LEN..=MAX_CODE_LEN");
    assert!(table.limit[MAX_CODE_LEN] == 1 << 32, "the code is not complete");
    table
}

/// The symbol whose code starts the 32-bit `window`, with the code's length. `None` only if
/// the tables were inconsistent, which the compile-time checks rule out.
fn symbol_at(window: u32) -> Option<(usize, u32)> {
    let window = u64::from(window);
    let len = (MIN_CODE_LEN..=MAX_CODE_LEN).find(|&len| window < CANONICAL.limit[len])?;
    let code = (window >> (32 - len)) as u32;
    let rank = code.checked_sub(CANONICAL.first_code[len])?;
    let index = usize::from(CANONICAL.offset[len]) + rank as usize;
    let symbol = *CANONICAL.symbols.get(index)?;
    Some((usize::from(symbol), len as u32))
}

/// Unread input bits, most significant first: the low `len` bits of `bits` are valid.
struct BitReader<'a> {
    input: &'a [u8],
    bits: u64,
    len: u32,
}

impl<'a> BitReader<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self { input, bits: 0, len: 0 }
    }

    /// Tops the buffer up to at least 57 bits, or to the end of the input. After this,
    /// `len < MAX_CODE_LEN` means the input is exhausted.
    fn refill(&mut self) {
        while self.len <= 56 {
            let Some((&byte, rest)) = self.input.split_first() else {
                break;
            };
            self.input = rest;
            // Bits above `len` are stale; shifting them out of the u64 is intended.
            self.bits = (self.bits << 8) | u64::from(byte);
            self.len += 8;
        }
    }

    /// The next 32 bits, zero-filled past the end of the input.
    fn window(&self) -> u32 {
        if self.len >= 32 {
            (self.bits >> (self.len - 32)) as u32
        } else {
            (self.bits << (32 - self.len)) as u32
        }
    }

    /// True when every remaining bit is 1 (the leading bits of EOS, i.e. valid padding).
    fn rest_is_all_ones(&self) -> bool {
        let mask = (1u64 << self.len) - 1; // len <= 56 here, so this cannot overflow
        self.bits & mask == mask
    }
}

/// Why a Huffman string does not decode; HPACK reports each as its own error
/// (`hpack::HpackError` converts them), so this module needs nothing of `hpack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HuffmanError {
    /// Padding longer than 7 bits or not all ones (or a code that matches no symbol).
    BadPadding,
    /// The EOS symbol inside the string.
    Eos,
    /// The string would be longer than the caller allows.
    TooLong,
}

/// Decodes an HPACK Huffman string (RFC 7541 §5.2 and Appendix B), appending to `out`.
/// Errors: EOS symbol inside the string, padding longer than 7 bits, padding not all ones, or
/// `out` would exceed `max_len`. `max_len` bounds what this call appends (the decoded string);
/// on error, `out` may hold a partial string.
pub fn decode(input: &[u8], max_len: usize, out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let start = out.len();
    let mut reader = BitReader::new(input);
    loop {
        reader.refill();
        if reader.len == 0 {
            return Ok(());
        }
        let (symbol, code_len) = symbol_at(reader.window()).ok_or(HuffmanError::BadPadding)?;
        if code_len > reader.len {
            // The input ended inside a code: what is left must be padding (§5.2: at most
            // 7 bits, all ones, i.e. a strict prefix of EOS).
            return if reader.len <= 7 && reader.rest_is_all_ones() { Ok(()) } else { Err(HuffmanError::BadPadding) };
        }
        if symbol == EOS {
            return Err(HuffmanError::Eos);
        }
        if out.len() - start >= max_len {
            return Err(HuffmanError::TooLong);
        }
        out.push(symbol as u8);
        reader.len -= code_len;
    }
}

/// Appends the Huffman form of `input`, padded with ones to a whole byte as §5.2 requires.
/// Only tests build Huffman input: the server writes its few response headers as raw literals.
#[cfg(test)]
pub fn encode(input: &[u8], out: &mut Vec<u8>) {
    let mut bits: u64 = 0;
    let mut len: u32 = 0; // pending bits in the low end of `bits`; < 8 between symbols
    for &byte in input {
        let (code, code_len) = CODES[usize::from(byte)];
        bits = (bits << code_len) | u64::from(code);
        len += u32::from(code_len);
        while len >= 8 {
            len -= 8;
            out.push((bits >> len) as u8);
        }
    }
    if len > 0 {
        let pad = 8 - len;
        out.push(((bits << pad) as u8) | ((1u8 << pad) - 1));
    }
}

/// Length in bytes of the Huffman form of `input` (tests check it against the RFC's examples).
#[cfg(test)]
pub fn encoded_len(input: &[u8]) -> usize {
    let bits: usize = input.iter().map(|&b| usize::from(CODES[usize::from(b)].1)).sum();
    bits.div_ceil(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        hex::decode(text.replace([' ', '\n'], "")).unwrap()
    }

    fn decoded(input: &[u8]) -> Result<Vec<u8>, HuffmanError> {
        let mut out = Vec::new();
        decode(input, usize::MAX, &mut out).map(|()| out)
    }

    fn encoded(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(input, &mut out);
        out
    }

    /// The Huffman literals of RFC 7541 Appendix C.4 and C.6, both directions.
    const RFC_STRINGS: &[(&str, &str)] = &[
        ("www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"),
        ("no-cache", "a8eb 1064 9cbf"),
        ("custom-key", "25a8 49e9 5ba9 7d7f"),
        ("custom-value", "25a8 49e9 5bb8 e8b4 bf"),
        ("302", "6402"),
        ("307", "640e ff"),
        ("private", "aec3 771a 4b"),
        ("Mon, 21 Oct 2013 20:13:21 GMT", "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff"),
        ("Mon, 21 Oct 2013 20:13:22 GMT", "d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff"),
        ("https://www.example.com", "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3"),
        ("gzip", "9bd9 ab"),
        (
            "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 \
             3160 65c0 03ed 4ee5 b106 3d50 07",
        ),
    ];

    #[test]
    fn rfc_appendix_c_strings_decode() {
        for (text, code) in RFC_STRINGS {
            assert_eq!(decoded(&hex(code)).unwrap(), text.as_bytes(), "{text}");
        }
    }

    #[test]
    fn rfc_appendix_c_strings_encode_byte_for_byte() {
        for (text, code) in RFC_STRINGS {
            assert_eq!(encoded(text.as_bytes()), hex(code), "{text}");
            assert_eq!(encoded_len(text.as_bytes()), hex(code).len(), "{text}");
        }
    }

    #[test]
    fn every_byte_value_round_trips_alone_and_together() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decoded(&encoded(&all)).unwrap(), all);
        for byte in 0..=255u8 {
            assert_eq!(decoded(&encoded(&[byte])).unwrap(), [byte], "byte {byte}");
        }
    }

    #[test]
    fn every_padding_length_round_trips() {
        // 'a' is 5 bits, so 1..=16 of them end at every bit offset within a byte.
        for n in 0..=16 {
            let text = vec![b'a'; n];
            assert_eq!(decoded(&encoded(&text)).unwrap(), text, "{n} x 'a'");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Any byte string decodes to itself, and its code has the length `encoded_len` says.
        #[test]
        fn any_string_round_trips(text in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let code = encoded(&text);
            proptest::prop_assert_eq!(code.len(), encoded_len(&text));
            proptest::prop_assert_eq!(decoded(&code).unwrap(), text);
        }
    }

    #[test]
    fn empty_input_is_the_empty_string() {
        assert_eq!(decoded(&[]).unwrap(), b"");
    }

    #[test]
    fn padding_longer_than_seven_bits_is_rejected() {
        // 'a' (00011) then eleven 1 bits.
        assert_eq!(decoded(&[0x1f, 0xff]), Err(HuffmanError::BadPadding));
        // A whole byte of padding alone.
        assert_eq!(decoded(&[0xff]), Err(HuffmanError::BadPadding));
    }

    #[test]
    fn padding_that_is_not_all_ones_is_rejected() {
        // 'a' (00011) then 000.
        assert_eq!(decoded(&[0x18]), Err(HuffmanError::BadPadding));
        // 'a' then 110.
        assert_eq!(decoded(&[0x1e]), Err(HuffmanError::BadPadding));
        // Control: 'a' then 111 is fine.
        assert_eq!(decoded(&[0x1f]).unwrap(), b"a");
    }

    #[test]
    fn eos_inside_the_string_is_rejected() {
        // 30 ones (EOS) + 2 ones.
        assert_eq!(decoded(&[0xff, 0xff, 0xff, 0xff]), Err(HuffmanError::Eos));
        // 'a' (00011) + EOS (30 ones) + 5 ones of padding.
        assert_eq!(decoded(&[0x1f, 0xff, 0xff, 0xff, 0xff]), Err(HuffmanError::Eos));
    }

    #[test]
    fn max_len_bounds_the_decoded_string() {
        let code = encoded(b"Some string");
        let mut out = b"prefix".to_vec();
        decode(&code, 11, &mut out).unwrap();
        assert_eq!(out, b"prefixSome string");
        assert_eq!(decode(&code, 10, &mut Vec::new()), Err(HuffmanError::TooLong));
        assert_eq!(decode(&code, 0, &mut Vec::new()), Err(HuffmanError::TooLong));
        decode(&[], 0, &mut Vec::new()).unwrap();
    }

    #[test]
    fn random_input_never_panics() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut out = Vec::new();
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            // Bias towards ones so long codes, EOS and padding edge cases come up often.
            let dense = next() % 2 == 0;
            let input: Vec<u8> =
                (0..len).map(|_| if dense { next() as u8 | next() as u8 } else { next() as u8 }).collect();
            out.clear();
            let _ = decode(&input, (next() % 64) as usize, &mut out);
        }
    }
}
