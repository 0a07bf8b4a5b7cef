//! HPACK (RFC 7541) for our HTTP/2 server: the [`Decoder`] for request header blocks (integer
//! and string literals, the static table, the dynamic table with its eviction and size
//! updates), and a tiny stateless encoder for responses that only ever writes literals
//! without indexing. Huffman strings are decoded by [`crate::huffman`].

use std::collections::VecDeque;

use crate::huffman;

/// Bytes of bookkeeping charged per dynamic table entry on top of name and value (§4.1).
const ENTRY_OVERHEAD: usize = 32;
/// Largest integer we accept (§5.1 lets us set a limit): anything meaningful in a header
/// block (an index, a length, a table size) fits in 32 bits.
const MAX_INTEGER: u64 = u32::MAX as u64;
/// Continuation bytes that can carry a 32-bit value; more means padding or an attack.
const MAX_CONTINUATION_BYTES: usize = 5;

/// Why a header block could not be decoded. Any error is a connection error
/// (COMPRESSION_ERROR) for the caller: decoding stops at the first one, so the dynamic table
/// no longer matches the peer's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("header block ends inside a field representation")]
    Truncated,
    #[error("HPACK integer exceeds 2^32-1 or has more than 5 continuation bytes")]
    IntegerOverflow,
    #[error("header table index {0} is 0 or past the end of the static and dynamic tables")]
    BadIndex(u64),
    #[error("dynamic table size update to {requested} exceeds the advertised {limit}")]
    TableSizeTooLarge { requested: u64, limit: usize },
    #[error("dynamic table size update after the first header field of the block")]
    TableSizeUpdateNotFirst,
    #[error("Huffman string padding is longer than 7 bits or not all ones")]
    BadHuffman,
    #[error("EOS symbol inside a Huffman-encoded string")]
    HuffmanEos,
    #[error("string literal exceeds the allowed length")]
    StringTooLong,
    #[error("header field rejected: {0}")]
    Rejected(&'static str),
}

impl From<huffman::HuffmanError> for HpackError {
    fn from(err: huffman::HuffmanError) -> Self {
        match err {
            huffman::HuffmanError::BadPadding => HpackError::BadHuffman,
            huffman::HuffmanError::Eos => HpackError::HuffmanEos,
            huffman::HuffmanError::TooLong => HpackError::StringTooLong,
        }
    }
}

/// The callback [`Decoder::decode`] hands each field to, as `(name, value)`; an error from it
/// (typically [`HpackError::Rejected`]) ends decoding.
pub type EmitField<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), HpackError> + 'a;

/// RFC 7541 Appendix A, the static table: index `i` (1-based) is `STATIC_TABLE[i - 1]`.
#[rustfmt::skip]
const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),                            // 1
    (b":method", b"GET"),                            // 2
    (b":method", b"POST"),                           // 3
    (b":path", b"/"),                                // 4
    (b":path", b"/index.html"),                      // 5
    (b":scheme", b"http"),                           // 6
    (b":scheme", b"https"),                          // 7
    (b":status", b"200"),                            // 8
    (b":status", b"204"),                            // 9
    (b":status", b"206"),                            // 10
    (b":status", b"304"),                            // 11
    (b":status", b"400"),                            // 12
    (b":status", b"404"),                            // 13
    (b":status", b"500"),                            // 14
    (b"accept-charset", b""),                        // 15
    (b"accept-encoding", b"gzip, deflate"),          // 16
    (b"accept-language", b""),                       // 17
    (b"accept-ranges", b""),                         // 18
    (b"accept", b""),                                // 19
    (b"access-control-allow-origin", b""),           // 20
    (b"age", b""),                                   // 21
    (b"allow", b""),                                 // 22
    (b"authorization", b""),                         // 23
    (b"cache-control", b""),                         // 24
    (b"content-disposition", b""),                   // 25
    (b"content-encoding", b""),                      // 26
    (b"content-language", b""),                      // 27
    (b"content-length", b""),                        // 28
    (b"content-location", b""),                      // 29
    (b"content-range", b""),                         // 30
    (b"content-type", b""),                          // 31
    (b"cookie", b""),                                // 32
    (b"date", b""),                                  // 33
    (b"etag", b""),                                  // 34
    (b"expect", b""),                                // 35
    (b"expires", b""),                               // 36
    (b"from", b""),                                  // 37
    (b"host", b""),                                  // 38
    (b"if-match", b""),                              // 39
    (b"if-modified-since", b""),                     // 40
    (b"if-none-match", b""),                         // 41
    (b"if-range", b""),                              // 42
    (b"if-unmodified-since", b""),                   // 43
    (b"last-modified", b""),                         // 44
    (b"link", b""),                                  // 45
    (b"location", b""),                              // 46
    (b"max-forwards", b""),                          // 47
    (b"proxy-authenticate", b""),                    // 48
    (b"proxy-authorization", b""),                   // 49
    (b"range", b""),                                 // 50
    (b"referer", b""),                               // 51
    (b"refresh", b""),                               // 52
    (b"retry-after", b""),                           // 53
    (b"server", b""),                                // 54
    (b"set-cookie", b""),                            // 55
    (b"strict-transport-security", b""),             // 56
    (b"transfer-encoding", b""),                     // 57
    (b"user-agent", b""),                            // 58
    (b"vary", b""),                                  // 59
    (b"via", b""),                                   // 60
    (b"www-authenticate", b""),                      // 61
];

