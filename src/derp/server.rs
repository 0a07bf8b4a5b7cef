//! The tenant-aware DERP relay: admits clients, forwards packets between connections of the
//! same tenant, and keeps the per-connection bookkeeping (queues, keep-alives, PeerGone).
//!
//! Invariants at this boundary:
//! - a connection is in the registry only after its ClientInfo box opened and [`Admission`]
//!   named its tenant;
//! - a packet is only ever delivered to a connection of the sender's tenant. A destination
//!   under another tenant is treated exactly like an unknown one (same drop, same
//!   PeerGone(NotHere) rule), so a sender learns nothing about other tenants' keys;
//! - the forwarding path takes one shard read lock, never blocks, and does not allocate: the
//!   packet is a `Bytes` slice of the sender's read buffer, queued with `try_send`.
//!
//! Each connection runs two tasks: the caller's task reads frames and forwards them; a writer
//! task drains the connection's bounded queues into one batch buffer and writes it out when
//! they are empty. Either one ending closes both.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::io::{AsyncRead, AsyncWrite, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, Instant};

use super::conn::{FrameReader, FrameWriter};
use super::crypto::{self, DerpSecret, ServerInfo};
use super::frame::{self, Frame, FrameType, PeerGoneReason, PROTOCOL_VERSION};
use super::mesh::{self, Forward, Mesh, MeshKey, Note, WatchNote};
use super::DerpError;
use crate::keys::NodePublic;

/// The namespace (tailnet) a node belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantId(pub i64);

/// Decides whether a node key may use the relay, and under which tenant.
pub trait Admission: Send + Sync + 'static {
    /// `Some(tenant)` admits the key; `None` refuses it. Should look at current keys only.
    fn admit(&self, key: &NodePublic) -> BoxFuture<'static, Option<TenantId>>;
}

/// Tunables. `Default` gives the values the Go server uses.
#[derive(Debug, Clone)]
pub struct DerpConfig {
    /// KeepAlive period; each connection adds a random `0..keep_alive_jitter`.
    pub keep_alive: Duration,
    pub keep_alive_jitter: Duration,
    /// How long a client has to send ClientInfo after ServerKey.
    pub client_info_timeout: Duration,
    /// How long the admission check may take before the client is refused.
    pub admission_timeout: Duration,
    /// Deadline for writing one frame (and for each flush).
    pub write_timeout: Duration,
    /// Packets queued per connection before new ones are dropped.
    pub send_queue_len: usize,
    /// Pongs, PeerGones and the like queued per connection before new ones are dropped.
    pub control_queue_len: usize,
    /// Packet bytes per second one client connection may send; the relay stops reading it
    /// while it is over (its socket then pushes back on the sender). 0: no limit.
    pub send_rate_bytes_per_second: u64,
    /// Sent in the Restarting frame on shutdown.
    pub restart_reconnect_in: Duration,
    pub restart_try_for: Duration,
    /// The deployment's shared mesh key; without one this relay takes part in no mesh.
    pub mesh_key: Option<MeshKey>,
}

impl Default for DerpConfig {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(60),
            keep_alive_jitter: Duration::from_secs(5),
            client_info_timeout: Duration::from_secs(10),
            admission_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(2),
            send_queue_len: 32,
            control_queue_len: 16,
            send_rate_bytes_per_second: 0,
            restart_reconnect_in: Duration::from_millis(500),
            restart_try_for: Duration::from_secs(30),
            mesh_key: None,
        }
    }
}

/// Why a packet was not delivered (the `reason` label of the drop counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No connection for the destination key.
    UnknownPeer,
    /// The destination is connected, but under another tenant.
    OtherNamespace,
    /// The destination's send queue was full.
    QueueFull,
}

impl DropReason {
    const ALL: [DropReason; 3] = [Self::UnknownPeer, Self::OtherNamespace, Self::QueueFull];

    pub fn label(self) -> &'static str {
        match self {
            Self::UnknownPeer => "unknown_peer",
            Self::OtherNamespace => "other_namespace",
            Self::QueueFull => "queue_full",
        }
    }
}

