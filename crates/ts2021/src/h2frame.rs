//! HTTP/2 frames (RFC 9113 §4.1, §6) as the control channel's server needs them: a
//! cancel-safe reader that parses one frame at a time, and writers that append frames to an
//! output buffer. Only what a client may send is parsed; PUSH_PROMISE and unknown types are
//! reported so the connection can refuse or skip them.
//!
//! Every frame:
//! ```text
//! +-----------------------------------------------+
//! |                 Length (24)                   |  payload length, <= our 16,384
//! +---------------+---------------+---------------+
//! |   Type (8)    |   Flags (8)   |
//! +-+-------------+---------------+-------------------------------+
//! |R|                 Stream Identifier (31)                      |
//! +=+=============================================================+
//! |                   Frame Payload (0...)                      ...
//! +---------------------------------------------------------------+
//! ```

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// What a client writes before its first frame.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The frame header's size.
pub const HEADER_LEN: usize = 9;
/// Largest payload either side may send until the peer's SETTINGS say otherwise (§4.2); we
/// never raise ours.
pub const DEFAULT_MAX_FRAME: usize = 16_384;
/// Flow-control windows start here (§6.9.2).
pub const DEFAULT_WINDOW: i64 = 65_535;
/// A window may never exceed 2^31-1 (§6.9.1).
pub const MAX_WINDOW: i64 = (1 << 31) - 1;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const FLAG_END_STREAM: u8 = 0x1;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// Error codes (§7) we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    NoError = 0x0,
    Protocol = 0x1,
    Internal = 0x2,
    FlowControl = 0x3,
    StreamClosed = 0x5,
    FrameSize = 0x6,
    RefusedStream = 0x7,
    Compression = 0x9,
}

/// A violation that ends the whole connection with GOAWAY (§5.4.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {reason}")]
pub struct ConnectionError {
    pub code: ErrorCode,
    pub reason: &'static str,
}

impl ConnectionError {
    pub fn protocol(reason: &'static str) -> Self {
        Self { code: ErrorCode::Protocol, reason }
    }
}

/// SETTINGS parameters (§6.5.2) a client may send; unknown identifiers are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    HeaderTableSize(u32),
    EnablePush(u32),
    MaxConcurrentStreams(u32),
    InitialWindowSize(u32),
    MaxFrameSize(u32),
    MaxHeaderListSize(u32),
}

/// One parsed frame from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// `flow_len` is the whole payload length, padding included: what flow control counts.
    Data {
        stream: u32,
        data: Vec<u8>,
        flow_len: u32,
        end_stream: bool,
    },
    /// Priority fields and padding are already stripped from `fragment`.
    Headers {
        stream: u32,
        fragment: Vec<u8>,
        end_stream: bool,
        end_headers: bool,
    },
    Continuation {
        stream: u32,
        fragment: Vec<u8>,
        end_headers: bool,
    },
    Priority {
        stream: u32,
    },
    RstStream {
        stream: u32,
        code: u32,
    },
    Settings {
        ack: bool,
        params: Vec<Setting>,
    },
    Ping {
        ack: bool,
        payload: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        code: u32,
    },
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    PushPromise,
    /// An extension frame type: ignored by the receiver (§5.5).
    Unknown,
}

