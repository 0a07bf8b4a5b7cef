//! One HTTP/2 server connection inside the Noise channel, driven by a single task: it reads
//! frames, turns each stream's headers and body into a [`Request`] for the service, and the
//! service's [`Response`] into frames, pumping streamed bodies under flow control; and it
//! sends pings. Nothing else runs per connection, and nothing here knows what a path means.
//!
//! Why our own and not a general HTTP/2 crate: a control connection lives for days and is idle
//! almost always; a general implementation keeps ~29 KiB of codec buffers and tables per
//! connection for its whole life. Here a buffer exists only while a frame is read or written,
//! so an idle connection costs its state and nothing more.
//!
//! What a control client needs and gets (RFC 9113): prior-knowledge preface, SETTINGS with
//! ACK, PING, GOAWAY, RST_STREAM, WINDOW_UPDATE flow control in both directions,
//! HEADERS/CONTINUATION with HPACK ([`super::hpack`]), concurrent streams. No server push, no
//! priorities (accepted and ignored), no trailers on responses.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use http::StatusCode;
use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep_until, timeout, Instant};

use super::h2frame::{self as frame, ConnectionError, ErrorCode, Frame, FrameReader, Setting};
use super::hpack;
use super::noise_stream::NoiseStream;
use super::serve::{ServeError, ServeOptions};
use super::{Abort, Body, Request, Response, Ts2021Service};
use tenscale_base::keys::MachinePublic;

/// SETTINGS_HEADER_TABLE_SIZE we leave at its default, so clients may index from the start.
const HEADER_TABLE_SIZE: usize = 4096;
/// Largest request header block (HEADERS + CONTINUATION) we assemble.
const MAX_HEADER_BLOCK: usize = 16 * 1024;
/// Largest decoded header list (RFC 7541 sizes: name + value + 32 each) we accept.
const MAX_HEADER_LIST: usize = 64 * 1024;
/// Longest single header string.
const MAX_HEADER_STRING: usize = 8 * 1024;
/// Receive-window credit is handed back in batches of at least this much.
const WINDOW_UPDATE_BATCH: i64 = 16 * 1024;
/// Output buffers larger than this are released after a write instead of kept for the next.
const KEEP_OUTPUT_CAPACITY: usize = 1024;

/// Serves HTTP/2 (prior knowledge) on an established Noise stream until the client goes away.
pub(super) async fn serve<T>(
    io: NoiseStream<T>,
    machine: MachinePublic,
    service: Arc<dyn Ts2021Service>,
    opts: ServeOptions,
) -> Result<(), ServeError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut conn = Connection::new(io, machine, service, opts);
    frame::put_settings(&mut conn.out, conn.opts.max_concurrent_streams, MAX_HEADER_LIST as u32);
    let handshake = conn.opts.handshake_timeout;
    timeout(handshake, async {
        conn.flush().await?;
        conn.read_preface().await
    })
    .await
    .map_err(|_| ServeError::HandshakeTimeout)??;
    let result = conn.run().await;
    if let Err(ServeError::Protocol(err)) = &result {
        frame::put_goaway(&mut conn.out, conn.last_stream, err.code, err.reason);
        let _ = timeout(handshake, conn.flush()).await;
    }
    result
}

struct Connection<T> {
    io: NoiseStream<T>,
    reader: FrameReader,
    decoder: hpack::Decoder,
    /// Frames waiting to be written; written whole after every event.
    out: Vec<u8>,
    machine: MachinePublic,
    service: Arc<dyn Ts2021Service>,
    opts: ServeOptions,
    peer: PeerSettings,
    /// Connection-level send window (what the client lets us send).
    send_window: i64,
    /// Connection-level receive window (what we let the client send).
    recv_window: i64,
    /// Highest stream id the client opened; new ones must be above it.
    last_stream: u32,
    streams: Vec<Stream>,
    /// A HEADERS frame without END_HEADERS, waiting for its CONTINUATIONs.
    assembling: Option<HeaderBlock>,
    ping: PingState,
}

struct PeerSettings {
    initial_window: i64,
    max_frame: usize,
}

struct HeaderBlock {
    stream: u32,
    block: Vec<u8>,
    end_stream: bool,
}

struct Stream {
    id: u32,
    send_window: i64,
    recv_window: i64,
    phase: Phase,
}