/// The relay's Prometheus metrics. Counter children are resolved once, not per packet.
#[derive(Clone)]
pub struct DerpMetrics {
    pub connections: IntGauge,
    pub accepted: IntCounter,
    pub handshake_failed: IntCounter,
    pub admission_refused: IntCounter,
    pub protocol_errors: IntCounter,
    pub packets_relayed: IntCounter,
    pub bytes_relayed: IntCounter,
    /// Packets sent on to another instance through the mesh.
    pub packets_forwarded: IntCounter,
    /// Packets another instance forwarded here, delivered or not.
    pub packets_from_mesh: IntCounter,
    /// Mesh links to other instances that are up.
    pub mesh_links: IntGauge,
    pub dropped: IntCounterVec,
    drop_children: [IntCounter; 3],
}

impl DerpMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let connections = IntGauge::new("tenscale_derp_connections", "Open DERP client connections (after admission)")?;
        let accepted = IntCounter::new("tenscale_derp_accepted_total", "DERP connections admitted")?;
        let handshake_failed = IntCounter::new(
            "tenscale_derp_handshake_failed_total",
            "DERP connections closed before admission (timeout, bad frame, bad box)",
        )?;
        let admission_refused =
            IntCounter::new("tenscale_derp_admission_refused_total", "DERP clients refused by the admission check")?;
        let protocol_errors = IntCounter::new(
            "tenscale_derp_protocol_errors_total",
            "Admitted DERP connections closed for a protocol error",
        )?;
        let packets_relayed = IntCounter::new("tenscale_derp_packets_relayed_total", "Packets queued to a recipient")?;
        let bytes_relayed = IntCounter::new("tenscale_derp_bytes_relayed_total", "Packet bytes queued to a recipient")?;
        let packets_forwarded = IntCounter::new(
            "tenscale_derp_packets_forwarded_total",
            "Packets sent on to another instance through the DERP mesh",
        )?;
        let packets_from_mesh = IntCounter::new(
            "tenscale_derp_packets_from_mesh_total",
            "Packets other instances forwarded here through the DERP mesh",
        )?;
        let mesh_links = IntGauge::new("tenscale_derp_mesh_links", "DERP mesh links to other instances that are up")?;
        let dropped = IntCounterVec::new(
            Opts::new("tenscale_derp_packets_dropped_total", "Packets not delivered, by reason"),
            &["reason"],
        )?;
        for collector in [
            Box::new(connections.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(accepted.clone()),
            Box::new(handshake_failed.clone()),
            Box::new(admission_refused.clone()),
            Box::new(protocol_errors.clone()),
            Box::new(packets_relayed.clone()),
            Box::new(bytes_relayed.clone()),
            Box::new(packets_forwarded.clone()),
            Box::new(packets_from_mesh.clone()),
            Box::new(mesh_links.clone()),
            Box::new(dropped.clone()),
        ] {
            registry.register(collector)?;
        }
        let drop_children = DropReason::ALL.map(|r| dropped.with_label_values(&[r.label()]));
        Ok(Self {
            connections,
            accepted,
            handshake_failed,
            admission_refused,
            protocol_errors,
            packets_relayed,
            bytes_relayed,
            packets_forwarded,
            packets_from_mesh,
            mesh_links,
            dropped,
            drop_children,
        })
    }

    pub fn dropped(&self, reason: DropReason) -> &IntCounter {
        &self.drop_children[reason as usize]
    }
}

/// Frames the writer task sends besides relayed packets.
#[derive(Debug)]
enum Control {
    Pong([u8; frame::PING_LEN]),
    PeerGone(NodePublic, PeerGoneReason),
    /// Write a Restarting frame, flush, and close.
    Restarting {
        reconnect_in_ms: u32,
        try_for_ms: u32,
    },
}

/// What the registry holds for one connection: the ends other connections send into.
struct ConnHandle {
    id: u64,
    tenant: TenantId,
    /// Where the client connects from (told to mesh watchers).
    addr: SocketAddr,
    packets: mpsc::Sender<(NodePublic, Bytes)>,
    control: mpsc::Sender<Control>,
    closer: watch::Sender<bool>,
}

