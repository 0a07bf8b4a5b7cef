//! Start-up: builds every plane from [`Settings`] and serves them on one listener.
//!
//! ```text
//! listener ─ front ─┬─ /ts2021 upgrade ─▶ control::http 101 ─▶ control::ts2021 ─▶ control::service ─▶ state, netmap
//!                   ├─ /derp upgrade ───▶ derp::http 101 ─▶ derp::server (admission: netmap::derp_admission)
//!                   └─ everything else ─▶ actix-web App (api, /key, probes, /docs)
//!                                           ├─ GET /ts2021 WebSocket ─▶ control::ts2021 (no early payload)
//!                                           └─ GET /derp WebSocket ───▶ derp::server
//! UDP ─ derp::stun
//! ```
//! Tests call [`start`] with `listen_addr` port 0 and read the bound address back.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use actix_web::{guard, web, App, HttpRequest, HttpResponse};
use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use x25519_dalek::StaticSecret;

use crate::api::ApiState;
use crate::config::Settings;
use crate::control::http::ServerKey;
use crate::control::routes::{KeepAlive, Routes};
use crate::control::service::ControlService;
use crate::control::ts2021::h2server::{self, ServeOptions};
use crate::derp::crypto::DerpSecret;
use crate::derp::mesh::MeshKey;
use crate::derp::server::{DerpConfig, DerpMetrics, DerpServer};
use crate::front::limits::HandshakeRate;
use crate::front::websocket::{self, BrowserIo};
use crate::front::{self, BoxedIo, FrontOptions, Takeover, UpgradeKind};
use crate::keys::{MachinePublic, NodePublic};
use crate::netmap::derp_admission::StoreAdmission;
use crate::netmap::Tailnet;
use crate::state::lease::{Lease, LeaseOptions};
use crate::state::store::Store;
use crate::state::{Bus, Event, Writer};

/// What the upgrade handlers (ts2021 and DERP, over TCP or WebSocket) can reach, and the API's
/// own state.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub api: Arc<ApiState>,
    pub derp: Arc<DerpServer>,
    /// The route table and register/map logic behind every ts2021 connection, TCP or WebSocket.
    pub control: Arc<Routes>,
    /// The server's Noise private key.
    pub noise_key: Arc<StaticSecret>,
    /// Cancelled when a graceful stop begins.
    pub shutdown: CancellationToken,
    /// This instance's lease (set once the listener is bound, since it names the address).
    pub lease: tokio::sync::OnceCell<Lease>,
    /// Control connections that ended in an error, by [`h2server::ServeError::label`].
    pub control_failures: prometheus::IntCounterVec,
    /// How fast one address may start control and DERP handshakes.
    pub handshakes: HandshakeRate,
}

/// A started server.
pub struct RunningApp {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub handle: actix_server::ServerHandle,
    /// Where STUN listens, when enabled.
    pub stun_addr: Option<SocketAddr>,
}