enum Phase {
    /// Headers seen, body arriving. A refused request still reads (and drops) its body so
    /// that the answer comes after the request, as the client expects.
    Receiving { head: Result<Head, Refusal>, body: Vec<u8> },
    /// The service runs.
    Answering(BoxFuture<'static, Result<Response, Abort>>),
    /// Headers are out; DATA follows.
    Responding(Outbound),
}

struct Outbound {
    /// Body bytes not yet sent (flow control or frame size held them back).
    pending: Bytes,
    /// More chunks to come (a long poll); `None` once the body ends after `pending`.
    chunks: Option<BoxStream<'static, Result<Bytes, Abort>>>,
    /// Since when `pending` has waited without a byte going out (the peer's windows are
    /// shut); `None` while it moves or is empty. See [`Connection::reset_stalled`].
    stalled_since: Option<Instant>,
}

/// Why a request is answered without calling the service.
enum Refusal {
    /// No `:method` or no `:path`.
    NoMethodOrPath,
    /// The body outgrew `max_body_bytes`.
    BodyTooLarge,
    /// The service refused it by its head ([`Ts2021Service::refuse`]); the body is dropped.
    ByHead(Response),
}

/// Liveness checking: one PING outstanding at most.
struct PingState {
    next_at: Option<Instant>,
    outstanding: Option<([u8; 8], Instant)>,
}

/// What woke the connection.
enum Wake {
    Frame(Result<Frame, ConnectionError>),
    Closed,
    Answered(u32, Result<Response, Abort>),
    Chunk(u32, Option<Result<Bytes, Abort>>),
    Timer,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection<T> {
    fn new(io: NoiseStream<T>, machine: MachinePublic, service: Arc<dyn Ts2021Service>, opts: ServeOptions) -> Self {
        let ping = PingState { next_at: opts.ping_interval.map(|every| Instant::now() + every), outstanding: None };
        Self {
            io,
            reader: FrameReader::new(),
            decoder: hpack::Decoder::new(HEADER_TABLE_SIZE),
            out: Vec::new(),
            machine,
            service,
            opts,
            peer: PeerSettings { initial_window: frame::DEFAULT_WINDOW, max_frame: frame::DEFAULT_MAX_FRAME },
            send_window: frame::DEFAULT_WINDOW,
            recv_window: frame::DEFAULT_WINDOW,
            last_stream: 0,
            streams: Vec::new(),
            assembling: None,
            ping,
        }
    }

    async fn read_preface(&mut self) -> Result<(), ServeError> {
        let mut preface = [0; frame::PREFACE.len()];
        self.io.read_exact(&mut preface).await?;
        if &preface != frame::PREFACE {
            return Err(ConnectionError::protocol("not an HTTP/2 preface").into());
        }
        match poll_fn(|cx| self.reader.poll_frame(&mut self.io, cx)).await? {
            Some(Ok(Frame::Settings { ack: false, params })) => self.apply_settings(&params).map_err(Into::into),
            Some(Ok(_)) => Err(ConnectionError::protocol("first frame is not SETTINGS").into()),
            Some(Err(err)) => Err(err.into()),
            None => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
        }
    }

    async fn run(&mut self) -> Result<(), ServeError> {
        loop {
            self.flush().await?;
            let deadline = self.next_deadline();
            let wake = tokio::select! {
                read = poll_fn(|cx| self.reader.poll_frame(&mut self.io, cx)) => match read? {
                    Some(frame) => Wake::Frame(frame),
                    None => Wake::Closed,
                },
                wake = poll_fn(|cx| poll_streams(&mut self.streams, cx)) => wake,
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => Wake::Timer,
            };
            match wake {
                Wake::Frame(frame) => {
                    if !self.on_frame(frame?)? {
                        return Ok(());
                    }
                }
                Wake::Closed => return Ok(()),
                Wake::Answered(id, result) => self.respond(id, result),
                Wake::Chunk(id, chunk) => self.on_chunk(id, chunk),
                Wake::Timer => self.on_timer()?,
            }
            self.pump();
        }
    }

    /// Writes whatever frames are queued. While a write waits nothing else on this
    /// connection runs (not even the ping timer), so a peer that stops reading is cut off
    /// here after `write_timeout`.
    async fn flush(&mut self) -> Result<(), ServeError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let write = async {
            self.io.write_all(&self.out).await?;
            self.io.flush().await
        };
        timeout(self.opts.write_timeout, write).await.map_err(|_| ServeError::WriteTimeout)??;
        if self.out.capacity() > KEEP_OUTPUT_CAPACITY {
            self.out = Vec::new();
        } else {
            self.out.clear();
        }
        Ok(())
    }

