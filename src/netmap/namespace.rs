//! One namespace's live view, owned by a single task: its nodes, its compiled policy and the
//! map sessions connected to this instance. Every change arrives as a [`Command`]; the task
//! applies a whole batch, then sends each session only what changed for it.
//!
//! Each node's wire form as a peer is built once per change and shared (`Arc`) by every
//! session that sends or remembers it, so a namespace of k connected nodes holds k wire
//! nodes plus k² pointers, not k² copies, and a change costs O(k) work, not O(k²).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::domain::{NodeId, OrgId};
use crate::netmap::framing::{self, MapMessage};
use crate::netmap::mapper::{wire_node, wire_self_node, NamespaceIdentity};
use crate::netmap::tailcfg::{self, DerpMap, FilterRule, MapResponse, SshPolicy};
use crate::policy::{compile_namespace, CompiledNamespace, Policy, PolicyNode};
use crate::state::policy::policy_node;
use crate::state::store::{Node, Store};

/// Messages a session channel can hold before the session is considered stuck and closed
/// (the client then re-polls and gets a fresh full map). Messages are small ([`MapMessage`]
/// boxes or shares its payload): the channel allocates its slots in blocks.
pub const SESSION_QUEUE: usize = 64;

/// Nodes are boxed: the channel allocates its slots in blocks of 32 commands and keeps them,
/// so the largest variant sets every namespace's standing cost.
pub enum Command {
    /// A map stream opened for `node` (already stored with its latest disco key etc.).
    Subscribe {
        node: Box<Node>,
        session: u64,
        tx: mpsc::Sender<MapMessage>,
    },
    Unsubscribe {
        node_id: NodeId,
        session: u64,
    },
    /// Reload the node from the store (created or changed).
    Reload {
        node_id: NodeId,
    },
    /// The node was deleted: its peers drop it, and its own stream is told it is logged out.
    Remove {
        node_id: NodeId,
    },
    /// The namespace was deleted: every session is told it is logged out; the task ends when
    /// its sender, dropped right after this command, is gone.
    Dissolve,
    PolicyChanged,
    Presence {
        node_id: NodeId,
        online: bool,
    },
    /// One full map for a non-streaming request.
    FullMap {
        node: Box<Node>,
        reply: oneshot::Sender<MapResponse>,
    },
}

/// The policy in force: none stored means allow-all; one that no longer parses fails closed.
enum Effective {
    AllowAll,
    Policy(Box<Policy>),
    Broken,
}

struct Session {
    id: u64,
    tx: mpsc::Sender<MapMessage>,
    peers: SentPeers,
    filter: Vec<FilterRule>,
    ssh: Option<SshPolicy>,
}

/// The peers a session was last sent, as the shared wire forms that were sent.
enum SentPeers {
    /// Every other node of the namespace as in [`NamespaceTask::synced`]. Under allow-all
    /// every session gets every change, so all of them are in this state and a 1,000-node
    /// namespace keeps one peer table, not one per session.
    InSync,
    /// A table of its own, for sessions whose view a policy narrows.
    Own(BTreeMap<NodeId, Arc<tailcfg::Node>>),
}

pub struct NamespaceTask {
    view: Arc<NamespaceIdentity>,
    store: Store,
    derp_map: Arc<DerpMap>,
    org_id: OrgId,
    nodes: BTreeMap<NodeId, Node>,
    online: HashMap<NodeId, bool>,
    policy: Effective,
    compiled: Option<CompiledNamespace>,
    sessions: HashMap<NodeId, Session>,
    /// Each node's current wire form as a peer; replaced (new `Arc`) only when it differs.
    wire: HashMap<NodeId, Arc<tailcfg::Node>>,
    /// `wire` as of the end of the last fan-out: what every [`SentPeers::InSync`] session
    /// holds (minus itself).
    synced: HashMap<NodeId, Arc<tailcfg::Node>>,
    /// Membership, tags or policy changed since the last compilation.
    needs_compile: bool,
    /// Sessions closed because their queue was full ([`SESSION_QUEUE`]).
    sessions_dropped: prometheus::IntCounter,
}

