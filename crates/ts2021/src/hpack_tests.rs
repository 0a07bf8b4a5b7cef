//! HPACK decoder and encoder tests: RFC 7541 Appendix C byte for byte, the error cases, the
//! encoder's output, and random input.

use super::*;

type Fields = Vec<(String, String)>;

fn hex(text: &str) -> Vec<u8> {
    hex::decode(text.replace([' ', '\n'], "")).unwrap()
}

fn fields(list: &[(&str, &str)]) -> Fields {
    list.iter().map(|&(n, v)| (n.to_owned(), v.to_owned())).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn decode(decoder: &mut Decoder, block: &[u8]) -> Result<Fields, HpackError> {
    let mut out = Vec::new();
    decoder.decode(block, 1 << 16, &mut |name, value| {
        out.push((text(name), text(value)));
        Ok(())
    })?;
    Ok(out)
}

/// The dynamic table, newest entry first (the order of the RFC's "Dynamic Table" dumps).
fn dynamic_table(decoder: &Decoder) -> Fields {
    decoder.table.entries.iter().map(|e| (text(e.name()), text(e.value()))).collect()
}

/// Decodes `block` and checks the emitted fields, then the table's entries and size.
fn check_step(decoder: &mut Decoder, block: &str, want: &[(&str, &str)], table: &[(&str, &str)], size: usize) {
    assert_eq!(decode(decoder, &hex(block)).unwrap(), fields(want), "fields of {block}");
    assert_eq!(dynamic_table(decoder), fields(table), "table after {block}");
    assert_eq!(decoder.table_size(), size, "table size after {block}");
}

fn integer(bytes: &[u8], prefix_bits: u8) -> Result<u64, HpackError> {
    let mut cursor = Cursor { rest: bytes };
    let first = cursor.required_byte()?;
    let value = read_integer(&mut cursor, first, prefix_bits)?;
    assert!(cursor.rest.is_empty(), "integer left bytes unread");
    Ok(value)
}

fn encoded_integer(value: usize, prefix_bits: u8) -> Vec<u8> {
    let mut out = Vec::new();
    encode_integer(value, prefix_bits, 0, &mut out);
    out
}

// --- C.1: integer representation -------------------------------------------------------

#[test]
fn c1_1_ten_with_a_5_bit_prefix() {
    assert_eq!(integer(&[0b0000_1010], 5), Ok(10));
    assert_eq!(encoded_integer(10, 5), [0b0000_1010]);
    // Bits above the prefix belong to the representation and must be ignored.
    assert_eq!(integer(&[0b1110_1010], 5), Ok(10));
}

#[test]
fn c1_2_1337_with_a_5_bit_prefix() {
    assert_eq!(integer(&[0x1f, 0x9a, 0x0a], 5), Ok(1337));
    assert_eq!(encoded_integer(1337, 5), [0x1f, 0x9a, 0x0a]);
}

#[test]
fn c1_3_42_starting_at_an_octet_boundary() {
    assert_eq!(integer(&[0x2a], 8), Ok(42));
    assert_eq!(encoded_integer(42, 8), [0x2a]);
}

#[test]
fn integers_round_trip_at_every_prefix_width() {
    for prefix_bits in 1..=8 {
        for value in [0, 1, 30, 31, 126, 127, 128, 254, 255, 256, 16_383, 1 << 20, u32::MAX as usize] {
            let bytes = encoded_integer(value, prefix_bits);
            assert_eq!(integer(&bytes, prefix_bits), Ok(value as u64), "{value} in {prefix_bits} bits");
        }
    }
}

#[test]
fn integers_beyond_32_bits_or_5_continuation_bytes_are_rejected() {
    assert_eq!(integer(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0x0f], 5), Err(HpackError::IntegerOverflow));
    assert_eq!(integer(&encoded_integer(1 << 32, 7), 7), Err(HpackError::IntegerOverflow));
    // Small value, but zero-padded into six continuation bytes.
    assert_eq!(integer(&[0x1f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], 5), Err(HpackError::IntegerOverflow));
    // Five continuation bytes are fine while the value fits.
    assert_eq!(integer(&[0x1f, 0x80, 0x80, 0x80, 0x80, 0x00], 5), Ok(31));
}

#[test]
fn truncated_integers_are_rejected() {
    assert_eq!(integer(&[0x1f], 5), Err(HpackError::Truncated));
    assert_eq!(integer(&[0x1f, 0x9a], 5), Err(HpackError::Truncated));
}

// --- C.2: header field representations -------------------------------------------------

