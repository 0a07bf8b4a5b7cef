//! Frames in exact bytes, laid out by hand from RFC 9113 §6, and the reader fed one byte
//! at a time.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::*;

/// Hands out its bytes one per read and reports `Pending` between them, as a slow socket
/// would, waking itself so the executor polls again.
struct Trickle {
    bytes: Vec<u8>,
    at: usize,
    stall: bool,
}

impl AsyncRead for Trickle {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.stall = !self.stall;
        if self.stall {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.at < self.bytes.len() {
            buf.put_slice(&self.bytes[self.at..self.at + 1]);
            self.at += 1;
        }
        Poll::Ready(Ok(()))
    }
}

async fn read_all(bytes: Vec<u8>) -> (Vec<Result<Frame, ConnectionError>>, io::Result<()>) {
    let mut io = Trickle { bytes, at: 0, stall: false };
    let mut reader = FrameReader::new();
    let mut frames = Vec::new();
    loop {
        match std::future::poll_fn(|cx| reader.poll_frame(&mut io, cx)).await {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, Ok(())),
            Err(err) => return (frames, Err(err)),
        }
    }
}

fn raw(len: usize, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_header(&mut out, len, kind, flags, stream);
    out.extend_from_slice(payload);
    out
}

#[tokio::test]
async fn frames_split_into_single_bytes_parse_whole() {
    let mut bytes = raw(12, 0x4, 0, 0, &[0, 4, 0, 0x40, 0, 0, 0, 5, 0, 0, 0x40, 0]);
    // HEADERS, PADDED|PRIORITY|END_HEADERS|END_STREAM: pad 2, 5 priority bytes, fragment "ab".
    bytes.extend(raw(10, 0x1, 0x8 | 0x20 | 0x4 | 0x1, 3, &[2, 0, 0, 0, 0, 16, b'a', b'b', 0, 0]));
    // DATA, PADDED: pad 1, "xyz", one pad byte; the flow length counts all 5.
    bytes.extend(raw(5, 0x0, 0x8, 3, &[1, b'x', b'y', b'z', 0]));
    bytes.extend(raw(4, 0x8, 0, 0, &[0x80, 0, 0x10, 0]));
    let (frames, end) = read_all(bytes).await;
    end.unwrap();
    assert_eq!(
        frames,
        vec![
            Ok(Frame::Settings {
                ack: false,
                params: vec![Setting::InitialWindowSize(0x0040_0000), Setting::MaxFrameSize(0x4000)],
            }),
            Ok(Frame::Headers { stream: 3, fragment: b"ab".to_vec(), end_stream: true, end_headers: true }),
            Ok(Frame::Data { stream: 3, data: b"xyz".to_vec(), flow_len: 5, end_stream: false }),
            // The reserved bit is masked off.
            Ok(Frame::WindowUpdate { stream: 0, increment: 0x1000 }),
        ]
    );
}