/// Connects to the database, migrates, loads the server keys and starts serving.
pub async fn start(settings: Settings) -> anyhow::Result<RunningApp> {
    let settings = Arc::new(settings);
    let store = Store::connect(settings.database_url.expose()).await.context("connecting to the database")?;
    store.migrate().await.context("applying migrations")?;
    let metrics = prometheus::Registry::new();

    let bus = match &settings.redis_url {
        Some(url) => Bus::redis(url.expose(), &settings.redis_channel).await.context("connecting to Redis")?,
        None => Bus::local(),
    };
    let writer = Writer::new(store.clone(), bus.clone());
    let incoming = crate::state::events::start_reader(store.clone(), &bus).await.context("reading the outbox")?;
    let tailnet = Tailnet::new(store.clone(), settings.clone(), writer.clone());
    tailnet.register_metrics(&metrics)?;
    // Instances already running know who streams from them; ask them to say so.
    writer.presence_sync().await.context("recording the start-up presence sync")?;
    writer.spawn_pruning(settings.event_retention, std::time::Duration::from_secs(600));

    let noise_key = load_secret(&writer, "noise_private_key").await?;
    let noise_key = StaticSecret::from(noise_key);
    let derp_secret = DerpSecret::from_bytes(load_secret(&writer, "derp_private_key").await?);
    let derp_metrics = DerpMetrics::register(&metrics)?;
    let admission = Arc::new(StoreAdmission::new(store.clone()));
    let mesh_key = settings.derp.mesh_key.as_ref().and_then(|k| MeshKey::parse(k.expose()));
    let derp_config = DerpConfig {
        mesh_key,
        client_info_timeout: settings.handshake_timeout,
        send_rate_bytes_per_second: settings.derp.send_rate_bytes_per_second,
        ..DerpConfig::default()
    };
    let derp = DerpServer::new(derp_secret, derp_config, admission, derp_metrics);
    apply_events(incoming, Arc::downgrade(&tailnet), derp.clone());
    schedule_ephemeral_cleanup(&store, &tailnet).await?;
    writer.spawn_expiry_sweep(std::time::Duration::from_secs(5), Arc::downgrade(&tailnet));

    let stun_addr = match settings.stun_addr {
        Some(addr) => Some(start_stun(addr, &metrics).await?),
        None => None,
    };

    let rate_limits = crate::api::ratelimit::RateLimits::new(settings.rate_limit);
    let secrets = crate::secrets::SecretsKey::load(
        settings.secrets_key.as_ref().map(|k| k.expose()),
        settings.database_url.expose(),
    )?;
    let browser_keys =
        crate::api::browser_keys::BrowserKeys::new(secrets, settings.browser_key_rate_per_minute, &metrics)?;
    let server_key = ServerKey(MachinePublic::from_bytes(x25519_dalek::PublicKey::from(&noise_key).to_bytes()));
    let keepalive = KeepAlive { interval: settings.keepalive_interval, ..KeepAlive::default() };
    let control = Routes::new(ControlService::new(store.clone(), writer.clone(), tailnet.clone()), keepalive);
    let shutdown = CancellationToken::new();
    let control_failures = prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "tenscale_control_connections_failed_total",
            "Control (ts2021) connections that ended in an error: handshake_timeout, ping_timeout, write_timeout, noise, protocol, io",
        ),
        &["reason"],
    )?;
    metrics.register(Box::new(control_failures.clone()))?;
    let front_metrics = front::limits::FrontMetrics::register(&metrics)?;
    let handshakes =
        HandshakeRate::new(settings.handshake_rate_per_ip, settings.handshake_burst_per_ip, &front_metrics);
    let api =
        Arc::new(ApiState { settings: settings.clone(), store, writer, tailnet, metrics, rate_limits, browser_keys });
    let state = Arc::new(AppState {
        settings: settings.clone(),
        api,
        derp,
        control,
        noise_key: Arc::new(noise_key),
        shutdown: shutdown.clone(),
        lease: tokio::sync::OnceCell::new(),
        control_failures,
        handshakes,
    });
    let takeover = takeover_handler(state.clone());

    let listener = std::net::TcpListener::bind(settings.listen_addr)
        .with_context(|| format!("binding {}", settings.listen_addr))?;
    let addr = listener.local_addr()?;
    take_lease(&state, addr).await?;
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(front::tls::load_server_config(cert, key)?),
        _ => None,
    };
    let app_state = web::Data::from(state.clone());
    let api_state = web::Data::from(state.api.clone());
    let key_data = web::Data::new(server_key);
    let body_limit = settings.body_limit_bytes;
    let app_factory = move || {
        App::new()
            .app_data(app_state.clone())
            .app_data(api_state.clone())
            .app_data(key_data.clone())
            .app_data(web::PayloadConfig::new(body_limit))
            // Before the routes of the same paths that answer non-upgrade requests.
            .route(
                "/ts2021",
                web::route().guard(guard::fn_guard(|ctx| websocket::is_websocket(ctx.head()))).to(ws_control),
            )
            .route("/derp", web::route().guard(guard::fn_guard(|ctx| is_derp_websocket(ctx.head()))).to(ws_derp))
            .configure(crate::api::configure)
            .configure(crate::control::http::configure)
            .configure(crate::derp::http::configure)
            .default_service(web::to(crate::api::no_such_endpoint))
    };
    let options = FrontOptions {
        workers: worker_count(&settings),
        header_timeout: settings.header_timeout,
        keep_alive: settings.keep_alive,
        // A request's head has the header timeout and its body the body timeout.
        request_timeout: settings.header_timeout + settings.body_timeout,
        max_connections: settings.max_connections,
        max_connections_per_ip: settings.max_connections_per_ip,
        metrics: front_metrics,
        shutdown,
        ..FrontOptions::default()
    };
    let server = front::serve(listener, tls, app_factory, takeover, options)?;
    let handle = server.handle();
    actix_rt::spawn(server);
    tracing::info!(%addr, "tenscale listening");
    Ok(RunningApp { addr, state, handle, stun_addr })
}

impl RunningApp {
    /// The graceful stop: the lease is released at once (the other instances mark this one's
    /// nodes offline and take over its clean-up), DERP clients are told to reconnect (to
    /// another instance, through the load balancer), then the listener closes, in-flight API
    /// requests are answered and map streams end.
    pub async fn drain(&self) {
        if let Some(lease) = self.state.lease.get() {
            if let Err(err) = lease.release().await {
                tracing::warn!(%err, "could not release the instance lease; it lapses on its own");
            }
        }
        self.state.derp.shutdown().await;
        self.handle.stop(true).await;
    }
}

