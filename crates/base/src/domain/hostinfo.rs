//! `Hostinfo`: what a client says about itself. The server reads a few fields and echoes the
//! whole object to peers, so the raw JSON object is kept and fields are read through
//! accessors.
//!
//! Keys are made Go's spelling on the way in. Go's decoder matches field names ignoring
//! case, so a client written against Go servers may spell them otherwise: tailscale-rs 0.6
//! sends `IpnVersion`, `Os` and `NetInfo.PreferredDerp` for `IPNVersion`, `OS` and
//! `NetInfo.PreferredDERP`. Unknown keys stay as sent.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A client's Hostinfo, kept as the JSON object it sent, with Go's key spelling.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
// Serialized as the object itself (a newtype); deserialized through `From`, which respells.
#[serde(from = "Map<String, Value>")]
pub struct Hostinfo(Map<String, Value>);

/// `tailcfg.Hostinfo`'s JSON names (tailscale.com v1.102.3).
const HOSTINFO_KEYS: &[&str] = &[
    "IPNVersion",
    "FrontendLogID",
    "BackendLogID",
    "OS",
    "OSVersion",
    "Container",
    "Env",
    "Distro",
    "DistroVersion",
    "DistroCodeName",
    "App",
    "Desktop",
    "Package",
    "DeviceModel",
    "PushDeviceToken",
    "Hostname",
    "ShieldsUp",
    "ShareeNode",
    "NoLogsNoSupport",
    "RemoteConfig",
    "WireIngress",
    "IngressEnabled",
    "AllowsUpdate",
    "Machine",
    "GoArch",
    "GoArchVar",
    "GoVersion",
    "RoutableIPs",
    "RequestTags",
    "WoLMACs",
    "Services",
    "NetInfo",
    "sshHostKeys",
    "Cloud",
    "Userspace",
    "UserspaceRouter",
    "AppConnector",
    "ServicesHash",
    "PeerRelay",
    "ExitNodeID",
    "Location",
    "TPM",
    "StateEncrypted",
];

/// `tailcfg.NetInfo`'s JSON names.
const NET_INFO_KEYS: &[&str] = &[
    "MappingVariesByDestIP",
    "WorkingIPv6",
    "OSHasIPv6",
    "WorkingUDP",
    "WorkingICMPv4",
    "HavePortMap",
    "UPnP",
    "PMP",
    "PCP",
    "PreferredDERP",
    "LinkType",
    "DERPLatency",
    "FirewallMode",
];

/// `object` with every key that matches one of `known` ignoring case renamed to it.
fn with_go_keys(object: Map<String, Value>, known: &[&str]) -> Map<String, Value> {
    object
        .into_iter()
        .map(|(key, value)| match known.iter().find(|k| k.eq_ignore_ascii_case(&key)) {
            Some(go) => ((*go).to_owned(), value),
            None => (key, value),
        })
        .collect()
}

impl From<Map<String, Value>> for Hostinfo {
    fn from(raw: Map<String, Value>) -> Self {
        let mut raw = with_go_keys(raw, HOSTINFO_KEYS);
        if let Some(Value::Object(net_info)) = raw.get_mut("NetInfo") {
            *net_info = with_go_keys(std::mem::take(net_info), NET_INFO_KEYS);
        }
        Self(raw)
    }
}

/// One entry of `Hostinfo.Services` (e.g. `peerapi4`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Service {
    #[serde(default)]
    pub proto: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl Hostinfo {
    pub fn from_raw(raw: Map<String, Value>) -> Self {
        Self(raw)
    }

    pub fn raw(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn into_raw(self) -> Map<String, Value> {
        self.0
    }

    fn str_field(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    pub fn hostname(&self) -> Option<&str> {
        self.str_field("Hostname")
    }

    pub fn os(&self) -> Option<&str> {
        self.str_field("OS")
    }

    pub fn ipn_version(&self) -> Option<&str> {
        self.str_field("IPNVersion")
    }

    pub fn backend_log_id(&self) -> Option<&str> {
        self.str_field("BackendLogID")
    }

    /// `RequestTags`, skipping anything that is not a string.
    pub fn request_tags(&self) -> Vec<String> {
        self.string_list("RequestTags")
    }

    /// `RoutableIPs` (prefix strings the node offers to route).
    pub fn routable_ips(&self) -> Vec<String> {
        self.string_list("RoutableIPs")
    }

    fn string_list(&self, key: &str) -> Vec<String> {
        match self.0.get(key) {
            Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        }
    }

    /// `Services`; entries that do not parse are skipped rather than failing the request.
    pub fn services(&self) -> Vec<Service> {
        match self.0.get("Services") {
            Some(Value::Array(items)) => items.iter().filter_map(|v| serde_json::from_value(v.clone()).ok()).collect(),
            _ => Vec::new(),
        }
    }

    /// The `NetInfo` object, if present and not null.
    pub fn net_info(&self) -> Option<&Map<String, Value>> {
        self.0.get("NetInfo").and_then(Value::as_object)
    }

    /// `NetInfo.PreferredDERP`: the client's home DERP region (0 or absent = unknown).
    pub fn preferred_derp(&self) -> Option<i64> {
        self.net_info()?.get("PreferredDERP")?.as_i64()
    }

    /// Copies `NetInfo` from `previous` when this Hostinfo has none (clients leave it out of
    /// updates sent before netcheck; the stored value must survive them).
    pub fn keep_net_info_from(&mut self, previous: &Hostinfo) {
        if self.net_info().is_none() {
            if let Some(net_info) = previous.0.get("NetInfo").filter(|v| v.is_object()) {
                self.0.insert("NetInfo".to_owned(), net_info.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `wire_json` fuzz target: serde_json's default float parser may land one
    /// ULP off, so this value came back as `...199e305`. Parsing exactly (`float_roundtrip`,
    /// Cargo.toml) makes the echo a peer receives the float the client sent. Note: a
    /// dev-dependency (jsonschema) also turns that feature on, so under `cargo test` this test
    /// holds even without the line in Cargo.toml; the fuzz crate, which has no such
    /// dependency, replays the same input (fuzz/corpus/wire_json) against the server's build.
    #[test]
    fn floats_are_echoed_as_sent() {
        let text = r#"{"Location":{"Latitude":6.178787134922198e305,"Longitude":3.587959730897931e-246}}"#;
        let hostinfo: Hostinfo = serde_json::from_str(text).unwrap();
        let location = &hostinfo.raw()["Location"];
        // The literals are parsed by the compiler, exactly.
        assert_eq!(location["Latitude"].as_f64(), Some(6.178787134922198e305));
        assert_eq!(location["Longitude"].as_f64(), Some(3.587959730897931e-246));
        let echoed = serde_json::to_string(&hostinfo).unwrap();
        assert_eq!(serde_json::from_str::<Hostinfo>(&echoed).unwrap(), hostinfo);
    }
}