#[tokio::test]
async fn a_frame_cut_short_is_an_unexpected_eof_and_a_clean_end_is_none() {
    let mut bytes = raw(8, 0x6, 0, 0, b"12345678");
    bytes.extend(raw(8, 0x6, 0, 0, b"123"));
    let (frames, end) = read_all(bytes).await;
    assert_eq!(frames, vec![Ok(Frame::Ping { ack: false, payload: *b"12345678" })]);
    assert_eq!(end.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    let (_, end) = read_all(raw(8, 0x6, 0, 0, b"12345678")[..5].to_vec()).await;
    assert_eq!(end.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn an_oversized_frame_is_refused_before_its_payload_is_read() {
    // Announces 16,385 bytes but sends none: the reader must answer from the header alone.
    let (frames, _) = read_all(raw(16_385, 0x0, 0, 1, &[])).await;
    assert_eq!(frames[0].as_ref().unwrap_err().code, ErrorCode::FrameSize);
}

fn parse_one(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Result<Frame, ConnectionError> {
    let header = FrameHeader { len: payload.len(), kind, flags, stream };
    parse(header, payload.to_vec())
}

/// Type, flags, stream, payload, and the error they must produce.
type Malformed = (u8, u8, u32, &'static [u8], ErrorCode, &'static str);

#[test]
fn malformed_frames_name_their_fault() {
    let cases: &[Malformed] = &[
        (0x0, 0, 0, b"x", ErrorCode::Protocol, "stream frame on stream 0"),
        (0x0, 0x8, 1, &[5, 1, 2], ErrorCode::Protocol, "padding longer than the frame"),
        (0x0, 0x8, 1, &[], ErrorCode::Protocol, "padded frame without pad length"),
        (0x1, 0x20, 1, &[0, 0, 0], ErrorCode::Protocol, "padding longer than the frame"),
        (0x4, 0, 1, &[], ErrorCode::Protocol, "connection frame on a stream"),
        (0x4, 0x1, 0, &[0, 1, 0, 0, 0, 0], ErrorCode::FrameSize, "SETTINGS ack with a payload"),
        (0x4, 0, 0, &[0, 1, 0], ErrorCode::FrameSize, "SETTINGS length not a multiple of 6"),
        (0x4, 0, 0, &[0, 2, 0, 0, 0, 2], ErrorCode::Protocol, "ENABLE_PUSH must be 0 or 1"),
        (0x4, 0, 0, &[0, 4, 0x80, 0, 0, 0], ErrorCode::FlowControl, "INITIAL_WINDOW_SIZE above 2^31-1"),
        (0x4, 0, 0, &[0, 5, 0, 0, 0x3f, 0xff], ErrorCode::Protocol, "MAX_FRAME_SIZE outside 16384..16777215"),
        (0x6, 0, 0, b"1234567", ErrorCode::FrameSize, "PING must be 8 bytes"),
        (0x3, 0, 1, b"123", ErrorCode::FrameSize, "RST_STREAM must be 4 bytes"),
        (0x7, 0, 0, b"1234", ErrorCode::FrameSize, "GOAWAY shorter than 8 bytes"),
        (0x8, 0, 0, b"12345", ErrorCode::FrameSize, "WINDOW_UPDATE must be 4 bytes"),
    ];
    for &(kind, flags, stream, payload, code, reason) in cases {
        assert_eq!(
            parse_one(kind, flags, stream, payload),
            Err(ConnectionError { code, reason }),
            "type {kind:#x} flags {flags:#x} payload {payload:?}"
        );
    }
}

#[test]
fn unknown_settings_and_frame_types_are_skipped() {
    assert_eq!(
        parse_one(0x4, 0, 0, &[0x0a, 0x0a, 1, 2, 3, 4, 0, 3, 0, 0, 0, 7]),
        Ok(Frame::Settings { ack: false, params: vec![Setting::MaxConcurrentStreams(7)] })
    );
    assert_eq!(parse_one(0xfa, 0xff, 9, b"anything"), Ok(Frame::Unknown));
    assert_eq!(parse_one(0x5, 0x4, 1, &[0, 0, 0, 2]), Ok(Frame::PushPromise));
}

#[test]
fn frames_we_write_have_the_rfc_layout() {
    let mut out = Vec::new();
    put_settings(&mut out, 64, 65_536);
    assert_eq!(out, [0, 0, 12, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 64, 0, 6, 0, 1, 0, 0]);
    out.clear();
    put_settings_ack(&mut out);
    assert_eq!(out, [0, 0, 0, 4, 1, 0, 0, 0, 0]);
    out.clear();
    put_ping(&mut out, true, *b"pingpong");
    assert_eq!(out, [&[0, 0, 8, 6, 1, 0, 0, 0, 0][..], b"pingpong"].concat());
    out.clear();
    put_window_update(&mut out, 5, 0x0102_0304);
    assert_eq!(out, [0, 0, 4, 8, 0, 0, 0, 0, 5, 1, 2, 3, 4]);
    out.clear();
    put_rst_stream(&mut out, 7, ErrorCode::RefusedStream);
    assert_eq!(out, [0, 0, 4, 3, 0, 0, 0, 0, 7, 0, 0, 0, 7]);
    out.clear();
    put_goaway(&mut out, 9, ErrorCode::Compression, "hi");
    assert_eq!(out, [0, 0, 10, 7, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 9, b'h', b'i']);
    out.clear();
    put_headers(&mut out, 1, &[0x88], true);
    assert_eq!(out, [0, 0, 1, 1, 5, 0, 0, 0, 1, 0x88]);
    out.clear();
    put_data(&mut out, 0x7fff_ffff, b"ok", false);
    assert_eq!(out, [0, 0, 2, 0, 0, 0x7f, 0xff, 0xff, 0xff, b'o', b'k']);
}

// --- properties ----------------------------------------------------------------------------

mod props {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    const CODES: [ErrorCode; 8] = [
        ErrorCode::NoError,
        ErrorCode::Protocol,
        ErrorCode::Internal,
        ErrorCode::FlowControl,
        ErrorCode::StreamClosed,
        ErrorCode::FrameSize,
        ErrorCode::RefusedStream,
        ErrorCode::Compression,
    ];

    fn stream() -> impl Strategy<Value = u32> {
        1..=0x7fff_ffffu32
    }

    fn payload(max: usize) -> impl Strategy<Value = Vec<u8>> {
        vec(any::<u8>(), 0..max)
    }

    /// One frame's bytes, written by our writers (or laid out by hand where a client's frame
    /// has more than ours: padding, priority), with the frame the reader must make of them.
    fn frame() -> impl Strategy<Value = (Vec<u8>, Frame)> {
        prop_oneof![
            (any::<u32>(), any::<u32>()).prop_map(|(streams, list)| {
                let mut out = Vec::new();
                put_settings(&mut out, streams, list);
                let params = vec![Setting::MaxConcurrentStreams(streams), Setting::MaxHeaderListSize(list)];
                (out, Frame::Settings { ack: false, params })
            }),
            Just(()).prop_map(|()| {
                let mut out = Vec::new();
                put_settings_ack(&mut out);
                (out, Frame::Settings { ack: true, params: Vec::new() })
            }),
            (any::<bool>(), any::<[u8; 8]>()).prop_map(|(ack, payload)| {
                let mut out = Vec::new();
                put_ping(&mut out, ack, payload);
                (out, Frame::Ping { ack, payload })
            }),
            (0..=0x7fff_ffffu32, 1..=0x7fff_ffffu32).prop_map(|(stream, increment)| {
                let mut out = Vec::new();
                put_window_update(&mut out, stream, increment);
                (out, Frame::WindowUpdate { stream, increment })
            }),
            (stream(), 0..CODES.len()).prop_map(|(stream, code)| {
                let mut out = Vec::new();
                put_rst_stream(&mut out, stream, CODES[code]);
                (out, Frame::RstStream { stream, code: CODES[code] as u32 })
            }),
            (0..=0x7fff_ffffu32, 0..CODES.len(), "[ -~]{0,30}").prop_map(|(last_stream, code, debug)| {
                let mut out = Vec::new();
                put_goaway(&mut out, last_stream, CODES[code], &debug);
                (out, Frame::GoAway { last_stream, code: CODES[code] as u32 })
            }),
            (stream(), payload(300), any::<bool>()).prop_map(|(stream, fragment, end_stream)| {
                let mut out = Vec::new();
                put_headers(&mut out, stream, &fragment, end_stream);
                (out, Frame::Headers { stream, fragment, end_stream, end_headers: true })
            }),
            (stream(), payload(300), any::<bool>()).prop_map(|(stream, data, end_stream)| {
                let mut out = Vec::new();
                put_data(&mut out, stream, &data, end_stream);
                let flow_len = data.len() as u32;
                (out, Frame::Data { stream, data, flow_len, end_stream })
            }),
            // A client's padded DATA: flow control counts the padding, the data does not.
            (stream(), payload(300), any::<u8>()).prop_map(|(stream, data, pad)| {
                let mut body = vec![pad];
                body.extend_from_slice(&data);
                body.extend(std::iter::repeat_n(0, usize::from(pad)));
                let out = raw(body.len(), DATA, FLAG_PADDED, stream, &body);
                let flow_len = body.len() as u32;
                (out, Frame::Data { stream, data, flow_len, end_stream: false })
            }),
            // A client's HEADERS with priority fields and padding, not ending the block.
            (stream(), payload(300), any::<u8>(), any::<[u8; 5]>()).prop_map(|(stream, fragment, pad, priority)| {
                let mut body = vec![pad];
                body.extend_from_slice(&priority);
                body.extend_from_slice(&fragment);
                body.extend(std::iter::repeat_n(0, usize::from(pad)));
                let out = raw(body.len(), HEADERS, FLAG_PADDED | FLAG_PRIORITY, stream, &body);
                (out, Frame::Headers { stream, fragment, end_stream: false, end_headers: false })
            }),
            (stream(), payload(300), any::<bool>()).prop_map(|(stream, fragment, end_headers)| {
                let flags = if end_headers { FLAG_END_HEADERS } else { 0 };
                let out = raw(fragment.len(), CONTINUATION, flags, stream, &fragment);
                (out, Frame::Continuation { stream, fragment, end_headers })
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A run of frames, fed one byte per read, reads back as the frames that were written.
        #[test]
        fn frames_read_back_as_written(frames in vec(frame(), 1..6)) {
            let (bytes, want): (Vec<Vec<u8>>, Vec<Frame>) = frames.into_iter().unzip();
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (got, end) = runtime.block_on(read_all(bytes.concat()));
            prop_assert!(end.is_ok());
            prop_assert_eq!(got, want.into_iter().map(Ok).collect::<Vec<_>>());
        }
    }
}
