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
//! This is the registry and the forwarding only; one connection's tasks are in
//! `crate::session`, and the links to other instances in `crate::mesh`: both drive the
//! relay, which calls neither.

mod admission;
mod config;
mod metrics;
mod routes;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;
use tenscale_base::keys::NodePublic;
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, Instant};

pub use self::admission::{Admission, TenantId};
pub use self::config::{DerpConfig, MeshKey};
pub use self::metrics::{DerpMetrics, DropReason};
pub(crate) use self::routes::{Forward, MeshState, Note, Route, WatchNote};
use crate::crypto::DerpSecret;
use crate::frame::{self, PeerGoneReason};

/// Frames the writer task sends besides relayed packets.
#[derive(Debug)]
pub(crate) enum Control {
    Pong([u8; frame::PING_LEN]),
    PeerGone(NodePublic, PeerGoneReason),
    /// Write a Restarting frame, flush, and close.
    Restarting {
        reconnect_in_ms: u32,
        try_for_ms: u32,
    },
}

/// What the registry holds for one connection: the ends other connections send into.
pub(crate) struct ConnHandle {
    pub(crate) id: u64,
    pub(crate) tenant: TenantId,
    /// Where the client connects from (told to mesh watchers).
    pub(crate) addr: SocketAddr,
    pub(crate) packets: mpsc::Sender<(NodePublic, Bytes)>,
    pub(crate) control: mpsc::Sender<Control>,
    pub(crate) closer: watch::Sender<bool>,
}

impl ConnHandle {
    pub(crate) fn close(&self) {
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
    mesh: MeshState,
}

/// The outcome of one forwarding attempt.
pub(crate) enum Forwarded {
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
            mesh: MeshState::new(config.mesh_key.clone()),
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

    /// Number of keys this instance can reach through the mesh.
    pub fn mesh_routes(&self) -> usize {
        self.mesh.route_count()
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
    pub(crate) fn forward(&self, src: &NodePublic, tenant: TenantId, dst: &NodePublic, packet: Bytes) -> Forwarded {
        match self.forward_local(src, tenant, dst, packet) {
            Err(packet) => self.forward_to_mesh(src, tenant, dst, packet),
            Ok(outcome) => outcome,
        }
    }

    /// Delivers a packet another instance forwarded; it goes no further than this instance.
    pub(crate) fn deliver_forwarded(&self, src: &NodePublic, tenant: TenantId, dst: &NodePublic, packet: Bytes) {
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
    pub(crate) async fn tenant_of(&self, key: &NodePublic) -> Option<TenantId> {
        timeout(self.config.admission_timeout, self.admission.admit(key)).await.ok().flatten()
    }

    /// A fresh id for a connection's registry entry.
    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether `shutdown` has begun (no connection is admitted from then on).
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub(crate) fn secret(&self) -> &DerpSecret {
        &self.secret
    }

    pub(crate) fn mesh(&self) -> &MeshState {
        &self.mesh
    }

    /// Starts telling watcher `id` about this relay's clients: every one connected now, then
    /// each that comes or goes.
    pub(crate) fn add_watcher(&self, id: u64, tx: mpsc::UnboundedSender<Note>) {
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

    pub(crate) fn remove_watcher(&self, id: u64) {
        self.mesh.watchers.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// Queues PeerGone(gone, Disconnected) to each of `peers` that is connected under `tenant`.
    pub(crate) fn send_peer_gone<'a>(
        &self,
        gone: &NodePublic,
        tenant: TenantId,
        peers: impl Iterator<Item = &'a NodePublic>,
    ) {
        for peer in peers {
            let shard = self.read_shard(peer);
            let Some(conns) = shard.get(peer) else { continue };
            for conn in conns.conns.iter().filter(|c| c.tenant == tenant) {
                // Best effort: a full control queue means the peer is not reading anyway.
                let _ = conn.control.try_send(Control::PeerGone(*gone, PeerGoneReason::Disconnected));
            }
        }
    }

    pub(crate) fn register(&self, key: NodePublic, handle: Arc<ConnHandle>) {
        let addr = handle.addr;
        self.write_shard(&key).entry(key).or_default().conns.push(handle);
        self.mesh.notify(WatchNote::Present(key, addr));
        self.metrics.connections.inc();
        self.metrics.accepted.inc();
    }

    /// Removes connection `id` of `key`. Returns the peers to tell that `key` is gone if this
    /// was its last connection (its own `sent_to` plus what departed duplicates left behind).
    pub(crate) fn deregister(
        &self,
        key: &NodePublic,
        id: u64,
        sent_to: HashSet<NodePublic>,
    ) -> Option<HashSet<NodePublic>> {
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
