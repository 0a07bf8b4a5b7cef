//! HTTP/2 inside the Noise channel: takes a connection after the HTTP 101, finishes the Noise
//! handshake, and serves `/machine/register` and `/machine/map` streams concurrently,
//! dispatching to a [`ControlHandler`]. Business logic lives behind the trait; this module
//! owns routing, body limits, status codes, map framing, flushing and keep-alives.
//!
//! Every request on a connection is tied to the machine key learned in the handshake.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{Method, Request, Response, StatusCode};
use rand::Rng;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep, timeout, Instant};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::control::framing::MapMessage;
use crate::control::noise::{accept, decode_handshake_header, error_message, NoiseError};
use crate::control::noise_stream::NoiseStream;
use crate::control::tailcfg::{MapRequest, MapResponse, RegisterRequest, RegisterResponse};
use crate::keys::{ChallengePublic, MachinePublic};

/// What the business layer implements. Futures are `'static` so they can outlive the borrow
/// of the handler (clone an `Arc` into them).
pub trait ControlHandler: Send + Sync + 'static {
    fn register(
        &self,
        machine: MachinePublic,
        req: RegisterRequest,
    ) -> BoxFuture<'static, Result<RegisterResponse, ControlError>>;
    fn map(&self, machine: MachinePublic, req: MapRequest) -> BoxFuture<'static, Result<MapReply, ControlError>>;
}

/// How to answer a `/machine/map` request. Small on purpose: it is part of the state of
/// every stream's task for as long as the stream lives.
pub enum MapReply {
    /// 200 with an empty body (lite update).
    Empty,
    /// Exactly one message, then the body ends.
    Once(Box<MapResponse>),
    /// A long poll: each item is framed (unless it already is) and flushed at once;
    /// keep-alives fill silences; the body ends when the stream ends. The stream is dropped
    /// when the client goes away.
    Stream(BoxStream<'static, MapMessage>),
}

/// A handler's refusal, mapped to an HTTP status in one place ([`ControlError::status`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControlError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ControlError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Why a connection ended badly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("noise: {0}")]
    Noise(#[from] NoiseError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("http/2: {0}")]
    H2(#[from] h2::Error),
    #[error("peer did not complete the handshake in time")]
    HandshakeTimeout,
    #[error("peer did not answer a ping in time")]
    PingTimeout,
}

/// Tunables of one connection.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Budget for writing the Noise response and reading the h2 preface.
    pub handshake_timeout: Duration,
    /// Silence on a map stream after which `{"KeepAlive":true}` goes out (client kills at 120 s).
    pub keepalive_interval: Duration,
    /// Random extra added to each keep-alive wait, so sessions do not tick in lockstep.
    pub keepalive_jitter: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Write the early payload (`nodeKeyChallenge`) after the handshake, as Headscale does.
    pub early_payload: bool,
    pub max_concurrent_streams: u32,
    /// Send an h2 PING this often to find dead peers; `None` disables it.
    pub ping_interval: Option<Duration>,
    /// How long a PING may go unanswered before the connection is dropped.
    pub ping_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(50),
            keepalive_jitter: Duration::from_secs(9),
            max_body_bytes: 1 << 20,
            early_payload: true,
            max_concurrent_streams: 64,
            ping_interval: Some(Duration::from_secs(120)),
            ping_timeout: Duration::from_secs(30),
        }
    }
}

/// Runs the ts2021 channel on `io`, the connection right after the HTTP 101 was written:
/// decodes the `X-Tailscale-Handshake` value, answers the Noise initiation (51-byte response +
/// early payload in one write), then serves HTTP/2 until the client goes away.
pub async fn accept_ts2021<T>(
    mut io: T,
    server_static: &StaticSecret,
    init_b64_header: &str,
    handler: Arc<dyn ControlHandler>,
    opts: ServeOptions,
) -> Result<(), ServeError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake = decode_handshake_header(init_b64_header).and_then(|init| accept(server_static, &init));
    let (response, machine, version, keys) = match handshake {
        Ok(done) => done,
        Err(err) => {
            // Like the Go server: tell the peer about malformed messages, then close.
            if matches!(
                err,
                NoiseError::BadLength(..) | NoiseError::BadType(_) | NoiseError::BadLengthField(_)
            ) {
                let _ = timeout(opts.handshake_timeout, io.write_all(&error_message(&err.to_string()))).await;
            }
            return Err(err.into());
        }
    };
    tracing::debug!(%machine, version, "ts2021 handshake done");
    let mut stream = NoiseStream::new(io, keys);
    stream.queue_raw(&response);
    if opts.early_payload {
        stream.queue_early_payload(&fresh_challenge())?;
    }
    timeout(opts.handshake_timeout, stream.flush_queued())
        .await
        .map_err(|_| ServeError::HandshakeTimeout)??;
    serve_connection(stream, machine, handler, opts).await
}