    /// Handles one frame; `Ok(false)` when the client said GOAWAY.
    fn on_frame(&mut self, frame: Frame) -> Result<bool, ConnectionError> {
        if self.assembling.is_some() && !matches!(frame, Frame::Continuation { .. }) {
            return Err(ConnectionError::protocol("header block interrupted before END_HEADERS"));
        }
        match frame {
            Frame::Data { stream, data, flow_len, end_stream } => self.on_data(stream, data, flow_len, end_stream)?,
            Frame::Headers { stream, fragment, end_stream, end_headers } => {
                let block = HeaderBlock { stream, block: fragment, end_stream };
                if end_headers {
                    self.on_header_block(block)?;
                } else {
                    self.assembling = Some(block);
                }
            }
            Frame::Continuation { stream, fragment, end_headers } => {
                self.on_continuation(stream, fragment, end_headers)?
            }
            Frame::RstStream { stream, .. } => self.streams.retain(|s| s.id != stream),
            Frame::Settings { ack: false, params } => {
                self.apply_settings(&params)?;
                frame::put_settings_ack(&mut self.out);
            }
            Frame::Settings { ack: true, .. } | Frame::Priority { .. } | Frame::Unknown => {}
            Frame::Ping { ack: false, payload } => frame::put_ping(&mut self.out, true, payload),
            Frame::Ping { ack: true, payload } => {
                if self.ping.outstanding.is_some_and(|(sent, _)| sent == payload) {
                    self.ping.outstanding = None;
                }
            }
            Frame::GoAway { .. } => return Ok(false),
            Frame::WindowUpdate { stream, increment } => self.on_window_update(stream, increment)?,
            Frame::PushPromise => return Err(ConnectionError::protocol("clients cannot push")),
        }
        Ok(true)
    }

    fn apply_settings(&mut self, params: &[Setting]) -> Result<(), ConnectionError> {
        for setting in params {
            match *setting {
                Setting::InitialWindowSize(size) => {
                    // §6.9.2: the change applies to every open stream's window.
                    let delta = i64::from(size) - self.peer.initial_window;
                    self.peer.initial_window = i64::from(size);
                    for stream in &mut self.streams {
                        stream.send_window += delta;
                        if stream.send_window > frame::MAX_WINDOW {
                            return Err(ConnectionError {
                                code: ErrorCode::FlowControl,
                                reason: "INITIAL_WINDOW_SIZE overflows a stream window",
                            });
                        }
                    }
                }
                Setting::MaxFrameSize(size) => self.peer.max_frame = size as usize,
                // We never index response headers, never push and never open streams, so the
                // peer's table size, push and concurrency limits do not constrain us.
                Setting::HeaderTableSize(_)
                | Setting::EnablePush(_)
                | Setting::MaxConcurrentStreams(_)
                | Setting::MaxHeaderListSize(_) => {}
            }
        }
        Ok(())
    }

    fn on_data(&mut self, id: u32, data: Vec<u8>, flow_len: u32, end_stream: bool) -> Result<(), ConnectionError> {
        self.consume_connection_window(flow_len)?;
        let max_body = self.opts.max_body_bytes;
        let Some(stream) = self.streams.iter_mut().find(|s| s.id == id) else {
            if id > self.last_stream {
                return Err(ConnectionError::protocol("DATA on a stream that was never opened"));
            }
            // A stream we already answered or reset: its late DATA only counts for the window.
            return Ok(());
        };
        let Phase::Receiving { head, body } = &mut stream.phase else {
            return Ok(());
        };
        stream.recv_window -= i64::from(flow_len);
        if stream.recv_window < 0 {
            return Err(ConnectionError { code: ErrorCode::FlowControl, reason: "stream window exceeded" });
        }
        if head.is_ok() {
            if body.len() + data.len() > max_body {
                *head = Err(Refusal::BodyTooLarge);
                *body = Vec::new();
            } else {
                body.extend_from_slice(&data);
            }
        }
        if end_stream {
            self.finish_request(id);
        } else if frame::DEFAULT_WINDOW - stream.recv_window >= WINDOW_UPDATE_BATCH {
            let credit = frame::DEFAULT_WINDOW - stream.recv_window;
            stream.recv_window = frame::DEFAULT_WINDOW;
            frame::put_window_update(&mut self.out, id, credit as u32);
        }
        Ok(())
    }