impl NamespaceTask {
    /// Loads the namespace from the store; `is_online` answers for its nodes (only theirs
    /// are kept: presence events for other namespaces never reach this task).
    pub async fn load(
        store: Store,
        view: Arc<NamespaceIdentity>,
        org_id: OrgId,
        derp_map: Arc<DerpMap>,
        is_online: impl Fn(NodeId) -> bool,
        sessions_dropped: prometheus::IntCounter,
    ) -> Result<Self, crate::state::store::StoreError> {
        let nodes = store.nodes_in_namespace(view.namespace_id).await?;
        let online = nodes.iter().filter(|n| is_online(n.id)).map(|n| (n.id, true)).collect();
        let mut task = Self {
            view,
            store,
            derp_map,
            org_id,
            nodes: nodes.into_iter().map(|n| (n.id, n)).collect(),
            online,
            policy: Effective::AllowAll,
            compiled: None,
            sessions: HashMap::new(),
            wire: HashMap::new(),
            synced: HashMap::new(),
            needs_compile: true,
            sessions_dropped,
        };
        let ids: Vec<NodeId> = task.nodes.keys().copied().collect();
        for id in ids {
            task.rewire(id);
        }
        task.synced = task.wire.clone();
        task.load_policy().await;
        task.ensure_compiled();
        Ok(task)
    }