/// A throw-away challenge key: clients at 1.90 parse it but never use it.
fn fresh_challenge() -> ChallengePublic {
    let secret = StaticSecret::random_from_rng(rand::rngs::OsRng);
    ChallengePublic::from_bytes(PublicKey::from(&secret).to_bytes())
}

/// Serves HTTP/2 (prior knowledge) on an established Noise stream until the client goes away.
pub async fn serve_connection<T>(
    io: NoiseStream<T>,
    machine: MachinePublic,
    handler: Arc<dyn ControlHandler>,
    opts: ServeOptions,
) -> Result<(), ServeError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = h2::server::Builder::new();
    builder.max_concurrent_streams(opts.max_concurrent_streams);
    let mut conn = timeout(opts.handshake_timeout, builder.handshake::<_, Bytes>(io))
        .await
        .map_err(|_| ServeError::HandshakeTimeout)??;
    let pinger = ping_loop(conn.ping_pong(), opts.ping_interval, opts.ping_timeout);
    tokio::pin!(pinger);
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((req, respond))) => {
                    tokio::spawn(handle_stream(req, respond, machine, handler.clone(), opts.clone()));
                }
                Some(Err(err)) if err.is_io() || err.is_go_away() => {
                    tracing::debug!(%machine, %err, "ts2021 connection closed");
                    return Ok(());
                }
                Some(Err(err)) => return Err(err.into()),
                None => return Ok(()),
            },
            err = &mut pinger => return Err(err),
        }
    }
}

/// Pings the peer every `interval`; resolves (with the reason) only when the peer fails.
async fn ping_loop(pp: Option<h2::PingPong>, interval: Option<Duration>, wait: Duration) -> ServeError {
    let (Some(mut pp), Some(interval)) = (pp, interval) else {
        return std::future::pending().await;
    };
    loop {
        sleep(interval).await;
        match timeout(wait, pp.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => return err.into(),
            Err(_) => return ServeError::PingTimeout,
        }
    }
}

async fn handle_stream(
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    machine: MachinePublic,
    handler: Arc<dyn ControlHandler>,
    opts: ServeOptions,
) {
    let path = req.uri().path().to_owned();
    let outcome = match route(req, machine, &handler, &opts).await {
        Ok(reply) => write_reply(&mut respond, reply, &opts).await,
        Err(err) => {
            tracing::debug!(%machine, %path, %err, "control request refused");
            write_error(&mut respond, &err).await
        }
    };
    if let Err(err) = outcome {
        tracing::debug!(%machine, %path, %err, "control stream ended early");
    }
}

/// What a routed request answers before any byte goes out.
enum Reply {
    Json(Bytes),
    Map(MapReply),
}

async fn route(
    req: Request<RecvStream>,
    machine: MachinePublic,
    handler: &Arc<dyn ControlHandler>,
    opts: &ServeOptions,
) -> Result<Reply, ControlError> {
    let path = req.uri().path();
    if path != "/machine/register" && path != "/machine/map" {
        return Err(ControlError::NotFound(format!("no handler for {path}")));
    }
    if req.method() != Method::POST {
        return Err(ControlError::BadRequest(format!("{} not allowed", req.method())));
    }
    let is_register = path == "/machine/register";
    let body = read_body(req.into_body(), opts.max_body_bytes).await?;
    if is_register {
        let parsed = parse_json(&body)?;
        let resp = handler.register(machine, parsed).await?;
        let json = serde_json::to_vec(&resp).map_err(|err| ControlError::Internal(err.to_string()))?;
        Ok(Reply::Json(Bytes::from(json)))
    } else {
        let parsed = parse_json(&body)?;
        Ok(Reply::Map(handler.map(machine, parsed).await?))
    }
}

