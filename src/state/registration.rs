//! Registration's rules, in domain terms: who may join with which key, what a restart, a key
//! rotation and a logout do. The edges translate: `control` turns a [`RegisterAttempt`] out of
//! the client's `RegisterRequest` and a [`Refusal`] into the `Error` text the client logs.
//!
//! The rules:
//! - a node key is bound to the machine that registered it; another machine presenting it is
//!   refused (so is a stale `OldNodeKey` of another machine);
//! - a requested expiry in the past is a logout: an ephemeral node is deleted, another keeps
//!   its row with its key expired;
//! - a known node key (a client restart) is answered with the node's current state, without
//!   re-checking the (possibly spent) auth key the client may send again;
//! - rotation (`OldNodeKey` known) is free while the node is live; an expired node must
//!   present a usable pre-auth key of its own namespace;
//! - anything else needs a usable pre-auth key; the same machine coming back into the same
//!   namespace keeps its node (and addresses), a new one gets a new node. Tagged keys make
//!   nodes whose keys do not expire.

use chrono::{DateTime, Utc};

use super::store::nodes::{NewNode, NodeChange, RegisterError};
use super::store::preauth_keys::KeyRefusal;
use super::store::{Membership, PreauthKey, StoreError};
use super::Writer;
use crate::domain::hostinfo::Hostinfo;
use crate::domain::Node;
use crate::keys::{MachinePublic, NodePublic};

/// A client's request to (re-)register a node key, as the client's machine sent it.
#[derive(Debug, Clone)]
pub struct RegisterAttempt {
    pub machine: MachinePublic,
    pub node_key: NodePublic,
    /// The key being rotated away from, when the client rotates.
    pub old_node_key: Option<NodePublic>,
    /// The expiry the client asks for; one in the past asks to log out.
    pub expiry: Option<DateTime<Utc>>,
    /// The pre-auth key's secret, when the client sent one.
    pub auth_key: Option<String>,
    pub hostinfo: Option<Hostinfo>,
}

/// What a registration did.
#[derive(Debug)]
pub enum Registered {
    /// A node key already known (a restart or a rotation): the node as it now is. An expired
    /// node stays expired until it rotates with a key.
    Known { node: Node, expired: bool, membership: Membership },
    /// The machine joined with a pre-auth key, as a new node or back into its old one.
    Joined { node: Node, membership: Membership },
    /// The client logged out.
    LoggedOut,
}

/// Why a registration is refused; the text reaches the client's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("tenscale needs a pre-auth key to register (interactive login is not supported)")]
    KeyRequired,
    #[error("this node key belongs to another machine")]
    AnotherMachine,
    #[error("pre-auth key is for another namespace")]
    KeyOfAnotherNamespace,
    #[error("node key expired; {0}")]
    ExpiredNodeNeedsKey(KeyRefusal),
    #[error(transparent)]
    Key(#[from] KeyRefusal),
    /// The node could not be stored as asked (its name or address was taken meanwhile).
    #[error("{0}")]
    Conflict(String),
}

/// A registration that did not happen: refused by the rules, or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<RegisterError> for RegistrationError {
    fn from(err: RegisterError) -> Self {
        match err {
            RegisterError::Key(refused) => Refusal::Key(refused).into(),
            RegisterError::Store(StoreError::Conflict(msg)) => Refusal::Conflict(msg).into(),
            RegisterError::Store(err) => err.into(),
        }
    }
}

type Outcome = Result<Registered, RegistrationError>;

/// What the rules decided, before the membership of a registered node is looked up.
enum Decided {
    Known { node: Node, expired: bool },
    Joined(Node),
    LoggedOut,
}

impl Writer {
    /// Applies registration's rules (module doc) to `attempt`. A registered node comes back
    /// with its [`Membership`], which is what the client is told it belongs to.
    pub async fn register(&self, attempt: &RegisterAttempt) -> Outcome {
        Ok(match self.apply_rules(attempt).await? {
            Decided::Known { node, expired } => {
                Registered::Known { membership: self.store.membership(node.namespace_id).await?, node, expired }
            }
            Decided::Joined(node) => {
                Registered::Joined { membership: self.store.membership(node.namespace_id).await?, node }
            }
            Decided::LoggedOut => Registered::LoggedOut,
        })
    }