#[test]
fn c2_1_literal_with_indexing() {
    let mut d = Decoder::new(4096);
    check_step(
        &mut d,
        "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
        &[("custom-key", "custom-header")],
        &[("custom-key", "custom-header")],
        55,
    );
}

#[test]
fn c2_2_literal_without_indexing() {
    let mut d = Decoder::new(4096);
    check_step(&mut d, "040c 2f73 616d 706c 652f 7061 7468", &[(":path", "/sample/path")], &[], 0);
}

#[test]
fn c2_3_literal_never_indexed() {
    let mut d = Decoder::new(4096);
    check_step(&mut d, "1008 7061 7373 776f 7264 0673 6563 7265 74", &[("password", "secret")], &[], 0);
}

#[test]
fn c2_4_indexed() {
    let mut d = Decoder::new(4096);
    check_step(&mut d, "82", &[(":method", "GET")], &[], 0);
}

// --- C.3 / C.4: requests, one decoder across three blocks --------------------------------

const REQUEST_1: &[(&str, &str)] =
    &[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")];
const REQUEST_2: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":path", "/"),
    (":authority", "www.example.com"),
    ("cache-control", "no-cache"),
];
const REQUEST_3: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "https"),
    (":path", "/index.html"),
    (":authority", "www.example.com"),
    ("custom-key", "custom-value"),
];
const REQUEST_TABLE_1: &[(&str, &str)] = &[(":authority", "www.example.com")];
const REQUEST_TABLE_2: &[(&str, &str)] = &[("cache-control", "no-cache"), (":authority", "www.example.com")];
const REQUEST_TABLE_3: &[(&str, &str)] =
    &[("custom-key", "custom-value"), ("cache-control", "no-cache"), (":authority", "www.example.com")];

#[test]
fn c3_requests_without_huffman() {
    let mut d = Decoder::new(4096);
    check_step(&mut d, "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d", REQUEST_1, REQUEST_TABLE_1, 57);
    check_step(&mut d, "8286 84be 5808 6e6f 2d63 6163 6865", REQUEST_2, REQUEST_TABLE_2, 110);
    check_step(
        &mut d,
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        REQUEST_3,
        REQUEST_TABLE_3,
        164,
    );
}

#[test]
fn c4_requests_with_huffman() {
    let mut d = Decoder::new(4096);
    check_step(&mut d, "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff", REQUEST_1, REQUEST_TABLE_1, 57);
    check_step(&mut d, "8286 84be 5886 a8eb 1064 9cbf", REQUEST_2, REQUEST_TABLE_2, 110);
    check_step(&mut d, "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf", REQUEST_3, REQUEST_TABLE_3, 164);
}

// --- C.5 / C.6: responses with a 256-byte table, evicting ---------------------------------

const DATE_21: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
const DATE_22: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
const LOCATION: &str = "https://www.example.com";
const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";

/// Decodes the three response blocks of C.5 or C.6 with one decoder made for a 256-byte
/// table, checking the evictions the RFC describes after each.
fn check_response_sequence(blocks: [&str; 3]) {
    let mut d = Decoder::new(256);
    check_step(
        &mut d,
        blocks[0],
        &[(":status", "302"), ("cache-control", "private"), ("date", DATE_21), ("location", LOCATION)],
        &[("location", LOCATION), ("date", DATE_21), ("cache-control", "private"), (":status", "302")],
        222,
    );
    // `:status: 302` is evicted to make room for `:status: 307`.
    check_step(
        &mut d,
        blocks[1],
        &[(":status", "307"), ("cache-control", "private"), ("date", DATE_21), ("location", LOCATION)],
        &[(":status", "307"), ("location", LOCATION), ("date", DATE_21), ("cache-control", "private")],
        222,
    );
    // Several evictions while this one block is decoded.
    check_step(
        &mut d,
        blocks[2],
        &[
            (":status", "200"),
            ("cache-control", "private"),
            ("date", DATE_22),
            ("location", LOCATION),
            ("content-encoding", "gzip"),
            ("set-cookie", COOKIE),
        ],
        &[("set-cookie", COOKIE), ("content-encoding", "gzip"), ("date", DATE_22)],
        215,
    );
}

#[test]
fn c5_responses_without_huffman() {
    check_response_sequence([
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
         2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
         6c65 2e63 6f6d",
        "4803 3330 37c1 c0bf",
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
         54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
         5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
         3d31",
    ]);
}

#[test]
fn c6_responses_with_huffman() {
    check_response_sequence([
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
         2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        "4883 640e ffc1 c0bf",
        "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
         77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
         9587 3160 65c0 03ed 4ee5 b106 3d50 07",
    ]);
}

