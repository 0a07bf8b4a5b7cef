//! The coordination logic behind `/machine/register` and `/machine/map`: pre-auth key
//! registration, restarts, key rotation, logout, and map sessions. The route table
//! ([`super::routes`]) calls this through [`ControlHandler`].
//!
//! Refusals a user should read (bad key, expired key) go back as HTTP 200 with `Error` set,
//! which the client logs; protocol misuse (unknown node, wrong machine) is a 4xx.

use std::sync::Arc;

use chrono::Utc;
use futures::future::BoxFuture;
use futures::StreamExt;

use super::routes::{ControlError, ControlHandler, MapReply};
use crate::keys::{MachinePublic, NodePublic};
use crate::netmap::tailcfg::{Hostinfo, Login, MapRequest, RegisterRequest, RegisterResponse, User};
use crate::netmap::Tailnet;
use crate::state::store::nodes::{NewNode, NodeChange, RegisterError};
use crate::state::store::{Node, Store, StoreError};

pub struct ControlService {
    store: Store,
    tailnet: Arc<Tailnet>,
}

impl ControlService {
    pub fn new(store: Store, tailnet: Arc<Tailnet>) -> Arc<Self> {
        Arc::new(Self { store, tailnet })
    }
}

impl ControlHandler for ControlService {
    fn register(
        &self,
        machine: MachinePublic,
        req: RegisterRequest,
    ) -> BoxFuture<'static, Result<RegisterResponse, ControlError>> {
        let (store, tailnet) = (self.store.clone(), self.tailnet.clone());
        Box::pin(async move { Registration { store, tailnet, machine }.handle(req).await })
    }

    fn map(&self, machine: MachinePublic, req: MapRequest) -> BoxFuture<'static, Result<MapReply, ControlError>> {
        let (store, tailnet) = (self.store.clone(), self.tailnet.clone());
        Box::pin(async move { map(store, tailnet, machine, req).await })
    }
}

fn internal(err: impl std::fmt::Display) -> ControlError {
    tracing::error!(%err, "control request failed");
    ControlError::Internal("internal error".into())
}

struct Registration {
    store: Store,
    tailnet: Arc<Tailnet>,
    machine: MachinePublic,
}

impl Registration {
    async fn handle(self, req: RegisterRequest) -> Result<RegisterResponse, ControlError> {
        if req.node_key.is_zero() {
            return Err(ControlError::BadRequest("NodeKey is required".into()));
        }
        let now = Utc::now();
        if req.expiry.get().is_some_and(|e| e <= now) {
            return self.logout(&req).await;
        }
        if !req.old_node_key.is_zero() {
            if let Some(node) = self.store.node_by_node_key(&req.old_node_key).await.map_err(internal)? {
                return self.rotate(node, &req).await;
            }
        }
        if let Some(node) = self.store.node_by_node_key(&req.node_key).await.map_err(internal)? {
            return self.known_node(node).await;
        }
        match req.auth.as_ref().map(|a| a.auth_key.trim()).filter(|k| !k.is_empty()) {
            Some(secret) => self.with_key(secret, &req).await,
            None => Ok(refusal("tenscale needs a pre-auth key to register (interactive login is not supported)")),
        }
    }

    /// A client restart re-registers its saved node key: answer with the current state
    /// without re-checking the (possibly spent) auth key it may send again.
    async fn known_node(&self, node: Node) -> Result<RegisterResponse, ControlError> {
        if node.machine_key != self.machine.to_string() {
            return Ok(refusal("this node key belongs to another machine"));
        }
        let expired = node.expired_at(crate::state::store::now());
        self.authorized(&node, expired).await
    }

    /// Logout: ephemeral nodes go away, others keep their row with the key expired.
    async fn logout(&self, req: &RegisterRequest) -> Result<RegisterResponse, ControlError> {
        let Some(node) = self.store.node_by_node_key(&req.node_key).await.map_err(internal)? else {
            return Ok(logged_out());
        };
        if node.machine_key != self.machine.to_string() {
            return Ok(refusal("this node key belongs to another machine"));
        }
        let writer = self.tailnet.writer();
        if node.ephemeral {
            writer.delete_node(&node).await.map_err(internal)?;
        } else {
            let change = NodeChange { key_expiry: Some(req.expiry.get()), ..Default::default() };
            writer.update_node(&node, change).await.map_err(internal)?;
        }
        Ok(logged_out())
    }

