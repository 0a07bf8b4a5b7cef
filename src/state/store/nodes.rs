//! Nodes: registered machines, each in exactly one namespace.

use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ActiveValue::Unchanged, ColumnTrait, ConnectionTrait, DatabaseTransaction,
    EntityTrait, QueryFilter, QueryOrder, Set,
};

use super::entities::node;
use super::outbox::{EventsFor, NewEvent};
use super::preauth_keys::KeyRefusal;
use super::{Namespace, Node, PreauthKey, Store, StoreError, StoreResult};
use crate::domain::addresses;
use crate::domain::hostinfo::Hostinfo;
use crate::domain::{NamespaceId, NodeId, NodeName, OrgId, Tags};
use crate::keys::{DiscoPublic, KeyParseError, MachinePublic, NodePublic};

/// A node about to be created from a pre-auth key.
#[derive(Debug, Clone)]
pub struct NewNode {
    pub namespace_id: NamespaceId,
    pub machine_key: MachinePublic,
    pub node_key: NodePublic,
    pub hostname: String,
    pub hostinfo: Hostinfo,
    pub key_expiry: Option<DateTime<Utc>>,
}

/// Why registration through the store failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Key(#[from] KeyRefusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for RegisterError {
    fn from(e: sea_orm::DbErr) -> Self {
        RegisterError::Store(e.into())
    }
}

/// A partial update of a node; `None` leaves a field as it is. Only the writer assembles one,
/// inside the named change whose rules allow it.
#[derive(Debug, Clone, Default)]
pub(in crate::state) struct NodeChange {
    pub node_key: Option<NodePublic>,
    pub disco_key: Option<DiscoPublic>,
    pub hostname: Option<String>,
    pub given_name: Option<NodeName>,
    pub tags: Option<Tags>,
    pub key_expiry: Option<Option<DateTime<Utc>>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub hostinfo: Option<Hostinfo>,
    pub endpoints: Option<Vec<SocketAddr>>,
    pub home_derp: Option<i32>,
}

/// The node a stored row describes, converted once on its way out of the store. A row that
/// does not convert (only a hand-edited or damaged database holds one) is an error, logged
/// here, never a node with a zero key.
impl TryFrom<node::Model> for Node {
    type Error = StoreError;

    fn try_from(row: node::Model) -> Result<Self, Self::Error> {
        let id = row.id;
        node_from_row(row).map_err(|reason| {
            tracing::error!(node_id = %id, %reason, "a stored node does not convert; it is left out");
            StoreError::Corrupt(format!("node {id}: {reason}"))
        })
    }
}

fn node_from_row(row: node::Model) -> Result<Node, String> {
    let key = |what: &str, err: KeyParseError| format!("{what}: {err}");
    Ok(Node {
        id: row.id,
        namespace_id: row.namespace_id,
        machine_key: MachinePublic::parse(&row.machine_key).map_err(|e| key("machine key", e))?,
        node_key: NodePublic::parse(&row.node_key).map_err(|e| key("node key", e))?,
        disco_key: DiscoPublic::parse(&row.disco_key).map_err(|e| key("disco key", e))?,
        given_name: NodeName::parse(&row.given_name).map_err(|e| e.to_string())?,
        ipv4: row.ipv4.parse().map_err(|e| format!("IPv4 {:?}: {e}", row.ipv4))?,
        ipv6: row.ipv6.parse().map_err(|e| format!("IPv6 {:?}: {e}", row.ipv6))?,
        tags: Tags::from_stored(&row.tags).map_err(|e| e.to_string())?,
        hostinfo: stored_hostinfo(&row.hostinfo)?,
        endpoints: stored_endpoints(&row.endpoints)?,
        hostname: row.hostname,
        ephemeral: row.ephemeral,
        key_expiry: row.key_expiry,
        last_seen: row.last_seen,
        home_derp: row.home_derp,
        preauth_key_id: row.preauth_key_id,
        created_at: row.created_at,
    })
}