// --- dynamic table behaviour --------------------------------------------------------------

#[test]
fn an_inserted_entry_is_usable_later_in_the_same_block() {
    let mut d = Decoder::new(4096);
    let block = hex("4003 6162 6301 78 be"); // abc: x (incremental, new name), then index 62
    assert_eq!(decode(&mut d, &block).unwrap(), fields(&[("abc", "x"), ("abc", "x")]));
}

#[test]
fn a_name_can_come_from_the_entry_its_insertion_evicts() {
    // Room for one 44-byte entry only (§4.4's caution about the referenced name).
    let mut d = Decoder::new(70);
    decode(&mut d, &hex("400a 6375 7374 6f6d 2d6b 6579 0276 31")).unwrap(); // custom-key: v1
    assert_eq!(d.table_size(), 44);
    // 0x7e = incremental indexing, name index 62 (custom-key), value "v2".
    assert_eq!(decode(&mut d, &hex("7e02 7632")).unwrap(), fields(&[("custom-key", "v2")]));
    assert_eq!(dynamic_table(&d), fields(&[("custom-key", "v2")]));
    assert_eq!(d.table_size(), 44);
}

#[test]
fn an_entry_larger_than_the_table_empties_it_without_error() {
    let mut d = Decoder::new(100);
    decode(&mut d, &hex("4001 6101 62")).unwrap(); // a: b, 34 bytes
    assert_eq!(d.table_size(), 34);
    let mut block = hex("4001 61 45"); // a: <69 bytes>, 1 + 69 + 32 = 102 > 100
    block.extend_from_slice(&[b'x'; 69]);
    let decoded = decode(&mut d, &block).unwrap();
    assert_eq!(decoded, fields(&[("a", &"x".repeat(69))]));
    assert_eq!(d.table_size(), 0);
    assert!(dynamic_table(&d).is_empty());
}