    /// Runs until every command sender is gone.
    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        while let Some(first) = commands.recv().await {
            // Coalesce: everything already queued is applied before anyone hears about it,
            // and the nodes it asks to reload are read in one query.
            let mut queued = vec![first];
            while let Ok(next) = commands.try_recv() {
                queued.push(next);
            }
            let reloaded = self.reload(&queued).await;
            let mut batch = Batch::default();
            for command in queued {
                self.apply(command, &mut batch, &reloaded).await;
            }
            self.ensure_compiled();
            self.fan_out(batch);
        }
    }

    /// Reads every node that `commands` ask to reload, in one query. The read happens after
    /// all of them were queued, so it is at least as new as each of their events.
    async fn reload(&self, commands: &[Command]) -> Result<HashMap<NodeId, Node>, String> {
        let mut ids: Vec<NodeId> = commands
            .iter()
            .filter_map(|c| match c {
                Command::Reload { node_id } => Some(*node_id),
                _ => None,
            })
            .collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        ids.sort_unstable();
        ids.dedup();
        match self.store.nodes_by_ids(&ids).await {
            Ok(nodes) => Ok(nodes.into_iter().map(|n| (n.id, n)).collect()),
            Err(err) => Err(err.to_string()),
        }
    }

    async fn apply(&mut self, command: Command, batch: &mut Batch, reloaded: &Result<HashMap<NodeId, Node>, String>) {
        match command {
            Command::Subscribe { node, session, tx } => {
                let node_id = node.id;
                self.online.insert(node_id, true);
                batch.note_node(node_id, self.nodes.get(&node_id), Some(&node));
                self.nodes.insert(node_id, *node);
                self.rewire(node_id);
                self.needs_compile |= batch.membership;
                self.ensure_compiled();
                let first = self.full_map(node_id);
                // Own until the end of this batch's fan-out, which may have changed `wire`
                // after this full map was built.
                let peers =
                    SentPeers::Own(first.peers.iter().flatten().map(|p| (NodeId::new(p.id), p.clone())).collect());
                let mut state = Session { id: session, tx, peers, filter: vec![], ssh: None };
                remember_policy(&mut state, &first);
                if state.tx.try_send(MapMessage::from(first)).is_ok() {
                    // A new stream replaces the old one; dropping the old sender ends it.
                    self.sessions.insert(node_id, state);
                }
            }
            Command::Unsubscribe { node_id, session } => {
                if self.sessions.get(&node_id).is_some_and(|s| s.id == session) {
                    self.sessions.remove(&node_id);
                }
            }
            Command::Reload { node_id } => match reloaded.as_ref().map(|found| found.get(&node_id)) {
                Ok(Some(node)) if node.namespace_id == self.view.namespace_id => {
                    batch.note_node(node_id, self.nodes.get(&node_id), Some(node));
                    self.needs_compile |= batch.membership;
                    self.nodes.insert(node_id, node.clone());
                    self.rewire(node_id);
                }
                // Gone, or moved out of this namespace.
                Ok(_) => self.forget(node_id, batch),
                Err(err) => tracing::error!(%err, %node_id, "cannot reload node"),
            },
            Command::Remove { node_id } => {
                self.evict(node_id, NODE_DELETED);
                self.forget(node_id, batch);
            }
            Command::Dissolve => {
                let sessions: Vec<NodeId> = self.sessions.keys().copied().collect();
                for node_id in sessions {
                    self.evict(node_id, NAMESPACE_DELETED);
                }
            }
            Command::PolicyChanged => {
                self.load_policy().await;
                batch.policy = true;
                self.needs_compile = true;
            }
            Command::Presence { node_id, online } => {
                if self.online.insert(node_id, online) != Some(online) {
                    batch.changed.insert(node_id);
                    self.rewire(node_id);
                }
            }
            Command::FullMap { node, reply } => {
                let node_id = node.id;
                batch.note_node(node_id, self.nodes.get(&node_id), Some(&node));
                self.needs_compile |= batch.membership;
                self.nodes.insert(node_id, *node);
                self.rewire(node_id);
                self.ensure_compiled();
                let _ = reply.send(self.full_map(node_id));
            }
        }
    }

    /// Tells a deleted node it is logged out, then holds its stream open until the client
    /// leaves. The message is the node itself with its key expired now (a client then stops
    /// in NeedsLogin with its engine down, as after `POST …/expire`), every peer removed, no
    /// packet filter, and a health line saying why. The stream is held rather than closed:
    /// a v1.102 client retries a closed or refused map poll forever, at most every 30 s, in
    /// state Running (tailscale/tailscale#12032, #20615), whereas on an open stream it waits
    /// for `tailscale logout` or `tailscale up --force-reauth`. Keep-alives fill the silence;
    /// the held sender goes when the client closes its end. After a restart of this server
    /// the client falls back to the retries, which answer 404.
    fn evict(&mut self, node_id: NodeId, reason: &str) {
        let (Some(session), Some(node)) = (self.sessions.remove(&node_id), self.nodes.get(&node_id)) else {
            return;
        };
        let mut expired = node.clone();
        let now = self.store.now();
        expired.key_expiry = Some(now);
        let mut filters = BTreeMap::new();
        filters.insert("base".to_string(), Some(Vec::new()));
        let goodbye = MapResponse {
            node: Some(wire_self_node(&expired, &self.view, now)),
            peers_removed: Some(self.nodes.keys().filter(|&&id| id != node_id).map(|id| id.get()).collect()),
            packet_filters: Some(filters),
            ssh_policy: Some(SshPolicy::default()),
            health: Some(vec![reason.to_string()]),
            control_time: Some(now),
            ..Default::default()
        };
        if session.tx.try_send(MapMessage::from(goodbye)).is_err() {
            return; // a full or closed queue: the session is let go as any stuck one
        }
        tokio::spawn(async move { session.tx.closed().await });
    }

    fn forget(&mut self, node_id: NodeId, batch: &mut Batch) {
        self.wire.remove(&node_id);
        if self.nodes.remove(&node_id).is_some() {
            batch.changed.insert(node_id);
            batch.membership = true;
            self.needs_compile = true;
        }
        self.online.remove(&node_id);
        // Dropping the session's sender ends the node's own stream.
        self.sessions.remove(&node_id);
    }

    async fn load_policy(&mut self) {
        let ns_scope = crate::state::store::policies::PolicyScope::Namespace(self.view.namespace_id);
        let doc = match self.store.policy(self.org_id, ns_scope).await {
            Ok(Some(doc)) => Some(doc),
            Ok(None) => {
                self.store.policy(self.org_id, crate::state::store::policies::PolicyScope::Org).await.ok().flatten()
            }
            Err(err) => {
                tracing::error!(%err, "cannot load policy; keeping the previous one");
                return;
            }
        };
        self.policy = match doc {
            None => Effective::AllowAll,
            Some(doc) => match Policy::parse(&doc.text) {
                Ok(policy) => Effective::Policy(Box::new(policy)),
                Err(err) => {
                    tracing::error!(%err, namespace = %self.view.namespace, "stored policy does not parse; denying all");
                    Effective::Broken
                }
            },
        };
    }

    fn ensure_compiled(&mut self) {
        if self.needs_compile {
            self.recompile();
            self.needs_compile = false;
        }
    }

    /// Recompiles the policy for every node. Allow-all needs no compilation.
    fn recompile(&mut self) {
        let policy = match &self.policy {
            Effective::AllowAll => {
                self.compiled = None;
                return;
            }
            Effective::Policy(p) => Some(p.as_ref()),
            Effective::Broken => None,
        };
        let login = self.view.login_name();
        let nodes: Vec<PolicyNode> = self.nodes.values().map(|n| policy_node(n, &login)).collect();
        let mut compiled = compile_namespace(policy, &nodes);
        if matches!(self.policy, Effective::Broken) {
            for c in compiled.nodes.values_mut() {
                c.filter.clear();
                c.peers.clear();
            }
        }
        self.compiled = Some(compiled);
    }

    /// The ids `node_id` may see.
    fn visible_peers(&self, node_id: NodeId) -> Vec<NodeId> {
        match &self.compiled {
            None => self.nodes.keys().copied().filter(|id| *id != node_id).collect(),
            Some(c) => c.nodes.get(&node_id).map(|n| n.peers.clone()).unwrap_or_default(),
        }
    }

    fn filter_for(&self, node_id: NodeId) -> (Vec<FilterRule>, Option<SshPolicy>) {
        match &self.compiled {
            None => (vec![FilterRule::allow_all()], None),
            Some(c) => match c.nodes.get(&node_id) {
                Some(n) => (n.filter.clone(), n.ssh.clone()),
                None => (vec![], None),
            },
        }
    }

    /// Whether `viewer` may see `id` (without building its whole peer list).
    fn can_see(&self, viewer: NodeId, id: NodeId) -> bool {
        match &self.compiled {
            None => id != viewer && self.nodes.contains_key(&id),
            // `peers` is ascending.
            Some(c) => c.nodes.get(&viewer).is_some_and(|n| n.peers.binary_search(&id).is_ok()),
        }
    }

    /// Rebuilds node `id`'s wire form from the stored node and its presence; keeps the old
    /// `Arc` when nothing visible changed, so sessions holding it need no update.
    fn rewire(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get(&id) else {
            self.wire.remove(&id);
            return;
        };
        let online = self.online.get(&id).copied().unwrap_or(false);
        let fresh = wire_node(node, &self.view, online, self.store.now());
        if self.wire.get(&id).is_none_or(|old| **old != fresh) {
            self.wire.insert(id, Arc::new(fresh));
        }
    }

    /// The full map for `node_id`; its peers are the shared wire forms.
    fn full_map(&self, node_id: NodeId) -> MapResponse {
        let Some(me) = self.nodes.get(&node_id) else { return MapResponse::default() };
        let now = self.store.now();
        let peers: Vec<Arc<tailcfg::Node>> =
            self.visible_peers(node_id).into_iter().filter_map(|id| self.wire.get(&id).cloned()).collect();
        let (filter, ssh) = self.filter_for(node_id);
        let mut filters = BTreeMap::new();
        filters.insert("base".to_string(), Some(filter));
        MapResponse {
            node: Some(wire_self_node(me, &self.view, now)),
            derp_map: Some((*self.derp_map).clone()),
            peers: Some(peers),
            dns_config: Some(self.view.dns_config()),
            domain: self.view.dns_suffix.clone(),
            collect_services: Some(false),
            packet_filters: Some(filters),
            ssh_policy: Some(ssh.unwrap_or_default()),
            user_profiles: Some(vec![self.view.user_profile()]),
            control_time: Some(now),
            ..Default::default()
        }
    }

    /// Sends every session the difference between what it has and what it should have.
    fn fan_out(&mut self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let allow_all = self.compiled.is_none();
        if !allow_all {
            self.give_sessions_own_tables();
        }
        let mut frames = SharedFrames::default();
        let session_ids: Vec<NodeId> = self.sessions.keys().copied().collect();
        let mut stuck = Vec::new();
        for node_id in session_ids {
            let Some(delta) = self.delta_for(node_id, &batch) else { continue };
            let Some(session) = self.sessions.get_mut(&node_id) else { continue };
            if let SentPeers::Own(peers) = &mut session.peers {
                for peer in &delta.changed {
                    peers.insert(NodeId::new(peer.id), peer.clone());
                }
                for id in &delta.removed {
                    peers.remove(id);
                }
            }
            delta.remember_policy(session);
            if session.tx.try_send(frames.message(delta)).is_err() {
                stuck.push(node_id);
            }
        }
        for node_id in stuck {
            tracing::warn!(%node_id, "map session cannot keep up; closing it");
            self.sessions_dropped.inc();
            self.sessions.remove(&node_id);
        }
        for id in &batch.changed {
            match self.wire.get(id) {
                Some(now) => self.synced.insert(*id, now.clone()),
                None => self.synced.remove(id),
            };
        }
        if allow_all {
            // Every session now holds every other node's current wire form.
            for session in self.sessions.values_mut() {
                session.peers = SentPeers::InSync;
            }
        }
    }

    /// A policy narrows views from here on: in-sync sessions get a copy of the shared table.
    fn give_sessions_own_tables(&mut self) {
        for (node_id, session) in &mut self.sessions {
            if matches!(session.peers, SentPeers::InSync) {
                let own = self.synced.iter().filter(|(id, _)| *id != node_id).map(|(id, p)| (*id, p.clone())).collect();
                session.peers = SentPeers::Own(own);
            }
        }
    }

    /// What session `node_id` was last sent for peer `id`.
    fn sent<'a>(&'a self, session: &'a Session, node_id: NodeId, id: NodeId) -> Option<&'a Arc<tailcfg::Node>> {
        match &session.peers {
            SentPeers::InSync if id == node_id => None,
            SentPeers::InSync => self.synced.get(&id),
            SentPeers::Own(peers) => peers.get(&id),
        }
    }

    fn sent_ids(&self, session: &Session, node_id: NodeId) -> Vec<NodeId> {
        match &session.peers {
            SentPeers::InSync => self.synced.keys().copied().filter(|id| *id != node_id).collect(),
            SentPeers::Own(peers) => peers.keys().copied().collect(),
        }
    }

    fn delta_for(&self, node_id: NodeId, batch: &Batch) -> Option<Delta> {
        let session = self.sessions.get(&node_id)?;
        let mut delta = Delta::default();
        if batch.changed.contains(&node_id) {
            if let Some(me) = self.nodes.get(&node_id) {
                delta.self_node = Some(wire_self_node(me, &self.view, self.store.now()));
            }
        }
        // Under allow-all everyone sees everyone and the filter never changes, so only the
        // nodes the batch names can differ; a compiled policy may move visibility for anyone.
        let full_check = batch.policy || (batch.membership && self.compiled.is_some());
        let mut consider = |id: NodeId, visible: bool| {
            let current = if visible { self.wire.get(&id) } else { None };
            match (current, self.sent(session, node_id, id)) {
                (Some(now), Some(sent)) if Arc::ptr_eq(now, sent) => {}
                (Some(now), _) => delta.changed.push(now.clone()),
                (None, Some(_)) => delta.removed.push(id),
                (None, None) => {}
            }
        };
        if full_check {
            let visible = self.visible_peers(node_id);
            for &id in &visible {
                consider(id, true);
            }
            for id in self.sent_ids(session, node_id) {
                if visible.binary_search(&id).is_err() {
                    consider(id, false);
                }
            }
        } else {
            for &id in batch.changed.iter().filter(|id| **id != node_id) {
                consider(id, self.can_see(node_id, id));
            }
        }
        if full_check {
            let (filter, ssh) = self.filter_for(node_id);
            if filter != session.filter {
                delta.filter = Some(filter);
            }
            let ssh = ssh.unwrap_or_default();
            if Some(&ssh) != session.ssh.as_ref() {
                delta.ssh = Some(ssh);
            }
        }
        (!delta.is_empty()).then_some(delta)
    }
}