impl ConnHandle {
    fn close(&self) {
        self.closer.send_replace(true);
    }
}

/// All connections of one key. The last one is the most recent and receives the traffic.
#[derive(Default)]
struct KeyConns {
    conns: Vec<Arc<ConnHandle>>,
    /// Peers that earlier (duplicate) connections of this key sent to; they get PeerGone when
    /// the last connection leaves.
    sent_to: HashSet<NodePublic>,
}

const SHARDS: usize = 64;

type Shard = RwLock<HashMap<NodePublic, KeyConns>>;

/// The relay. Share it as `Arc<DerpServer>`; one per process.
pub struct DerpServer {
    secret: DerpSecret,
    public: NodePublic,
    config: DerpConfig,
    admission: Arc<dyn Admission>,
    metrics: DerpMetrics,
    shards: Box<[Shard]>,
    next_id: AtomicU64,
    shutting_down: AtomicBool,
    mesh: Mesh,
}

/// The outcome of one forwarding attempt.
enum Forwarded {
    Delivered,
    Dropped(DropReason),
}

impl DerpServer {
    pub fn new(
        secret: DerpSecret,
        config: DerpConfig,
        admission: Arc<dyn Admission>,
        metrics: DerpMetrics,
    ) -> Arc<Self> {
        let public = secret.public();
        let shards = (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect();
        Arc::new(Self {
            secret,
            public,
            admission,
            metrics,
            shards,
            next_id: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
            mesh: Mesh::new(config.mesh_key.clone()),
            config,
        })
    }

    /// The server's DERP public key (sent in ServerKey and the `Derp-Public-Key` header).
    pub fn public_key(&self) -> NodePublic {
        self.public
    }

    pub fn metrics(&self) -> &DerpMetrics {
        &self.metrics
    }

    pub fn config(&self) -> &DerpConfig {
        &self.config
    }

    /// Number of connections of `key` currently registered.
    pub fn connection_count(&self, key: &NodePublic) -> usize {
        self.read_shard(key).get(key).map_or(0, |k| k.conns.len())
    }

    /// Disconnects every connection of `key` at once (node deleted or expired). Returns how
    /// many were closed.
    pub fn close_node(&self, key: &NodePublic) -> usize {
        let removed = self.write_shard(key).remove(key);
        let Some(entry) = removed else { return 0 };
        self.mesh.notify(WatchNote::Gone(*key));
        for conn in &entry.conns {
            conn.close();
        }
        // Peers of already-departed duplicates; each closing connection notifies its own.
        if let Some(tenant) = entry.conns.first().map(|c| c.tenant) {
            self.send_peer_gone(key, tenant, entry.sent_to.iter());
        }
        entry.conns.len()
    }

    /// Tells every client to reconnect later (Restarting frame), then closes them; waits up to
    /// the write timeout for them to go. New connections are refused from now on.
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let restarting = || Control::Restarting {
            reconnect_in_ms: duration_ms(self.config.restart_reconnect_in),
            try_for_ms: duration_ms(self.config.restart_try_for),
        };
        for shard in self.shards.iter() {
            let shard = shard.read().unwrap_or_else(|e| e.into_inner());
            for conn in shard.values().flat_map(|k| k.conns.iter()) {
                if conn.control.try_send(restarting()).is_err() {
                    conn.close();
                }
            }
        }
        let deadline = Instant::now() + self.config.write_timeout + Duration::from_millis(500);
        while self.metrics.connections.get() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn shard(&self, key: &NodePublic) -> &Shard {
        // Node keys are uniformly random curve points: any byte spreads them evenly.
        &self.shards[key.0[0] as usize % SHARDS]
    }

    fn read_shard(&self, key: &NodePublic) -> RwLockReadGuard<'_, HashMap<NodePublic, KeyConns>> {
        self.shard(key).read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_shard(&self, key: &NodePublic) -> RwLockWriteGuard<'_, HashMap<NodePublic, KeyConns>> {
        self.shard(key).write().unwrap_or_else(|e| e.into_inner())
    }

