//! `Hostinfo`: what a client says about itself. The server reads a few fields and echoes the
//! whole object to peers, so the raw JSON object is kept verbatim and fields are read through
//! accessors (exact Go casing, as the client writes it).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A client's Hostinfo, kept as the JSON object it sent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Hostinfo(Map<String, Value>);

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
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| serde_json::from_value(v.clone()).ok())
                .collect(),
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