#[test]
fn size_updates_at_the_start_are_applied_and_evict() {
    let mut d = Decoder::new(4096);
    decode(&mut d, &hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d")).unwrap();
    assert_eq!(d.table_size(), 57);
    // Two updates in a row (0, then 4096 = 0x3f e1 1f), then a field.
    assert_eq!(decode(&mut d, &hex("20 3fe1 1f 82")).unwrap(), fields(&[(":method", "GET")]));
    assert_eq!(d.table_size(), 0);
    assert_eq!(decode(&mut d, &hex("be")), Err(HpackError::BadIndex(62)));
}

#[test]
fn a_smaller_table_keeps_only_what_fits() {
    let mut d = Decoder::new(4096);
    decode(&mut d, &hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d")).unwrap();
    decode(&mut d, &hex("8286 84be 5808 6e6f 2d63 6163 6865")).unwrap();
    assert_eq!(d.table_size(), 110);
    decode(&mut d, &hex("3f22")).unwrap(); // max 31 + 34 = 65: only the newest (53 bytes) stays
    assert_eq!(dynamic_table(&d), fields(&[("cache-control", "no-cache")]));
    assert_eq!(d.table_size(), 53);
}

#[test]
fn size_update_above_the_advertised_maximum_is_rejected() {
    let mut d = Decoder::new(4096);
    assert_eq!(
        decode(&mut d, &hex("3fe2 1f")), // 4097
        Err(HpackError::TableSizeTooLarge { requested: 4097, limit: 4096 })
    );
    decode(&mut d, &hex("3fe1 1f")).unwrap(); // exactly 4096 is fine
}

#[test]
fn size_update_after_a_field_is_rejected() {
    let mut d = Decoder::new(4096);
    assert_eq!(decode(&mut d, &hex("82 20")), Err(HpackError::TableSizeUpdateNotFirst));
}

// --- malformed blocks -------------------------------------------------------------------

#[test]
fn index_zero_is_rejected() {
    let mut d = Decoder::new(4096);
    assert_eq!(decode(&mut d, &hex("80")), Err(HpackError::BadIndex(0)));
}

#[test]
fn indexes_past_the_tables_are_rejected() {
    let mut d = Decoder::new(4096);
    assert_eq!(decode(&mut d, &hex("bd")).unwrap(), fields(&[("www-authenticate", "")]));
    assert_eq!(decode(&mut d, &hex("be")), Err(HpackError::BadIndex(62)));
    // As a literal's name index, too (0x7e = incremental indexing, name 62).
    assert_eq!(decode(&mut d, &hex("7e01 78")), Err(HpackError::BadIndex(62)));
    let mut huge = Vec::new();
    encode_integer(u32::MAX as usize, 7, 0x80, &mut huge);
    assert_eq!(decode(&mut d, &huge), Err(HpackError::BadIndex(u64::from(u32::MAX))));
}

#[test]
fn truncated_blocks_are_rejected() {
    let mut d = Decoder::new(4096);
    for block in ["ff", "41", "4105 61", "40", "4003 6162 63", "1f"] {
        assert_eq!(decode(&mut d, &hex(block)), Err(HpackError::Truncated), "{block}");
    }
}

#[test]
fn strings_longer_than_the_limit_are_rejected_raw_and_huffman() {
    let mut d = Decoder::new(4096);
    let mut reject = |block: &[u8]| d.decode(block, 4, &mut |_, _| Ok(()));
    assert_eq!(reject(&hex("0001 6105 6162 6364 65")), Err(HpackError::StringTooLong)); // a: abcde
    assert_eq!(reject(&hex("0001 6104 6162 6364")), Ok(())); // a: abcd
    let mut block = hex("0001 61");
    let mut value = Vec::new();
    huffman::encode(b"abcde", &mut value);
    block.push(0x80 | value.len() as u8);
    block.extend_from_slice(&value);
    assert_eq!(reject(&block), Err(HpackError::StringTooLong));
    // A huge claimed length is refused before anything is read.
    assert_eq!(reject(&hex("0001 617f ffff ff0f")), Err(HpackError::StringTooLong));
}

#[test]
fn bad_huffman_in_a_block_is_rejected() {
    let mut d = Decoder::new(4096);
    assert_eq!(decode(&mut d, &hex("0001 6181 18")), Err(HpackError::BadHuffman)); // padding 000
    assert_eq!(decode(&mut d, &hex("0001 6184 ffff ffff")), Err(HpackError::HuffmanEos));
}

#[test]
fn an_error_from_emit_stops_decoding_and_is_returned() {
    let mut d = Decoder::new(4096);
    let mut calls = 0;
    let result = d.decode(&hex("8286 84"), 1024, &mut |name, _| {
        calls += 1;
        if name == b":scheme" {
            Err(HpackError::Rejected("no scheme please"))
        } else {
            Ok(())
        }
    });
    assert_eq!(result, Err(HpackError::Rejected("no scheme please")));
    assert_eq!(calls, 2);
}

#[test]
fn a_new_decoder_allocates_nothing() {
    let d = Decoder::new(4096);
    assert_eq!(d.table.entries.capacity(), 0);
    assert_eq!(d.name_scratch.capacity() + d.value_scratch.capacity(), 0);
    assert_eq!(d.table_size(), 0);
}

// --- encoder -------------------------------------------------------------------------------

fn status_bytes(status: u16) -> Vec<u8> {
    let mut out = Vec::new();
    encode_status(status, &mut out);
    out
}

fn literal_bytes(name: &str, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_literal(name, value, &mut out);
    out
}

#[test]
fn statuses_in_the_static_table_are_one_byte() {
    let expected = [(200, 0x88), (204, 0x89), (206, 0x8a), (304, 0x8b), (400, 0x8c), (404, 0x8d), (500, 0x8e)];
    for (status, byte) in expected {
        assert_eq!(status_bytes(status), [byte], "{status}");
    }
}

#[test]
fn other_statuses_are_literals_with_name_index_8() {
    assert_eq!(status_bytes(302), [0x08, 0x03, b'3', b'0', b'2']);
    assert_eq!(status_bytes(101), [0x08, 0x03, b'1', b'0', b'1']);
    assert_eq!(status_bytes(7), [0x08, 0x01, b'7']);
    assert_eq!(status_bytes(u16::MAX), [0x08, 0x05, b'6', b'5', b'5', b'3', b'5']);
}

#[test]
fn literal_with_a_static_name_uses_its_index() {
    // content-type is index 31: 0000 1111 (15), then 31 - 15 = 16.
    let mut want = vec![0x0f, 0x10, 0x10];
    want.extend_from_slice(b"application/json");
    assert_eq!(literal_bytes("content-type", b"application/json"), want);
    // :status is index 8 (the first :status entry), fits the 4-bit prefix.
    assert_eq!(literal_bytes(":status", b"302"), [0x08, 0x03, b'3', b'0', b'2']);
}

#[test]
fn literal_with_a_new_name_spells_it_out() {
    let mut want = vec![0x00, 0x08];
    want.extend_from_slice(b"x-custom");
    want.extend_from_slice(&[0x01, b'v']);
    assert_eq!(literal_bytes("x-custom", b"v"), want);
}

#[test]
fn encoder_output_decodes_back_and_leaves_the_table_alone() {
    let long_value = vec![b'z'; 300]; // length needs a continuation byte
    let mut block = Vec::new();
    for status in [200, 302, 404, 418, 500] {
        encode_status(status, &mut block);
    }
    encode_literal("content-type", b"application/json", &mut block);
    encode_literal("x-tailscale-thing", b"", &mut block);
    encode_literal("www-authenticate", &long_value, &mut block);
    let mut d = Decoder::new(4096);
    let long = text(&long_value);
    assert_eq!(
        decode(&mut d, &block).unwrap(),
        fields(&[
            (":status", "200"),
            (":status", "302"),
            (":status", "404"),
            (":status", "418"),
            (":status", "500"),
            ("content-type", "application/json"),
            ("x-tailscale-thing", ""),
            ("www-authenticate", &long),
        ])
    );
    assert_eq!(d.table_size(), 0);
}

// --- random input --------------------------------------------------------------------------

/// Marsaglia's xorshift64: deterministic, so a failure reproduces.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> usize {
        (self.next() % bound) as usize
    }
}