    /// The hot path: queue `packet` from `src` (of `tenant`) to the newest connection of `dst`,
    /// or, when `dst` is connected to another instance, to the mesh link there.
    fn forward(&self, src: &NodePublic, tenant: TenantId, dst: &NodePublic, packet: Bytes) -> Forwarded {
        match self.forward_local(src, tenant, dst, packet) {
            Err(packet) => self.forward_to_mesh(src, tenant, dst, packet),
            Ok(outcome) => outcome,
        }
    }

    /// Delivers a packet another instance forwarded; it goes no further than this instance.
    pub(super) fn deliver_forwarded(&self, src: &NodePublic, tenant: TenantId, dst: &NodePublic, packet: Bytes) {
        self.metrics.packets_from_mesh.inc();
        if self.forward_local(src, tenant, dst, packet).is_err() {
            self.metrics.dropped(DropReason::UnknownPeer).inc();
        }
    }

    /// Queues to a local connection of `dst`; hands the packet back when there is none.
    fn forward_local(
        &self,
        src: &NodePublic,
        tenant: TenantId,
        dst: &NodePublic,
        packet: Bytes,
    ) -> Result<Forwarded, Bytes> {
        let len = packet.len();
        let outcome = {
            let shard = self.read_shard(dst);
            match shard.get(dst).and_then(|k| k.conns.last()) {
                None => return Err(packet),
                Some(conn) if conn.tenant != tenant => Forwarded::Dropped(DropReason::OtherNamespace),
                Some(conn) => match conn.packets.try_send((*src, packet)) {
                    Ok(()) => Forwarded::Delivered,
                    Err(mpsc::error::TrySendError::Full(_)) => Forwarded::Dropped(DropReason::QueueFull),
                    // The connection is on its way out: as good as unknown.
                    Err(mpsc::error::TrySendError::Closed(_)) => Forwarded::Dropped(DropReason::UnknownPeer),
                },
            }
        };
        match outcome {
            Forwarded::Delivered => {
                self.metrics.packets_relayed.inc();
                self.metrics.bytes_relayed.inc_by(len as u64);
            }
            Forwarded::Dropped(reason) => self.metrics.dropped(reason).inc(),
        }
        Ok(outcome)
    }

    /// Queues to the mesh link towards the instance `dst` is connected to, if any.
    fn forward_to_mesh(&self, src: &NodePublic, tenant: TenantId, dst: &NodePublic, packet: Bytes) -> Forwarded {
        let outcome = match self.mesh.route(dst) {
            None => Forwarded::Dropped(DropReason::UnknownPeer),
            Some(route) if route.tenant != tenant => Forwarded::Dropped(DropReason::OtherNamespace),
            Some(route) => match route.to.try_send(Forward::new(*src, *dst, packet)) {
                Ok(()) => Forwarded::Delivered,
                Err(mpsc::error::TrySendError::Full(_)) => Forwarded::Dropped(DropReason::QueueFull),
                Err(mpsc::error::TrySendError::Closed(_)) => Forwarded::Dropped(DropReason::UnknownPeer),
            },
        };
        match outcome {
            Forwarded::Delivered => self.metrics.packets_forwarded.inc(),
            Forwarded::Dropped(reason) => self.metrics.dropped(reason).inc(),
        }
        outcome
    }

    /// The tenant the admission check names for `key` (None: not a current node key).
    pub(super) async fn tenant_of(&self, key: &NodePublic) -> Option<TenantId> {
        timeout(self.config.admission_timeout, self.admission.admit(key)).await.ok().flatten()
    }

    pub(super) fn secret(&self) -> &DerpSecret {
        &self.secret
    }

