//! The DERP mesh: every instance of a deployment serves one DERP region, and a packet for a
//! node connected to another instance is forwarded there, with Tailscale's own mesh protocol.
//!
//! ```text
//!  node a ──SendPacket(b)──▶ instance A ──ForwardPacket(a, b)──▶ instance B ──RecvPacket(a)──▶ node b
//!                            (link A→B: WatchConns; B answers PeerPresent(b) / PeerGone(b))
//! ```
//!
//! Each instance keeps one **link** to every other live instance (the set comes from the
//! instance leases; [`super::server::DerpServer::set_mesh_peers`]): an ordinary DERP client
//! connection with the shared mesh key in its ClientInfo, which sends `WatchConns` and then
//! hears of every client that connects to or leaves that instance. Each key it hears of
//! becomes a [`Route`] through that link, under the key's tenant as this instance's
//! [`super::server::Admission`] names it. Packets from local clients to a routed key go out
//! on the link as `ForwardPacket`.
//!
//! On the other side, a connection whose ClientInfo carries the right mesh key is a **peer**
//! ([`serve_peer`]): it may watch, forward and close, and is not a client itself.
//!
//! **Invariants:** tenancy holds across the mesh twice over: a route carries its key's tenant,
//! so a sender of another tenant is dropped here exactly like for an unknown key, and a
//! forwarded packet is delivered only after the receiving instance names the source's tenant
//! itself and finds it the destination's. Mesh frames from a connection without the mesh key
//! close it. Keys are compared in constant time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::client::{DerpClient, DerpReceiver, DerpSender};
use super::conn::{FrameReader, FrameWriter};
use super::crypto::ClientInfo;
use super::frame::{peer_present_flags, Frame, PeerGoneReason, PeerPresent};
use super::server::{DerpServer, TenantId};
use super::DerpError;
use crate::keys::NodePublic;

/// The shared secret of a deployment's relays (64 hex digits in the configuration).
#[derive(Clone)]
pub struct MeshKey([u8; 32]);

impl MeshKey {
    /// Parses 64 hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// Whether a ClientInfo's key is this one, in constant time.
    fn matches(&self, offered: &[u8; 32]) -> bool {
        self.0.ct_eq(offered).into()
    }

    fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for MeshKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeshKey(<redacted>)")
    }
}

/// Packets waiting on one link, before new ones are dropped.
const LINK_QUEUE: usize = 1024;
/// How long a link waits before dialling again after a failure.
const REDIAL_AFTER: Duration = Duration::from_secs(1);
/// A link that hears nothing for this long (the peer sends KeepAlive every 60 s) is dead.
const LINK_SILENCE: Duration = Duration::from_secs(120);
/// Mesh peers get a longer write deadline than clients (as in the Go server).
pub(super) const PEER_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a peer connection that has nothing to say sends KeepAlive.
const PEER_KEEP_ALIVE: Duration = Duration::from_secs(60);
/// Source tenants a peer connection remembers before starting over.
const TENANT_CACHE: usize = 65_536;

/// A key connected to another instance, and the way there.
#[derive(Clone)]
pub(super) struct Route {
    link: u64,
    pub(super) tenant: TenantId,
    pub(super) to: mpsc::Sender<Forward>,
}

/// One packet on its way to another instance.
pub(super) struct Forward {
    src: NodePublic,
    dst: NodePublic,
    packet: Bytes,
}

impl Forward {
    pub(super) fn new(src: NodePublic, dst: NodePublic, packet: Bytes) -> Self {
        Self { src, dst, packet }
    }
}

/// What a watching peer is told about this instance's clients.
#[derive(Debug, Clone, Copy)]
pub(super) enum WatchNote {
    Present(NodePublic, SocketAddr),
    Gone(NodePublic),
}

/// The mesh state of one relay: its key, the routes its links learnt, the peers watching it,
/// and the links themselves.
pub(super) struct Mesh {
    key: Option<MeshKey>,
    routes: RwLock<HashMap<NodePublic, Route>>,
    pub(super) watchers: Mutex<HashMap<u64, mpsc::UnboundedSender<Note>>>,
    links: Mutex<HashMap<String, CancellationToken>>,
}

