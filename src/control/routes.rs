//! The control plane's route table: which ts2021 request goes to which handler, and what the
//! two endpoints mean on the wire. `/machine/register` and `/machine/map` each have one
//! function here (`register`, `map`); anything else is a 404, another method a 400.
//!
//! [`Routes`] is the [`Ts2021Service`] the transport calls. It decodes JSON bodies (a bad one
//! is a 400), frames map messages as the request's `Compress` asks
//! ([`crate::netmap::framing`]), and fills the silences of a long poll with keep-alives. The
//! register/map logic itself lives behind [`ControlHandler`] ([`super::service`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use http::StatusCode;
use rand::Rng;
use tokio::time::{Instant, Sleep};

use super::ts2021::{Abort, Request, Response, Ts2021Service};
use crate::keys::MachinePublic;
use crate::netmap::framing::{Compression, MapMessage};
use crate::netmap::tailcfg::{MapRequest, MapResponse, RegisterRequest, RegisterResponse};

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
/// (A body over the size limit never reaches a handler: the transport answers 413 itself.)
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
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// When a long poll with nothing to say sends `{"KeepAlive":true}`.
#[derive(Clone, Copy, Debug)]
pub struct KeepAlive {
    /// Silence on a map stream after which a keep-alive goes out (clients give up at 120 s).
    pub interval: Duration,
    /// Random extra added to each wait, so sessions do not tick in lockstep.
    pub jitter: Duration,
}

impl Default for KeepAlive {
    fn default() -> Self {
        Self { interval: Duration::from_secs(50), jitter: Duration::from_secs(9) }
    }
}

impl KeepAlive {
    /// The next silence to wait out: the interval plus a fresh share of the jitter.
    fn wait(&self) -> Duration {
        let jitter_ms = self.jitter.as_millis() as u64;
        let extra = if jitter_ms == 0 { 0 } else { rand::thread_rng().gen_range(0..=jitter_ms) };
        self.interval + Duration::from_millis(extra)
    }
}

/// The control plane as the transport sees it: the route table in front of a handler.
pub struct Routes {
    handler: Arc<dyn ControlHandler>,
    keepalive: KeepAlive,
}

impl Routes {
    pub fn new(handler: Arc<dyn ControlHandler>, keepalive: KeepAlive) -> Arc<Self> {
        Arc::new(Self { handler, keepalive })
    }
}

impl Ts2021Service for Routes {
    fn call(&self, machine: MachinePublic, request: Request) -> BoxFuture<'static, Result<Response, Abort>> {
        let (handler, keepalive) = (self.handler.clone(), self.keepalive);
        Box::pin(async move {
            let answer = match endpoint(&request.method, &request.path) {
                Ok(Endpoint::Register) => register(handler, machine, &request.body).await,
                Ok(Endpoint::Map) => map(handler, machine, &request.body, keepalive).await,
                Err(err) => Err(err.into()),
            };
            match answer {
                Ok(response) => Ok(response),
                Err(Failure::Refused(err)) => Ok(refusal(&machine, &err)),
                Err(Failure::Aborted) => Err(Abort),
            }
        })
    }

    /// The route table's refusals come before the body: it is dropped as it arrives.
    fn refuse(&self, machine: MachinePublic, method: &str, path: &str) -> Option<Response> {
        endpoint(method, path).err().map(|err| refusal(&machine, &err))
    }
}

enum Endpoint {
    Register,
    Map,
}

/// Why an endpoint did not answer 200.
enum Failure {
    /// A 4xx or 5xx with the error's text.
    Refused(ControlError),
    /// No answer at all: the stream is reset.
    Aborted,
}

impl From<ControlError> for Failure {
    fn from(err: ControlError) -> Self {
        Self::Refused(err)
    }
}

impl From<Abort> for Failure {
    fn from(Abort: Abort) -> Self {
        Self::Aborted
    }
}

/// The route table. The path decides first (an unknown one is a 404 whatever the method).
fn endpoint(method: &str, path: &str) -> Result<Endpoint, ControlError> {
    let endpoint = match path.split('?').next().unwrap_or_default() {
        "/machine/register" => Endpoint::Register,
        "/machine/map" => Endpoint::Map,
        other => return Err(ControlError::NotFound(format!("no handler for {other}"))),
    };
    if method != "POST" {
        return Err(ControlError::BadRequest(format!("{method} not allowed")));
    }
    Ok(endpoint)
}