/// The stored Hostinfo: the JSON object the client sent (empty text is an empty object).
fn stored_hostinfo(text: &str) -> Result<Hostinfo, String> {
    if text.is_empty() {
        return Ok(Hostinfo::default());
    }
    serde_json::from_str(text).map_err(|e| format!("Hostinfo is not a JSON object: {e}"))
}

fn stored_endpoints(text: &str) -> Result<Vec<SocketAddr>, String> {
    let raw: Vec<String> = serde_json::from_str(text).map_err(|e| format!("endpoints are not a list: {e}"))?;
    raw.iter().map(|e| e.parse().map_err(|err| format!("endpoint {e:?}: {err}"))).collect()
}

fn hostinfo_text(hostinfo: &Hostinfo) -> String {
    // A JSON object always serializes.
    serde_json::to_string(hostinfo).unwrap_or_else(|_| "{}".into())
}

fn endpoints_text(endpoints: &[SocketAddr]) -> String {
    let raw: Vec<String> = endpoints.iter().map(SocketAddr::to_string).collect();
    serde_json::to_string(&raw).unwrap_or_else(|_| "[]".into())
}

/// Rows as nodes, leaving out (and logging) any that does not convert.
fn convertible(rows: Vec<node::Model>) -> Vec<Node> {
    rows.into_iter().filter_map(|row| Node::try_from(row).ok()).collect()
}

fn one(row: Option<node::Model>) -> StoreResult<Option<Node>> {
    row.map(Node::try_from).transpose()
}

impl Store {
    pub async fn all_nodes(&self) -> StoreResult<Vec<Node>> {
        Ok(convertible(node::Entity::find().order_by_asc(node::Column::Id).all(&self.db).await?))
    }

    /// Nodes whose key expiry falls in `(after, until]`.
    pub async fn nodes_expired_between(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> StoreResult<Vec<Node>> {
        let rows = node::Entity::find()
            .filter(node::Column::KeyExpiry.gt(after))
            .filter(node::Column::KeyExpiry.lte(until))
            .all(&self.db)
            .await?;
        Ok(convertible(rows))
    }

    pub async fn nodes_in_namespace(&self, namespace_id: NamespaceId) -> StoreResult<Vec<Node>> {
        let rows = node::Entity::find()
            .filter(node::Column::NamespaceId.eq(namespace_id))
            .order_by_asc(node::Column::Id)
            .all(&self.db)
            .await?;
        Ok(convertible(rows))
    }

    pub async fn node_in_namespace(&self, namespace_id: NamespaceId, id: NodeId) -> StoreResult<Node> {
        let row = node::Entity::find_by_id(id).filter(node::Column::NamespaceId.eq(namespace_id)).one(&self.db).await?;
        one(row)?.ok_or(StoreError::NotFound("node"))
    }

    /// The node with this id and its namespace, if the namespace belongs to the org;
    /// another org's node is `NotFound`, like a missing one.
    pub async fn node_in_org(&self, org_id: OrgId, id: NodeId) -> StoreResult<(Namespace, Node)> {
        let node = self.node_by_id(id).await?;
        let ns = self.namespace_in_org(org_id, node.namespace_id).await.map_err(|err| match err {
            StoreError::NotFound(_) => StoreError::NotFound("node"),
            other => other,
        })?;
        Ok((ns, node))
    }

    pub async fn node_by_id(&self, id: NodeId) -> StoreResult<Node> {
        one(node::Entity::find_by_id(id).one(&self.db).await?)?.ok_or(StoreError::NotFound("node"))
    }

    /// Those of `ids` that exist, in any order (one query per 500 ids).
    pub async fn nodes_by_ids(&self, ids: &[NodeId]) -> StoreResult<Vec<Node>> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let rows = node::Entity::find().filter(node::Column::Id.is_in(chunk.iter().copied())).all(&self.db).await?;
            found.extend(convertible(rows));
        }
        Ok(found)
    }

    pub async fn node_by_node_key(&self, key: &NodePublic) -> StoreResult<Option<Node>> {
        one(node::Entity::find().filter(node::Column::NodeKey.eq(key.to_string())).one(&self.db).await?)
    }

    pub async fn node_by_machine(
        &self,
        namespace_id: NamespaceId,
        machine: &MachinePublic,
    ) -> StoreResult<Option<Node>> {
        let row = node::Entity::find()
            .filter(node::Column::NamespaceId.eq(namespace_id))
            .filter(node::Column::MachineKey.eq(machine.to_string()))
            .one(&self.db)
            .await?;
        one(row)
    }

    /// Creates a node from a pre-auth key in one transaction: the key's use is recorded, an
    /// address index taken and a unique name chosen, or nothing happens at all.
    pub(in crate::state) async fn register_node(
        &self,
        key: &PreauthKey,
        new: &NewNode,
        events: EventsFor<'_, Node>,
    ) -> Result<Node, RegisterError> {
        // Taking the address index locks the namespace, so registrations in one namespace
        // queue rather than collide. A name taken meanwhile by a rename is still caught by the
        // unique index; the transaction then changed nothing, so retrying is safe.
        let mut last_error = None;
        for _ in 0..5 {
            match self.try_register_node(key, new, events).await {
                Err(RegisterError::Store(StoreError::Conflict(msg))) => last_error = Some(msg),
                other => return other,
            }
        }
        Err(StoreError::Conflict(last_error.unwrap_or_default()).into())
    }

    async fn try_register_node(
        &self,
        key: &PreauthKey,
        new: &NewNode,
        events: EventsFor<'_, Node>,
    ) -> Result<Node, RegisterError> {
        self.change(async |txn| insert_node(txn, key, new, self.now()).await, events).await
    }
}

