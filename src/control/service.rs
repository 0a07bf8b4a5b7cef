//! The coordination logic behind `/machine/register` and `/machine/map`: pre-auth key
//! registration, restarts, key rotation, logout, and map sessions. The route table
//! ([`super::routes`]) calls this through [`ControlHandler`].
//!
//! Registration's rules live in [`crate::state::registration`]; this module only translates:
//! a refusal a user should read (bad key, expired key) goes back as HTTP 200 with `Error`
//! set, which the client logs; protocol misuse (no node key, unknown node) is a 4xx.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::StreamExt;

use super::routes::{ControlError, ControlHandler, MapReply};
use crate::domain::Node;
use crate::keys::{MachinePublic, NodePublic};
use crate::netmap::tailcfg::{Login, MapRequest, RegisterRequest, RegisterResponse, User};
use crate::netmap::{Tailnet, TailnetError};
use crate::state::client_state::ClientReport;
use crate::state::registration::{Refusal, RegisterAttempt, Registered, RegistrationError};
use crate::state::store::{Membership, Store, StoreError};
use crate::state::Writer;

/// The control edge: reads through the store, changes through the writer, streams through
/// the tailnet.
pub struct ControlService {
    store: Store,
    writer: Writer,
    tailnet: Arc<Tailnet>,
}

impl ControlService {
    pub fn new(store: Store, writer: Writer, tailnet: Arc<Tailnet>) -> Arc<Self> {
        Arc::new(Self { store, writer, tailnet })
    }
}

impl ControlHandler for ControlService {
    fn register(
        &self,
        machine: MachinePublic,
        req: RegisterRequest,
    ) -> BoxFuture<'static, Result<RegisterResponse, ControlError>> {
        Box::pin(register(self.writer.clone(), machine, req))
    }

    fn map(&self, machine: MachinePublic, req: MapRequest) -> BoxFuture<'static, Result<MapReply, ControlError>> {
        let (store, writer, tailnet) = (self.store.clone(), self.writer.clone(), self.tailnet.clone());
        Box::pin(async move { map(store, writer, tailnet, machine, req).await })
    }
}

/// A store failure on the wire: an unreachable database is a 503 the client retries with
/// backoff (and logs); anything else an internal error.
fn internal(err: StoreError) -> ControlError {
    if let StoreError::Unavailable(_) = err {
        tracing::warn!(%err, "control request while the database is unreachable");
        return ControlError::Unavailable("the coordination server's database is unreachable; retry shortly".into());
    }
    tracing::error!(%err, "control request failed");
    ControlError::Internal("internal error".into())
}

/// The tailnet could not serve a map: a store failure as [`internal`], a stopped task a 503
/// (the process is stopping, or the namespace went meanwhile; the client retries).
fn unserved(err: TailnetError) -> ControlError {
    match err {
        TailnetError::Store(err) => internal(err),
        TailnetError::Stopped => ControlError::Unavailable("the map is not available now; retry shortly".into()),
    }
}

/// `/machine/register`: the request in domain terms, `state`'s rules, the outcome on the wire.
async fn register(
    writer: Writer,
    machine: MachinePublic,
    req: RegisterRequest,
) -> Result<RegisterResponse, ControlError> {
    if req.node_key.is_zero() {
        return Err(ControlError::BadRequest("NodeKey is required".into()));
    }
    let attempt = RegisterAttempt {
        machine,
        node_key: req.node_key,
        old_node_key: Some(req.old_node_key).filter(|k| !k.is_zero()),
        expiry: req.expiry.get(),
        auth_key: req.auth.map(|a| a.auth_key),
        hostinfo: req.hostinfo,
    };
    match writer.register(&attempt).await {
        Ok(Registered::Known { expired, membership, .. }) => Ok(authorized(membership, expired)),
        Ok(Registered::Joined { membership, .. }) => Ok(authorized(membership, false)),
        Ok(Registered::LoggedOut) => Ok(logged_out()),
        Err(RegistrationError::Refused(refusal)) => Ok(refused(&refusal)),
        Err(RegistrationError::Store(err)) => Err(internal(err)),
    }
}

/// The answer to a registration that went through: who the node now belongs to.
fn authorized(membership: Membership, expired: bool) -> RegisterResponse {
    let login_name = membership.login_name();
    let ns = membership.namespace;
    RegisterResponse {
        user: User { id: ns.id.get(), display_name: ns.name.to_string(), ..Default::default() },
        login: Login { id: ns.id.get(), login_name, display_name: ns.name.to_string(), ..Default::default() },
        node_key_expired: expired,
        machine_authorized: !expired,
        ..Default::default()
    }
}

/// A refusal goes back as HTTP 200 with `Error` set: the client logs the text.
fn refused(refusal: &Refusal) -> RegisterResponse {
    RegisterResponse { error: refusal.to_string(), ..Default::default() }
}

fn logged_out() -> RegisterResponse {
    RegisterResponse { node_key_expired: true, machine_authorized: false, ..Default::default() }
}

/// `/machine/map`: store what the client reports, then answer per the request kind.
async fn map(
    store: Store,
    writer: Writer,
    tailnet: Arc<Tailnet>,
    machine: MachinePublic,
    req: MapRequest,
) -> Result<MapReply, ControlError> {
    let node = known_node(&store, &machine, &req.node_key).await?;
    let node = writer.report_client_state(node, client_report(&req)).await.map_err(internal)?;
    if !req.stream {
        if req.omit_peers {
            return Ok(MapReply::Empty);
        }
        return tailnet.full_map(node).await.map(|map| MapReply::Once(Box::new(map))).map_err(unserved);
    }
    let session = tailnet.subscribe(node).await.map_err(unserved)?;
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
    if !node.belongs_to(machine) {
        return Err(ControlError::NotFound("unknown node key".into()));
    }
    Ok(node)
}

/// What the map request reports about the client, in domain terms. Endpoints come as Go's
/// `netip.AddrPort` text; one that does not parse (none seen from a real client) is dropped.
fn client_report(req: &MapRequest) -> ClientReport {
    let endpoints = req.endpoints.as_ref().map(|list| {
        list.iter()
            .filter_map(|text| {
                let parsed = text.parse().ok();
                if parsed.is_none() {
                    tracing::debug!(endpoint = %text, "dropping an endpoint that does not parse");
                }
                parsed
            })
            .collect()
    });
    ClientReport { disco_key: Some(req.disco_key), endpoints, hostinfo: req.hostinfo.clone() }
}
