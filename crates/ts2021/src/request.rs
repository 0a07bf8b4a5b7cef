//! What the transport hands a service and what it takes back: a [`Request`] decoded from
//! HEADERS and DATA, a [`Response`] turned into HEADERS and DATA. Which path means what is the
//! service's business ([`Ts2021Service`]); the transport only frames.

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use http::StatusCode;

use tenscale_base::keys::MachinePublic;

/// What answers the requests of a ts2021 connection. Futures are `'static` so they can
/// outlive the borrow of the service (clone an `Arc` into them).
pub trait Ts2021Service: Send + Sync + 'static {
    /// Answers one request from the peer that proved `machine` in the Noise handshake.
    fn call(&self, machine: MachinePublic, request: Request) -> BoxFuture<'static, Result<Response, Abort>>;

    /// A refusal the head alone decides (a path nobody serves, a method it does not take),
    /// asked as soon as the head is in. A refused request's body is read and dropped, never
    /// buffered and never held to the body limit, and the refusal is answered once the body
    /// has arrived, as the client expects; [`Ts2021Service::call`] is not asked.
    fn refuse(&self, machine: MachinePublic, method: &str, path: &str) -> Option<Response> {
        let _ = (machine, method, path);
        None
    }
}

/// One complete request: its body has fully arrived and is within the connection's limit.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// As sent, query included.
    pub path: String,
    pub body: Bytes,
}

/// One answer: status and content type go out in HEADERS, the body in DATA frames under
/// flow control.
pub struct Response {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Body,
}

pub enum Body {
    /// The whole body at once; an empty one ends the stream with the HEADERS.
    Full(Bytes),
    /// A body sent chunk by chunk (a long poll): each chunk is written as soon as the windows
    /// allow, the next is asked for only once the previous one is out, and the body ends when
    /// the stream does. An `Err` resets the stream. The stream is dropped when the client
    /// goes away, so whatever it holds is released with the connection.
    Stream(BoxStream<'static, Result<Bytes, Abort>>),
}

/// The service cannot answer after all (say, a response that does not encode): the stream is
/// reset with INTERNAL_ERROR instead of answered. The service logs why.
#[derive(Debug)]
pub struct Abort;

impl Response {
    /// 200 with a JSON body.
    pub fn json(body: Bytes) -> Self {
        Self { status: StatusCode::OK, content_type: "application/json", body: Body::Full(body) }
    }

    /// 200 with a body of JSON messages sent as they come.
    pub fn json_stream(chunks: BoxStream<'static, Result<Bytes, Abort>>) -> Self {
        Self { status: StatusCode::OK, content_type: "application/json", body: Body::Stream(chunks) }
    }

    /// A refusal a person can read.
    pub fn text(status: StatusCode, text: String) -> Self {
        Self { status, content_type: "text/plain; charset=utf-8", body: Body::Full(Bytes::from(text)) }
    }
}
