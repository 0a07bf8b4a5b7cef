//! The HTTP/2 connection against hand-written frames: what no well-behaved client library
//! would send (bad prefaces, broken HPACK, split header blocks, too many streams), checked
//! byte for byte on the wire. Interoperability with real clients is proven by the h2 crate's
//! client (client_tests.rs) and by real Tailscale clients (tests/realclient).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use http::StatusCode;
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use x25519_dalek::{PublicKey, StaticSecret};

use super::frame::{self, ErrorCode, Frame, FrameReader};
use super::hpack;
use crate::h2server::{accept_ts2021, ServeError, ServeOptions};
use crate::noise::{Initiator, RESPONSE_LEN};
use crate::noise_stream::NoiseStream;
use crate::{Abort, Request, Response, Ts2021Service};
use tenscale_base::keys::MachinePublic;

const WAIT: Duration = Duration::from_secs(5);

/// Answers `/machine/register` with a JSON body, `/chunks` with a body in two chunks and
/// `/abort` not at all; every other path gets the route table's 404, so what the connection
/// decoded shows in the answer.
struct Echo;

impl Ts2021Service for Echo {
    fn call(&self, _: MachinePublic, request: Request) -> BoxFuture<'static, Result<Response, Abort>> {
        let response = match request.path.as_str() {
            "/machine/register" => Ok(Response::json(Bytes::from_static(b"{\"MachineAuthorized\":true}"))),
            "/chunks" => {
                let chunks = [Ok(Bytes::from_static(b"one")), Ok(Bytes::from_static(b"two"))];
                Ok(Response::json_stream(stream::iter(chunks).boxed()))
            }
            "/abort" => Err(Abort),
            path => Ok(Response::text(StatusCode::NOT_FOUND, format!("not found: no handler for {path}"))),
        };
        Box::pin(async { response })
    }
}

struct Peer {
    io: NoiseStream<DuplexStream>,
    reader: FrameReader,
    served: JoinHandle<Result<(), ServeError>>,
}

/// A Noise-established connection to a server task, before any HTTP/2 byte.
async fn connect(opts: ServeOptions) -> Peer {
    let secret = StaticSecret::from([3; 32]);
    let server_key = MachinePublic::from_bytes(PublicKey::from(&secret).to_bytes());
    let (initiator, init) = Initiator::start(&StaticSecret::from([4; 32]), &server_key, 130).unwrap();
    let header = base64::engine::general_purpose::STANDARD.encode(&init);
    let (ours, mut theirs) = duplex(1 << 16);
    let served = tokio::spawn(async move { accept_ts2021(ours, &secret, &header, Arc::new(Echo), opts).await });
    let mut response = [0u8; RESPONSE_LEN];
    theirs.read_exact(&mut response).await.unwrap();
    let keys = initiator.finish(&response).unwrap();
    let mut io = NoiseStream::new(theirs, keys);
    io.read_early_payload().await.unwrap();
    Peer { io, reader: FrameReader::new(), served }
}

impl Peer {
    async fn send(&mut self, bytes: &[u8]) {
        if let Err(err) = async {
            self.io.write_all(bytes).await?;
            self.io.flush().await
        }
        .await
        {
            let served = timeout(WAIT, &mut self.served).await;
            panic!("write failed ({err}); the server ended with {served:?}");
        }
    }

    /// Preface plus an empty SETTINGS, as every client starts.
    async fn open(&mut self) {
        let mut bytes = frame::PREFACE.to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        self.send(&bytes).await;
    }

    /// The next frame from the server, or `None` once it closed the connection.
    async fn next(&mut self) -> Option<Frame> {
        let read = std::future::poll_fn(|cx| self.reader.poll_frame(&mut self.io, cx));
        match timeout(WAIT, read).await.expect("server answered in time") {
            Ok(Some(frame)) => Some(frame.expect("server frames parse")),
            Ok(None) | Err(_) => None,
        }
    }

    /// Skips SETTINGS and their ACKs, which the server sends on its own schedule.
    async fn next_significant(&mut self) -> Option<Frame> {
        loop {
            match self.next().await? {
                Frame::Settings { .. } => continue,
                other => return Some(other),
            }
        }
    }

    async fn closed_with(mut self, code: ErrorCode) -> ServeError {
        match self.next_significant().await {
            Some(Frame::GoAway { code: got, .. }) => assert_eq!(got, code as u32),
            other => panic!("want GOAWAY {code:?}, got {other:?}"),
        }
        assert!(self.next().await.is_none(), "connection closed after GOAWAY");
        timeout(WAIT, self.served).await.expect("server task ended").unwrap().unwrap_err()
    }
}