    pub(super) fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    /// Starts telling watcher `id` about this relay's clients: every one connected now, then
    /// each that comes or goes.
    pub(super) fn add_watcher(&self, id: u64, tx: mpsc::UnboundedSender<Note>) {
        // Held while the snapshot is taken: a change made meanwhile is told after it.
        let mut watchers = self.mesh.watchers.lock().unwrap_or_else(|e| e.into_inner());
        for shard in self.shards.iter() {
            let shard = shard.read().unwrap_or_else(|e| e.into_inner());
            for (key, conns) in shard.iter() {
                if let Some(conn) = conns.conns.last() {
                    let _ = tx.send(Note::Watch(WatchNote::Present(*key, conn.addr)));
                }
            }
        }
        watchers.insert(id, tx);
    }

    pub(super) fn remove_watcher(&self, id: u64) {
        self.mesh.watchers.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// Queues PeerGone(gone, Disconnected) to each of `peers` that is connected under `tenant`.
    fn send_peer_gone<'a>(&self, gone: &NodePublic, tenant: TenantId, peers: impl Iterator<Item = &'a NodePublic>) {
        for peer in peers {
            let shard = self.read_shard(peer);
            let Some(conns) = shard.get(peer) else { continue };
            for conn in conns.conns.iter().filter(|c| c.tenant == tenant) {
                // Best effort: a full control queue means the peer is not reading anyway.
                let _ = conn.control.try_send(Control::PeerGone(*gone, PeerGoneReason::Disconnected));
            }
        }
    }

    fn register(&self, key: NodePublic, handle: Arc<ConnHandle>) {
        let addr = handle.addr;
        self.write_shard(&key).entry(key).or_default().conns.push(handle);
        self.mesh.notify(WatchNote::Present(key, addr));
        self.metrics.connections.inc();
        self.metrics.accepted.inc();
    }

    /// Removes connection `id` of `key`. Returns the peers to tell that `key` is gone if this
    /// was its last connection (its own `sent_to` plus what departed duplicates left behind).
    fn deregister(&self, key: &NodePublic, id: u64, sent_to: HashSet<NodePublic>) -> Option<HashSet<NodePublic>> {
        self.metrics.connections.dec();
        let mut shard = self.write_shard(key);
        let Some(entry) = shard.get_mut(key) else {
            // close_node already removed the key: this connection is the last one standing.
            return Some(sent_to);
        };
        entry.conns.retain(|c| c.id != id);
        if entry.conns.is_empty() {
            let mut all = shard.remove(key).map(|e| e.sent_to).unwrap_or_default();
            drop(shard);
            self.mesh.notify(WatchNote::Gone(*key));
            all.extend(sent_to);
            Some(all)
        } else {
            entry.sent_to.extend(sent_to);
            None
        }
    }
}

fn duration_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Frame types a server reads; everything else from a client is skipped unread.
fn server_wants(frame_type: FrameType) -> bool {
    matches!(
        frame_type,
        FrameType::ClientInfo
            | FrameType::SendPacket
            | FrameType::NotePreferred
            | FrameType::Ping
            | FrameType::Pong
            | FrameType::ForwardPacket
            | FrameType::WatchConns
            | FrameType::ClosePeer
    )
}

/// Frames a reader handles before letting other tasks run.
const YIELD_EVERY: u32 = 32;
/// Frames written between flushes at most, so a busy queue cannot starve the flush.
const MAX_BATCH: usize = 64;