/// One session's update. The peers are the shared wire forms, for the session to remember.
#[derive(Default)]
struct Delta {
    self_node: Option<tailcfg::Node>,
    changed: Vec<Arc<tailcfg::Node>>,
    removed: Vec<NodeId>,
    filter: Option<Vec<FilterRule>>,
    ssh: Option<SshPolicy>,
}

impl Delta {
    fn is_empty(&self) -> bool {
        self.self_node.is_none()
            && self.changed.is_empty()
            && self.removed.is_empty()
            && self.filter.is_none()
            && self.ssh.is_none()
    }

    /// Only peer changes: the same for every session that gets the same peers.
    fn is_peers_only(&self) -> bool {
        self.self_node.is_none() && self.filter.is_none() && self.ssh.is_none()
    }

    fn remember_policy(&self, session: &mut Session) {
        if let Some(filter) = &self.filter {
            session.filter = filter.clone();
        }
        if let Some(ssh) = &self.ssh {
            session.ssh = Some(ssh.clone());
        }
    }

    fn into_response(self) -> MapResponse {
        let mut msg = MapResponse { node: self.self_node, ..Default::default() };
        if !self.changed.is_empty() {
            msg.peers_changed = Some(self.changed);
        }
        if !self.removed.is_empty() {
            msg.peers_removed = Some(self.removed.iter().map(|id| id.get()).collect());
        }
        if let Some(filter) = self.filter {
            msg.packet_filters = Some(BTreeMap::from([("base".to_string(), Some(filter))]));
        }
        msg.ssh_policy = self.ssh;
        msg
    }
}

