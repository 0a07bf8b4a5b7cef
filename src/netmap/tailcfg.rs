//! The JSON types carried inside the ts2021 channel (Go's `tailcfg`), with Go's exact key
//! casing. Readers accept unknown and missing fields (and `null` where Go may write it);
//! writers leave out what Go leaves out, so "absent" and `null`/`[]` stay distinct where the
//! client gives them different meanings (see `MapResponse::packet_filter`).
//!
//! Submodules: [`time`] (Go zero time), [`Hostinfo`] (raw-retaining, from [`crate::domain::hostinfo`]), [`node`]
//! (Node, PeerChange), [`netmap`] (DERP map, DNS, packet filter, SSH policy).

pub mod netmap;
pub mod node;
pub mod time;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

pub use crate::domain::hostinfo::{Hostinfo, Service};
pub use netmap::{
    CapGrant, DerpHomeParams, DerpMap, DerpNode, DerpRegion, DnsConfig, DnsRecord, DnsResolver, FilterRule,
    NetPortRange, PortRange, SshAction, SshPolicy, SshPrincipal, SshRecorderFailureAction, SshRule,
};
pub use node::{CapMap, Node, PeerChange};
pub use time::GoTime;

use crate::keys::{DiscoPublic, MachinePublic, NodePublic};

/// Node IDs are int64 in Go; keep them below 2^53 for JavaScript clients.
pub type NodeId = i64;
pub type UserId = i64;

/// Reads `null` as the type's default (Go writes nil slices and maps as `null`).
pub(crate) fn null_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

pub(crate) fn is_false(value: &bool) -> bool {
    !*value
}

pub(crate) fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// `POST /machine/register` body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterRequest {
    #[serde(default)]
    pub version: u32,
    #[serde(default)]
    pub node_key: NodePublic,
    #[serde(default)]
    pub old_node_key: NodePublic,
    /// `nlpub:` tailnet-lock key, kept as text (ignored by the server).
    #[serde(rename = "NLKey", default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub nl_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RegisterAuth>,
    /// Zero = no request; past = logout; future = shorten expiry.
    #[serde(default)]
    pub expiry: GoTime,
    #[serde(default, deserialize_with = "null_default")]
    pub followup: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostinfo: Option<Hostinfo>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub ephemeral: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_key_signature: Option<String>,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub tailnet: String,
}

/// `RegisterRequest.Auth`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterAuth {
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub auth_key: String,
    /// Old Android only; carried along untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2_token: Option<serde_json::Value>,
}

/// `POST /machine/register` answer. Every field is written, as Go does.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterResponse {
    #[serde(default)]
    pub user: User,
    #[serde(default)]
    pub login: Login,
    #[serde(default)]
    pub node_key_expired: bool,
    #[serde(default)]
    pub machine_authorized: bool,
    #[serde(rename = "AuthURL", default, deserialize_with = "null_default")]
    pub auth_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_key_signature: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub error: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct User {
    #[serde(rename = "ID", default)]
    pub id: UserId,
    #[serde(default, deserialize_with = "null_default")]
    pub display_name: String,
    #[serde(rename = "ProfilePicURL", default, deserialize_with = "null_default")]
    pub profile_pic_url: String,
    #[serde(default)]
    pub created: GoTime,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Login {
    #[serde(rename = "ID", default)]
    pub id: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub provider: String,
    #[serde(default, deserialize_with = "null_default")]
    pub login_name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub display_name: String,
    #[serde(rename = "ProfilePicURL", default, deserialize_with = "null_default")]
    pub profile_pic_url: String,
}

/// `POST /machine/map` body: a long poll (`Stream`) or a lite update (`OmitPeers`, no stream).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MapRequest {
    #[serde(default)]
    pub version: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub compress: String,
    #[serde(default)]
    pub keep_alive: bool,
    #[serde(default)]
    pub node_key: NodePublic,
    #[serde(default)]
    pub disco_key: DiscoPublic,
    #[serde(default)]
    pub stream: bool,
    /// tailscale-rs 0.6 spells it `HostInfo` (Go's decoder ignores case).
    #[serde(default, alias = "HostInfo", skip_serializing_if = "Option::is_none")]
    pub hostinfo: Option<Hostinfo>,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub map_session_handle: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub map_session_seq: i64,
    /// `ip:port` strings (kept as text: Go may write IPv6 zones that `SocketAddr` refuses).
    /// `None` = the key was absent or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<String>>,
    /// Parallel to `endpoints`: 0 unknown, 1 local, 2 stun, 3 portmap, 4 stun4localport, 5 explicit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_types: Option<Vec<i32>>,
    #[serde(rename = "TKAHead", default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub tka_head: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub omit_peers: bool,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub debug_flags: Vec<String>,
}

