//! The connections that leave HTTP: ts2021 and DERP, each over a raw upgrade the front took
//! over (`Upgrade: tailscale-control-protocol`, `Upgrade: DERP`) or over a WebSocket from a
//! browser. Here, not in the front, because handing a connection to a plane is wiring: the
//! front is a leaf that knows no plane, and each plane knows nothing of how its bytes arrived.
//!
//! Both kinds pass the per-address handshake rate first; a refusal is the same 429 the REST
//! API answers for its own limits (problem+json, `Retry-After`), built by the API's
//! `ratelimit::limited`, written on the raw connection or returned before the WebSocket 101.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::{guard, web, HttpRequest, HttpResponse};
use tokio::io::AsyncWriteExt as _;

use super::AppState;
use crate::control::ts2021::h2server::{self, ServeOptions};
use crate::front::websocket::{self, BrowserIo};
use crate::front::{self, BoxedIo, Takeover, UpgradeKind};

/// The front's hand-over of a raw upgrade, by kind.
pub(super) fn takeover_handler(state: Arc<AppState>) -> front::TakeoverHandler {
    Arc::new(move |takeover: Takeover| {
        let state = state.clone();
        Box::pin(async move {
            match takeover.kind {
                UpgradeKind::Control => serve_control(takeover, &state).await,
                UpgradeKind::Derp => serve_derp(takeover, &state).await,
            }
        })
    })
}

/// The WebSocket routes; registered before the routes of the same paths that answer
/// non-upgrade requests.
pub(super) fn websocket_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ts2021", web::route().guard(guard::fn_guard(|ctx| websocket::is_websocket(ctx.head()))).to(ws_control))
        .route("/derp", web::route().guard(guard::fn_guard(|ctx| is_derp_websocket(ctx.head()))).to(ws_derp));
}

async fn serve_control(takeover: Takeover, state: &AppState) {
    let Takeover { head, mut io, shutdown, peer, .. } = takeover;
    if refused_over_handshake_rate(state, peer, &mut io).await {
        return;
    }
    let Some(init) = crate::control::http::switch_protocols(head, &mut io).await else {
        return;
    };
    tokio::select! {
        result = h2server::accept_ts2021(io, &state.noise_key, &init, state.control.clone(), state.serve_options.clone()) => {
            if let Err(err) = result {
                state.control_failures.with_label_values(&[err.label()]).inc();
                tracing::debug!(%peer, %err, "control connection ended");
            }
        }
        _ = shutdown.cancelled() => {}
    }
}

async fn serve_derp(takeover: Takeover, state: &AppState) {
    let Takeover { head, mut io, shutdown, peer, .. } = takeover;
    drop(head); // a DERP connection may live for days
    if refused_over_handshake_rate(state, peer, &mut io).await {
        return;
    }
    if crate::derp::http::switch_protocols(&mut io, &state.derp.public_key()).await.is_err() {
        return;
    }
    tokio::select! {
        _ = crate::derp::serve_client(state.derp.clone(), io, peer) => {}
        _ = shutdown.cancelled() => {}
    }
}

/// The 429 for a handshake over the per-address rate, `None` under it.
fn over_handshake_rate(state: &AppState, peer: SocketAddr) -> Option<HttpResponse> {
    let wait = state.handshakes.check(peer.ip()).err()?;
    tracing::debug!(%peer, "handshake refused: over the per-address rate");
    Some(actix_web::ResponseError::error_response(&crate::api::ratelimit::limited(wait)))
}

/// Answers a raw upgrade over the handshake rate before any key work; `true` when it did.
async fn refused_over_handshake_rate(state: &AppState, peer: SocketAddr, io: &mut BoxedIo) -> bool {
    let Some(refusal) = over_handshake_rate(state, peer) else { return false };
    // A client that does not read this gets nothing more; it must not hold the task.
    let _ = tokio::time::timeout(state.settings.header_timeout, io.write_all(&http1_bytes(refusal))).await;
    true
}

/// `response` as HTTP/1.1 bytes on a connection that closes after it: for the raw upgrades,
/// whose connection actix no longer writes to. Only complete (non-streaming) bodies occur.
fn http1_bytes(response: HttpResponse) -> Vec<u8> {
    let status = response.status();
    let mut head = format!("HTTP/1.1 {} {}\r\n", status.as_str(), status.canonical_reason().unwrap_or(""));
    for (name, value) in response.headers() {
        if let Ok(value) = value.to_str() {
            head.push_str(&format!("{}: {value}\r\n", title_case(name.as_str())));
        }
    }
    let body = response.into_body().try_into_bytes().unwrap_or_default();
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

/// `retry-after` as `Retry-After`: actix keeps names lowercase (as HTTP/2 must), and HTTP/1.1
/// clients and people reading a capture expect each word capitalised.
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The browser's control channel: `GET /ts2021?X-Tailscale-Handshake=<base64 init>` as a
/// WebSocket with subprotocol `tailscale-control-protocol`. A missing or malformed initiation
/// is refused with 400 before the upgrade; after it, exactly the TCP path minus the early
/// payload (the Go server sends none here either).
async fn ws_control(req: HttpRequest, body: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let Some(init) = handshake_query(&req) else {
        return HttpResponse::BadRequest()
            .content_type("text/plain")
            .body("missing or malformed X-Tailscale-Handshake query parameter\n");
    };
    let state = state.into_inner();
    let peer = req.peer_addr();
    if let Some(refusal) = peer.and_then(|peer| over_handshake_rate(&state, peer)) {
        return refusal;
    }
    let options = ServeOptions { early_payload: false, ..state.serve_options.clone() };
    websocket::accept(
        &req,
        body,
        "tailscale-control-protocol",
        state.shutdown.clone(),
        move |io: BrowserIo| async move {
            if let Err(err) = h2server::accept_ts2021(io, &state.noise_key, &init, state.control.clone(), options).await
            {
                state.control_failures.with_label_values(&[err.label()]).inc();
                tracing::debug!(?peer, %err, "websocket control connection ended");
            }
        },
    )
}

/// The Noise initiation a browser sends in the query, when it decodes as one.
fn handshake_query(req: &HttpRequest) -> Option<String> {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string()).ok()?;
    // Base64 has no spaces: a `+` that was not percent-encoded decodes to one.
    let init = query.get("X-Tailscale-Handshake")?.replace(' ', "+");
    crate::control::ts2021::noise::decode_handshake_header(&init).is_ok().then_some(init)
}

/// DERP over WebSocket is chosen, as in the Go server, by `Upgrade: websocket` plus a
/// `Sec-WebSocket-Protocol` offering `derp`; anything else on `/derp` gets the 426.
fn is_derp_websocket(head: &actix_web::dev::RequestHead) -> bool {
    websocket::is_websocket(head) && websocket::offers_protocol(head, "derp")
}

/// The browser's DERP connection: the same frames as on TCP, in binary messages, with no
/// `Upgrade: DERP` 101 in front.
async fn ws_derp(req: HttpRequest, body: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    if let Some(refusal) = req.peer_addr().and_then(|peer| over_handshake_rate(&state, peer)) {
        return refusal;
    }
    let derp = state.derp.clone();
    let peer = req.peer_addr().unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    websocket::accept(&req, body, "derp", state.shutdown.clone(), move |io: BrowserIo| {
        crate::derp::serve_client(derp, io, peer)
    })
}