fn parse_json<R: serde::de::DeserializeOwned>(body: &[u8]) -> Result<R, ControlError> {
    serde_json::from_slice(body).map_err(|err| ControlError::BadRequest(format!("invalid JSON: {err}")))
}

async fn read_body(mut body: RecvStream, limit: usize) -> Result<Bytes, ControlError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|err| ControlError::BadRequest(format!("reading body: {err}")))?;
        // Hand the window back, or a large body stalls the whole connection.
        let _ = body.flow_control().release_capacity(chunk.len());
        if buf.len() + chunk.len() > limit {
            return Err(ControlError::PayloadTooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn response(status: StatusCode, content_type: &str) -> Response<()> {
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, value);
    }
    resp
}

async fn write_error(respond: &mut SendResponse<Bytes>, err: &ControlError) -> Result<(), h2::Error> {
    let mut send = respond.send_response(response(err.status(), "text/plain; charset=utf-8"), false)?;
    send_all(&mut send, Bytes::from(err.to_string())).await?;
    send.send_data(Bytes::new(), true)
}

async fn write_reply(respond: &mut SendResponse<Bytes>, reply: Reply, opts: &ServeOptions) -> Result<(), h2::Error> {
    let map_reply = match reply {
        Reply::Json(json) => {
            let mut send = respond.send_response(response(StatusCode::OK, "application/json"), false)?;
            send_all(&mut send, json).await?;
            return send.send_data(Bytes::new(), true);
        }
        Reply::Map(MapReply::Empty) => {
            respond.send_response(response(StatusCode::OK, "application/json"), true)?;
            return Ok(());
        }
        Reply::Map(other) => other,
    };
    let mut send = respond.send_response(response(StatusCode::OK, "application/json"), false)?;
    match map_reply {
        MapReply::Once(msg) => {
            send_message(&mut send, &MapMessage::Response(msg)).await?;
            send.send_data(Bytes::new(), true)
        }
        MapReply::Stream(messages) => stream_messages(send, messages, opts).await,
        MapReply::Empty => Ok(()),
    }
}

/// Pumps a long poll: messages as they come, keep-alives in silences, end with the stream.
async fn stream_messages(
    mut send: SendStream<Bytes>,
    mut messages: BoxStream<'static, MapMessage>,
    opts: &ServeOptions,
) -> Result<(), h2::Error> {
    let keepalive = sleep(keepalive_wait(opts));
    tokio::pin!(keepalive);
    loop {
        let msg = tokio::select! {
            next = messages.next() => match next {
                Some(msg) => msg,
                None => return send.send_data(Bytes::new(), true),
            },
            _ = &mut keepalive => MapMessage::from(MapResponse::keep_alive()),
            // The client cancelled the stream or the connection died: drop `messages`.
            reset = std::future::poll_fn(|cx| send.poll_reset(cx)) => {
                return match reset {
                    Ok(reason) => Err(reason.into()),
                    Err(err) => Err(err),
                };
            }
        };
        send_message(&mut send, &msg).await?;
        keepalive.as_mut().reset(Instant::now() + keepalive_wait(opts));
    }
}

fn keepalive_wait(opts: &ServeOptions) -> Duration {
    let jitter_ms = opts.keepalive_jitter.as_millis() as u64;
    let extra = if jitter_ms == 0 {
        0
    } else {
        rand::thread_rng().gen_range(0..=jitter_ms)
    };
    opts.keepalive_interval + Duration::from_millis(extra)
}

async fn send_message(send: &mut SendStream<Bytes>, msg: &MapMessage) -> Result<(), h2::Error> {
    let framed = msg.framed().map_err(|err| {
        tracing::warn!(%err, "cannot encode map response");
        send.send_reset(Reason::INTERNAL_ERROR);
        h2::Error::from(Reason::INTERNAL_ERROR)
    })?;
    send_all(send, framed).await
}

/// Sends `data` as DATA frames as flow-control capacity becomes available, so a slow reader
/// pushes back on the producer instead of growing h2's buffers.
async fn send_all(send: &mut SendStream<Bytes>, mut data: Bytes) -> Result<(), h2::Error> {
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let granted = match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(granted) => granted?,
            None => return Err(Reason::STREAM_CLOSED.into()),
        };
        if granted == 0 {
            continue;
        }
        let chunk = data.split_to(granted.min(data.len()));
        send.send_data(chunk, false)?;
    }
    Ok(())
}