/// One dynamic table entry: name and value share one allocation.
#[derive(Debug)]
struct Entry {
    bytes: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    fn new(name: &[u8], value: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(name.len() + value.len());
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(value);
        Self { bytes: bytes.into_boxed_slice(), name_len: name.len() }
    }

    fn name(&self) -> &[u8] {
        self.bytes.get(..self.name_len).unwrap_or_default()
    }

    fn value(&self) -> &[u8] {
        self.bytes.get(self.name_len..).unwrap_or_default()
    }

    /// The entry's size as §4.1 counts it.
    fn size(&self) -> usize {
        self.bytes.len() + ENTRY_OVERHEAD
    }
}

/// The dynamic table (§2.3.2, §4): newest entry first, so HPACK index 62 is `entries[0]`.
#[derive(Debug)]
struct DynamicTable {
    entries: VecDeque<Entry>,
    /// Sum of the entries' §4.1 sizes.
    size: usize,
    /// The current maximum, as last set by the peer's size updates.
    max_size: usize,
}

impl DynamicTable {
    fn new(max_size: usize) -> Self {
        Self { entries: VecDeque::new(), size: 0, max_size }
    }

    fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict_until_size_at_most(max_size);
    }

    /// Adds `entry` as the newest, evicting from the oldest end first (§4.4). An entry
    /// larger than the whole table is not an error: it just leaves the table empty.
    fn insert(&mut self, entry: Entry) {
        let Some(room_for_others) = self.max_size.checked_sub(entry.size()) else {
            self.entries.clear();
            self.size = 0;
            return;
        };
        self.evict_until_size_at_most(room_for_others);
        self.size += entry.size();
        self.entries.push_front(entry);
    }

    fn evict_until_size_at_most(&mut self, target: usize) {
        while self.size > target {
            let Some(oldest) = self.entries.pop_back() else {
                break;
            };
            self.size -= oldest.size();
        }
    }
}

/// The field at HPACK `index` in the combined index space (§2.3.3): 1..=61 is the static
/// table, 62 and up the dynamic table, newest first.
fn lookup(dynamic: &DynamicTable, index: u64) -> Result<(&[u8], &[u8]), HpackError> {
    let position = usize::try_from(index).ok().and_then(|i| i.checked_sub(1));
    let Some(position) = position else {
        return Err(HpackError::BadIndex(index));
    };
    if let Some(&(name, value)) = STATIC_TABLE.get(position) {
        return Ok((name, value));
    }
    dynamic
        .entries
        .get(position - STATIC_TABLE.len())
        .map(|entry| (entry.name(), entry.value()))
        .ok_or(HpackError::BadIndex(index))
}

/// The unread rest of a header block.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn next_byte(&mut self) -> Option<u8> {
        let (&byte, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(byte)
    }

    /// The next byte of a representation that has started, so running out is an error.
    fn required_byte(&mut self) -> Result<u8, HpackError> {
        self.next_byte().ok_or(HpackError::Truncated)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], HpackError> {
        if len > self.rest.len() {
            return Err(HpackError::Truncated);
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }
}

/// Reads an integer (§5.1) whose first byte, `first`, was already read; its value starts in
/// the low `prefix_bits` (1..=8) bits:
/// ```text
///   first:         ? ? ? | prefix (N bits)     value if prefix < 2^N - 1, else 2^N - 1 + ...
///   continuation:  C | 7 bits, least significant group first, while C = 1
/// ```
fn read_integer(cursor: &mut Cursor<'_>, first: u8, prefix_bits: u8) -> Result<u64, HpackError> {
    let prefix_max = (1u64 << prefix_bits) - 1;
    let mut value = u64::from(first) & prefix_max;
    if value < prefix_max {
        return Ok(value);
    }
    for group in 0..MAX_CONTINUATION_BYTES {
        let byte = cursor.required_byte()?;
        // At most 127 << 28 per step, so `value` stays far below u64::MAX before the check.
        value += u64::from(byte & 0x7f) << (7 * group);
        if value > MAX_INTEGER {
            return Err(HpackError::IntegerOverflow);
        }
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(HpackError::IntegerOverflow)
}

/// Reads a string literal (§5.2):
/// ```text
///   H | length (7+) | data (length bytes; Huffman-coded if H = 1)
/// ```
/// Raw strings are borrowed from the block; Huffman strings are decoded into `scratch`.
/// Either way the (decoded) string may be at most `max_len` bytes.
fn read_string<'b: 'r, 's: 'r, 'r>(
    cursor: &mut Cursor<'b>,
    scratch: &'s mut Vec<u8>,
    max_len: usize,
) -> Result<&'r [u8], HpackError> {
    let first = cursor.required_byte()?;
    let is_huffman = first & 0x80 != 0;
    let len = read_integer(cursor, first, 7)?;
    let len = usize::try_from(len).map_err(|_| HpackError::IntegerOverflow)?;
    if !is_huffman && len > max_len {
        return Err(HpackError::StringTooLong);
    }
    let data = cursor.take(len)?;
    if !is_huffman {
        return Ok(data);
    }
    scratch.clear();
    huffman::decode(data, max_len, scratch)?;
    Ok(scratch)
}