    /// Node-key rotation (`OldNodeKey` set). A live node may rotate freely; an expired one
    /// must present a usable pre-auth key of its namespace.
    async fn rotate(&self, node: Node, req: &RegisterRequest) -> Result<RegisterResponse, ControlError> {
        if node.machine_key != self.machine.to_string() {
            return Ok(refusal("this node key belongs to another machine"));
        }
        let change = NodeChange {
            node_key: Some(req.node_key),
            key_expiry: Some(None),
            hostinfo: req.hostinfo.as_ref().and_then(|h| serde_json::to_string(h).ok()),
            ..Default::default()
        };
        let updated = if node.expired_at(crate::state::store::now()) {
            let secret = req.auth.as_ref().map(|a| a.auth_key.as_str()).unwrap_or("");
            let key = match self.usable_key(secret).await? {
                Ok(key) if key.namespace_id == node.namespace_id => key,
                Ok(_) => return Ok(refusal("pre-auth key is for another namespace")),
                Err(text) => return Ok(refusal(&format!("node key expired; {text}"))),
            };
            match self.tailnet.writer().reauthorize_node(&node, &key, change).await {
                Ok(node) => node,
                Err(RegisterError::Key(refused)) => return Ok(refusal(&refused.to_string())),
                Err(RegisterError::Store(err)) => return Err(internal(err)),
            }
        } else {
            self.tailnet.writer().update_node(&node, change).await.map_err(internal)?
        };
        self.authorized(&updated, false).await
    }

    /// The key, if it exists and may register one more node; else the text for the client.
    async fn usable_key(&self, secret: &str) -> Result<Result<crate::state::store::PreauthKey, String>, ControlError> {
        let key = match self.store.preauth_key_by_secret(secret).await.map_err(internal)? {
            Some(key) => key,
            None => return Ok(Err(crate::state::store::preauth_keys::KeyRefusal::Unknown.to_string())),
        };
        Ok(key.usable_at(crate::state::store::now()).map(|_| key).map_err(|r| r.to_string()))
    }

    async fn with_key(&self, secret: &str, req: &RegisterRequest) -> Result<RegisterResponse, ControlError> {
        let key = match self.usable_key(secret).await? {
            Ok(key) => key,
            Err(text) => return Ok(refusal(&text)),
        };
        let hostinfo = req.hostinfo.clone().unwrap_or_default();
        let hostinfo_json = serde_json::to_string(&hostinfo).unwrap_or_else(|_| "{}".into());
        let key_expiry = req.expiry.get().filter(|_| key.tag_set().is_empty());
        // The same machine coming back into the same namespace keeps its node (and addresses).
        let existing = self.store.node_by_machine(key.namespace_id, &self.machine).await.map_err(internal)?;
        let result = match existing {
            Some(node) => {
                let change = NodeChange {
                    node_key: Some(req.node_key),
                    key_expiry: Some(key_expiry),
                    hostinfo: Some(hostinfo_json),
                    tags: Some(key.tag_set()),
                    ..Default::default()
                };
                self.tailnet.writer().reauthorize_node(&node, &key, change).await
            }
            None => {
                let new = NewNode {
                    namespace_id: key.namespace_id,
                    machine_key: self.machine,
                    node_key: req.node_key,
                    hostname: hostinfo.hostname().unwrap_or("node").to_string(),
                    hostinfo: hostinfo_json,
                    key_expiry,
                };
                self.tailnet.writer().register_node(&key, &new).await
            }
        };
        let node = match result {
            Ok(node) => node,
            Err(RegisterError::Key(refused)) => return Ok(refusal(&refused.to_string())),
            Err(RegisterError::Store(StoreError::Conflict(msg))) => return Ok(refusal(&msg)),
            Err(RegisterError::Store(err)) => return Err(internal(err)),
        };
        tracing::info!(node_id = node.id, namespace_id = node.namespace_id, "node registered");
        if node.ephemeral {
            // Only a map stream keeps it: a client that dies before its first poll would
            // otherwise leave the node behind for good.
            self.tailnet.schedule_ephemeral_cleanup(node.id, self.tailnet.ephemeral_timeout());
        }
        self.authorized(&node, false).await
    }