/// A request head in HPACK literals without indexing, so it leaves no state behind.
fn request_block(method: &str, path: &str) -> Vec<u8> {
    let mut block = Vec::new();
    hpack::encode_literal(":method", method.as_bytes(), &mut block);
    hpack::encode_literal(":scheme", b"http", &mut block);
    hpack::encode_literal(":path", path.as_bytes(), &mut block);
    hpack::encode_literal(":authority", b"control", &mut block);
    block
}

fn headers_frame(stream: u32, flags: u8, block: &[u8]) -> Vec<u8> {
    let mut out = (block.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[0x1, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(block);
    out
}

fn continuation_frame(stream: u32, flags: u8, block: &[u8]) -> Vec<u8> {
    let mut out = headers_frame(stream, flags, block);
    out[3] = 0x9;
    out
}

#[tokio::test]
async fn a_wrong_preface_ends_the_connection() {
    let mut peer = connect(ServeOptions::default()).await;
    peer.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let result = timeout(WAIT, peer.served).await.unwrap().unwrap();
    assert!(matches!(result, Err(ServeError::Protocol(ref e)) if e.reason == "not an HTTP/2 preface"), "{result:?}");
}

#[tokio::test]
async fn undecodable_hpack_gets_goaway_compression_error() {
    let mut peer = connect(ServeOptions::default()).await;
    peer.open().await;
    // 0x80 is "indexed field 0", which HPACK forbids.
    peer.send(&headers_frame(1, 0x4 | 0x1, &[0x80])).await;
    let err = peer.closed_with(ErrorCode::Compression).await;
    assert!(matches!(err, ServeError::Protocol(ref e) if e.code == ErrorCode::Compression), "{err:?}");
}

#[tokio::test]
async fn even_or_decreasing_stream_ids_are_protocol_errors() {
    let mut peer = connect(ServeOptions::default()).await;
    peer.open().await;
    peer.send(&headers_frame(2, 0x4 | 0x1, &request_block("POST", "/machine/map"))).await;
    peer.closed_with(ErrorCode::Protocol).await;
}

#[tokio::test]
async fn a_header_block_split_over_continuations_is_answered_and_pings_are_echoed() {
    let mut peer = connect(ServeOptions::default()).await;
    peer.open().await;
    let block = request_block("GET", "/machine/nowhere");
    let (first, rest) = block.split_at(5);
    let (middle, last) = rest.split_at(7);
    let mut bytes = headers_frame(1, 0x1, first);
    bytes.extend(continuation_frame(1, 0, middle));
    bytes.extend(continuation_frame(1, 0x4, last));
    bytes.extend_from_slice(&[0, 0, 8, 6, 0, 0, 0, 0, 0]);
    bytes.extend_from_slice(b"are-you?");
    peer.send(&bytes).await;

    let mut status = None;
    let mut body = Vec::new();
    let mut pong = None;
    while status.is_none() || body.is_empty() || pong.is_none() {
        match peer.next_significant().await.expect("connection stays open") {
            Frame::Headers { stream: 1, fragment, .. } => {
                let mut decoder = hpack::Decoder::new(4096);
                decoder
                    .decode(&fragment, 1024, &mut |name, value| {
                        if name == b":status" {
                            status = Some(String::from_utf8(value.to_vec()).unwrap());
                        }
                        Ok(())
                    })
                    .unwrap();
            }
            Frame::Data { stream: 1, data, .. } => body.extend(data),
            Frame::Ping { ack: true, payload } => pong = Some(payload),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(status.as_deref(), Some("404"));
    assert_eq!(String::from_utf8(body).unwrap(), "not found: no handler for /machine/nowhere");
    assert_eq!(&pong.unwrap(), b"are-you?");
}

#[tokio::test]
async fn streams_beyond_the_limit_are_refused_not_queued() {
    let mut peer = connect(ServeOptions { max_concurrent_streams: 1, ..ServeOptions::default() }).await;
    peer.open().await;
    // Stream 1 stays open (no END_STREAM: its body is still to come); stream 3 is one too many.
    let mut bytes = headers_frame(1, 0x4, &request_block("POST", "/machine/register"));
    bytes.extend(headers_frame(3, 0x4 | 0x1, &request_block("POST", "/machine/register")));
    peer.send(&bytes).await;
    match peer.next_significant().await {
        Some(Frame::RstStream { stream: 3, code }) => {
            assert_eq!(code, ErrorCode::RefusedStream as u32)
        }
        other => panic!("want RST_STREAM on 3, got {other:?}"),
    }
    // Stream 1 is still served once its body arrives.
    let mut data = vec![0, 0, 2, 0, 1, 0, 0, 0, 1];
    data.extend_from_slice(b"{}");
    peer.send(&data).await;
    match peer.next_significant().await {
        Some(Frame::Headers { stream: 1, end_stream: false, .. }) => {}
        other => panic!("want response headers on 1, got {other:?}"),
    }
}

#[tokio::test]
async fn consumed_body_bytes_are_credited_back_on_both_windows() {
    let mut peer = connect(ServeOptions::default()).await;
    peer.open().await;
    peer.send(&headers_frame(1, 0x4, &request_block("POST", "/machine/register"))).await;
    // Five full frames, 81,920 bytes: more than the 65,535-byte initial windows, so the
    // upload only completes if the server hands credit back as it consumes.
    let mut frame = vec![0, 0x40, 0, 0, 0, 0, 0, 0, 1];
    frame.extend(vec![b' '; 16_384]);
    let mut credit = [0u32; 2];
    for _ in 0..4 {
        peer.send(&frame).await;
    }
    while credit[1] < 4 * 16_384 {
        match peer.next_significant().await.expect("still open") {
            Frame::WindowUpdate { stream: 0, increment } => credit[0] += increment,
            Frame::WindowUpdate { stream: 1, increment } => credit[1] += increment,
            other => panic!("want WINDOW_UPDATE, got {other:?}"),
        }
    }
    assert_eq!(credit, [4 * 16_384, 4 * 16_384]);
    // The fifth frame would have overflowed both windows without that credit. It ends the
    // body, so only the connection window is credited before the answer.
    frame[4] = 0x1;
    peer.send(&frame).await;
    assert_eq!(peer.next_significant().await, Some(Frame::WindowUpdate { stream: 0, increment: 16_384 }));
    match peer.next_significant().await {
        Some(Frame::Headers { stream: 1, .. }) => {}
        other => panic!("want the answer on stream 1, got {other:?}"),
    }
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_cut_off() {
    let write_timeout = Duration::from_millis(300);
    let mut peer = connect(ServeOptions { write_timeout, ..ServeOptions::default() }).await;
    peer.open().await;
    // Every PING asks for a 17-byte answer; we never read, so once the pipe (64 KiB each
    // way) is full the server's writes stall.
    let mut pings = Vec::new();
    for _ in 0..5_000 {
        pings.extend_from_slice(&[0, 0, 8, 6, 0, 0, 0, 0, 0]);
        pings.extend_from_slice(b"anyone?!");
    }
    peer.io.write_all(&pings).await.unwrap();
    peer.io.flush().await.unwrap();
    let result = timeout(WAIT, peer.served).await.expect("server gave up by itself").unwrap();
    assert!(matches!(result, Err(ServeError::WriteTimeout)), "{result:?}");
}

#[tokio::test]
async fn a_streamed_body_goes_out_chunk_by_chunk_and_an_abort_resets_its_stream() {
    let mut peer = connect(ServeOptions::default()).await;
    peer.open().await;
    let mut bytes = headers_frame(1, 0x4 | 0x1, &request_block("POST", "/chunks"));
    bytes.extend(headers_frame(3, 0x4 | 0x1, &request_block("POST", "/abort")));
    peer.send(&bytes).await;
    let (mut body, mut ended, mut reset) = (Vec::new(), false, None);
    while !ended || reset.is_none() {
        match peer.next_significant().await.expect("connection stays open") {
            Frame::Headers { stream: 1, end_stream: false, .. } => {}
            Frame::Data { stream: 1, data, end_stream, .. } => {
                body.extend(data);
                ended = end_stream;
            }
            Frame::RstStream { stream: 3, code } => reset = Some(code),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(body, b"onetwo");
    assert_eq!(reset, Some(ErrorCode::Internal as u32));
}

#[tokio::test]
async fn a_stream_the_peer_never_grants_window_is_reset_after_the_write_timeout() {
    let write_timeout = Duration::from_millis(300);
    let mut peer = connect(ServeOptions { write_timeout, ..ServeOptions::default() }).await;
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: no stream may carry DATA until we say so, and we never do.
    let mut bytes = frame::PREFACE.to_vec();
    bytes.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
    bytes.extend(headers_frame(1, 0x4 | 0x1, &request_block("POST", "/chunks")));
    peer.send(&bytes).await;
    let asked = std::time::Instant::now();
    match peer.next_significant().await {
        Some(Frame::Headers { stream: 1, end_stream: false, .. }) => {}
        other => panic!("want the response headers, got {other:?}"),
    }
    match peer.next_significant().await {
        Some(Frame::RstStream { stream: 1, code }) => assert_eq!(code, ErrorCode::Internal as u32),
        other => panic!("want RST_STREAM instead of any DATA, got {other:?}"),
    }
    assert!(asked.elapsed() >= write_timeout, "reset after {:?}", asked.elapsed());
    // Only the stream: the connection still answers.
    let mut ping = vec![0, 0, 8, 6, 0, 0, 0, 0, 0];
    ping.extend_from_slice(b"still?!!");
    peer.send(&ping).await;
    assert!(matches!(peer.next_significant().await, Some(Frame::Ping { ack: true, .. })));
}