/// Runs one DERP connection whose HTTP 101 has already been written. Returns when the
/// connection is closed, for whatever reason; errors are logged and counted, never panicked on.
pub async fn serve_client<T>(server: Arc<DerpServer>, io: T, peer: SocketAddr)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (read_half, write_half) = tokio::io::split(io);
    let mut reader = FrameReader::new(read_half).wanting(server_wants);
    let mut writer = FrameWriter::new(write_half, server.config.write_timeout);

    let (key, tenant) = match handshake(&server, &mut reader, &mut writer).await {
        Ok(Admitted::Client(key, tenant)) => (key, tenant),
        Ok(Admitted::MeshPeer) => {
            tracing::debug!(%peer, "derp mesh peer connected");
            return mesh::serve_peer(server.clone(), reader, writer.with_write_timeout(mesh::PEER_WRITE_TIMEOUT)).await;
        }
        Err(err) => {
            tracing::debug!(%peer, error = %err, "derp handshake failed");
            if !matches!(err, DerpError::Refused) {
                server.metrics.handshake_failed.inc();
            }
            return;
        }
    };

    let id = server.next_id.fetch_add(1, Ordering::Relaxed);
    let (packets_tx, packets_rx) = mpsc::channel(server.config.send_queue_len.max(1));
    let (control_tx, control_rx) = mpsc::channel(server.config.control_queue_len.max(1));
    let (closer, closed) = watch::channel(false);
    let handle = Arc::new(ConnHandle { id, tenant, addr: peer, packets: packets_tx, control: control_tx, closer });
    server.register(key, handle.clone());
    tracing::debug!(%peer, %key, tenant = tenant.0, "derp client connected");

    let write_task =
        tokio::spawn(write_loop(writer, packets_rx, control_rx, closed.clone(), handle.clone(), server.config.clone()));
    let mut conn = ClientConn {
        server: &server,
        key,
        tenant,
        handle: &handle,
        sent_to: HashSet::new(),
        last_dst: None,
        not_here: TokenBucket::new(),
        send_rate: ByteRate::new(server.config.send_rate_bytes_per_second),
    };
    let result = conn.read_loop(&mut reader, closed).await;
    if let Err(err) = &result {
        server.metrics.protocol_errors.inc();
        tracing::debug!(%peer, %key, error = %err, "derp client closed");
    }
    let sent_to = std::mem::take(&mut conn.sent_to);

    handle.close();
    let _ = write_task.await;
    if let Some(peers) = server.deregister(&key, id, sent_to) {
        server.send_peer_gone(&key, tenant, peers.iter());
    }
}

/// Who a connection turned out to be.
enum Admitted {
    /// A node, admitted under its tenant.
    Client(NodePublic, TenantId),
    /// Another instance of the deployment (its ClientInfo carried the mesh key).
    MeshPeer,
}

/// ServerKey → ClientInfo → admission (or the mesh key) → ServerInfo.
async fn handshake<R, W>(
    server: &DerpServer,
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
) -> Result<Admitted, DerpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    writer.write_frame(&Frame::ServerKey { key: server.public }).await?;
    writer.flush().await?;

    let first = timeout(server.config.client_info_timeout, reader.read_frame())
        .await
        .map_err(|_| DerpError::Timeout("waiting for ClientInfo"))??;
    let Some(Frame::ClientInfo { key, sealed }) = first else {
        return Err(DerpError::Protocol("first frame is not ClientInfo"));
    };
    let info = crypto::open_client_info(&server.secret, &key, &sealed)?;
    tracing::trace!(%key, version = info.version, prober = info.is_prober, "derp client info");

    // A wrong mesh key grants nothing: the connection is then an ordinary client, and its key
    // (a relay's, not a node's) fails admission.
    let admitted = if server.mesh.admits_peer(&info) {
        Admitted::MeshPeer
    } else {
        match server.tenant_of(&key).await {
            Some(tenant) => Admitted::Client(key, tenant),
            None => {
                server.metrics.admission_refused.inc();
                return Err(DerpError::Refused);
            }
        }
    };
    if server.shutting_down.load(Ordering::SeqCst) {
        return Err(DerpError::Closed);
    }
    let reply = crypto::seal_server_info(
        &server.secret,
        &key,
        &ServerInfo { version: PROTOCOL_VERSION, ..Default::default() },
    )?;
    writer.write_frame(&Frame::ServerInfo { sealed: reply.into() }).await?;
    writer.flush().await?;
    Ok(admitted)
}

/// The reading side of one admitted connection.
struct ClientConn<'a> {
    server: &'a DerpServer,
    key: NodePublic,
    tenant: TenantId,
    handle: &'a ConnHandle,
    /// Keys this connection delivered packets to (they get PeerGone when it leaves).
    sent_to: HashSet<NodePublic>,
    /// Avoids a set insert per packet for the common "same destination again" case.
    last_dst: Option<NodePublic>,
    /// Rate limit for PeerGone(NotHere) answers: 1/s, burst 3.
    not_here: TokenBucket,
    /// The connection's packet-byte budget (`send_rate_bytes_per_second`).
    send_rate: ByteRate,
}