/// The five representations a header block is made of, told apart by the first byte's
/// leading bits (§6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Representation {
    /// `1 | index (7+)` (§6.1)
    Indexed,
    /// `0 1 | name index (6+)`, then name if index 0, then value (§6.2.1)
    LiteralIncrementalIndexing,
    /// `0 0 1 | max size (5+)` (§6.3)
    SizeUpdate,
    /// `0 0 0 1 | name index (4+)`, then name if index 0, then value (§6.2.3)
    LiteralNeverIndexed,
    /// `0 0 0 0 | name index (4+)`, then name if index 0, then value (§6.2.2)
    LiteralWithoutIndexing,
}

impl Representation {
    fn of(first: u8) -> Self {
        match first {
            0x80..=0xff => Self::Indexed,
            0x40..=0x7f => Self::LiteralIncrementalIndexing,
            0x20..=0x3f => Self::SizeUpdate,
            0x10..=0x1f => Self::LiteralNeverIndexed,
            0x00..=0x0f => Self::LiteralWithoutIndexing,
        }
    }

    /// Width of the integer prefix in the first byte.
    fn prefix_bits(self) -> u8 {
        match self {
            Self::Indexed => 7,
            Self::LiteralIncrementalIndexing => 6,
            Self::SizeUpdate => 5,
            Self::LiteralNeverIndexed | Self::LiteralWithoutIndexing => 4,
        }
    }
}

/// Decoding state for one connection's request header blocks: the dynamic table, the table
/// size limit we advertised, and reusable buffers for Huffman-decoded strings.
#[derive(Debug)]
pub struct Decoder {
    table: DynamicTable,
    /// SETTINGS_HEADER_TABLE_SIZE as we advertised it: the ceiling for size updates (§6.3).
    settings_limit: usize,
    name_scratch: Vec<u8>,
    value_scratch: Vec<u8>,
}

impl Decoder {
    /// `max_table_size` is the SETTINGS_HEADER_TABLE_SIZE we advertise (4096).
    /// Allocates nothing until the first insertion.
    pub fn new(max_table_size: usize) -> Self {
        Self {
            table: DynamicTable::new(max_table_size),
            settings_limit: max_table_size,
            name_scratch: Vec::new(),
            value_scratch: Vec::new(),
        }
    }

    /// Decodes one complete header block (after the caller joined HEADERS + CONTINUATION
    /// fragments), calling `emit(name, value)` for every field in order. `max_string_len`
    /// bounds any single literal string (raw or after Huffman decoding) so a peer cannot make
    /// us allocate without bound.
    ///
    /// Stops at the first error, including one `emit` returns.
    pub fn decode(&mut self, block: &[u8], max_string_len: usize, emit: &mut EmitField<'_>) -> Result<(), HpackError> {
        let mut cursor = Cursor { rest: block };
        let mut seen_field = false;
        while let Some(first) = cursor.next_byte() {
            let representation = Representation::of(first);
            match representation {
                // §4.2: size updates belong at the start of a block, before any field.
                Representation::SizeUpdate if seen_field => return Err(HpackError::TableSizeUpdateNotFirst),
                Representation::SizeUpdate => self.apply_size_update(&mut cursor, first)?,
                Representation::Indexed => self.decode_indexed(&mut cursor, first, emit)?,
                literal => self.decode_literal(&mut cursor, first, literal, max_string_len, emit)?,
            }
            seen_field |= representation != Representation::SizeUpdate;
        }
        Ok(())
    }

    /// Bytes currently held by the dynamic table per RFC 7541 §4.1 (name + value + 32 per entry).
    pub fn table_size(&self) -> usize {
        self.table.size
    }