    async fn apply_rules(&self, attempt: &RegisterAttempt) -> Result<Decided, RegistrationError> {
        if attempt.expiry.is_some_and(|e| e <= self.now()) {
            return self.log_out(attempt).await;
        }
        if let Some(old_key) = &attempt.old_node_key {
            if let Some(node) = self.store.node_by_node_key(old_key).await? {
                return self.rotate(node, attempt).await;
            }
        }
        if let Some(node) = self.store.node_by_node_key(&attempt.node_key).await? {
            let node = owned_by(node, &attempt.machine)?;
            let expired = node.expired_at(self.now());
            return Ok(Decided::Known { node, expired });
        }
        match attempt.auth_key.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
            Some(secret) => self.join(secret, attempt).await,
            None => Err(Refusal::KeyRequired.into()),
        }
    }

    /// Logout: ephemeral nodes go away, others keep their row with the key expired.
    async fn log_out(&self, attempt: &RegisterAttempt) -> Result<Decided, RegistrationError> {
        let Some(node) = self.store.node_by_node_key(&attempt.node_key).await? else {
            return Ok(Decided::LoggedOut);
        };
        let node = owned_by(node, &attempt.machine)?;
        if node.ephemeral {
            self.delete_node(&node, None).await?;
        } else {
            self.update_node(&node, NodeChange { key_expiry: Some(attempt.expiry), ..Default::default() }, None)
                .await?;
        }
        Ok(Decided::LoggedOut)
    }

    /// Node-key rotation: free for a live node, with a key of its namespace for an expired one.
    async fn rotate(&self, node: Node, attempt: &RegisterAttempt) -> Result<Decided, RegistrationError> {
        let node = owned_by(node, &attempt.machine)?;
        let change = NodeChange {
            node_key: Some(attempt.node_key),
            key_expiry: Some(None),
            hostinfo: attempt.hostinfo.clone(),
            ..Default::default()
        };
        if !node.expired_at(self.now()) {
            let node = self.update_node(&node, change, None).await?;
            return Ok(Decided::Known { node, expired: false });
        }
        let secret = attempt.auth_key.as_deref().unwrap_or("");
        let key = self.usable_key(secret).await?.map_err(Refusal::ExpiredNodeNeedsKey)?;
        if key.namespace_id != node.namespace_id {
            return Err(Refusal::KeyOfAnotherNamespace.into());
        }
        let node = self.reauthorize_node(&node, &key, change).await?;
        Ok(Decided::Known { node, expired: false })
    }

    /// Registration with a pre-auth key: a new node, or the machine's old node in the key's
    /// namespace taking the new node key.
    async fn join(&self, secret: &str, attempt: &RegisterAttempt) -> Result<Decided, RegistrationError> {
        let key = self.usable_key(secret).await?.map_err(Refusal::Key)?;
        let hostinfo = attempt.hostinfo.clone().unwrap_or_default();
        let tags = key.tags.clone();
        // Tagged nodes are servers: their keys do not expire.
        let key_expiry = attempt.expiry.filter(|_| tags.is_empty());
        let node = match self.store.node_by_machine(key.namespace_id, &attempt.machine).await? {
            Some(node) => {
                let change = NodeChange {
                    node_key: Some(attempt.node_key),
                    key_expiry: Some(key_expiry),
                    hostinfo: Some(hostinfo),
                    tags: Some(tags),
                    ..Default::default()
                };
                self.reauthorize_node(&node, &key, change).await?
            }
            None => {
                let new = NewNode {
                    namespace_id: key.namespace_id,
                    machine_key: attempt.machine,
                    node_key: attempt.node_key,
                    hostname: hostinfo.hostname().unwrap_or("node").to_string(),
                    hostinfo,
                    key_expiry,
                };
                self.register_node(&key, &new).await?
            }
        };
        tracing::info!(node_id = %node.id, namespace_id = %node.namespace_id, "node registered");
        Ok(Decided::Joined(node))
    }

    /// The key with this secret, if it exists and may register one more node now.
    async fn usable_key(&self, secret: &str) -> Result<Result<PreauthKey, KeyRefusal>, StoreError> {
        let Some(key) = self.store.preauth_key_by_secret(secret).await? else {
            return Ok(Err(KeyRefusal::Unknown));
        };
        Ok(key.usable_at(self.now()).map(|()| key))
    }
}

/// `node`, when `machine` registered it.
fn owned_by(node: Node, machine: &MachinePublic) -> Result<Node, Refusal> {
    if node.belongs_to(machine) {
        Ok(node)
    } else {
        Err(Refusal::AnotherMachine)
    }
}