#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl FrameHeader {
    fn parse(b: &[u8; HEADER_LEN]) -> Self {
        Self {
            len: (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Reads frames one at a time. All progress lives in the reader, so a `poll_frame` dropped
/// mid-frame (by a `select!`) resumes where it stopped. The payload buffer exists only while
/// a frame is being read, so an idle connection holds no buffer.
#[derive(Debug, Default)]
pub struct FrameReader {
    header: [u8; HEADER_LEN],
    header_filled: usize,
    partial: Option<PartialFrame>,
}

/// A frame whose header is read and whose payload is arriving.
#[derive(Debug)]
struct PartialFrame {
    header: FrameHeader,
    payload: Vec<u8>,
    filled: usize,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ready with `Ok(None)` on a clean end of stream between frames.
    pub fn poll_frame<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<Result<Frame, ConnectionError>>>> {
        let partial = match &mut self.partial {
            Some(partial) => partial,
            None => {
                if !ready!(poll_fill(io, cx, &mut self.header, &mut self.header_filled))? {
                    return Poll::Ready(if self.header_filled == 0 {
                        Ok(None)
                    } else {
                        Err(io::ErrorKind::UnexpectedEof.into())
                    });
                }
                self.header_filled = 0;
                let header = FrameHeader::parse(&self.header);
                if header.len > DEFAULT_MAX_FRAME {
                    let err = ConnectionError { code: ErrorCode::FrameSize, reason: "frame larger than 16384 bytes" };
                    return Poll::Ready(Ok(Some(Err(err))));
                }
                self.partial.insert(PartialFrame { header, payload: vec![0; header.len], filled: 0 })
            }
        };
        if !ready!(poll_fill(io, cx, &mut partial.payload, &mut partial.filled))? {
            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
        }
        let frame = parse(partial.header, std::mem::take(&mut partial.payload));
        self.partial = None;
        Poll::Ready(Ok(Some(frame)))
    }
}

/// Reads into `buf[*filled..]` until it is full (`true`) or the stream ends (`false`),
/// keeping the progress in `filled` across `Pending`.
fn poll_fill<R: AsyncRead + Unpin>(
    io: &mut R,
    cx: &mut Context<'_>,
    buf: &mut [u8],
    filled: &mut usize,
) -> Poll<io::Result<bool>> {
    while *filled < buf.len() {
        let mut read = ReadBuf::new(&mut buf[*filled..]);
        ready!(Pin::new(&mut *io).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        if n == 0 {
            return Poll::Ready(Ok(false));
        }
        *filled += n;
    }
    Poll::Ready(Ok(true))
}

fn parse(h: FrameHeader, payload: Vec<u8>) -> Result<Frame, ConnectionError> {
    match h.kind {
        DATA => parse_data(h, payload),
        HEADERS => parse_headers(h, payload),
        CONTINUATION => {
            require_stream(h)?;
            Ok(Frame::Continuation { stream: h.stream, fragment: payload, end_headers: h.has(FLAG_END_HEADERS) })
        }
        PRIORITY => {
            require_stream(h)?;
            require_len(&payload, 5, "PRIORITY must be 5 bytes")?;
            Ok(Frame::Priority { stream: h.stream })
        }
        RST_STREAM => {
            require_stream(h)?;
            require_len(&payload, 4, "RST_STREAM must be 4 bytes")?;
            Ok(Frame::RstStream { stream: h.stream, code: be32(&payload[0..4]) })
        }
        SETTINGS => parse_settings(h, &payload),
        PING => {
            require_connection(h)?;
            require_len(&payload, 8, "PING must be 8 bytes")?;
            let mut data = [0; 8];
            data.copy_from_slice(&payload);
            Ok(Frame::Ping { ack: h.has(FLAG_ACK), payload: data })
        }
        GOAWAY => {
            require_connection(h)?;
            if payload.len() < 8 {
                return Err(ConnectionError { code: ErrorCode::FrameSize, reason: "GOAWAY shorter than 8 bytes" });
            }
            Ok(Frame::GoAway { last_stream: be32(&payload[0..4]) & 0x7fff_ffff, code: be32(&payload[4..8]) })
        }
        WINDOW_UPDATE => {
            require_len(&payload, 4, "WINDOW_UPDATE must be 4 bytes")?;
            Ok(Frame::WindowUpdate { stream: h.stream, increment: be32(&payload) & 0x7fff_ffff })
        }
        PUSH_PROMISE => Ok(Frame::PushPromise),
        _ => Ok(Frame::Unknown),
    }
}

/// ```text
/// [Pad Length (8), if PADDED] | Data (*) | Padding (*)
/// ```
fn parse_data(h: FrameHeader, payload: Vec<u8>) -> Result<Frame, ConnectionError> {
    require_stream(h)?;
    let flow_len = payload.len() as u32;
    let data = strip_padding(h, payload, 0)?;
    Ok(Frame::Data { stream: h.stream, data, flow_len, end_stream: h.has(FLAG_END_STREAM) })
}

/// ```text
/// [Pad Length (8)] | [E (1) | Stream Dependency (31) | Weight (8), if PRIORITY] | Field Block Fragment (*) | Padding (*)
/// ```
fn parse_headers(h: FrameHeader, payload: Vec<u8>) -> Result<Frame, ConnectionError> {
    require_stream(h)?;
    let priority_len = if h.has(FLAG_PRIORITY) { 5 } else { 0 };
    let fragment = strip_padding(h, payload, priority_len)?;
    Ok(Frame::Headers {
        stream: h.stream,
        fragment,
        end_stream: h.has(FLAG_END_STREAM),
        end_headers: h.has(FLAG_END_HEADERS),
    })
}

/// Removes the pad-length byte, `skip` bytes after it and the trailing padding.
fn strip_padding(h: FrameHeader, mut payload: Vec<u8>, skip: usize) -> Result<Vec<u8>, ConnectionError> {
    let (head, pad) = if h.has(FLAG_PADDED) {
        let pad = usize::from(*payload.first().ok_or(ConnectionError::protocol("padded frame without pad length"))?);
        (1 + skip, pad)
    } else {
        (skip, 0)
    };
    if head + pad > payload.len() {
        return Err(ConnectionError::protocol("padding longer than the frame"));
    }
    payload.truncate(payload.len() - pad);
    payload.drain(..head);
    Ok(payload)
}

/// ```text
/// (Identifier (16) | Value (32))*
/// ```
fn parse_settings(h: FrameHeader, payload: &[u8]) -> Result<Frame, ConnectionError> {
    require_connection(h)?;
    let ack = h.has(FLAG_ACK);
    if ack && !payload.is_empty() {
        return Err(ConnectionError { code: ErrorCode::FrameSize, reason: "SETTINGS ack with a payload" });
    }
    if !payload.len().is_multiple_of(6) {
        return Err(ConnectionError { code: ErrorCode::FrameSize, reason: "SETTINGS length not a multiple of 6" });
    }
    let mut params = Vec::with_capacity(payload.len() / 6);
    for pair in payload.chunks_exact(6) {
        let value = be32(&pair[2..6]);
        let setting = match u16::from_be_bytes([pair[0], pair[1]]) {
            0x1 => Setting::HeaderTableSize(value),
            0x2 if value > 1 => return Err(ConnectionError::protocol("ENABLE_PUSH must be 0 or 1")),
            0x2 => Setting::EnablePush(value),
            0x3 => Setting::MaxConcurrentStreams(value),
            0x4 if i64::from(value) > MAX_WINDOW => {
                return Err(ConnectionError {
                    code: ErrorCode::FlowControl,
                    reason: "INITIAL_WINDOW_SIZE above 2^31-1",
                })
            }
            0x4 => Setting::InitialWindowSize(value),
            0x5 if !(16_384..=16_777_215).contains(&value) => {
                return Err(ConnectionError::protocol("MAX_FRAME_SIZE outside 16384..16777215"))
            }
            0x5 => Setting::MaxFrameSize(value),
            0x6 => Setting::MaxHeaderListSize(value),
            _ => continue,
        };
        params.push(setting);
    }
    Ok(Frame::Settings { ack, params })
}

fn require_stream(h: FrameHeader) -> Result<(), ConnectionError> {
    if h.stream == 0 {
        return Err(ConnectionError::protocol("stream frame on stream 0"));
    }
    Ok(())
}

fn require_connection(h: FrameHeader) -> Result<(), ConnectionError> {
    if h.stream != 0 {
        return Err(ConnectionError::protocol("connection frame on a stream"));
    }
    Ok(())
}

fn require_len(payload: &[u8], len: usize, reason: &'static str) -> Result<(), ConnectionError> {
    if payload.len() != len {
        return Err(ConnectionError { code: ErrorCode::FrameSize, reason });
    }
    Ok(())
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Appends the 9-byte frame header.
fn put_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(len < 1 << 24);
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
}

/// Our SETTINGS: the values that differ from the defaults.
pub fn put_settings(out: &mut Vec<u8>, max_concurrent_streams: u32, max_header_list: u32) {
    put_header(out, 12, SETTINGS, 0, 0);
    out.extend_from_slice(&0x3u16.to_be_bytes());
    out.extend_from_slice(&max_concurrent_streams.to_be_bytes());
    out.extend_from_slice(&0x6u16.to_be_bytes());
    out.extend_from_slice(&max_header_list.to_be_bytes());
}

pub fn put_settings_ack(out: &mut Vec<u8>) {
    put_header(out, 0, SETTINGS, FLAG_ACK, 0);
}

pub fn put_ping(out: &mut Vec<u8>, ack: bool, payload: [u8; 8]) {
    put_header(out, 8, PING, if ack { FLAG_ACK } else { 0 }, 0);
    out.extend_from_slice(&payload);
}

/// ```text
/// R (1) | Window Size Increment (31)
/// ```
pub fn put_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    put_header(out, 4, WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&(increment & 0x7fff_ffff).to_be_bytes());
}

pub fn put_rst_stream(out: &mut Vec<u8>, stream: u32, code: ErrorCode) {
    put_header(out, 4, RST_STREAM, 0, stream);
    out.extend_from_slice(&(code as u32).to_be_bytes());
}

/// ```text
/// R (1) | Last-Stream-ID (31) | Error Code (32) | Additional Debug Data (*)
/// ```
pub fn put_goaway(out: &mut Vec<u8>, last_stream: u32, code: ErrorCode, debug: &str) {
    put_header(out, 8 + debug.len(), GOAWAY, 0, 0);
    out.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(&(code as u32).to_be_bytes());
    out.extend_from_slice(debug.as_bytes());
}

/// A complete header block in one HEADERS frame: ours are a few dozen bytes, far below any
/// frame size limit, so CONTINUATION is never needed.
pub fn put_headers(out: &mut Vec<u8>, stream: u32, block: &[u8], end_stream: bool) {
    debug_assert!(block.len() <= DEFAULT_MAX_FRAME);
    let flags = FLAG_END_HEADERS | if end_stream { FLAG_END_STREAM } else { 0 };
    put_header(out, block.len(), HEADERS, flags, stream);
    out.extend_from_slice(block);
}

/// One DATA frame; the caller keeps `data` within the peer's max frame size and windows.
pub fn put_data(out: &mut Vec<u8>, stream: u32, data: &[u8], end_stream: bool) {
    put_header(out, data.len(), DATA, if end_stream { FLAG_END_STREAM } else { 0 }, stream);
    out.extend_from_slice(data);
}

#[cfg(test)]
#[path = "h2frame_tests.rs"]
mod tests;
