//! WebSocket upgrades for the browser (js/wasm) variants of ts2021 and DERP, inside actix-web.
//!
//! Why here and not in the front's sniffer: the front only looks at the *first* request of a
//! connection, which is right for Go clients (a fresh connection per upgrade) but not for
//! browsers and the reverse proxies in front of them, which may send the WebSocket upgrade on
//! a reused keep-alive connection. actix-http hands a WebSocket request's raw stream to the
//! handler on any request of a connection, and actix-ws brings the framing we would otherwise
//! write and test ourselves (masking, fragmentation, control frames, size limits). It never
//! negotiates permessage-deflate, and nothing checks `Origin`: both as the protocol asks.
//!
//! ```text
//! actix handler ─ accept() ─▶ 101 (Sec-WebSocket-Protocol: <protocol>)
//!   local task:  actix-ws MessageStream ─pump─▶ mpsc ─▶ Inbound ┐
//!                                                               ├─ WsStream ─▶ run(io)
//!                Session ◀──────────────────────────── Outbound ┘
//! ```
//!
//! actix-ws's `MessageStream` is `!Send` (it holds the request payload), while the protocol
//! code spawns `Send` tasks over its stream, so a pump task moves incoming binary payloads
//! into a bounded channel: [`BrowserIo`] is `Send`. The pump answers pings and turns a text
//! message or a framing error into a read error. When either side ends, the other follows,
//! and the server sends a Close frame: 1000 when the protocol finished, 1003 for a text
//! message, 1002 for a framing error, 1009 for an oversized message, 1012 on shutdown.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, ProtocolError, Session};
use bytes::Bytes;
use futures::{Sink, Stream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ws_stream::{WsStream, MAX_MESSAGE};

/// Largest incoming message (fragments included); bigger ones close the connection.
const MAX_INCOMING: usize = 256 * 1024;
/// Incoming messages buffered ahead of the protocol reader.
const INBOUND_QUEUE: usize = 4;

/// The byte stream a browser connection carries, as the protocol code sees it.
pub type BrowserIo = WsStream<Inbound, Outbound>;

/// Whether the request asks for a WebSocket upgrade (`Upgrade` lists `websocket`).
pub fn is_websocket(req: &actix_web::dev::RequestHead) -> bool {
    header_tokens(req, header::UPGRADE).any(|t| t.eq_ignore_ascii_case("websocket"))
}

/// Whether the client offers `protocol` in `Sec-WebSocket-Protocol` (tokens are case-sensitive).
pub fn offers_protocol(req: &actix_web::dev::RequestHead, protocol: &str) -> bool {
    header_tokens(req, header::SEC_WEBSOCKET_PROTOCOL).any(|t| t == protocol)
}

fn header_tokens(req: &actix_web::dev::RequestHead, name: header::HeaderName) -> impl Iterator<Item = &str> {
    req.headers.get_all(name).filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim)
}

/// Completes the upgrade selecting `protocol`, which the client must offer (else 400), and
/// runs `run` on the stream in a task of this worker until it returns, the client goes away,
/// or `shutdown` is cancelled. Handshake errors (not GET, no key, wrong version) get actix's
/// own 4xx answers.
pub fn accept<F, Fut>(
    req: &HttpRequest,
    body: web::Payload,
    protocol: &'static str,
    shutdown: CancellationToken,
    run: F,
) -> HttpResponse
where
    F: FnOnce(BrowserIo) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    if !offers_protocol(req.head(), protocol) {
        return HttpResponse::BadRequest()
            .content_type("text/plain")
            .body(format!("Sec-WebSocket-Protocol must offer `{protocol}`\n"));
    }
    let (response, session, messages) = match actix_ws::handle_with_protocols(req, body, &[protocol]) {
        Ok(upgraded) => upgraded,
        Err(err) => return err.error_response(),
    };
    // A WebSocket stays one HTTP request to actix for its whole life: out of the time limit.
    if let Some(mark) = req.conn_data::<super::UpgradeMark>() {
        mark.set();
    }
    let messages = messages.max_frame_size(MAX_INCOMING).aggregate_continuations().max_continuation_size(MAX_INCOMING);
    let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
    let io = WsStream::new(Inbound(rx), Outbound(session.clone()));
    actix_web::rt::spawn(async move {
        let from_client = pump(messages, session.clone(), tx);
        let protocol = async {
            tokio::select! {
                () = run(io) => CloseCode::Normal,
                () = shutdown.cancelled() => CloseCode::Restart,
            }
        };
        let (client_code, server_code) = futures::join!(from_client, protocol);
        let _ = session.close(Some(client_code.unwrap_or(server_code).into())).await;
    });
    response
}

/// Moves binary payloads from the client into `tx` until the client closes, sends something
/// we refuse (returns the close code for it), or the protocol side drops its stream.
async fn pump(
    mut messages: AggregatedMessageStream,
    mut session: Session,
    tx: mpsc::Sender<io::Result<Bytes>>,
) -> Option<CloseCode> {
    loop {
        let next = tokio::select! {
            next = messages.recv() => next,
            () = tx.closed() => return None,
        };
        let (code, err) = match next {
            Some(Ok(AggregatedMessage::Binary(payload))) => {
                if tx.send(Ok(payload)).await.is_err() {
                    return None;
                }
                continue;
            }
            Some(Ok(AggregatedMessage::Ping(data))) => {
                let _ = session.pong(&data).await;
                continue;
            }
            Some(Ok(AggregatedMessage::Pong(_))) => continue,
            Some(Ok(AggregatedMessage::Close(_))) | None => return None,
            Some(Ok(AggregatedMessage::Text(_))) => (CloseCode::Unsupported, "text message on a binary stream".into()),
            Some(Err(ProtocolError::Overflow)) => (CloseCode::Size, "message too large".into()),
            Some(Err(err)) => (CloseCode::Protocol, format!("websocket: {err}")),
        };
        let _ = tx.send(Err(io::Error::new(io::ErrorKind::InvalidData, err))).await;
        return Some(code);
    }
}

/// Incoming binary payloads, fed by the pump.
pub struct Inbound(mpsc::Receiver<io::Result<Bytes>>);

impl Stream for Inbound {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().0.poll_recv(cx)
    }
}

/// Outgoing payloads, each sent as one binary message.
pub struct Outbound(Session);

fn closed(_: actix_ws::Closed) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "websocket closed")
}

impl Sink<Bytes> for Outbound {
    type Error = io::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_ready(cx).map_err(closed)
    }

    fn start_send(self: Pin<&mut Self>, item: Bytes) -> io::Result<()> {
        debug_assert!(item.len() <= MAX_MESSAGE);
        Pin::new(&mut self.get_mut().0).start_send(actix_ws::Message::Binary(item)).map_err(closed)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx).map_err(closed)
    }

    /// A no-op: the task around the protocol sends the Close frame, with the right code.
    /// (actix-ws's own `poll_close` would mark every clone of the session closed first.)
    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