    async fn authorized(&self, node: &Node, expired: bool) -> Result<RegisterResponse, ControlError> {
        let ns = self.store.namespace_by_id(node.namespace_id).await.map_err(internal)?;
        let org = self.store.org_by_id(ns.org_id).await.map_err(internal)?;
        let login = format!("{}@{}", ns.name, org.name);
        Ok(RegisterResponse {
            user: User { id: ns.id, display_name: ns.name.clone(), ..Default::default() },
            login: Login { id: ns.id, login_name: login, display_name: ns.name, ..Default::default() },
            node_key_expired: expired,
            machine_authorized: !expired,
            ..Default::default()
        })
    }
}

fn refusal(text: &str) -> RegisterResponse {
    RegisterResponse { error: text.to_string(), ..Default::default() }
}

fn logged_out() -> RegisterResponse {
    RegisterResponse { node_key_expired: true, machine_authorized: false, ..Default::default() }
}

/// `/machine/map`: store what the client reports, then answer per the request kind.
async fn map(
    store: Store,
    tailnet: Arc<Tailnet>,
    machine: MachinePublic,
    req: MapRequest,
) -> Result<MapReply, ControlError> {
    let node = known_node(&store, &machine, &req.node_key).await?;
    let node = apply_client_state(&tailnet, node, &req).await?;
    if !req.stream {
        if req.omit_peers {
            return Ok(MapReply::Empty);
        }
        return tailnet.full_map(node).await.map(|map| MapReply::Once(Box::new(map))).map_err(internal);
    }
    let session = tailnet.subscribe(node).await.map_err(internal)?;
    let guard = session.guard;
    let stream = tokio_stream_from(session.rx).map(move |msg| {
        let _alive = &guard;
        msg
    });
    Ok(MapReply::Stream(stream.boxed()))
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn known_node(store: &Store, machine: &MachinePublic, key: &NodePublic) -> Result<Node, ControlError> {
    let node = store
        .node_by_node_key(key)
        .await
        .map_err(internal)?
        .ok_or_else(|| ControlError::NotFound("unknown node key".into()))?;
    if node.machine_key != machine.to_string() {
        return Err(ControlError::NotFound("unknown node key".into()));
    }
    Ok(node)
}

/// Stores disco key, endpoints, home DERP and Hostinfo when they differ from what is stored,
/// and tells the tailnet. Unchanged requests (most keep-alive re-polls) write nothing.
async fn apply_client_state(tailnet: &Arc<Tailnet>, node: Node, req: &MapRequest) -> Result<Node, ControlError> {
    let mut change = NodeChange::default();
    let mut dirty = false;
    if !req.disco_key.is_zero() && req.disco_key.to_string() != node.disco_key {
        change.disco_key = Some(req.disco_key);
        dirty = true;
    }
    if let Some(endpoints) = &req.endpoints {
        if *endpoints != node.endpoint_list() {
            change.endpoints = Some(endpoints.clone());
            dirty = true;
        }
    }
    if let Some(hostinfo) = &req.hostinfo {
        let mut hostinfo: Hostinfo = hostinfo.clone();
        if let Ok(previous) = serde_json::from_str::<Hostinfo>(&node.hostinfo) {
            hostinfo.keep_net_info_from(&previous);
        }
        if let Some(derp) = hostinfo.preferred_derp().filter(|d| *d > 0) {
            if derp as i32 != node.home_derp {
                change.home_derp = Some(derp as i32);
                dirty = true;
            }
        }
        let text = serde_json::to_string(&hostinfo).unwrap_or_else(|_| "{}".into());
        if text != node.hostinfo {
            if let Some(name) = hostinfo.hostname() {
                change.hostname = Some(name.to_string());
            }
            change.hostinfo = Some(text);
            dirty = true;
        }
    }
    if !dirty {
        return Ok(node);
    }
    tailnet.writer().update_node(&node, change).await.map_err(internal)
}