impl Mesh {
    pub(super) fn new(key: Option<MeshKey>) -> Self {
        Self {
            key,
            routes: RwLock::new(HashMap::new()),
            watchers: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `info` proves its sender a mesh peer.
    pub(super) fn admits_peer(&self, info: &ClientInfo) -> bool {
        match (&self.key, info.mesh_key_bytes()) {
            (Some(key), Some(offered)) => key.matches(&offered),
            _ => false,
        }
    }

    /// The route to `dst` through another instance, if one is known.
    pub(super) fn route(&self, dst: &NodePublic) -> Option<Route> {
        self.routes.read().unwrap_or_else(|e| e.into_inner()).get(dst).cloned()
    }

    /// Tells every watching peer. Callers change the registry first, so a watcher that took
    /// its snapshot before the change hears of it afterwards (notes are sent under the lock
    /// the snapshot takes).
    pub(super) fn notify(&self, note: WatchNote) {
        let watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        for tx in watchers.values() {
            let _ = tx.send(Note::Watch(note));
        }
    }

    fn learn(&self, key: NodePublic, route: Route) {
        self.routes.write().unwrap_or_else(|e| e.into_inner()).insert(key, route);
    }

    fn forget(&self, key: &NodePublic, link: u64) {
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        if routes.get(key).is_some_and(|r| r.link == link) {
            routes.remove(key);
        }
    }

    fn forget_link(&self, link: u64) {
        self.routes.write().unwrap_or_else(|e| e.into_inner()).retain(|_, r| r.link != link);
    }

    /// Number of keys reachable through other instances.
    pub(super) fn route_count(&self) -> usize {
        self.routes.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl DerpServer {
    /// Keeps one link to each of `urls` (`http://host:port` of the other instances) and none
    /// to any other; a no-op without a mesh key. Called whenever the set of live instances
    /// changes.
    pub fn set_mesh_peers(self: &Arc<Self>, urls: &[String]) {
        let Some(key) = self.mesh().key.clone() else { return };
        let mut links = self.mesh().links.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|url, stop| {
            let keep = urls.contains(url);
            if !keep {
                stop.cancel();
            }
            keep
        });
        for url in urls {
            if links.contains_key(url) {
                continue;
            }
            let stop = CancellationToken::new();
            links.insert(url.clone(), stop.clone());
            tokio::spawn(run_link(Arc::downgrade(self), url.clone(), key.clone(), stop));
        }
    }

    /// Number of keys this instance can reach through the mesh.
    pub fn mesh_routes(&self) -> usize {
        self.mesh().route_count()
    }
}

/// Dials `url` and keeps the link up until `stop`.
async fn run_link(server: Weak<DerpServer>, url: String, key: MeshKey, stop: CancellationToken) {
    let link = rand::random::<u64>();
    loop {
        let Some(strong) = server.upgrade() else { return };
        let outcome = tokio::select! {
            outcome = serve_link(&strong, &url, &key, link) => outcome,
            _ = stop.cancelled() => Ok(()),
        };
        strong.mesh().forget_link(link);
        drop(strong);
        if stop.is_cancelled() {
            return;
        }
        if let Err(err) = outcome {
            tracing::debug!(%url, %err, "DERP mesh link down; dialling again");
        }
        tokio::select! {
            _ = tokio::time::sleep(REDIAL_AFTER) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Counts a link as up for as long as it lives.
struct LinkUp(prometheus::IntGauge);

impl LinkUp {
    fn new(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for LinkUp {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One connection of a link: handshake, WatchConns, then routes in, packets out.
async fn serve_link(server: &Arc<DerpServer>, url: &str, key: &MeshKey, link: u64) -> Result<(), DerpError> {
    let (addr, host) = resolve(url).await?;
    let info = ClientInfo { mesh_key: Some(key.to_hex()), ..ClientInfo::v2() };
    let client = timeout(Duration::from_secs(10), DerpClient::connect_tcp_with(addr, &host, server.secret(), &info))
        .await
        .map_err(|_| DerpError::Timeout("dialling a mesh peer"))??;
    let (mut sender, receiver) = client.into_split();
    sender.send_frame(&Frame::WatchConns).await?;
    let _up = LinkUp::new(&server.metrics().mesh_links);
    tracing::info!(%url, "DERP mesh link up");
    let (to, from) = mpsc::channel(LINK_QUEUE);
    tokio::select! {
        result = learn_routes(server, receiver, link, to) => result,
        result = forward_packets(sender, from) => result,
    }
}

/// `http://host:port` → the first address of host, and the Host header.
async fn resolve(url: &str) -> Result<(SocketAddr, String), DerpError> {
    let rest = url.strip_prefix("http://").ok_or(DerpError::Protocol("mesh URLs are http://host:port"))?;
    let host = rest.trim_end_matches('/').trim_end_matches("/derp").to_string();
    let addr = tokio::net::lookup_host(host.as_str())
        .await?
        .next()
        .ok_or(DerpError::Protocol("mesh peer host has no address"))?;
    Ok((addr, host))
}

/// Reads PeerPresent/PeerGone from the watched peer into routes.
async fn learn_routes<T: AsyncRead + AsyncWrite + Unpin>(
    server: &DerpServer,
    mut receiver: DerpReceiver<T>,
    link: u64,
    to: mpsc::Sender<Forward>,
) -> Result<(), DerpError> {
    let mesh = server.mesh();
    loop {
        let frame = timeout(LINK_SILENCE, receiver.recv())
            .await
            .map_err(|_| DerpError::Timeout("mesh peer silent"))??
            .ok_or(DerpError::Closed)?;
        match frame {
            Frame::PeerPresent(present) => {
                // A key the store does not admit (expired, deleted meanwhile) gets no route.
                match server.tenant_of(&present.key).await {
                    Some(tenant) => mesh.learn(present.key, Route { link, tenant, to: to.clone() }),
                    None => mesh.forget(&present.key, link),
                }
            }
            Frame::PeerGone { key, .. } => mesh.forget(&key, link),
            Frame::Restarting { .. } => return Err(DerpError::Closed),
            _ => {}
        }
    }
}

/// Writes queued packets to the peer as ForwardPacket frames, flushing once per batch.
async fn forward_packets<T: AsyncRead + AsyncWrite + Unpin>(
    mut sender: DerpSender<T>,
    mut from: mpsc::Receiver<Forward>,
) -> Result<(), DerpError> {
    while let Some(first) = from.recv().await {
        let mut next = Some(first);
        while let Some(Forward { src, dst, packet }) = next.take() {
            sender.write_frame(&Frame::ForwardPacket { src, dst, packet }).await?;
            next = from.try_recv().ok();
        }
        sender.flush().await?;
    }
    Ok(())
}

/// Serves a connection from another instance's link, once its mesh key matched: it may
/// watch this instance's clients, forward packets to them and close them.
pub(super) async fn serve_peer<R, W>(server: Arc<DerpServer>, mut reader: FrameReader<R>, writer: FrameWriter<W>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (notes_tx, notes_rx) = mpsc::unbounded_channel();
    let watcher = rand::random::<u64>();
    let writer_task = tokio::spawn(write_notes(writer, notes_rx));
    let mut tenants: HashMap<NodePublic, TenantId> = HashMap::new();
    let result: Result<(), DerpError> = async {
        while let Some(frame) = reader.read_frame().await? {
            match frame {
                Frame::WatchConns => server.add_watcher(watcher, notes_tx.clone()),
                Frame::ForwardPacket { src, dst, packet } => {
                    if let Some(tenant) = source_tenant(&server, &mut tenants, &src).await {
                        server.deliver_forwarded(&src, tenant, &dst, packet);
                    }
                }
                Frame::ClosePeer { key } => {
                    server.close_node(&key);
                }
                Frame::Ping { data } => {
                    let _ = notes_tx.send(Note::Pong(data));
                }
                _ => {}
            }
        }
        Ok(())
    }
    .await;
    server.remove_watcher(watcher);
    drop(notes_tx);
    writer_task.abort();
    if let Err(err) = result {
        tracing::debug!(%err, "DERP mesh peer connection ended");
    }
}

/// The tenant of a forwarded packet's source, as this instance's admission names it.
async fn source_tenant(
    server: &DerpServer,
    known: &mut HashMap<NodePublic, TenantId>,
    src: &NodePublic,
) -> Option<TenantId> {
    if let Some(tenant) = known.get(src) {
        return Some(*tenant);
    }
    let tenant = server.tenant_of(src).await?;
    if known.len() >= TENANT_CACHE {
        known.clear();
    }
    known.insert(*src, tenant);
    Some(tenant)
}

/// What the writer of a peer connection sends.
pub(super) enum Note {
    Watch(WatchNote),
    Pong([u8; super::frame::PING_LEN]),
}

/// Writes what the peer is told, flushing once per batch, with a KeepAlive in each silence.
async fn write_notes<W: AsyncWrite + Unpin>(mut writer: FrameWriter<W>, mut notes: mpsc::UnboundedReceiver<Note>) {
    let result: Result<(), DerpError> = async {
        loop {
            let first = match timeout(PEER_KEEP_ALIVE, notes.recv()).await {
                Ok(Some(note)) => note,
                Ok(None) => return Ok(()),
                Err(_) => {
                    writer.write_frame(&Frame::KeepAlive).await?;
                    writer.flush().await?;
                    continue;
                }
            };
            let mut next = Some(first);
            while let Some(note) = next.take() {
                writer.write_frame(&note_frame(note)).await?;
                next = notes.try_recv().ok();
            }
            writer.flush().await?;
        }
    }
    .await;
    if let Err(err) = result {
        tracing::debug!(%err, "writing to a DERP mesh peer failed");
    }
}

/// The frame for one note.
fn note_frame(note: Note) -> Frame {
    match note {
        Note::Watch(WatchNote::Present(key, addr)) => {
            let ip = match addr.ip() {
                std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                std::net::IpAddr::V6(v6) => v6,
            };
            Frame::PeerPresent(PeerPresent { key, ip, port: addr.port(), flags: peer_present_flags::REGULAR })
        }
        Note::Watch(WatchNote::Gone(key)) => Frame::PeerGone { key, reason: PeerGoneReason::Disconnected },
        Note::Pong(data) => Frame::Pong { data },
    }
}
