//! The reader: which nodes are online, the live view of each namespace, and the fan-out of
//! every change to the map sessions that must hear about it; and the wire forms of all of it
//! ([`tailcfg`], [`framing`], [`mapper`]). It also answers the relay's admission question
//! from the store ([`derp_admission`]).
//!
//! The store is the source of truth, and netmap only reads it. A change is made by
//! [`crate::state::Writer`], which records its [`Event`]s in the outbox in the same
//! transaction; every instance reads every event in sequence (its own included) and hands it
//! to the task that owns the namespace ([`namespace::NamespaceTask`]), which reloads
//! what changed and sends each connected session its delta. Presence (online/offline) travels
//! the same way, so an instance knows about streams held by the others, and which instance
//! holds each: an "offline" from an instance that no longer holds the node (an old stream
//! ending after the node reconnected elsewhere) changes nothing, and when an instance is gone
//! ([`Event::InstanceGone`]: it stopped, or its lease lapsed) exactly the nodes it held go
//! offline. An instance that starts asks the others to announce theirs again
//! ([`Event::PresenceSync`]), and one that hears it is gone while alive (its lease lapsed
//! during a database outage) announces its own again.

pub mod derp_admission;
pub mod framing;
pub mod mapper;
pub mod namespace;
pub mod tailcfg;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use crate::state::events::Event;
use crate::state::Writer;
use namespace::{Command, NamespaceTask};

use crate::config::Settings;
use crate::domain::{InstanceId, NamespaceId, NodeId};
use crate::netmap::framing::MapMessage;
use crate::netmap::tailcfg::{DerpMap, MapResponse};
use crate::state::store::{Membership, Node, Store, StoreError};
use mapper::NamespaceIdentity;

/// Why the tailnet could not serve a map: the store failed, or the namespace's task is gone
/// (the process is stopping, or the namespace was deleted meanwhile).
#[derive(Debug, thiserror::Error)]
pub enum TailnetError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the namespace's map task has stopped")]
    Stopped,
}

/// Who streams a node that is online.
#[derive(Clone, Copy)]
struct Holder {
    /// `None` only in events of versions before instance leases.
    instance: Option<InstanceId>,
    namespace_id: NamespaceId,
}

impl Holder {
    /// Whether an "offline" from `instance` ends this holding.
    fn ended_by(&self, instance: Option<InstanceId>) -> bool {
        self.instance.is_none() || instance.is_none() || self.instance == instance
    }
}

#[derive(Clone, Copy)]
struct LocalSession {
    session: u64,
    namespace_id: NamespaceId,
}

pub struct Tailnet {
    store: Store,
    settings: Arc<Settings>,
    writer: Writer,
    derp_map: Arc<DerpMap>,
    /// Namespace tasks running on this instance, started at the first session.
    namespaces: Mutex<HashMap<NamespaceId, mpsc::UnboundedSender<Command>>>,
    /// Online nodes across all instances, by node id, with the instance streaming each.
    presence: RwLock<HashMap<NodeId, Holder>>,
    next_session: AtomicU64,
    /// The newest session of each node streaming from this instance.
    local_sessions: Mutex<HashMap<NodeId, LocalSession>>,
    /// Map sessions closed because they could not keep up (their client stopped reading).
    sessions_dropped: prometheus::IntCounter,
}

impl Tailnet {
    /// Builds the tailnet; it learns of changes through [`Tailnet::apply`], called in
    /// sequence for every event of the outbox (the start-up wiring owns that loop).
    pub fn new(store: Store, settings: Arc<Settings>, writer: Writer) -> Arc<Self> {
        Arc::new(Self {
            derp_map: mapper::derp_map(&settings),
            store,
            settings,
            writer,
            namespaces: Mutex::new(HashMap::new()),
            presence: RwLock::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            local_sessions: Mutex::new(HashMap::new()),
            sessions_dropped: prometheus::IntCounter::new(
                "tenscale_map_sessions_dropped_total",
                "Map sessions closed because their queue of updates was full (a client that stopped reading)",
            )
            .expect("a static metric description is valid"),
        })
    }

