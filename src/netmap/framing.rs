//! Map response body framing: the `/machine/map` HTTP/2 body is a sequence of messages,
//! each one MapResponse JSON, compressed as exactly one zstd frame (RFC 8878) when the
//! request said `"Compress": "zstd"`, as it is:
//! ```text
//! +----------------------+----------------------------------------------+
//! | len (u32 LITTLE-end) | zstd frame of the JSON, or the JSON (len bytes) |
//! +----------------------+----------------------------------------------+
//! ```
//! Keep-alives are framed the same way. (DERP lengths are big-endian; this one is not.)
//! The Go client always asks for zstd; tailscale-rs (0.6) sends no `Compress` and reads
//! plain JSON, which is what Tailscale's own servers answer such a request with.

use std::cell::RefCell;
use std::thread::LocalKey;

use bytes::{Buf, Bytes, BytesMut};

use crate::netmap::tailcfg::MapResponse;

/// Largest message (compressed or not) the decoder accepts; testcontrol refuses > 16 MiB.
pub const MAX_MESSAGE: usize = 16 << 20;
/// zstd level for map messages: speed matters more than ratio at fan-out.
const ZSTD_LEVEL: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum FramingError {
    #[error("message length {0} exceeds the limit")]
    TooLarge(usize),
    #[error("body is not exactly one complete zstd frame")]
    BadFrame,
    #[error("zstd: {0}")]
    Zstd(#[from] std::io::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("body ended inside a message")]
    Truncated,
}

thread_local! {
    /// One zstd context per thread, not per stream: a context sized for a full map weighs
    /// 60-200 KiB, and every message is an independent frame, so nothing is lost by sharing.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    /// The reading side's context, likewise per thread: a client reading a thousand streams
    /// (the load generator) would otherwise build a context for every message it decodes.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's context from `slot`, creating it on first use.
fn with_thread_context<C, R>(
    slot: &'static LocalKey<RefCell<Option<C>>>,
    create: impl FnOnce() -> std::io::Result<C>,
    f: impl FnOnce(&mut C) -> std::io::Result<R>,
) -> std::io::Result<R> {
    slot.with(|cell| {
        let mut slot = cell.borrow_mut();
        let context = match slot.as_mut() {
            Some(context) => context,
            None => slot.insert(create()?),
        };
        f(context)
    })
}

/// How the messages of one map response are framed, as the request asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Each message is one zstd frame (`"Compress": "zstd"`).
    Zstd,
    /// Each message is its JSON (no `Compress`, or anything but `zstd`).
    Plain,
}

impl Compression {
    /// What a MapRequest's `Compress` field asks for.
    pub fn requested(compress: &str) -> Self {
        if compress == "zstd" {
            Self::Zstd
        } else {
            Self::Plain
        }
    }
}

/// One framed message: length prefix + zstd(JSON of `msg`).
pub fn encode(msg: &MapResponse) -> Result<Bytes, FramingError> {
    encode_json(&serde_json::to_vec(msg)?)
}

/// Frames JSON that is already serialized.
pub fn encode_json(json: &[u8]) -> Result<Bytes, FramingError> {
    let compressed = with_thread_context(
        &COMPRESSOR,
        || zstd::bulk::Compressor::new(ZSTD_LEVEL),
        |compressor| compressor.compress(json),
    )?;
    let len = u32::try_from(compressed.len()).map_err(|_| FramingError::TooLarge(compressed.len()))?;
    let mut out = Vec::with_capacity(4 + compressed.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&compressed);
    Ok(Bytes::from(out))
}

/// Frames JSON as it is: length prefix + the JSON.
pub fn encode_plain_json(json: &[u8]) -> Result<Bytes, FramingError> {
    let len = u32::try_from(json.len()).map_err(|_| FramingError::TooLarge(json.len()))?;
    let mut out = Vec::with_capacity(4 + json.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(json);
    Ok(Bytes::from(out))
}

/// A map message on its way to one session: built for that session alone, or framed once
/// and shared (the same bytes) by every session that gets an identical message.
#[derive(Debug, Clone)]
pub enum MapMessage {
    Response(Box<MapResponse>),
    Framed(Bytes),
}

impl MapMessage {
    /// The bytes that go on the wire (length prefix + zstd frame).
    pub fn framed(&self) -> Result<Bytes, FramingError> {
        match self {
            Self::Response(msg) => encode(msg),
            Self::Framed(bytes) => Ok(bytes.clone()),
        }
    }

    /// The bytes that go on the wire for a stream framed as `compression`. A shared frame is
    /// zstd; a plain stream (rare: clients that do not ask for zstd) gets it decompressed.
    pub fn framed_as(&self, compression: Compression) -> Result<Bytes, FramingError> {
        match (compression, self) {
            (Compression::Zstd, _) => self.framed(),
            (Compression::Plain, Self::Response(msg)) => encode_plain_json(&serde_json::to_vec(msg)?),
            (Compression::Plain, Self::Framed(bytes)) => {
                let frame = bytes.get(4..).ok_or(FramingError::Truncated)?;
                encode_plain_json(&decompress_one_frame(frame)?)
            }
        }
    }

    /// The message as a client would read it (decodes shared frames).
    pub fn into_response(self) -> Result<MapResponse, FramingError> {
        match self {
            Self::Response(msg) => Ok(*msg),
            Self::Framed(bytes) => {
                let mut decoder = MapDecoder::new();
                decoder.push(&bytes);
                decoder.next_message()?.ok_or(FramingError::Truncated)
            }
        }
    }
}

impl From<MapResponse> for MapMessage {
    fn from(msg: MapResponse) -> Self {
        Self::Response(Box::new(msg))
    }
}

/// Incremental decoder of a map body (used by our client): push bytes, pop messages.
#[derive(Default)]
pub struct MapDecoder {
    buf: BytesMut,
}

impl MapDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// True when no partial message is pending (a clean place for the body to end).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next whole message's JSON, `Ok(None)` if more bytes are needed.
    pub fn next_json(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > MAX_MESSAGE {
            return Err(FramingError::TooLarge(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        self.buf.advance(4);
        let frame = self.buf.split_to(len);
        decompress_one_frame(&frame).map(Some)
    }

    /// The next whole message, parsed as `M` (a `MapResponse`, or a narrower view of one).
    pub fn next_message<M: serde::de::DeserializeOwned>(&mut self) -> Result<Option<M>, FramingError> {
        match self.next_json()? {
            Some(json) => Ok(Some(serde_json::from_slice(&json)?)),
            None => Ok(None),
        }
    }
}

/// Decompresses `data`, which must be exactly one complete zstd frame, to at most
/// [`MAX_MESSAGE`] bytes.
pub fn decompress_one_frame(data: &[u8]) -> Result<Vec<u8>, FramingError> {
    match zstd::zstd_safe::find_frame_compressed_size(data) {
        Ok(size) if size == data.len() => {}
        _ => return Err(FramingError::BadFrame),
    }
    // A frame that states its content size is decoded in one call into a buffer of exactly
    // that size; one that does not (or states too much) goes through the bounded reader.
    match zstd::zstd_safe::get_frame_content_size(data) {
        Ok(Some(size)) if size <= MAX_MESSAGE as u64 => decompress_sized(data, size as usize),
        Ok(Some(size)) => Err(FramingError::TooLarge(usize::try_from(size).unwrap_or(usize::MAX))),
        _ => decompress_unsized(data),
    }
}

fn decompress_sized(data: &[u8], size: usize) -> Result<Vec<u8>, FramingError> {
    let out = with_thread_context(&DECOMPRESSOR, zstd::bulk::Decompressor::new, |decompressor| {
        decompressor.decompress(data, size)
    })?;
    if out.len() != size {
        return Err(FramingError::BadFrame);
    }
    Ok(out)
}

fn decompress_unsized(data: &[u8]) -> Result<Vec<u8>, FramingError> {
    use std::io::Read;
    let decoder = zstd::stream::read::Decoder::with_buffer(data)?.single_frame();
    let mut out = Vec::new();
    decoder.take(MAX_MESSAGE as u64 + 1).read_to_end(&mut out)?;
    if out.len() > MAX_MESSAGE {
        return Err(FramingError::TooLarge(out.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_response() -> MapResponse {
        serde_json::from_str(include_str!("../../tests/fixtures/map_response_first.json")).unwrap()
    }

    #[test]
    fn keep_alive_has_a_little_endian_length_and_a_zstd_frame() {
        let framed = encode(&MapResponse::keep_alive()).unwrap();
        let len = u32::from_le_bytes(framed[..4].try_into().unwrap()) as usize;
        assert_eq!(len, framed.len() - 4);
        assert_eq!(&framed[4..8], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
        assert_eq!(zstd::decode_all(&framed[4..]).unwrap(), br#"{"KeepAlive":true}"#);
    }

    #[test]
    fn messages_split_anywhere_decode_in_order() {
        let mut body = Vec::new();
        body.extend_from_slice(&encode(&first_response()).unwrap());
        body.extend_from_slice(&encode(&MapResponse::keep_alive()).unwrap());
        let mut dec = MapDecoder::new();
        let mut got: Vec<MapResponse> = Vec::new();
        for byte in body {
            dec.push(&[byte]);
            while let Some(msg) = dec.next_message().unwrap() {
                got.push(msg);
            }
        }
        assert!(dec.is_empty());
        assert_eq!(got, vec![first_response(), MapResponse::keep_alive()]);
    }

    #[test]
    fn bogus_length_is_refused_before_buffering() {
        let mut dec = MapDecoder::new();
        dec.push(&u32::MAX.to_le_bytes());
        assert!(matches!(dec.next_json(), Err(FramingError::TooLarge(_))));
        // A big-endian length of a small message reads as huge little-endian: refused too.
        let mut dec = MapDecoder::new();
        dec.push(&100u32.to_be_bytes());
        assert!(matches!(dec.next_json(), Err(FramingError::TooLarge(_))));
    }

    #[test]
    fn bad_zstd_and_extra_bytes_are_errors() {
        let mut dec = MapDecoder::new();
        dec.push(&5u32.to_le_bytes());
        dec.push(b"hello");
        assert!(matches!(dec.next_json(), Err(FramingError::BadFrame)));

        // Two frames inside one length: not "one complete frame".
        let one = zstd::encode_all(&b"{}"[..], 1).unwrap();
        let mut two = one.clone();
        two.extend_from_slice(&one);
        let mut dec = MapDecoder::new();
        dec.push(&(two.len() as u32).to_le_bytes());
        dec.push(&two);
        assert!(matches!(dec.next_json(), Err(FramingError::BadFrame)));

        // A truncated frame inside a correct length.
        let cut = &one[..one.len() - 2];
        let mut dec = MapDecoder::new();
        dec.push(&(cut.len() as u32).to_le_bytes());
        dec.push(cut);
        assert!(dec.next_json().is_err());
    }

    #[test]
    fn valid_frame_with_invalid_json_is_a_json_error() {
        let mut dec = MapDecoder::new();
        dec.push(&encode_json(b"{not json").unwrap());
        assert!(matches!(dec.next_message::<MapResponse>(), Err(FramingError::Json(_))));
    }

    #[test]
    fn plain_framing_is_the_json_behind_a_length() {
        let msg = first_response();
        let json = serde_json::to_vec(&msg).unwrap();
        for message in [MapMessage::from(msg.clone()), MapMessage::Framed(encode(&msg).unwrap())] {
            let plain = message.framed_as(Compression::Plain).unwrap();
            assert_eq!(&plain[..4], &(json.len() as u32).to_le_bytes());
            assert_eq!(&plain[4..], &json[..]);
            assert_eq!(message.framed_as(Compression::Zstd).unwrap(), message.framed().unwrap());
        }
        assert_eq!(Compression::requested("zstd"), Compression::Zstd);
        assert_eq!(Compression::requested(""), Compression::Plain);
        assert!(MapMessage::Framed(Bytes::from_static(b"\x01\0")).framed_as(Compression::Plain).is_err());
    }

    #[test]
    fn a_shared_frame_is_the_bytes_of_its_response() {
        let framed = MapMessage::Framed(encode(&first_response()).unwrap());
        assert_eq!(framed.framed().unwrap(), encode(&first_response()).unwrap());
        assert_eq!(framed.into_response().unwrap(), first_response());
        let owned = MapMessage::from(MapResponse::keep_alive());
        assert_eq!(owned.clone().into_response().unwrap(), MapResponse::keep_alive());
        let mut dec = MapDecoder::new();
        dec.push(&owned.framed().unwrap());
        assert_eq!(dec.next_message().unwrap(), Some(MapResponse::keep_alive()));
    }

    /// A zstd frame whose header leaves the content size out, as a streaming encoder may.
    fn frame_without_size(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        encoder.include_contentsize(false).unwrap();
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn frames_with_and_without_a_stated_size_decode_alike() {
        let json = br#"{"KeepAlive":true}"#;
        let sized = zstd::bulk::compress(json, 3).unwrap();
        assert!(matches!(zstd::zstd_safe::get_frame_content_size(&sized), Ok(Some(18))));
        let streamed = frame_without_size(json);
        assert!(matches!(zstd::zstd_safe::get_frame_content_size(&streamed), Ok(None)));
        for frame in [sized, streamed] {
            assert_eq!(decompress_one_frame(&frame).unwrap(), json);
        }
        // A stated size above the cap is refused before anything is decompressed.
        let bomb = zstd::bulk::compress(&vec![b' '; MAX_MESSAGE + 1], 3).unwrap();
        assert!(matches!(decompress_one_frame(&bomb), Err(FramingError::TooLarge(n)) if n == MAX_MESSAGE + 1));
    }

    #[test]
    fn decompression_bomb_is_capped() {
        // No stated size: the bounded reader must stop it.
        let big = vec![b' '; MAX_MESSAGE + 10];
        let frame = frame_without_size(&big);
        assert!(frame.len() < 4096);
        assert!(matches!(decompress_one_frame(&frame), Err(FramingError::TooLarge(_))));
    }
}