    /// Counts received DATA against our connection window and hands credit back in batches:
    /// bodies are consumed at once, so the window only guards against a peer that ignores it.
    fn consume_connection_window(&mut self, flow_len: u32) -> Result<(), ConnectionError> {
        self.recv_window -= i64::from(flow_len);
        if self.recv_window < 0 {
            return Err(ConnectionError { code: ErrorCode::FlowControl, reason: "connection window exceeded" });
        }
        let credit = frame::DEFAULT_WINDOW - self.recv_window;
        if credit >= WINDOW_UPDATE_BATCH {
            self.recv_window = frame::DEFAULT_WINDOW;
            frame::put_window_update(&mut self.out, 0, credit as u32);
        }
        Ok(())
    }

    fn on_continuation(&mut self, id: u32, fragment: Vec<u8>, end_headers: bool) -> Result<(), ConnectionError> {
        let Some(mut pending) = self.assembling.take() else {
            return Err(ConnectionError::protocol("CONTINUATION without HEADERS"));
        };
        if pending.stream != id {
            return Err(ConnectionError::protocol("CONTINUATION on another stream"));
        }
        if pending.block.len() + fragment.len() > MAX_HEADER_BLOCK {
            return Err(ConnectionError::protocol("header block larger than 16 KiB"));
        }
        pending.block.extend_from_slice(&fragment);
        if end_headers {
            self.on_header_block(pending)
        } else {
            self.assembling = Some(pending);
            Ok(())
        }
    }

    fn on_header_block(
        &mut self,
        HeaderBlock { stream: id, block, end_stream }: HeaderBlock,
    ) -> Result<(), ConnectionError> {
        // Decode first, whatever happens to the stream: every block changes the HPACK state.
        let head = self.decode_request_head(&block)?;
        if let Some(stream) = self.streams.iter().find(|s| s.id == id) {
            // Trailers: only valid to end a body still arriving.
            if !end_stream || !matches!(stream.phase, Phase::Receiving { .. }) {
                return Err(ConnectionError::protocol("HEADERS on an open stream without END_STREAM"));
            }
            self.finish_request(id);
            return Ok(());
        }
        if id % 2 == 0 || id <= self.last_stream {
            return Err(ConnectionError::protocol("client stream ids must be odd and increasing"));
        }
        self.last_stream = id;
        if self.streams.len() >= self.opts.max_concurrent_streams as usize {
            frame::put_rst_stream(&mut self.out, id, ErrorCode::RefusedStream);
            return Ok(());
        }
        self.streams.push(Stream {
            id,
            send_window: self.peer.initial_window,
            recv_window: frame::DEFAULT_WINDOW,
            phase: Phase::Receiving { head: self.check_head(head), body: Vec::new() },
        });
        if end_stream {
            self.finish_request(id);
        }
        Ok(())
    }

    fn decode_request_head(&mut self, block: &[u8]) -> Result<PartialHead, ConnectionError> {
        let mut head = PartialHead::default();
        let mut list_size = 0;
        let mut emit = |name: &[u8], value: &[u8]| {
            list_size += name.len() + value.len() + 32;
            if list_size > MAX_HEADER_LIST {
                return Err(hpack::HpackError::Rejected("header list larger than 64 KiB"));
            }
            head.observe(name, value);
            Ok(())
        };
        self.decoder.decode(block, MAX_HEADER_STRING, &mut emit).map_err(|err| {
            tracing::debug!(machine = %self.machine, %err, "undecodable header block");
            ConnectionError { code: ErrorCode::Compression, reason: "undecodable header block" }
        })?;
        Ok(head)
    }

    /// A head the service will be asked about once the body is in, or why it will not.
    fn check_head(&self, head: PartialHead) -> Result<Head, Refusal> {
        let head = head.complete()?;
        match self.service.refuse(self.machine, &head.method, &head.path) {
            Some(response) => Err(Refusal::ByHead(response)),
            None => Ok(head),
        }
    }

    /// The request is complete: ask the service, or answer its refusal.
    fn finish_request(&mut self, id: u32) {
        let Some(stream) = self.streams.iter_mut().find(|s| s.id == id) else {
            return;
        };
        let Phase::Receiving { head, body } = std::mem::replace(&mut stream.phase, Phase::Responding(Outbound::done()))
        else {
            return;
        };
        match head {
            Ok(Head { method, path }) => {
                let request = Request { method, path, body: Bytes::from(body) };
                stream.phase = Phase::Answering(self.service.call(self.machine, request));
            }
            Err(refusal) => {
                let response = refusal.into_response(&self.machine);
                self.respond(id, Ok(response))
            }
        }
    }