/// One message of the map stream. Every field is optional: absent means "unchanged".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MapResponse {
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub map_session_handle: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub keep_alive: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_request: Option<PingRequest>,
    #[serde(
        rename = "PopBrowserURL",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub pop_browser_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Node>,
    #[serde(rename = "DERPMap", default, skip_serializing_if = "Option::is_none")]
    pub derp_map: Option<DerpMap>,
    /// Full peer set, sorted by ID. `Some(vec![])` is treated by clients as absent.
    /// Peers are shared (`Arc`): the server builds each node's wire form once and puts the
    /// same one into every map that names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<Arc<Node>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers_changed: Option<Vec<Arc<Node>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers_removed: Option<Vec<NodeId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers_changed_patch: Option<Vec<PeerChange>>,
    /// `{"<id>": true}` = seen now; `false` clears LastSeen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_seen_change: Option<BTreeMap<NodeId, bool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_change: Option<BTreeMap<NodeId, bool>>,
    #[serde(rename = "DNSConfig", default, skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<DnsConfig>,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// Go `opt.Bool`: JSON true/false, absent = unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collect_services: Option<bool>,
    /// Legacy single filter (= chunk "base"). `None` = unchanged; `Some(vec![])` = drop all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packet_filter: Option<Vec<FilterRule>>,
    /// Named chunks; a `None` value deletes that chunk, key `"*"` with `None` clears all first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packet_filters: Option<BTreeMap<String, Option<Vec<FilterRule>>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_profiles: Option<Vec<UserProfile>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_messages: Option<serde_json::Value>,
    #[serde(rename = "SSHPolicy", default, skip_serializing_if = "Option::is_none")]
    pub ssh_policy: Option<SshPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_time: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(rename = "TKAInfo", default, skip_serializing_if = "Option::is_none")]
    pub tka_info: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug: Option<ClientDebug>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_dial_plan: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_version: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_auto_update: Option<bool>,
}

impl MapResponse {
    /// The keep-alive message `{"KeepAlive":true}`.
    pub fn keep_alive() -> Self {
        Self { keep_alive: true, ..Self::default() }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserProfile {
    #[serde(rename = "ID", default)]
    pub id: UserId,
    #[serde(default, deserialize_with = "null_default")]
    pub login_name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub display_name: String,
    #[serde(
        rename = "ProfilePicURL",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub profile_pic_url: String,
}

/// `MapResponse.Debug`. Never send `Exit`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClientDebug {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sleep_seconds: f64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable_log_tail: bool,
}

/// `MapResponse.PingRequest` (optional feature).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PingRequest {
    #[serde(rename = "URL", default, deserialize_with = "null_default")]
    pub url: String,
    #[serde(rename = "URLIsNoise", default, skip_serializing_if = "is_false")]
    pub url_is_noise: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub log: bool,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub types: String,
    #[serde(rename = "IP", default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub ip: String,
    /// Standard base64.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub payload: String,
}

/// `GET /key?v=N` answer (lowerCamel keys).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OverTLSPublicKeyResponse {
    #[serde(rename = "legacyPublicKey", default)]
    pub legacy_public_key: MachinePublic,
    #[serde(rename = "publicKey", default)]
    pub public_key: MachinePublic,
}

#[cfg(test)]
mod tests;