    /// Puts the tailnet's metrics into `registry`.
    pub fn register_metrics(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.sessions_dropped.clone()))
    }

    pub fn derp_map(&self) -> &Arc<DerpMap> {
        &self.derp_map
    }

    pub fn ephemeral_timeout(&self) -> Duration {
        self.settings.ephemeral_timeout
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn is_online(&self, node_id: NodeId) -> bool {
        self.presence.read().map(|p| p.contains_key(&node_id)).unwrap_or(false)
    }

    /// Applies one event of the outbox to the live view.
    pub async fn apply(self: &Arc<Self>, event: Event) {
        match event {
            Event::NodeChanged { namespace_id, node_id, ephemeral_joined_on, .. } => {
                self.send(namespace_id, Command::Reload { node_id });
                if ephemeral_joined_on == Some(self.writer.instance()) {
                    // Only a map stream keeps it: a client that dies before its first poll
                    // would otherwise leave the node behind for good.
                    self.schedule_ephemeral_cleanup(node_id, self.settings.ephemeral_timeout);
                }
            }
            Event::NodeRemoved { namespace_id, node_id, .. } => {
                self.forget_presence(node_id);
                self.send(namespace_id, Command::Remove { node_id });
            }
            Event::NodeKeyRetired { .. } => {}
            Event::NamespaceRemoved { namespace_id, .. } => {
                // Every session is told it is logged out; dropping the sender then ends the task.
                self.send(namespace_id, Command::Dissolve);
                self.namespaces.lock().map(|mut n| n.remove(&namespace_id)).ok();
            }
            Event::PolicyChanged { org_id: _, namespace_id: Some(ns) } => self.send(ns, Command::PolicyChanged),
            Event::PolicyChanged { org_id, namespace_id: None } => {
                // An org default reaches every namespace of that org with a running task.
                let running: Vec<NamespaceId> =
                    self.namespaces.lock().map(|n| n.keys().copied().collect()).unwrap_or_default();
                for ns in running {
                    if self.store.namespace_by_id(ns).await.is_ok_and(|n| n.org_id == org_id) {
                        self.send(ns, Command::PolicyChanged);
                    }
                }
            }
            Event::Presence { namespace_id, node_id, online: true, instance } => {
                self.hold(node_id, Holder { instance, namespace_id });
                self.send(namespace_id, Command::Presence { node_id, online: true });
            }
            Event::Presence { namespace_id, node_id, online: false, instance } => {
                if !self.release(node_id, instance) {
                    return; // it streams from another instance now
                }
                self.send(namespace_id, Command::Presence { node_id, online: false });
                if self.local_session(node_id).is_some() {
                    // An older stream of the node ended after it had reconnected to this
                    // instance: it is online, tell everyone again.
                    self.announce_online(namespace_id, node_id).await;
                }
            }
            Event::PresenceSync => self.announce_local_sessions().await,
            Event::InstanceGone { instance, .. } if instance == self.writer.instance() => {
                // Taken for dead while alive (the lease lapsed in a database outage).
                self.announce_local_sessions().await;
            }
            Event::InstanceGone { instance, successor } => {
                for (node_id, namespace_id) in self.release_all(instance) {
                    self.send(namespace_id, Command::Presence { node_id, online: false });
                }
                if successor == Some(self.writer.instance()) {
                    self.take_over_ephemeral_cleanup().await;
                }
            }
        }
    }

    async fn announce_local_sessions(&self) {
        let local: Vec<(NodeId, LocalSession)> =
            self.local_sessions.lock().map(|l| l.iter().map(|(id, s)| (*id, *s)).collect()).unwrap_or_default();
        for (node_id, LocalSession { namespace_id, .. }) in local {
            self.announce_online(namespace_id, node_id).await;
        }
    }

    /// As the successor of a gone instance: every ephemeral node offline now (those it
    /// streamed, and those whose clean-up timer it held) is deleted unless it returns within
    /// the ephemeral timeout.
    async fn take_over_ephemeral_cleanup(self: &Arc<Self>) {
        let nodes = match self.store.all_nodes().await {
            Ok(nodes) => nodes,
            Err(err) => return tracing::warn!(%err, "could not take over a gone instance's ephemeral clean-up"),
        };
        for node in nodes.into_iter().filter(|n| n.ephemeral && !self.is_online(n.id)) {
            self.schedule_ephemeral_cleanup(node.id, self.settings.ephemeral_timeout);
        }
    }

    async fn announce_online(&self, namespace_id: NamespaceId, node_id: NodeId) {
        if let Err(err) = self.writer.node_online(namespace_id, node_id).await {
            tracing::warn!(%err, %node_id, "could not record presence");
        }
    }

    /// Whether `node_id` holds a map stream on this instance.
    pub fn streams_here(&self, node_id: NodeId) -> bool {
        self.local_session(node_id).is_some()
    }

    fn local_session(&self, node_id: NodeId) -> Option<LocalSession> {
        self.local_sessions.lock().ok().and_then(|l| l.get(&node_id).copied())
    }

    fn hold(&self, node_id: NodeId, holder: Holder) {
        if let Ok(mut p) = self.presence.write() {
            p.insert(node_id, holder);
        }
    }

    /// Ends the holding of `node_id` if `instance` holds it; false when another one does.
    fn release(&self, node_id: NodeId, instance: Option<InstanceId>) -> bool {
        let Ok(mut p) = self.presence.write() else { return false };
        match p.get(&node_id) {
            Some(holder) if !holder.ended_by(instance) => false,
            _ => {
                p.remove(&node_id);
                true
            }
        }
    }

    fn forget_presence(&self, node_id: NodeId) {
        if let Ok(mut p) = self.presence.write() {
            p.remove(&node_id);
        }
    }

    /// Ends every holding of `instance`; returns the nodes (and namespaces) that went offline.
    fn release_all(&self, instance: InstanceId) -> Vec<(NodeId, NamespaceId)> {
        let Ok(mut p) = self.presence.write() else { return Vec::new() };
        let gone: Vec<(NodeId, NamespaceId)> =
            p.iter().filter(|(_, h)| h.instance == Some(instance)).map(|(id, h)| (*id, h.namespace_id)).collect();
        for (node_id, _) in &gone {
            p.remove(node_id);
        }
        gone
    }

    /// Sends to the namespace's task if one runs here; without sessions there is nobody to tell.
    fn send(&self, namespace_id: NamespaceId, command: Command) {
        let Ok(mut tasks) = self.namespaces.lock() else { return };
        if let Some(tx) = tasks.get(&namespace_id) {
            if tx.send(command).is_err() {
                tasks.remove(&namespace_id);
            }
        }
    }

    /// The namespace's task, started (and loaded from the store) if needed.
    async fn task(&self, namespace_id: NamespaceId) -> Result<mpsc::UnboundedSender<Command>, TailnetError> {
        if let Some(tx) = self.namespaces.lock().ok().and_then(|t| t.get(&namespace_id).cloned()) {
            if !tx.is_closed() {
                return Ok(tx);
            }
        }
        let Membership { namespace: ns, org } = self.store.membership(namespace_id).await?;
        let view =
            Arc::new(NamespaceIdentity::new(ns.id, ns.name.as_str(), org.name.as_str(), &self.settings.base_domain));
        // Only this namespace's entries: a copy of the whole presence map per namespace task
        // would cost O(namespaces x online nodes).
        let is_online = |id: NodeId| self.is_online(id);
        let dropped = self.sessions_dropped.clone();
        let task =
            NamespaceTask::load(self.store.clone(), view, ns.org_id, self.derp_map.clone(), is_online, dropped).await?;
        let mut tasks = self.namespaces.lock().map_err(|_| TailnetError::Stopped)?;
        // Another session may have started it while this one loaded; keep the first.
        if let Some(tx) = tasks.get(&namespace_id).filter(|tx| !tx.is_closed()) {
            return Ok(tx.clone());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(task.run(rx));
        tasks.insert(namespace_id, tx.clone());
        Ok(tx)
    }

    /// Opens a map session for `node`: the first message is the full map, then deltas.
    pub async fn subscribe(self: &Arc<Self>, node: Node) -> Result<MapSession, TailnetError> {
        let (tx, rx) = mpsc::channel(namespace::SESSION_QUEUE);
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (namespace_id, node_id) = (node.namespace_id, node.id);
        let subscribe = Command::Subscribe { node: Box::new(node), session, tx };
        self.task(namespace_id).await?.send(subscribe).map_err(|_| TailnetError::Stopped)?;
        if let Ok(mut local) = self.local_sessions.lock() {
            local.insert(node_id, LocalSession { session, namespace_id });
        }
        // This instance knows at once; the others (and this one's tasks) learn from the event.
        self.hold(node_id, Holder { instance: Some(self.writer.instance()), namespace_id });
        self.announce_online(namespace_id, node_id).await;
        Ok(MapSession { rx, guard: SessionGuard { tailnet: self.clone(), namespace_id, node_id, session } })
    }

    /// One full map, for non-streaming requests.
    pub async fn full_map(&self, node: Node) -> Result<MapResponse, TailnetError> {
        let (reply, rx) = oneshot::channel();
        let task = self.task(node.namespace_id).await?;
        task.send(Command::FullMap { node: Box::new(node), reply }).map_err(|_| TailnetError::Stopped)?;
        rx.await.map_err(|_| TailnetError::Stopped)
    }

    /// Called when a node's stream ends: marks it offline everywhere and, for an ephemeral
    /// node, deletes it unless it comes back within the inactivity timeout.
    fn session_ended(self: &Arc<Self>, namespace_id: NamespaceId, node_id: NodeId, session: u64) {
        self.send(namespace_id, Command::Unsubscribe { node_id, session });
        let was_current = self
            .local_sessions
            .lock()
            .map(|mut local| {
                let current = local.get(&node_id).is_some_and(|s| s.session == session);
                if current {
                    local.remove(&node_id);
                }
                current
            })
            .unwrap_or(false);
        if !was_current {
            // A newer stream of the same node replaced this one: it is still online.
            return;
        }
        // A stream that ends because its runtime is stopping (the process exits) has nowhere
        // to record that; the next instance to start asks everyone to re-announce presence.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(%node_id, "map stream ended while shutting down; presence not recorded");
            return;
        };
        let tailnet = self.clone();
        runtime.spawn(async move {
            if let Err(err) = tailnet.writer.node_offline(namespace_id, node_id).await {
                tracing::warn!(%err, %node_id, "could not record the end of a map stream");
            }
            tailnet.schedule_ephemeral_cleanup(node_id, tailnet.settings.ephemeral_timeout);
        });
    }

    /// Deletes ephemeral node `node_id` after `after` unless it is online by then.
    pub fn schedule_ephemeral_cleanup(self: &Arc<Self>, node_id: NodeId, after: Duration) {
        let tailnet = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let Some(tailnet) = tailnet.upgrade() else { return };
            if tailnet.is_online(node_id) {
                return;
            }
            match tailnet.writer.reap_ephemeral(node_id, after).await {
                Ok(true) => tracing::info!(%node_id, "deleted inactive ephemeral node"),
                Ok(false) => {}
                Err(err) => tracing::warn!(%err, %node_id, "could not delete an inactive ephemeral node"),
            }
        });
    }
}

/// A live map stream: the messages for one node, and a guard that ends the session when the
/// stream is dropped (the client went away or a newer stream replaced it).
pub struct MapSession {
    pub rx: mpsc::Receiver<MapMessage>,
    pub guard: SessionGuard,
}

pub struct SessionGuard {
    tailnet: Arc<Tailnet>,
    namespace_id: NamespaceId,
    node_id: NodeId,
    session: u64,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.tailnet.session_ended(self.namespace_id, self.node_id, self.session);
    }
}
