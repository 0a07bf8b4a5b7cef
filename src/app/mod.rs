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
//! `start` is start-up and wiring only, in named steps; the hand-over of upgraded connections
//! to ts2021 and DERP is [`upgrades`]. Tests call [`start`] with `listen_addr` port 0 and read
//! the bound address back.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use actix_web::{web, App};
use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use x25519_dalek::StaticSecret;

use crate::api::ApiState;
use crate::config::Settings;
use crate::control::http::ServerKey;
use crate::control::routes::{KeepAlive, Routes};
use crate::control::service::ControlService;
use crate::control::ts2021::h2server::ServeOptions;
use crate::derp::crypto::DerpSecret;
use crate::derp::server::{DerpConfig, DerpMetrics, DerpServer, MeshKey};
use crate::front::limits::HandshakeRate;
use crate::front::{self, FrontOptions};
use crate::keys::{MachinePublic, NodePublic};
use crate::netmap::derp_admission::StoreAdmission;
use crate::netmap::Tailnet;
use crate::state::lease::{Lease, LeaseOptions};
use crate::state::store::Store;
use crate::state::{Bus, Event, Writer};

mod upgrades;

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
    /// How every ts2021 connection is served (a browser's without the early payload).
    pub serve_options: ServeOptions,
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
    let metrics = prometheus::Registry::new();
    let store = open_store(&settings).await?;
    let (writer, tailnet, incoming) = start_state(&settings, &store, &metrics).await?;
    let noise_key = StaticSecret::from(load_secret(&writer, "noise_private_key").await?);
    let derp = start_relay(&settings, &writer, &store, &metrics).await?;
    apply_events(incoming, Arc::downgrade(&tailnet), derp.clone());
    schedule_ephemeral_cleanup(&store, &tailnet).await?;
    writer.spawn_expiry_sweep(std::time::Duration::from_secs(5), Arc::downgrade(&tailnet));
    let stun_addr = match settings.stun_addr {
        Some(addr) => Some(start_stun(addr, &metrics).await?),
        None => None,
    };
    let front_metrics = front::limits::FrontMetrics::register(&metrics)?;
    let control = Routes::new(
        ControlService::new(store.clone(), writer.clone(), tailnet.clone()),
        KeepAlive { interval: settings.keepalive_interval, ..KeepAlive::default() },
    );
    let control_failures = control_failures(&metrics)?;
    let handshakes =
        HandshakeRate::new(settings.handshake_rate_per_ip, settings.handshake_burst_per_ip, &front_metrics);
    let api = Arc::new(api_state(&settings, store, writer, tailnet, metrics)?);
    let state = Arc::new(AppState {
        settings: settings.clone(),
        api,
        derp,
        control,
        noise_key: Arc::new(noise_key),
        serve_options: serve_options(&settings),
        shutdown: CancellationToken::new(),
        lease: tokio::sync::OnceCell::new(),
        control_failures,
        handshakes,
    });
    let listener = std::net::TcpListener::bind(settings.listen_addr)
        .with_context(|| format!("binding {}", settings.listen_addr))?;
    let addr = listener.local_addr()?;
    take_lease(&state, addr).await?;
    let handle = serve(listener, &state, front_metrics)?;
    tracing::info!(%addr, "tenscale listening");
    Ok(RunningApp { addr, state, handle, stun_addr })
}
/// The database, migrated.
async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect(settings.database_url.expose()).await.context("connecting to the database")?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

/// The writer, the live view and the outbox reader that feeds them; the event pruning runs
/// from here on, and the instances already running are asked who streams from them.
async fn start_state(
    settings: &Arc<Settings>,
    store: &Store,
    metrics: &prometheus::Registry,
) -> anyhow::Result<(Writer, Arc<Tailnet>, mpsc::UnboundedReceiver<Event>)> {
    let bus = match &settings.redis_url {
        Some(url) => Bus::redis(url.expose(), &settings.redis_channel).await.context("connecting to Redis")?,
        None => Bus::local(),
    };
    let writer = Writer::new(store.clone(), bus.clone());
    let incoming = crate::state::events::start_reader(store.clone(), &bus).await.context("reading the outbox")?;
    let tailnet = Tailnet::new(store.clone(), settings.clone(), writer.clone());
    tailnet.register_metrics(metrics)?;
    writer.presence_sync().await.context("recording the start-up presence sync")?;
    writer.spawn_pruning(settings.event_retention, std::time::Duration::from_secs(600));
    Ok((writer, tailnet, incoming))
}