fn refusal(machine: &MachinePublic, err: &ControlError) -> Response {
    tracing::debug!(%machine, %err, "control request refused");
    Response::text(err.status(), err.to_string())
}

/// `POST /machine/register`: a JSON `RegisterRequest` in, a JSON `RegisterResponse` out.
async fn register(handler: Arc<dyn ControlHandler>, machine: MachinePublic, body: &[u8]) -> Result<Response, Failure> {
    let response = handler.register(machine, parse_json(body)?).await?;
    let json = serde_json::to_vec(&response).map_err(|err| ControlError::Internal(err.to_string()))?;
    Ok(Response::json(Bytes::from(json)))
}

/// `POST /machine/map`: a JSON `MapRequest` in; out, nothing (a lite update), one framed
/// message, or a long poll of framed messages with keep-alives between them.
async fn map(
    handler: Arc<dyn ControlHandler>,
    machine: MachinePublic,
    body: &[u8],
    keepalive: KeepAlive,
) -> Result<Response, Failure> {
    let request: MapRequest = parse_json(body)?;
    let compression = Compression::requested(&request.compress);
    match handler.map(machine, request).await? {
        MapReply::Empty => Ok(Response::json(Bytes::new())),
        MapReply::Once(msg) => Ok(Response::json(encode(&MapMessage::Response(msg), compression)?)),
        MapReply::Stream(messages) => {
            Ok(Response::json_stream(LongPoll::new(messages, compression, keepalive).boxed()))
        }
    }
}

fn parse_json<R: serde::de::DeserializeOwned>(body: &[u8]) -> Result<R, ControlError> {
    serde_json::from_slice(body).map_err(|err| ControlError::BadRequest(format!("invalid JSON: {err}")))
}

/// One map message as the request's `Compress` asks; a message that does not encode resets
/// its stream rather than sending the client something it cannot read.
fn encode(message: &MapMessage, compression: Compression) -> Result<Bytes, Abort> {
    message.framed_as(compression).map_err(|err| {
        tracing::warn!(%err, "cannot encode map response");
        Abort
    })
}

/// A long poll's body: the session's messages framed as the request asked, and a keep-alive
/// after every silence of [`KeepAlive::wait`]. The transport asks for the next chunk only
/// once the previous one is out, so a message stuck behind flow control delays the next
/// keep-alive rather than queueing one behind it. Ends when the session does.
struct LongPoll {
    messages: BoxStream<'static, MapMessage>,
    compression: Compression,
    keepalive: KeepAlive,
    /// When the next keep-alive is due; moved on by every chunk.
    silence: Pin<Box<Sleep>>,
}

impl LongPoll {
    fn new(messages: BoxStream<'static, MapMessage>, compression: Compression, keepalive: KeepAlive) -> Self {
        let silence = Box::pin(tokio::time::sleep(keepalive.wait()));
        Self { messages, compression, keepalive, silence }
    }

    fn restart_silence(&mut self) {
        let next = Instant::now() + self.keepalive.wait();
        self.silence.as_mut().reset(next);
    }
}

impl futures::Stream for LongPoll {
    type Item = Result<Bytes, Abort>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(next) = self.messages.poll_next_unpin(cx) {
            self.restart_silence();
            return Poll::Ready(next.map(|message| encode(&message, self.compression)));
        }
        ready!(self.silence.as_mut().poll(cx));
        self.restart_silence();
        Poll::Ready(Some(Ok(keep_alive_frame(self.compression))))
    }
}

/// `{"KeepAlive":true}`, framed once per process and compression: every idle long poll
/// sends it about once a minute, always the same bytes.
fn keep_alive_frame(compression: Compression) -> Bytes {
    static ZSTD: OnceLock<Bytes> = OnceLock::new();
    static PLAIN: OnceLock<Bytes> = OnceLock::new();
    let slot = match compression {
        Compression::Zstd => &ZSTD,
        Compression::Plain => &PLAIN,
    };
    if let Some(frame) = slot.get() {
        return frame.clone();
    }
    match MapMessage::from(MapResponse::keep_alive()).framed_as(compression) {
        Ok(frame) => slot.get_or_init(|| frame).clone(),
        // Not kept, and nothing sent: the next keep-alive tries again.
        Err(_) => Bytes::new(),
    }
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
