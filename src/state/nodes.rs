//! The rules of the changes an admin makes to a node — its name, its tags, its key's expiry —
//! each a [`Writer`] method that checks what it must and then writes the change with its
//! events. The generic column update under them ([`NodeChange`]) is private to `state`.

use chrono::{DateTime, Utc};

use super::store::nodes::NodeChange;
use super::store::{Namespace, StoreError, StoreResult};
use super::{Audit, Writer};
use crate::domain::{NamespaceName, Node, NodeName, Tags};

/// What an admin changes of a node in one request; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct NodeEdit {
    pub name: Option<NodeName>,
    pub tags: Option<Tags>,
}

/// Why the writer refused an admin's change to a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeRefusal {
    /// Another node of the namespace has this name.
    #[error("node name {name} is taken in namespace {namespace}")]
    NameTaken { name: NodeName, namespace: NamespaceName },
    /// A tag the policy in force does not declare in `tagOwners`.
    #[error("{0}")]
    TagNotAllowed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Writer {
    /// Renames and/or retags `node` of `ns` in one change: the name must be free in the
    /// namespace, the tags declared by the policy in force. An empty edit changes nothing.
    pub async fn edit_node(
        &self,
        ns: &Namespace,
        node: &Node,
        edit: NodeEdit,
        audit: Option<&Audit<'_, Node>>,
    ) -> Result<Node, NodeRefusal> {
        let NodeEdit { name, tags } = edit;
        if name.is_none() && tags.is_none() {
            return Ok(node.clone());
        }
        if let Some(name) = &name {
            // A rename racing this one is still caught by the unique index (a conflict).
            if !self.store.node_name_free(ns.id, name, node.id).await? {
                return Err(NodeRefusal::NameTaken { name: name.clone(), namespace: ns.name.clone() });
            }
        }
        if let Some(tags) = &tags {
            let policy = self.policy_in_force(ns.org_id, ns.id).await?;
            crate::policy::validate_tags_for_key(policy.as_ref(), tags)
                .map_err(|e| NodeRefusal::TagNotAllowed(e.to_string()))?;
        }
        let change = NodeChange { given_name: name, tags, ..Default::default() };
        Ok(self.update_node(node, change, audit).await?)
    }

    /// [`Writer::edit_node`] of the name alone.
    pub async fn rename_node(
        &self,
        ns: &Namespace,
        node: &Node,
        name: NodeName,
        audit: Option<&Audit<'_, Node>>,
    ) -> Result<Node, NodeRefusal> {
        self.edit_node(ns, node, NodeEdit { name: Some(name), tags: None }, audit).await
    }

    /// [`Writer::edit_node`] of the tags alone.
    pub async fn retag_node(
        &self,
        ns: &Namespace,
        node: &Node,
        tags: Tags,
        audit: Option<&Audit<'_, Node>>,
    ) -> Result<Node, NodeRefusal> {
        self.edit_node(ns, node, NodeEdit { name: None, tags: Some(tags) }, audit).await
    }

    /// Expires the node's key now: its peers drop it, DERP cuts it off, and it must log in
    /// again (with a new pre-auth key) before it can reach anyone.
    pub async fn expire_node(&self, node: &Node, audit: Option<&Audit<'_, Node>>) -> StoreResult<Node> {
        self.set_key_expiry(node, Some(self.now()), audit).await
    }

    /// Sets when the node's key expires (`None`: never). A time already past expires it
    /// as [`Writer::expire_node`] does; the expiry sweep only announces expiries it sees pass.
    pub async fn set_key_expiry(
        &self,
        node: &Node,
        at: Option<DateTime<Utc>>,
        audit: Option<&Audit<'_, Node>>,
    ) -> StoreResult<Node> {
        self.update_node(node, NodeChange { key_expiry: Some(at), ..Default::default() }, audit).await
    }
}