/// Takes this instance's lease, naming where its relay meshes, and keeps the relay's mesh
/// links in line with the other live instances.
async fn take_lease(state: &AppState, addr: SocketAddr) -> anyhow::Result<()> {
    let settings = &state.settings;
    let mesh_url = match (&settings.derp.mesh_key, &settings.derp.mesh_url) {
        (None, _) => None,
        (Some(_), Some(url)) => Some(url.clone()),
        (Some(_), None) if addr.ip().is_unspecified() => {
            anyhow::bail!("TENSCALE_DERP_MESH_URL must name this instance's address when listening on {addr}")
        }
        (Some(_), None) => Some(format!("http://{addr}")),
    };
    let options = LeaseOptions { ttl: settings.presence_lease, mesh_url };
    let lease = Lease::start(state.api.writer.clone(), options).await.context("taking the instance lease")?;
    let mut others = lease.others();
    let derp = state.derp.clone();
    tokio::spawn(async move {
        loop {
            let urls: Vec<String> = others.borrow_and_update().iter().filter_map(|l| l.mesh_url.clone()).collect();
            derp.set_mesh_peers(&urls);
            if others.changed().await.is_err() {
                return;
            }
        }
    });
    state.lease.set(lease).map_err(|_| anyhow::anyhow!("the lease was taken twice"))
}

fn worker_count(settings: &Settings) -> usize {
    match settings.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    }
}

/// A 32-byte private key kept in the store, created on first start; every instance on the
/// same database shares it, and a restart keeps it, so clients stay registered.
async fn load_secret(writer: &Writer, name: &str) -> anyhow::Result<[u8; 32]> {
    let text = writer
        .state_value_or_insert(name, || {
            use rand::RngCore;
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            hex::encode(bytes)
        })
        .await?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes).with_context(|| format!("stored {name} is not 64 hex digits"))?;
    Ok(bytes)
}

/// The outbox's consumers, fed every event in sequence: the live view (map sessions), and
/// the relay, which cuts off keys that stopped being valid (removed, expired or retired
/// nodes, deleted namespaces) on every instance.
fn apply_events(mut incoming: mpsc::UnboundedReceiver<Event>, tailnet: Weak<Tailnet>, derp: Arc<DerpServer>) {
    tokio::spawn(async move {
        while let Some(event) = incoming.recv().await {
            for key in keys_to_cut_off(&event) {
                derp.close_node(key);
            }
            let Some(tailnet) = tailnet.upgrade() else { break };
            tailnet.apply(event).await;
        }
    });
}

/// The node keys an event makes invalid.
fn keys_to_cut_off(event: &Event) -> Vec<&NodePublic> {
    match event {
        Event::NodeChanged { expired_key, .. } => expired_key.iter().collect(),
        Event::NodeRemoved { node_key, .. } | Event::NodeKeyRetired { node_key } => vec![node_key],
        Event::NamespaceRemoved { node_keys, .. } => node_keys.iter().collect(),
        Event::PolicyChanged { .. } | Event::Presence { .. } | Event::PresenceSync | Event::InstanceGone { .. } => {
            vec![]
        }
    }
}

/// Ephemeral nodes that were offline when the server stopped still get deleted.
async fn schedule_ephemeral_cleanup(store: &Store, tailnet: &Arc<Tailnet>) -> anyhow::Result<()> {
    let timeout = tailnet.ephemeral_timeout();
    for node in store.all_nodes().await?.into_iter().filter(|n| n.ephemeral) {
        tailnet.schedule_ephemeral_cleanup(node.id, timeout);
    }
    Ok(())
}

async fn start_stun(addr: SocketAddr, metrics: &prometheus::Registry) -> anyhow::Result<SocketAddr> {
    let socket = tokio::net::UdpSocket::bind(addr).await.with_context(|| format!("binding STUN on {addr}"))?;
    let bound = socket.local_addr()?;
    let stun_metrics = crate::derp::stun::StunMetrics::register(metrics)?;
    tokio::spawn(async move {
        if let Err(err) = crate::derp::stun::serve_stun(socket, stun_metrics).await {
            tracing::error!(%err, "STUN server stopped");
        }
    });
    Ok(bound)
}