#[test]
fn random_and_mutated_blocks_never_panic() {
    let seeds = [
        hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"),
        hex("4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6"),
        hex("3fe1 1f 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65 be bf"),
    ];
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut decoders = [Decoder::new(4096), Decoder::new(256), Decoder::new(0)];
    for round in 0..30_000 {
        let block: Vec<u8> = if round % 2 == 0 {
            (0..rng.below(48)).map(|_| rng.next() as u8).collect()
        } else {
            let mut block = seeds[rng.below(seeds.len() as u64)].clone();
            for _ in 0..=rng.below(4) {
                let position = rng.below(block.len() as u64);
                block[position] = rng.next() as u8;
            }
            block.truncate(rng.below(block.len() as u64 + 1));
            block
        };
        let decoder = &mut decoders[round % 3];
        let max_string_len = rng.below(64);
        let _ = decoder.decode(&block, max_string_len, &mut |_, _| Ok(()));
        assert!(decoder.table_size() <= decoder.table.max_size);
        assert!(decoder.table.max_size <= decoder.settings_limit);
    }
}

// --- properties ----------------------------------------------------------------------------

/// A header name as HTTP/2 allows it (lowercase token characters).
const NAME: &str = "[a-z0-9!#$%&'*+.^_`|~-]{1,20}";

/// A literal with incremental indexing and a new name, both strings Huffman-coded: what a
/// client's encoder writes for a header it will send again.
fn huffman_literal(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.push(0x40);
    for string in [name, value] {
        let mut coded = Vec::new();
        crate::huffman::encode(string, &mut coded);
        encode_integer(coded.len(), 7, 0x80, out);
        out.extend_from_slice(&coded);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

    /// What our encoder writes decodes to the same fields, and never touches the table.
    #[test]
    fn fields_we_encode_decode_back(
        status in 100u16..1000,
        list in proptest::collection::vec((NAME, proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)), 0..8),
    ) {
        let mut block = Vec::new();
        encode_status(status, &mut block);
        for (name, value) in &list {
            encode_literal(name, value, &mut block);
        }
        let mut got = Vec::new();
        let mut d = Decoder::new(4096);
        d.decode(&block, usize::MAX, &mut |n, v| {
            got.push((n.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        let mut want = vec![(b":status".to_vec(), status.to_string().into_bytes())];
        want.extend(list.into_iter().map(|(n, v)| (n.into_bytes(), v)));
        proptest::prop_assert_eq!(got, want);
        proptest::prop_assert_eq!(d.table_size(), 0);
    }

    /// Huffman-coded literals that join the table decode to themselves, and the table then
    /// gives them back by index, newest first (index 62 is the newest entry, RFC 7541 §2.3.3).
    #[test]
    fn indexed_huffman_literals_come_back_by_index(
        list in proptest::collection::vec((NAME, "[ -~]{0,40}"), 1..8),
    ) {
        let mut block = Vec::new();
        for (name, value) in &list {
            huffman_literal(name.as_bytes(), value.as_bytes(), &mut block);
        }
        let mut d = Decoder::new(4096);
        let want: Fields = list.clone();
        proptest::prop_assert_eq!(decode(&mut d, &block).unwrap(), want.clone());
        let size: usize = list.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
        proptest::prop_assert_eq!(d.table_size(), size);
        let mut by_index = Vec::new();
        for i in 0..list.len() {
            encode_integer(62 + i, 7, 0x80, &mut by_index);
        }
        let mut newest_first = want;
        newest_first.reverse();
        proptest::prop_assert_eq!(decode(&mut d, &by_index).unwrap(), newest_first);
    }
}