    /// Sends the response headers and queues the body.
    fn respond(&mut self, id: u32, result: Result<Response, Abort>) {
        let Some(index) = self.streams.iter().position(|s| s.id == id) else {
            return;
        };
        let Ok(Response { status, content_type, body }) = result else {
            return self.reset(index);
        };
        let outbound = match body {
            Body::Full(bytes) => Outbound::body(bytes),
            Body::Stream(chunks) => Outbound { pending: Bytes::new(), chunks: Some(chunks), stalled_since: None },
        };
        let mut block = Vec::with_capacity(64);
        hpack::encode_status(status.as_u16(), &mut block);
        hpack::encode_literal("content-type", content_type.as_bytes(), &mut block);
        let ends_now = outbound.is_done();
        frame::put_headers(&mut self.out, id, &block, ends_now);
        if ends_now {
            self.streams.swap_remove(index);
        } else {
            self.streams[index].phase = Phase::Responding(outbound);
        }
    }

    /// The service gave up on a stream: RST_STREAM INTERNAL_ERROR, and the stream is forgotten.
    fn reset(&mut self, index: usize) {
        let stream = self.streams.swap_remove(index);
        frame::put_rst_stream(&mut self.out, stream.id, ErrorCode::Internal);
    }

    fn on_chunk(&mut self, id: u32, chunk: Option<Result<Bytes, Abort>>) {
        let Some(index) = self.streams.iter().position(|s| s.id == id) else {
            return;
        };
        let Phase::Responding(outbound) = &mut self.streams[index].phase else {
            return;
        };
        match chunk {
            Some(Ok(bytes)) => outbound.pending = bytes,
            Some(Err(Abort)) => self.reset(index),
            None => outbound.chunks = None,
        }
    }

    /// When the ping timer or a stalled stream ([`Self::reset_stalled`]) next needs the
    /// connection.
    fn next_deadline(&self) -> Option<Instant> {
        let ping = match self.ping.outstanding {
            Some((_, sent)) => Some(sent + self.opts.ping_timeout),
            None => self.ping.next_at,
        };
        let stall =
            self.streams.iter().filter_map(Stream::stalled_since).min().map(|since| since + self.opts.write_timeout);
        ping.into_iter().chain(stall).min()
    }

    fn on_timer(&mut self) -> Result<(), ServeError> {
        let now = Instant::now();
        self.reset_stalled(now);
        if let Some((_, sent)) = self.ping.outstanding {
            if sent + self.opts.ping_timeout <= now {
                return Err(ServeError::PingTimeout);
            }
        } else if let (Some(at), Some(every)) = (self.ping.next_at, self.opts.ping_interval) {
            if at <= now {
                let payload: [u8; 8] = rand::thread_rng().gen();
                frame::put_ping(&mut self.out, false, payload);
                self.ping.outstanding = Some((payload, now));
                self.ping.next_at = Some(now + every);
            }
        }
        Ok(())
    }

    /// Resets (RST_STREAM INTERNAL_ERROR, as Go's server does on a stream's write timeout)
    /// every stream whose body has waited `write_timeout` for flow-control credit. A peer
    /// that never reads a stream (it advertised a window of 0, or stopped releasing it) keeps
    /// answering pings, so nothing else would ever end it: it would hold its body and, for a
    /// long poll, its map session and that session's queue, for as long as the connection
    /// lives.
    fn reset_stalled(&mut self, now: Instant) {
        let limit = self.opts.write_timeout;
        let expired = |s: &Stream| s.stalled_since().is_some_and(|since| since + limit <= now);
        while let Some(index) = self.streams.iter().position(expired) {
            tracing::debug!(machine = %self.machine, stream = self.streams[index].id, "stream stalled by flow control; reset");
            self.reset(index);
        }
    }

    fn on_window_update(&mut self, id: u32, increment: u32) -> Result<(), ConnectionError> {
        if id == 0 {
            if increment == 0 {
                return Err(ConnectionError::protocol("connection WINDOW_UPDATE of 0"));
            }
            self.send_window += i64::from(increment);
            if self.send_window > frame::MAX_WINDOW {
                return Err(ConnectionError { code: ErrorCode::FlowControl, reason: "connection window above 2^31-1" });
            }
            return Ok(());
        }
        let Some(index) = self.streams.iter().position(|s| s.id == id) else {
            return Ok(());
        };
        let stream = &mut self.streams[index];
        stream.send_window += i64::from(increment);
        if increment == 0 || stream.send_window > frame::MAX_WINDOW {
            let code = if increment == 0 { ErrorCode::Protocol } else { ErrorCode::FlowControl };
            self.streams.swap_remove(index);
            frame::put_rst_stream(&mut self.out, id, code);
        }
        Ok(())
    }