/// The new node's row, made `at`: the key's use, an address index and a free name taken in
/// `txn`.
async fn insert_node(
    txn: &DatabaseTransaction,
    key: &PreauthKey,
    new: &NewNode,
    at: DateTime<Utc>,
) -> Result<Node, RegisterError> {
    Store::consume_preauth_key(txn, key).await?;
    let ip_index = Store::take_ip_index(txn, new.namespace_id).await?;
    let given_name = free_name(txn, new.namespace_id, &NodeName::sanitize(&new.hostname)).await?;
    let (v4, v6) = addresses::from_index(ip_index);
    let model = node::ActiveModel {
        namespace_id: Set(new.namespace_id),
        machine_key: Set(new.machine_key.to_string()),
        node_key: Set(new.node_key.to_string()),
        disco_key: Set(DiscoPublic::ZERO.to_string()),
        hostname: Set(new.hostname.clone()),
        given_name: Set(given_name.to_string()),
        ip_index: Set(ip_index),
        ipv4: Set(v4.to_string()),
        ipv6: Set(v6.to_string()),
        tags: Set(key.tags.to_json()),
        ephemeral: Set(key.ephemeral),
        key_expiry: Set(new.key_expiry),
        last_seen: Set(Some(at)),
        hostinfo: Set(hostinfo_text(&new.hostinfo)),
        endpoints: Set(endpoints_text(&[])),
        home_derp: Set(0),
        preauth_key_id: Set(Some(key.id)),
        created_at: Set(at),
        ..Default::default()
    }
    .insert(txn)
    .await
    .map_err(|e| StoreError::conflict_or_db(e, "node name or address taken"))?;
    Ok(Node::try_from(model)?)
}

impl Store {
    /// Re-registration of a known machine with a (new) valid key: the node keeps its id,
    /// addresses and name, takes the new node key, and the key's use is recorded.
    pub(in crate::state) async fn reauthorize_node(
        &self,
        node: &Node,
        key: &PreauthKey,
        change: NodeChange,
        events: EventsFor<'_, Node>,
    ) -> Result<Node, RegisterError> {
        let reauthorize = async |txn: &DatabaseTransaction| {
            Store::consume_preauth_key(txn, key).await?;
            Ok(apply_change(txn, node, change).await?)
        };
        self.change(reauthorize, events).await
    }