fn takeover_handler(state: Arc<AppState>) -> front::TakeoverHandler {
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

async fn serve_control(takeover: Takeover, state: &AppState) {
    let Takeover { head, mut io, shutdown, peer, .. } = takeover;
    if refused_over_handshake_rate(state, peer, &mut io).await {
        return;
    }
    let Some(init) = crate::control::http::switch_protocols(head, &mut io).await else {
        return;
    };
    let control = state.control.clone();
    let options = ServeOptions {
        handshake_timeout: state.settings.handshake_timeout,
        write_timeout: state.settings.write_timeout,
        ..ServeOptions::default()
    };
    tokio::select! {
        result = h2server::accept_ts2021(io, &state.noise_key, &init, control, options) => {
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
        _ = crate::derp::server::serve_client(state.derp.clone(), io, peer) => {}
        _ = shutdown.cancelled() => {}
    }
}

/// Answers a raw upgrade over the per-address handshake rate with 429 and `Retry-After`
/// (problem+json, as the REST API answers), before any key work; `true` when it did.
async fn refused_over_handshake_rate(state: &AppState, peer: SocketAddr, io: &mut BoxedIo) -> bool {
    use tokio::io::AsyncWriteExt as _;
    let Err(wait) = state.handshakes.check(peer.ip()) else { return false };
    let retry_after_secs = crate::api::ratelimit::retry_after_secs(wait);
    let problem = crate::api::error::ApiError::RateLimited { retry_after_secs };
    let body = serde_json::to_string(&problem.problem()).unwrap_or_default();
    let response = format!(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: {retry_after_secs}\r\n\
         Content-Type: application/problem+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // A client that does not read this gets nothing more; it must not hold the task.
    let _ = tokio::time::timeout(state.settings.header_timeout, io.write_all(response.as_bytes())).await;
    tracing::debug!(%peer, "handshake refused: over the per-address rate");
    true
}

/// The same refusal for a WebSocket upgrade, before the 101.
fn websocket_over_handshake_rate(state: &AppState, peer: Option<SocketAddr>) -> Option<HttpResponse> {
    let ip = peer?.ip();
    let wait = state.handshakes.check(ip).err()?;
    Some(actix_web::ResponseError::error_response(&crate::api::ratelimit::limited(wait)))
}

/// The browser's control channel: `GET /ts2021?X-Tailscale-Handshake=<base64 init>` as a
/// WebSocket with subprotocol `tailscale-control-protocol`. A missing or malformed initiation
/// is refused with 400 before the upgrade; after it, exactly the TCP path minus the early
/// payload (the Go server sends none here either).
async fn ws_control(req: HttpRequest, body: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let init = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("X-Tailscale-Handshake").cloned())
        // Base64 has no spaces: a `+` that was not percent-encoded decodes to one.
        .map(|v| v.replace(' ', "+"));
    let Some(init) = init.filter(|v| crate::control::ts2021::noise::decode_handshake_header(v).is_ok()) else {
        return HttpResponse::BadRequest()
            .content_type("text/plain")
            .body("missing or malformed X-Tailscale-Handshake query parameter\n");
    };
    let state = state.into_inner();
    let peer = req.peer_addr();
    if let Some(refusal) = websocket_over_handshake_rate(&state, peer) {
        return refusal;
    }
    websocket::accept(
        &req,
        body,
        "tailscale-control-protocol",
        state.shutdown.clone(),
        move |io: BrowserIo| async move {
            let options = ServeOptions {
                early_payload: false,
                handshake_timeout: state.settings.handshake_timeout,
                write_timeout: state.settings.write_timeout,
                ..ServeOptions::default()
            };
            if let Err(err) = h2server::accept_ts2021(io, &state.noise_key, &init, state.control.clone(), options).await
            {
                state.control_failures.with_label_values(&[err.label()]).inc();
                tracing::debug!(?peer, %err, "websocket control connection ended");
            }
        },
    )
}

/// DERP over WebSocket is chosen, as in the Go server, by `Upgrade: websocket` plus a
/// `Sec-WebSocket-Protocol` offering `derp`; anything else on `/derp` gets the 426.
fn is_derp_websocket(head: &actix_web::dev::RequestHead) -> bool {
    websocket::is_websocket(head) && websocket::offers_protocol(head, "derp")
}

/// The browser's DERP connection: the same frames as on TCP, in binary messages, with no
/// `Upgrade: DERP` 101 in front.
async fn ws_derp(req: HttpRequest, body: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    if let Some(refusal) = websocket_over_handshake_rate(&state, req.peer_addr()) {
        return refusal;
    }
    let derp = state.derp.clone();
    let peer = req.peer_addr().unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    websocket::accept(&req, body, "derp", state.shutdown.clone(), move |io: BrowserIo| {
        crate::derp::server::serve_client(derp, io, peer)
    })
}