impl ClientConn<'_> {
    async fn read_loop<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut FrameReader<R>,
        mut closed: watch::Receiver<bool>,
    ) -> Result<(), DerpError> {
        let mut since_yield = 0u32;
        loop {
            let frame = tokio::select! {
                frame = reader.read_frame() => frame?,
                _ = closed.changed() => return Ok(()),
            };
            // A flooding sender always has frames ready and would otherwise keep its worker
            // for a whole coop budget (~128 reads), starving the writers that drain the queues
            // it fills. Yielding every queue's worth of frames keeps relaying fair under load.
            since_yield += 1;
            if since_yield >= YIELD_EVERY {
                since_yield = 0;
                tokio::task::yield_now().await;
            }
            match frame {
                None => return Ok(()),
                Some(frame) => {
                    let bytes = match &frame {
                        Frame::SendPacket { packet, .. } => packet.len() as u64,
                        _ => 0,
                    };
                    self.handle_frame(frame)?;
                    // Over budget: read nothing more until it refills; the peer's writes back up.
                    if let Some(wait) = self.send_rate.take(bytes) {
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = closed.changed() => return Ok(()),
                        }
                    }
                }
            }
        }
    }

    fn handle_frame(&mut self, frame: Frame) -> Result<(), DerpError> {
        match frame {
            Frame::SendPacket { dst, packet } => self.send_packet(dst, packet),
            // Recorded for nothing yet: one home per key is not tracked across regions.
            Frame::NotePreferred { .. } => {}
            Frame::Ping { data } => {
                // A full control queue means the client is not reading: dropping the Pong is fine.
                let _ = self.handle.control.try_send(Control::Pong(data));
            }
            Frame::Pong { .. } => {}
            Frame::ForwardPacket { .. } | Frame::WatchConns | Frame::ClosePeer { .. } => {
                return Err(DerpError::Protocol("mesh frame without a mesh key"));
            }
            Frame::ClientInfo { .. } => return Err(DerpError::Protocol("second ClientInfo")),
            // server_wants() keeps every other type out.
            _ => {}
        }
        Ok(())
    }

    fn send_packet(&mut self, dst: NodePublic, packet: Bytes) {
        let disco = frame::looks_like_disco(&packet);
        match self.server.forward(&self.key, self.tenant, &dst, packet) {
            Forwarded::Delivered => {
                if self.last_dst != Some(dst) {
                    self.sent_to.insert(dst);
                    self.last_dst = Some(dst);
                }
            }
            // Unknown and other-tenant destinations must look the same to the sender.
            Forwarded::Dropped(DropReason::UnknownPeer | DropReason::OtherNamespace) => {
                if disco && self.not_here.take() {
                    let _ = self.handle.control.try_send(Control::PeerGone(dst, PeerGoneReason::NotHere));
                }
            }
            Forwarded::Dropped(DropReason::QueueFull) => {}
        }
    }
}

/// A token bucket of 1 token/s, 3 tokens deep.
struct TokenBucket {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    const RATE: f64 = 1.0;
    const BURST: f64 = 3.0;

