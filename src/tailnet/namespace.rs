//! One namespace's live view, owned by a single task: its nodes, its compiled policy and the
//! map sessions connected to this instance. Every change arrives as a [`Command`]; the task
//! applies a whole batch, then sends each session only what changed for it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::control::mapper::{wire_node, wire_self_node, NamespaceView};
use crate::control::tailcfg::{self, DerpMap, FilterRule, MapResponse, SshPolicy};
use crate::policy::{compile_namespace, CompiledNamespace, Policy, PolicyNode};
use crate::store::{Node, Store};

/// Messages a session channel can hold before the session is considered stuck and closed
/// (the client then re-polls and gets a fresh full map).
pub const SESSION_QUEUE: usize = 64;

pub enum Command {
    /// A map stream opened for `node` (already stored with its latest disco key etc.).
    Subscribe { node: Node, session: u64, tx: mpsc::Sender<MapResponse> },
    Unsubscribe { node_id: i64, session: u64 },
    /// Reload the node from the store (created or changed).
    Reload { node_id: i64 },
    Remove { node_id: i64 },
    PolicyChanged,
    Presence { node_id: i64, online: bool },
    /// One full map for a non-streaming request.
    FullMap { node: Node, reply: oneshot::Sender<MapResponse> },
}

/// The policy in force: none stored means allow-all; one that no longer parses fails closed.
enum Effective {
    AllowAll,
    Policy(Box<Policy>),
    Broken,
}

struct Session {
    id: u64,
    tx: mpsc::Sender<MapResponse>,
    /// The peers last sent, by id, as sent.
    peers: BTreeMap<i64, tailcfg::Node>,
    filter: Vec<FilterRule>,
    ssh: Option<SshPolicy>,
}

pub struct NamespaceTask {
    view: Arc<NamespaceView>,
    store: Store,
    derp_map: Arc<DerpMap>,
    org_id: i64,
    nodes: BTreeMap<i64, Node>,
    online: HashMap<i64, bool>,
    policy: Effective,
    compiled: Option<CompiledNamespace>,
    sessions: HashMap<i64, Session>,
    /// Membership, tags or policy changed since the last compilation.
    needs_compile: bool,
}

