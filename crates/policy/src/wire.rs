//! What the Tailscale client parses: packet filter rules and the SSH policy (protocol brief §4).
//!
//! Filter types use Go's PascalCase field names (`tailcfg.FilterRule`):
//!
//! ```text
//! FilterRule   {"SrcIPs":[string], "DstPorts":[NetPortRange], "IPProto":[u8], "CapGrant":[CapGrant]}
//! NetPortRange {"IP":string, "Ports":{"First":u16,"Last":u16}}
//! CapGrant     {"Dsts":[prefix], "Caps":[string], "CapMap":{"<cap>":[json]}}
//! ```
//!
//! `SrcBits` and `Bits` do not exist here on purpose: a modern client fails to parse a rule that
//! carries them and silently drops all inbound traffic. An empty `IPProto` is left out (TCP, UDP,
//! ICMPv4 and ICMPv6 for the client). SSH types are lowerCamel (`tailcfg.SSHPolicy`):
//!
//! ```text
//! SSHPolicy    {"rules":[SSHRule]}                       first matching rule wins
//! SSHRule      {"ruleExpires"?, "principals":[SSHPrincipal], "sshUsers":{"<user>|*":"<local>|=|"},
//!               "action":SSHAction, "acceptEnv"?:[glob]}
//! SSHPrincipal {"node"?, "nodeIP"?, "userLogin"?, "any"?}   any one field matches
//! SSHAction    {"message"?, "reject"?, "accept"?, "sessionDuration"?: ns, "allowAgentForwarding"?,
//!               "holdAndDelegate"?, "allowLocalPortForwarding"?, "allowRemotePortForwarding"?,
//!               "recorders"?, "onRecordingFailure"?}
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An immutable list shared between the rules of many nodes (a source list of 2,000 addresses
/// is built once per ACL, not once per node). Serialized as a plain JSON array.
pub struct Shared<T>(Arc<[T]>);

impl<T> Shared<T> {
    /// Identity of the allocation; equal keys mean equal contents.
    pub fn ptr_key(&self) -> usize {
        Arc::as_ptr(&self.0) as *const T as usize
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<T> From<Vec<T>> for Shared<T> {
    fn from(v: Vec<T>) -> Self {
        Shared(v.into())
    }
}

impl<T> Deref for Shared<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T: PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0[..] == other.0[..]
    }
}

impl<T: Eq> Eq for Shared<T> {}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Serialize> Serialize for Shared<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0[..].serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<T>::deserialize(d).map(Shared::from)
    }
}

/// One packet filter rule: traffic from `SrcIPs` to `DstPorts` over `IPProto` is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterRule {
    #[serde(rename = "SrcIPs")]
    pub src_ips: Shared<String>,
    #[serde(rename = "DstPorts", default, skip_serializing_if = "Vec::is_empty")]
    pub dst_ports: Vec<NetPortRange>,
    #[serde(rename = "IPProto", default, skip_serializing_if = "Vec::is_empty")]
    pub ip_proto: Vec<u8>,
    #[serde(rename = "CapGrant", default, skip_serializing_if = "Vec::is_empty")]
    pub cap_grant: Vec<CapGrant>,
}

impl FilterRule {
    /// Any source to any destination port: the filter of a namespace without a policy.
    pub fn allow_all() -> Self {
        FilterRule {
            src_ips: Shared::from(vec!["*".to_string()]),
            dst_ports: vec![NetPortRange { ip: "*".to_string(), ports: PortRange { first: 0, last: 65535 } }],
            ip_proto: Vec::new(),
            cap_grant: Vec::new(),
        }
    }
}

/// A destination address (`*`, IP, CIDR or `a-b` range) and port range.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NetPortRange {
    #[serde(rename = "IP")]
    pub ip: String,
    #[serde(rename = "Ports")]
    pub ports: PortRange,
}

/// An inclusive port range; 0-65535 is "any port".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortRange {
    #[serde(rename = "First")]
    pub first: u16,
    #[serde(rename = "Last")]
    pub last: u16,
}

/// Peer capabilities granted for destinations (never emitted by the ACL compiler yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapGrant {
    #[serde(rename = "Dsts")]
    pub dsts: Vec<String>,
    #[serde(rename = "Caps", default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    #[serde(rename = "CapMap", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cap_map: BTreeMap<String, Vec<serde_json::Value>>,
}