    fn new() -> Self {
        Self { tokens: Self::BURST, at: Instant::now() }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * Self::RATE;
        self.tokens = (self.tokens + refill).min(Self::BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A byte budget refilled at `rate` per second, one second deep. `rate` 0: unlimited.
struct ByteRate {
    rate: u64,
    /// Bytes that may still be taken; negative is a debt to wait off.
    tokens: f64,
    at: Instant,
}

impl ByteRate {
    fn new(rate: u64) -> Self {
        Self { rate, tokens: rate as f64, at: Instant::now() }
    }

    /// Takes `bytes`; how long to wait before the next read when that overdrew the budget.
    fn take(&mut self, bytes: u64) -> Option<Duration> {
        if self.rate == 0 || bytes == 0 {
            return None;
        }
        let now = Instant::now();
        let rate = self.rate as f64;
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(rate);
        self.at = now;
        self.tokens -= bytes as f64;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / rate))
    }
}

/// What the writer task writes next.
enum Outgoing {
    Packet(NodePublic, Bytes),
    Control(Control),
    KeepAlive,
}

/// Drains the connection's queues into the socket until closed or a write fails.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: FrameWriter<WriteHalf<W>>,
    mut packets: mpsc::Receiver<(NodePublic, Bytes)>,
    mut control: mpsc::Receiver<Control>,
    mut closed: watch::Receiver<bool>,
    handle: Arc<ConnHandle>,
    config: DerpConfig,
) {
    let result = async {
        // One timer, reset when it fires, rather than a new one per wake-up.
        let keep_alive = tokio::time::sleep(keep_alive_interval(&config));
        tokio::pin!(keep_alive);
        loop {
            let first = tokio::select! {
                biased;
                _ = closed.changed() => return Ok::<(), DerpError>(()),
                Some(c) = control.recv() => Outgoing::Control(c),
                Some((src, p)) = packets.recv() => Outgoing::Packet(src, p),
                _ = &mut keep_alive => {
                    keep_alive.as_mut().reset(Instant::now() + keep_alive_interval(&config));
                    Outgoing::KeepAlive
                }
            };
            let mut item = Some(first);
            let mut written = 0;
            // Write everything already queued, then flush once.
            while let Some(out) = item.take() {
                if write_outgoing(&mut writer, out).await? {
                    writer.flush().await?;
                    return Ok(());
                }
                written += 1;
                if written < MAX_BATCH {
                    item = control
                        .try_recv()
                        .map(Outgoing::Control)
                        .or_else(|_| packets.try_recv().map(|(s, p)| Outgoing::Packet(s, p)))
                        .ok();
                }
            }
            writer.flush().await?;
        }
    }
    .await;
    // Whatever ended the writer ends the reader too.
    handle.close();
    match result {
        Ok(()) => writer.shutdown().await,
        // A stalled or broken socket: do not wait on it a second time.
        Err(err) => tracing::debug!(error = %err, "derp write failed"),
    }
}

/// Writes one item; returns true if the connection should close after it (Restarting).
async fn write_outgoing<W: AsyncWrite + Unpin>(writer: &mut FrameWriter<W>, out: Outgoing) -> Result<bool, DerpError> {
    let frame = match out {
        Outgoing::Packet(src, packet) => {
            writer.write_recv_packet(&src, &packet).await?;
            return Ok(false);
        }
        Outgoing::KeepAlive => Frame::KeepAlive,
        Outgoing::Control(Control::Pong(data)) => Frame::Pong { data },
        Outgoing::Control(Control::PeerGone(key, reason)) => Frame::PeerGone { key, reason },
        Outgoing::Control(Control::Restarting { reconnect_in_ms, try_for_ms }) => {
            writer.write_frame(&Frame::Restarting { reconnect_in_ms, try_for_ms }).await?;
            return Ok(true);
        }
    };
    writer.write_frame(&frame).await?;
    Ok(false)
}

fn keep_alive_interval(config: &DerpConfig) -> Duration {
    let jitter_ms = u64::try_from(config.keep_alive_jitter.as_millis()).unwrap_or(0);
    let jitter = if jitter_ms == 0 { 0 } else { rand::random::<u64>() % jitter_ms };
    config.keep_alive + Duration::from_millis(jitter)
}

#[cfg(test)]
mod byte_rate_tests {
    use super::*;

    #[test]
    fn overdrawing_the_budget_asks_for_the_time_it_takes_to_refill() {
        let mut rate = ByteRate::new(1000);
        assert_eq!(rate.take(600), None);
        let wait = rate.take(600).expect("200 bytes over");
        assert!(wait > Duration::from_millis(150) && wait <= Duration::from_millis(200), "{wait:?}");
        assert_eq!(ByteRate::new(0).take(1 << 30), None, "0 is no limit");
    }
}