    /// `0 0 1 | max size (5+)`: the peer's encoder resizes its table, and so must we (§6.3).
    fn apply_size_update(&mut self, cursor: &mut Cursor<'_>, first: u8) -> Result<(), HpackError> {
        let requested = read_integer(cursor, first, Representation::SizeUpdate.prefix_bits())?;
        let new_max = usize::try_from(requested)
            .ok()
            .filter(|&size| size <= self.settings_limit)
            .ok_or(HpackError::TableSizeTooLarge { requested, limit: self.settings_limit })?;
        self.table.set_max_size(new_max);
        Ok(())
    }

    /// `1 | index (7+)`: a whole field from the static or dynamic table (§6.1).
    fn decode_indexed(&self, cursor: &mut Cursor<'_>, first: u8, emit: &mut EmitField<'_>) -> Result<(), HpackError> {
        let index = read_integer(cursor, first, Representation::Indexed.prefix_bits())?;
        let (name, value) = lookup(&self.table, index)?;
        emit(name, value)
    }

    /// The three literal representations (§6.2), which differ only in the prefix width and
    /// whether the field joins the dynamic table:
    /// ```text
    ///   prefix | name index (N+) | [name string, if index = 0] | value string
    /// ```
    fn decode_literal(
        &mut self,
        cursor: &mut Cursor<'_>,
        first: u8,
        representation: Representation,
        max_string_len: usize,
        emit: &mut EmitField<'_>,
    ) -> Result<(), HpackError> {
        let name_index = read_integer(cursor, first, representation.prefix_bits())?;
        let name = if name_index == 0 {
            read_string(cursor, &mut self.name_scratch, max_string_len)?
        } else {
            lookup(&self.table, name_index)?.0
        };
        let value = read_string(cursor, &mut self.value_scratch, max_string_len)?;
        if representation != Representation::LiteralIncrementalIndexing {
            return emit(name, value);
        }
        // Copy before inserting: the name may belong to an entry this insertion evicts (§4.4).
        let entry = Entry::new(name, value);
        emit(entry.name(), entry.value())?;
        self.table.insert(entry);
        Ok(())
    }
}

/// Appends a header field as "Literal Header Field without Indexing — Indexed Name" when
/// `name` is in the static table, otherwise "without Indexing — New Name"; never Huffman, never
/// indexed (so the peer's decoder table is never touched). Names must be lowercase.
///
/// ```text
///   indexed name:  0 0 0 0 | name index (4+) | 0 | value len (7+) | value
///   new name:      0x00 | 0 | name len (7+) | name | 0 | value len (7+) | value
/// ```
pub fn encode_literal(name: &str, value: &[u8], out: &mut Vec<u8>) {
    debug_assert!(!name.bytes().any(|b| b.is_ascii_uppercase()), "HTTP/2 header names must be lowercase: {name}");
    match static_name_index(name.as_bytes()) {
        Some(index) => encode_integer(index, 4, 0x00, out),
        None => {
            out.push(0x00);
            encode_raw_string(name.as_bytes(), out);
        }
    }
    encode_raw_string(value, out);
}

/// Appends `:status` as a fully indexed static entry when it is one of 200, 204, 206, 304,
/// 400, 404, 500, otherwise as a literal with indexed name (index 8).
pub fn encode_status(status: u16, out: &mut Vec<u8>) {
    let mut digits_buf = [0u8; 5];
    let digits = decimal_digits(status, &mut digits_buf);
    match static_field_index(b":status", digits) {
        // `1 | index (7+)`
        Some(index) => encode_integer(index, 7, 0x80, out),
        None => encode_literal(":status", digits, out),
    }
}

/// The first static table index whose name is `name` (1-based).
fn static_name_index(name: &[u8]) -> Option<usize> {
    STATIC_TABLE.iter().position(|&(n, _)| n == name).map(|position| position + 1)
}

/// The static table index holding exactly `name: value` (1-based).
fn static_field_index(name: &[u8], value: &[u8]) -> Option<usize> {
    STATIC_TABLE.iter().position(|&(n, v)| n == name && v == value).map(|position| position + 1)
}

/// Writes `value` in decimal into `buf`, returning the digits.
fn decimal_digits(mut value: u16, buf: &mut [u8; 5]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buf[start..];
        }
    }
}

/// Appends `value` as an HPACK integer (§5.1) with an N-bit prefix, `flags` holding the
/// representation bits above the prefix.
fn encode_integer(value: usize, prefix_bits: u8, flags: u8, out: &mut Vec<u8>) {
    let prefix_max = (1usize << prefix_bits) - 1;
    if value < prefix_max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | prefix_max as u8);
    let mut rest = value - prefix_max;
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Appends a string literal with H = 0 (§5.2): `0 | length (7+) | bytes`.
fn encode_raw_string(bytes: &[u8], out: &mut Vec<u8>) {
    encode_integer(bytes.len(), 7, 0x00, out);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
#[path = "hpack_tests.rs"]
mod tests;