    /// Moves pending body bytes into DATA frames as far as the windows allow; a stream whose
    /// body is complete gets END_STREAM and is forgotten.
    fn pump(&mut self) {
        let max_frame = self.peer.max_frame as i64;
        let now = Instant::now();
        let mut index = 0;
        while index < self.streams.len() {
            let stream = &mut self.streams[index];
            let Phase::Responding(outbound) = &mut stream.phase else {
                index += 1;
                continue;
            };
            let (mut ended, mut moved) = (false, false);
            while !outbound.pending.is_empty() {
                let allowed = self.send_window.min(stream.send_window).min(max_frame);
                if allowed <= 0 {
                    break;
                }
                let chunk = outbound.pending.split_to((allowed as usize).min(outbound.pending.len()));
                ended = outbound.pending.is_empty() && outbound.chunks.is_none();
                frame::put_data(&mut self.out, stream.id, &chunk, ended);
                self.send_window -= chunk.len() as i64;
                stream.send_window -= chunk.len() as i64;
                moved = true;
            }
            // The clock runs from the last byte that went out.
            outbound.stalled_since = if outbound.pending.is_empty() {
                None
            } else if moved {
                Some(now)
            } else {
                outbound.stalled_since.or(Some(now))
            };
            if outbound.is_done() {
                // A body that was already empty still needs its END_STREAM.
                if !ended {
                    frame::put_data(&mut self.out, stream.id, &[], true);
                }
                self.streams.swap_remove(index);
            } else {
                index += 1;
            }
        }
    }
}

/// Polls every stream's service call and streamed body; ready with the first thing that
/// happened.
fn poll_streams(streams: &mut [Stream], cx: &mut Context<'_>) -> Poll<Wake> {
    for stream in streams.iter_mut() {
        match &mut stream.phase {
            Phase::Answering(call) => {
                if let Poll::Ready(result) = call.as_mut().poll(cx) {
                    return Poll::Ready(Wake::Answered(stream.id, result));
                }
            }
            Phase::Responding(outbound) if outbound.awaits_chunk() => {
                if let Some(chunks) = outbound.chunks.as_mut() {
                    if let Poll::Ready(next) = chunks.poll_next_unpin(cx) {
                        return Poll::Ready(Wake::Chunk(stream.id, next));
                    }
                }
            }
            _ => {}
        }
    }
    Poll::Pending
}

impl Stream {
    fn stalled_since(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Responding(outbound) => outbound.stalled_since,
            _ => None,
        }
    }
}

impl Outbound {
    fn body(pending: Bytes) -> Self {
        Self { pending, chunks: None, stalled_since: None }
    }

    fn done() -> Self {
        Self::body(Bytes::new())
    }

    fn is_done(&self) -> bool {
        self.pending.is_empty() && self.chunks.is_none()
    }

    /// A streamed body with nothing in flight: the next chunk may be asked for.
    fn awaits_chunk(&self) -> bool {
        self.pending.is_empty() && self.chunks.is_some()
    }
}

/// The pseudo-headers a request needs, as they arrive; everything else in a request head is
/// ignored.
#[derive(Default)]
struct PartialHead {
    method: Option<String>,
    path: Option<String>,
}

/// A request head with both pseudo-headers the service needs.
struct Head {
    method: String,
    path: String,
}

impl PartialHead {
    fn observe(&mut self, name: &[u8], value: &[u8]) {
        let value = || String::from_utf8_lossy(&value[..value.len().min(256)]).into_owned();
        match name {
            b":method" => self.method = Some(value()),
            b":path" => self.path = Some(value()),
            _ => {}
        }
    }

    fn complete(self) -> Result<Head, Refusal> {
        match (self.method, self.path) {
            (Some(method), Some(path)) => Ok(Head { method, path }),
            _ => Err(Refusal::NoMethodOrPath),
        }
    }
}

impl Refusal {
    fn into_response(self, machine: &MachinePublic) -> Response {
        let (status, text) = match self {
            Self::NoMethodOrPath => (StatusCode::BAD_REQUEST, "bad request: request without :method or :path"),
            Self::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
            // The service said why (and logged it).
            Self::ByHead(response) => return response,
        };
        tracing::debug!(%machine, text, "control request refused");
        Response::text(status, text.into())
    }
}

#[cfg(test)]
#[path = "h2conn_tests.rs"]
mod tests;