/// Peer-only deltas of one fan-out, each serialized and compressed once: when a node joins
/// a namespace of k sessions, k-1 of them get the very same bytes.
#[derive(Default)]
struct SharedFrames {
    /// Keyed by the wire forms (their addresses: one `Arc` per distinct form) and removals.
    framed: HashMap<(Vec<usize>, Vec<NodeId>), Bytes>,
}

impl SharedFrames {
    fn message(&mut self, delta: Delta) -> MapMessage {
        if !delta.is_peers_only() {
            return MapMessage::from(delta.into_response());
        }
        let key = (delta.changed.iter().map(|p| Arc::as_ptr(p) as usize).collect(), delta.removed.clone());
        if let Some(bytes) = self.framed.get(&key) {
            return MapMessage::Framed(bytes.clone());
        }
        let msg = delta.into_response();
        match framing::encode(&msg) {
            Ok(bytes) => {
                self.framed.insert(key, bytes.clone());
                MapMessage::Framed(bytes)
            }
            // Left to the session, which reports it and resets its stream.
            Err(_) => MapMessage::from(msg),
        }
    }
}

/// The health line of a node whose node was deleted.
const NODE_DELETED: &str =
    "this device was deleted from its tailnet on the coordination server; log in again with a new auth key";
/// The health line of a node whose namespace was deleted.
const NAMESPACE_DELETED: &str =
    "this device's tailnet (namespace) was deleted on the coordination server; log in again with a new auth key";

/// What a batch of commands changed.
#[derive(Default)]
struct Batch {
    /// Nodes whose wire form may have changed.
    changed: BTreeSet<NodeId>,
    /// Nodes joined or left, or tags/addresses changed: visibility must be recomputed.
    membership: bool,
    policy: bool,
}

impl Batch {
    fn note_node(&mut self, id: NodeId, before: Option<&Node>, after: Option<&Node>) {
        self.changed.insert(id);
        let same_identity = matches!((before, after), (Some(b), Some(a)) if b.tags == a.tags && b.ipv4 == a.ipv4);
        if !same_identity {
            self.membership = true;
        }
    }

    fn is_empty(&self) -> bool {
        self.changed.is_empty() && !self.membership && !self.policy
    }
}

/// Records in the session the filter and SSH policy a message told the client (peers are
/// recorded by the caller, as the shared wire forms).
fn remember_policy(session: &mut Session, sent: &MapResponse) {
    if let Some(Some(filter)) = sent.packet_filters.as_ref().and_then(|f| f.get("base")) {
        session.filter = filter.clone();
    }
    if let Some(ssh) = &sent.ssh_policy {
        session.ssh = Some(ssh.clone());
    }
}