/// The SSH policy of one node. The empty policy (no rules) refuses every SSH connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SSHPolicy {
    pub rules: Vec<SSHRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SSHRule {
    /// RFC 3339 time after which the rule no longer applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_expires: Option<String>,
    pub principals: Shared<SSHPrincipal>,
    /// SSH user (or `*`) → local user; `=` means the same name, `""` means refused.
    pub ssh_users: BTreeMap<String, String>,
    pub action: SSHAction,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept_env: Vec<String>,
}

/// Who a rule is for; a connection matches if any one set field matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SSHPrincipal {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(rename = "nodeIP", default, skip_serializing_if = "String::is_empty")]
    pub node_ip: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_login: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub any: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SSHAction {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub reject: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub accept: bool,
    /// Go `time.Duration`: nanoseconds. 0 = no limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub session_duration: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_agent_forwarding: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hold_and_delegate: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_local_port_forwarding: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_remote_port_forwarding: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recorders: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_recording_failure: Option<SSHRecorderFailureAction>,
}

/// What to do when session recording fails (Go field names, PascalCase).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SSHRecorderFailureAction {
    #[serde(rename = "RejectSessionWithMessage", default, skip_serializing_if = "String::is_empty")]
    pub reject_session_with_message: String,
    #[serde(rename = "TerminateSessionWithMessage", default, skip_serializing_if = "String::is_empty")]
    pub terminate_session_with_message: String,
    #[serde(rename = "NotifyURL", default, skip_serializing_if = "String::is_empty")]
    pub notify_url: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn brief_allow_all_filter_serializes_exactly() {
        let rule = FilterRule {
            src_ips: vec!["*".to_owned()].into(),
            dst_ports: vec![NetPortRange { ip: "*".into(), ports: PortRange { first: 0, last: 65535 } }],
            ip_proto: vec![],
            cap_grant: vec![],
        };
        assert_eq!(
            serde_json::to_string(&[rule]).unwrap(),
            r#"[{"SrcIPs":["*"],"DstPorts":[{"IP":"*","Ports":{"First":0,"Last":65535}}]}]"#
        );
    }

    #[test]
    fn never_writes_bits_and_parses_what_it_writes() {
        let rule = FilterRule {
            src_ips: vec!["100.64.0.1".to_owned()].into(),
            dst_ports: vec![NetPortRange { ip: "100.64.0.2".into(), ports: PortRange { first: 22, last: 22 } }],
            ip_proto: vec![6],
            cap_grant: vec![],
        };
        let text = serde_json::to_string(&rule).unwrap();
        assert!(!text.contains("Bits"));
        assert_eq!(serde_json::from_str::<FilterRule>(&text).unwrap(), rule);
    }

    #[test]
    fn ssh_policy_matches_tailscale_json() {
        // Shape taken from a Tailscale SaaS capture (headscale testdata ssh-a2): accept rule,
        // nonroot users, principals by node IP.
        let policy = SSHPolicy {
            rules: vec![SSHRule {
                rule_expires: None,
                principals: vec![SSHPrincipal { node_ip: "100.105.136.56".into(), ..Default::default() }].into(),
                ssh_users: [("*".to_owned(), "=".to_owned()), ("root".to_owned(), String::new())].into(),
                action: SSHAction {
                    accept: true,
                    allow_agent_forwarding: true,
                    allow_local_port_forwarding: true,
                    allow_remote_port_forwarding: true,
                    ..Default::default()
                },
                accept_env: vec![],
            }],
        };
        assert_eq!(
            serde_json::to_value(&policy).unwrap(),
            json!({"rules":[{"principals":[{"nodeIP":"100.105.136.56"}],"sshUsers":{"*":"=","root":""},
                "action":{"accept":true,"allowAgentForwarding":true,"allowLocalPortForwarding":true,
                "allowRemotePortForwarding":true}}]})
        );
    }

    #[test]
    fn session_duration_is_nanoseconds() {
        let a = SSHAction { accept: true, session_duration: 3_600_000_000_000, ..Default::default() };
        assert_eq!(serde_json::to_value(a).unwrap(), json!({"accept":true,"sessionDuration":3600000000000i64}));
    }
}