    pub(in crate::state) async fn update_node(
        &self,
        node: &Node,
        change: NodeChange,
        events: EventsFor<'_, Node>,
    ) -> StoreResult<Node> {
        self.change(async |txn| apply_change(txn, node, change).await, events).await
    }

    /// Deletes the node; `events` are appended only when there was one to delete.
    pub(in crate::state) async fn delete_node(&self, id: NodeId, events: &[NewEvent]) -> StoreResult<bool> {
        let delete =
            async |txn: &DatabaseTransaction| Ok(node::Entity::delete_by_id(id).exec(txn).await?.rows_affected > 0);
        self.change(delete, |&deleted| if deleted { events.to_vec() } else { Vec::new() }).await
    }

    /// Whether `name` is free in the namespace (ignoring node `except`).
    pub async fn node_name_free(
        &self,
        namespace_id: NamespaceId,
        name: &NodeName,
        except: NodeId,
    ) -> StoreResult<bool> {
        let taken = node::Entity::find()
            .filter(node::Column::NamespaceId.eq(namespace_id))
            .filter(node::Column::GivenName.eq(name.as_str()))
            .filter(node::Column::Id.ne(except))
            .one(&self.db)
            .await?;
        Ok(taken.is_none())
    }
}

/// Writes the fields `change` sets, and only those; an empty change writes nothing.
async fn apply_change<C: ConnectionTrait>(conn: &C, node: &Node, change: NodeChange) -> StoreResult<Node> {
    let active = changed_columns(node.id, change);
    if !active.is_changed() {
        return Ok(node.clone());
    }
    let row = active
        .update(conn)
        .await
        .map_err(|e| StoreError::conflict_or_db(e, "node name already taken in this namespace"))?;
    Node::try_from(row)
}

fn changed_columns(id: NodeId, change: NodeChange) -> node::ActiveModel {
    let NodeChange {
        node_key,
        disco_key,
        hostname,
        given_name,
        tags,
        key_expiry,
        last_seen,
        hostinfo,
        endpoints,
        home_derp,
    } = change;
    node::ActiveModel {
        id: Unchanged(id),
        node_key: node_key.map(|k| k.to_string()).map_or(NotSet, Set),
        disco_key: disco_key.map(|k| k.to_string()).map_or(NotSet, Set),
        hostname: hostname.map_or(NotSet, Set),
        given_name: given_name.map(|n| n.to_string()).map_or(NotSet, Set),
        tags: tags.map(|t| t.to_json()).map_or(NotSet, Set),
        key_expiry: key_expiry.map_or(NotSet, Set),
        last_seen: last_seen.map(Some).map_or(NotSet, Set),
        hostinfo: hostinfo.map(|h| hostinfo_text(&h)).map_or(NotSet, Set),
        endpoints: endpoints.map(|e| endpoints_text(&e)).map_or(NotSet, Set),
        home_derp: home_derp.map_or(NotSet, Set),
        ..Default::default()
    }
}

/// `base`, or `base-1`, `base-2`, … whichever is not yet used in the namespace.
async fn free_name<C: ConnectionTrait>(conn: &C, namespace_id: NamespaceId, base: &NodeName) -> StoreResult<NodeName> {
    let taken: std::collections::HashSet<String> = node::Entity::find()
        .filter(node::Column::NamespaceId.eq(namespace_id))
        .filter(node::Column::GivenName.starts_with(base.as_str()))
        .all(conn)
        .await?
        .into_iter()
        .map(|n| n.given_name)
        .collect();
    if !taken.contains(base.as_str()) {
        return Ok(base.clone());
    }
    let n = (1..).find(|n| !taken.contains(base.with_suffix(*n).as_str())).unwrap_or(1);
    Ok(base.with_suffix(n))
}