impl NamespaceTask {
    /// Loads the namespace from the store.
    pub async fn load(
        store: Store,
        view: Arc<NamespaceView>,
        org_id: i64,
        derp_map: Arc<DerpMap>,
        online: HashMap<i64, bool>,
    ) -> anyhow::Result<Self> {
        let nodes = store.nodes_in_namespace(view.namespace_id).await?;
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
            needs_compile: true,
        };
        task.load_policy().await;
        task.ensure_compiled();
        Ok(task)
    }

    /// Runs until every command sender is gone.
    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        while let Some(first) = commands.recv().await {
            let mut batch = Batch::default();
            self.apply(first, &mut batch).await;
            // Coalesce: everything already queued is applied before anyone hears about it.
            while let Ok(next) = commands.try_recv() {
                self.apply(next, &mut batch).await;
            }
            self.ensure_compiled();
            self.fan_out(batch);
        }
    }

    async fn apply(&mut self, command: Command, batch: &mut Batch) {
        match command {
            Command::Subscribe { node, session, tx } => {
                let node_id = node.id;
                self.online.insert(node_id, true);
                batch.note_node(node_id, self.nodes.get(&node_id), Some(&node));
                self.nodes.insert(node_id, node);
                self.needs_compile |= batch.membership;
                self.ensure_compiled();
                let first = self.full_map(node_id);
                let mut state = Session { id: session, tx, peers: BTreeMap::new(), filter: vec![], ssh: None };
                remember(&mut state, &first);
                if state.tx.try_send(first).is_ok() {
                    // A new stream replaces the old one; dropping the old sender ends it.
                    self.sessions.insert(node_id, state);
                }
            }
            Command::Unsubscribe { node_id, session } => {
                if self.sessions.get(&node_id).is_some_and(|s| s.id == session) {
                    self.sessions.remove(&node_id);
                }
            }
            Command::Reload { node_id } => match self.store.node_by_id(node_id).await {
                Ok(node) if node.namespace_id == self.view.namespace_id => {
                    batch.note_node(node_id, self.nodes.get(&node_id), Some(&node));
                    self.needs_compile |= batch.membership;
                    self.nodes.insert(node_id, node);
                }
                Ok(_) | Err(crate::store::StoreError::NotFound(_)) => self.forget(node_id, batch),
                Err(err) => tracing::error!(%err, node_id, "cannot reload node"),
            },
            Command::Remove { node_id } => self.forget(node_id, batch),
            Command::PolicyChanged => {
                self.load_policy().await;
                batch.policy = true;
                self.needs_compile = true;
            }
            Command::Presence { node_id, online } => {
                if self.online.insert(node_id, online) != Some(online) {
                    batch.changed.insert(node_id);
                }
            }
            Command::FullMap { node, reply } => {
                let node_id = node.id;
                batch.note_node(node_id, self.nodes.get(&node_id), Some(&node));
                self.needs_compile |= batch.membership;
                self.nodes.insert(node_id, node);
                self.ensure_compiled();
                let _ = reply.send(self.full_map(node_id));
            }
        }
    }

    fn forget(&mut self, node_id: i64, batch: &mut Batch) {
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
        let ns_scope = crate::store::policies::PolicyScope::Namespace(self.view.namespace_id);
        let doc = match self.store.policy(self.org_id, ns_scope).await {
            Ok(Some(doc)) => Some(doc),
            Ok(None) => self.store.policy(self.org_id, crate::store::policies::PolicyScope::Org).await.ok().flatten(),
            Err(err) => {
                tracing::error!(%err, "cannot load policy; keeping the previous one");
                return;
            }
        };
        self.policy = match doc {
            None => Effective::AllowAll,
            Some(doc) => match Policy::parse(&doc.document) {
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
        let nodes: Vec<PolicyNode> = self.nodes.values().map(|n| policy_node(n, &self.view)).collect();
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
    fn visible_peers(&self, node_id: i64) -> Vec<i64> {
        match &self.compiled {
            None => self.nodes.keys().copied().filter(|id| *id != node_id).collect(),
            Some(c) => c.nodes.get(&node_id).map(|n| n.peers.clone()).unwrap_or_default(),
        }
    }

    fn filter_for(&self, node_id: i64) -> (Vec<FilterRule>, Option<SshPolicy>) {
        match &self.compiled {
            None => (vec![FilterRule::allow_all()], None),
            Some(c) => match c.nodes.get(&node_id) {
                Some(n) => (n.filter.clone(), n.ssh.clone()),
                None => (vec![], None),
            },
        }
    }

    fn peer_wire(&self, id: i64) -> Option<tailcfg::Node> {
        let node = self.nodes.get(&id)?;
        let online = self.online.get(&id).copied().unwrap_or(false);
        Some(wire_node(node, &self.view, online))
    }

    fn full_map(&self, node_id: i64) -> MapResponse {
        let Some(me) = self.nodes.get(&node_id) else { return MapResponse::default() };
        let peers: Vec<tailcfg::Node> =
            self.visible_peers(node_id).into_iter().filter_map(|id| self.peer_wire(id)).collect();
        let (filter, ssh) = self.filter_for(node_id);
        let mut filters = BTreeMap::new();
        filters.insert("base".to_string(), Some(filter));
        MapResponse {
            node: Some(wire_self_node(me, &self.view)),
            derp_map: Some((*self.derp_map).clone()),
            peers: Some(peers),
            dns_config: Some(self.view.dns_config()),
            domain: self.view.dns_suffix.clone(),
            collect_services: Some(false),
            packet_filters: Some(filters),
            ssh_policy: Some(ssh.unwrap_or_default()),
            user_profiles: Some(vec![self.view.user_profile()]),
            control_time: Some(chrono::Utc::now()),
            ..Default::default()
        }
    }

    /// Sends every session the difference between what it has and what it should have.
    fn fan_out(&mut self, mut batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let session_ids: Vec<i64> = self.sessions.keys().copied().collect();
        let mut stuck = Vec::new();
        for node_id in session_ids {
            let Some(update) = self.delta_for(node_id, &batch) else { continue };
            let Some(session) = self.sessions.get_mut(&node_id) else { continue };
            remember(session, &update);
            if session.tx.try_send(update).is_err() {
                stuck.push(node_id);
            }
        }
        for node_id in stuck {
            tracing::warn!(node_id, "map session cannot keep up; closing it");
            self.sessions.remove(&node_id);
        }
        batch.changed.clear();
    }

    fn delta_for(&self, node_id: i64, batch: &Batch) -> Option<MapResponse> {
        let session = self.sessions.get(&node_id)?;
        let mut update = MapResponse::default();
        let mut any = false;
        if batch.changed.contains(&node_id) {
            if let Some(me) = self.nodes.get(&node_id) {
                update.node = Some(wire_self_node(me, &self.view));
                any = true;
            }
        }
        let full_check = batch.membership || batch.policy;
        let visible: BTreeSet<i64> = self.visible_peers(node_id).into_iter().collect();
        let candidates: BTreeSet<i64> = if full_check {
            visible.iter().chain(session.peers.keys()).copied().collect()
        } else {
            batch.changed.iter().copied().filter(|id| *id != node_id).collect()
        };
        let mut changed = Vec::new();
        let mut removed = Vec::new();
        for id in candidates {
            match (visible.contains(&id), self.peer_wire(id)) {
                (true, Some(wire)) => {
                    if session.peers.get(&id) != Some(&wire) {
                        changed.push(wire);
                    }
                }
                _ => {
                    if session.peers.contains_key(&id) {
                        removed.push(id);
                    }
                }
            }
        }
        if !changed.is_empty() {
            update.peers_changed = Some(changed);
            any = true;
        }
        if !removed.is_empty() {
            update.peers_removed = Some(removed);
            any = true;
        }
        if full_check {
            let (filter, ssh) = self.filter_for(node_id);
            if filter != session.filter {
                let mut filters = BTreeMap::new();
                filters.insert("base".to_string(), Some(filter));
                update.packet_filters = Some(filters);
                any = true;
            }
            let ssh = ssh.unwrap_or_default();
            if Some(&ssh) != session.ssh.as_ref() {
                update.ssh_policy = Some(ssh);
                any = true;
            }
        }
        any.then_some(update)
    }
}

/// What a batch of commands changed.
#[derive(Default)]
struct Batch {
    /// Nodes whose wire form may have changed.
    changed: BTreeSet<i64>,
    /// Nodes joined or left, or tags/addresses changed: visibility must be recomputed.
    membership: bool,
    policy: bool,
}

impl Batch {
    fn note_node(&mut self, id: i64, before: Option<&Node>, after: Option<&Node>) {
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

/// Records in the session what a message told the client.
fn remember(session: &mut Session, sent: &MapResponse) {
    if let Some(peers) = &sent.peers {
        session.peers = peers.iter().map(|p| (p.id, p.clone())).collect();
    }
    for p in sent.peers_changed.iter().flatten() {
        session.peers.insert(p.id, p.clone());
    }
    for id in sent.peers_removed.iter().flatten() {
        session.peers.remove(id);
    }
    if let Some(Some(filter)) = sent.packet_filters.as_ref().and_then(|f| f.get("base")) {
        session.filter = filter.clone();
    }
    if let Some(ssh) = &sent.ssh_policy {
        session.ssh = Some(ssh.clone());
    }
}

fn policy_node(node: &Node, view: &NamespaceView) -> PolicyNode {
    let tags = node.tag_set().to_strings();
    PolicyNode {
        id: node.id,
        addresses: [node.ipv4.parse().ok(), node.ipv6.parse().ok()].into_iter().flatten().collect(),
        user: tags.is_empty().then(|| view.login_name()),
        tags,
    }
}