/// The embedded DERP relay, with its stored key, admitting the store's valid node keys.
async fn start_relay(
    settings: &Settings,
    writer: &Writer,
    store: &Store,
    metrics: &prometheus::Registry,
) -> anyhow::Result<Arc<DerpServer>> {
    let secret = DerpSecret::from_bytes(load_secret(writer, "derp_private_key").await?);
    let config = DerpConfig {
        mesh_key: settings.derp.mesh_key.as_ref().and_then(|k| MeshKey::parse(k.expose())),
        client_info_timeout: settings.handshake_timeout,
        send_rate_bytes_per_second: settings.derp.send_rate_bytes_per_second,
        ..DerpConfig::default()
    };
    let admission = Arc::new(StoreAdmission::new(store.clone()));
    Ok(DerpServer::new(secret, config, admission, DerpMetrics::register(metrics)?))
}

/// What the API's handlers reach: the planes, the rate limits and the browser-key exchange.
fn api_state(
    settings: &Arc<Settings>,
    store: Store,
    writer: Writer,
    tailnet: Arc<Tailnet>,
    metrics: prometheus::Registry,
) -> anyhow::Result<ApiState> {
    let rate_limits = crate::api::ratelimit::RateLimits::new(settings.rate_limit);
    let secrets = crate::secrets::SecretsKey::load(
        settings.secrets_key.as_ref().map(|k| k.expose()),
        settings.database_url.expose(),
    )?;
    let browser_keys =
        crate::api::browser_keys::BrowserKeys::new(secrets, settings.browser_key_rate_per_minute, &metrics)?;
    Ok(ApiState { settings: settings.clone(), store, writer, tailnet, metrics, rate_limits, browser_keys })
}

/// The one set of ts2021 connection options, from the settings.
fn serve_options(settings: &Settings) -> ServeOptions {
    ServeOptions {
        handshake_timeout: settings.handshake_timeout,
        write_timeout: settings.write_timeout,
        ..ServeOptions::default()
    }
}

fn control_failures(metrics: &prometheus::Registry) -> prometheus::Result<prometheus::IntCounterVec> {
    let failures = prometheus::IntCounterVec::new(
        prometheus::Opts::new(
            "tenscale_control_connections_failed_total",
            "Control (ts2021) connections that ended in an error: handshake_timeout, ping_timeout, write_timeout, noise, protocol, io",
        ),
        &["reason"],
    )?;
    metrics.register(Box::new(failures.clone()))?;
    Ok(failures)
}

/// Serves `listener` through the front: raw upgrades to [`upgrades`], everything else to the
/// actix-web app (the APIs, `/key`, the probes, the WebSocket upgrades).
fn serve(
    listener: std::net::TcpListener,
    state: &Arc<AppState>,
    front_metrics: front::limits::FrontMetrics,
) -> anyhow::Result<actix_server::ServerHandle> {
    let settings = &state.settings;
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(front::tls::load_server_config(cert, key)?),
        _ => None,
    };
    let public = x25519_dalek::PublicKey::from(&*state.noise_key).to_bytes();
    let key_data = web::Data::new(ServerKey(MachinePublic::from_bytes(public)));
    let app_state = web::Data::from(state.clone());
    let api_state = web::Data::from(state.api.clone());
    let body_limit = settings.body_limit_bytes;
    let app_factory = move || {
        App::new()
            .app_data(app_state.clone())
            .app_data(api_state.clone())
            .app_data(key_data.clone())
            .app_data(web::PayloadConfig::new(body_limit))
            .configure(upgrades::websocket_routes)
            .configure(crate::api::configure)
            .configure(crate::control::http::configure)
            .configure(crate::derp::http::configure)
            .default_service(web::to(crate::api::no_such_endpoint))
    };
    let options = FrontOptions {
        workers: worker_count(settings),
        header_timeout: settings.header_timeout,
        keep_alive: settings.keep_alive,
        // A request's head has the header timeout and its body the body timeout.
        request_timeout: settings.header_timeout + settings.body_timeout,
        max_connections: settings.max_connections,
        max_connections_per_ip: settings.max_connections_per_ip,
        metrics: front_metrics,
        shutdown: state.shutdown.clone(),
        ..FrontOptions::default()
    };
    let server = front::serve(listener, tls, app_factory, upgrades::takeover_handler(state.clone()), options)?;
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(handle)
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
