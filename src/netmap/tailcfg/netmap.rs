//! The tailnet-wide parts of a MapResponse: DERP map and DNS config (Go's PascalCase keys);
//! the packet filter and SSH policy types are re-exported from `policy::wire`.

use std::collections::BTreeMap;

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
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "BTreeMap::is_empty")]
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
    #[serde(rename = "IPv4", default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub ipv4: String,
    #[serde(rename = "IPv6", default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
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
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "BTreeMap::is_empty")]
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
    #[serde(rename = "Type", default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub record_type: String,
    #[serde(default, deserialize_with = "null_default")]
    pub value: String,
}

// The packet filter and SSH policy types are the policy compiler's output types: one
// definition of that JSON, produced by `policy::compile` and carried here unchanged.
pub use crate::policy::wire::{
    CapGrant, FilterRule, NetPortRange, PortRange, SSHAction as SshAction, SSHPolicy as SshPolicy,
    SSHPrincipal as SshPrincipal, SSHRecorderFailureAction as SshRecorderFailureAction, SSHRule as SshRule,
};
