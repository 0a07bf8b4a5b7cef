//! What the relay knows of the mesh: the keys connected to other instances and the way to
//! each, the peers watching this instance's clients, and the links it keeps. The tasks that
//! fill and drain it are in `crate::mesh`; the relay only reads a route when it forwards and
//! tells the watchers when a client comes or goes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, RwLock};

use bytes::Bytes;
use tenscale_base::keys::NodePublic;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::admission::TenantId;
use super::config::MeshKey;
use crate::crypto::ClientInfo;
use crate::frame::PING_LEN;

/// A key connected to another instance, and the way there.
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) link: u64,
    pub(crate) tenant: TenantId,
    pub(crate) to: mpsc::Sender<Forward>,
}

/// One packet on its way to another instance.
pub(crate) struct Forward {
    pub(crate) src: NodePublic,
    pub(crate) dst: NodePublic,
    pub(crate) packet: Bytes,
}

impl Forward {
    pub(crate) fn new(src: NodePublic, dst: NodePublic, packet: Bytes) -> Self {
        Self { src, dst, packet }
    }
}

/// What a watching peer is told about this instance's clients.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WatchNote {
    Present(NodePublic, SocketAddr),
    Gone(NodePublic),
}

/// The mesh state of one relay: its key, the routes its links learnt, the peers watching it,
/// and the links themselves.
pub(crate) struct MeshState {
    pub(crate) key: Option<MeshKey>,
    routes: RwLock<HashMap<NodePublic, Route>>,
    pub(crate) watchers: Mutex<HashMap<u64, mpsc::UnboundedSender<Note>>>,
    pub(crate) links: Mutex<HashMap<String, CancellationToken>>,
}

impl MeshState {
    pub(crate) fn new(key: Option<MeshKey>) -> Self {
        Self {
            key,
            routes: RwLock::new(HashMap::new()),
            watchers: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `info` proves its sender a mesh peer.
    pub(crate) fn admits_peer(&self, info: &ClientInfo) -> bool {
        match (&self.key, info.mesh_key_bytes()) {
            (Some(key), Some(offered)) => key.matches(&offered),
            _ => false,
        }
    }

    /// The route to `dst` through another instance, if one is known.
    pub(crate) fn route(&self, dst: &NodePublic) -> Option<Route> {
        self.routes.read().unwrap_or_else(|e| e.into_inner()).get(dst).cloned()
    }

    /// Tells every watching peer. Callers change the registry first, so a watcher that took
    /// its snapshot before the change hears of it afterwards (notes are sent under the lock
    /// the snapshot takes).
    pub(crate) fn notify(&self, note: WatchNote) {
        let watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        for tx in watchers.values() {
            let _ = tx.send(Note::Watch(note));
        }
    }

    pub(crate) fn learn(&self, key: NodePublic, route: Route) {
        self.routes.write().unwrap_or_else(|e| e.into_inner()).insert(key, route);
    }

    pub(crate) fn forget(&self, key: &NodePublic, link: u64) {
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        if routes.get(key).is_some_and(|r| r.link == link) {
            routes.remove(key);
        }
    }

    pub(crate) fn forget_link(&self, link: u64) {
        self.routes.write().unwrap_or_else(|e| e.into_inner()).retain(|_, r| r.link != link);
    }

    /// Number of keys reachable through other instances.
    pub(crate) fn route_count(&self) -> usize {
        self.routes.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// What the writer of a peer connection sends.
pub(crate) enum Note {
    Watch(WatchNote),
    Pong([u8; PING_LEN]),
}
