//! `Node` (self and peers in a MapResponse) and `PeerChange` (a patch to one peer).
//! Prefixes (`"100.64.0.1/32"`) and endpoints (`"1.2.3.4:41641"`) are kept as strings: the
//! caller formats them, and Go's IPv6 zones survive a round trip.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{is_false, is_zero, null_default, GoTime, Hostinfo, NodeId, UserId};
use crate::keys::{DiscoPublic, MachinePublic, NodePublic};

/// `{"<capability>": [raw json...] or null}`.
pub type CapMap = BTreeMap<String, Option<Vec<serde_json::Value>>>;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    #[serde(rename = "ID", default)]
    pub id: NodeId,
    #[serde(rename = "StableID", default, deserialize_with = "null_default")]
    pub stable_id: String,
    /// FQDN with a trailing dot.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default)]
    pub user: UserId,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sharer: UserId,
    #[serde(default)]
    pub key: NodePublic,
    /// Zero = never expires; past = expired.
    #[serde(default)]
    pub key_expiry: GoTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_signature: Option<String>,
    #[serde(default)]
    pub machine: MachinePublic,
    /// Must be non-zero for peers, or the client ignores them.
    #[serde(default)]
    pub disco_key: DiscoPublic,
    #[serde(default, deserialize_with = "null_default")]
    pub addresses: Vec<String>,
    /// `None` = same as `addresses`.
    #[serde(rename = "AllowedIPs", default, skip_serializing_if = "Option::is_none")]
    pub allowed_ips: Option<Vec<String>>,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// Legacy `"127.3.3.40:<region>"`, only used by clients when `home_derp` is 0.
    #[serde(rename = "DERP", default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub legacy_derp: String,
    #[serde(rename = "HomeDERP", default, skip_serializing_if = "is_zero")]
    pub home_derp: i32,
    #[serde(default)]
    pub hostinfo: Option<Hostinfo>,
    #[serde(default)]
    pub created: GoTime,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cap: u32,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub primary_routes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub machine_authorized: bool,
    /// Deprecated list form of `cap_map`.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_map: Option<CapMap>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub expired: bool,
}

/// One entry of `PeersChangedPatch`: only the set fields change.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PeerChange {
    #[serde(rename = "NodeID", default)]
    pub node_id: NodeId,
    #[serde(rename = "DERPRegion", default, skip_serializing_if = "is_zero")]
    pub derp_region: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cap: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_map: Option<CapMap>,
    /// Replaces the endpoint list when `Some`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<NodePublic>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disco_key: Option<DiscoPublic>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_expiry: Option<DateTime<Utc>>,
}
