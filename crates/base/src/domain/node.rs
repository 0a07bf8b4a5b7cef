//! A node as every layer above the store sees it: keys are keys, tags a checked set, endpoints
//! socket addresses and Hostinfo parsed. The store converts each row once, on the way out
//! (`state::store::nodes`); a row that does not convert never becomes a `Node`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use chrono::{DateTime, Utc};

use super::hostinfo::Hostinfo;
use super::{NamespaceId, NodeId, NodeName, PreauthKeyId, Tags};
use crate::keys::{DiscoPublic, MachinePublic, NodePublic};

/// A registered machine in exactly one namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: NodeId,
    pub namespace_id: NamespaceId,
    pub machine_key: MachinePublic,
    pub node_key: NodePublic,
    /// Zero until the client's first map request reports one.
    pub disco_key: DiscoPublic,
    /// The hostname the client reports.
    pub hostname: String,
    /// The node's MagicDNS label, unique in its namespace.
    pub given_name: NodeName,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    pub tags: Tags,
    pub ephemeral: bool,
    pub key_expiry: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    /// The client's last Hostinfo, as it sent it (peers get it verbatim).
    pub hostinfo: Hostinfo,
    pub endpoints: Vec<SocketAddr>,
    /// The client's home DERP region; 0 until it reports one.
    pub home_derp: i32,
    pub preauth_key_id: Option<PreauthKeyId>,
    pub created_at: DateTime<Utc>,
}

impl Node {
    /// Whether the node key has expired at `at`.
    pub fn expired_at(&self, at: DateTime<Utc>) -> bool {
        self.key_expiry.is_some_and(|e| e <= at)
    }

    /// Whether this node was registered by `machine` (a node key is bound to one machine).
    pub fn belongs_to(&self, machine: &MachinePublic) -> bool {
        self.machine_key == *machine
    }
}
