//! The tailnet-wide parts of a MapResponse: DERP map, DNS config, packet filter, SSH policy.
//! Filter types never carry `SrcBits`/`Bits` (a modern client refuses them). SSH types use
//! lowerCamel keys, the rest Go's PascalCase.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{is_false, is_zero, null_default};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DerpMap {
    /// `None` = keep the client's previous params.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_params: Option<DerpHomeParams>,
    /// Region ID -> region; a `None` region is deleted; `None` map = keep old regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<BTreeMap<i32, Option<DerpRegion>>>,
    #[serde(rename = "omitDefaultRegions", default, skip_serializing_if = "is_false")]
    pub omit_default_regions: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DerpHomeParams {
    /// < 1 prefers a region, > 1 penalises it.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub region_score: BTreeMap<i32, f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DerpRegion {
    #[serde(rename = "RegionID", default)]
    pub region_id: i32,
    #[serde(default, deserialize_with = "null_default")]
    pub region_code: String,
    #[serde(default, deserialize_with = "null_default")]
    pub region_name: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub latitude: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub longitude: f64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub avoid: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_measure_no_home: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub nodes: Vec<DerpNode>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DerpNode {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(rename = "RegionID", default)]
    pub region_id: i32,
    #[serde(default, deserialize_with = "null_default")]
    pub host_name: String,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub cert_name: String,
    /// Forced address; `"none"` disables the family.
    #[serde(
        rename = "IPv4",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4: String,
    #[serde(
        rename = "IPv6",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6: String,
    /// 0 = 3478, -1 = no STUN.
    #[serde(rename = "STUNPort", default, skip_serializing_if = "is_zero")]
    pub stun_port: i32,
    #[serde(rename = "STUNOnly", default, skip_serializing_if = "is_false")]
    pub stun_only: bool,
    /// 0 = 443.
    #[serde(rename = "DERPPort", default, skip_serializing_if = "is_zero")]
    pub derp_port: i32,
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure_for_tests: bool,
    #[serde(
        rename = "STUNTestIP",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub stun_test_ip: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub can_port80: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DnsConfig {
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub resolvers: Vec<DnsResolver>,
    /// Suffix -> resolvers; an empty (or null) list = answered by 100.100.100.100.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub routes: BTreeMap<String, Option<Vec<DnsResolver>>>,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub fallback_resolvers: Vec<DnsResolver>,
    /// Search domains, no trailing dot.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// MagicDNS on.
    #[serde(default, skip_serializing_if = "is_false")]
    pub proxied: bool,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub cert_domains: Vec<String>,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub extra_records: Vec<DnsRecord>,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub exit_node_filtered_set: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DnsResolver {
    /// IP, `ip:port`, or a DoH URL.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub addr: String,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub bootstrap_resolution: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_with_exit_node: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DnsRecord {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(
        rename = "Type",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub record_type: String,
    #[serde(default, deserialize_with = "null_default")]
    pub value: String,
}

/// One packet-filter rule. `dst_ports` and `cap_grant` are mutually exclusive.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FilterRule {
    /// `"*"`, an IP, a CIDR, `"a-b"`, or `"cap:<x>"`.
    #[serde(rename = "SrcIPs", default, deserialize_with = "null_default")]
    pub src_ips: Vec<String>,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub dst_ports: Vec<NetPortRange>,
    /// Empty = TCP, UDP, ICMPv4, ICMPv6.
    #[serde(
        rename = "IPProto",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ip_proto: Vec<i32>,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub cap_grant: Vec<CapGrant>,
}

impl FilterRule {
    /// The allow-all rule: any source to any destination port.
    pub fn allow_all() -> Self {
        Self {
            src_ips: vec!["*".into()],
            dst_ports: vec![NetPortRange {
                ip: "*".into(),
                ports: PortRange::ANY,
            }],
            ..Self::default()
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetPortRange {
    #[serde(rename = "IP", default, deserialize_with = "null_default")]
    pub ip: String,
    #[serde(default)]
    pub ports: PortRange,
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortRange {
    #[serde(default)]
    pub first: u16,
    #[serde(default)]
    pub last: u16,
}

impl PortRange {
    pub const ANY: Self = Self { first: 0, last: 65535 };
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CapGrant {
    #[serde(default, deserialize_with = "null_default")]
    pub dsts: Vec<String>,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_map: Option<BTreeMap<String, Option<Vec<serde_json::Value>>>>,
}

/// `MapResponse.SSHPolicy`: first matching rule wins.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SshPolicy {
    #[serde(default, deserialize_with = "null_default")]
    pub rules: Vec<SshRule>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshRule {
    #[serde(default)]
    pub rule_expires: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "null_default")]
    pub principals: Vec<SshPrincipal>,
    /// SSH user (or `"*"`) -> local user (`"="` = same name, `""` = no match).
    #[serde(default, deserialize_with = "null_default")]
    pub ssh_users: BTreeMap<String, String>,
    #[serde(default)]
    pub action: Option<SshAction>,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub accept_env: Vec<String>,
}

/// Matches if any set field matches.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshPrincipal {
    #[serde(default, deserialize_with = "null_default")]
    pub node: String,
    #[serde(rename = "nodeIP", default, deserialize_with = "null_default")]
    pub node_ip: String,
    #[serde(default, deserialize_with = "null_default")]
    pub user_login: String,
    #[serde(default)]
    pub any: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshAction {
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub reject: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub accept: bool,
    /// Go `time.Duration`: integer nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub session_duration: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_agent_forwarding: bool,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub hold_and_delegate: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_local_port_forwarding: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_remote_port_forwarding: bool,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub recorders: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_recording_failure: Option<SshRecorderFailureAction>,
}

/// Go writes this one's keys in PascalCase (no JSON tags).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SshRecorderFailureAction {
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub reject_session_with_message: String,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub terminate_session_with_message: String,
    #[serde(
        rename = "NotifyURL",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub notify_url: String,
}
