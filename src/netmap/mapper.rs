//! Mapping: what one node should see, in wire form. Turns stored nodes into `tailcfg::Node`
//! values and builds the DERP map, DNS config and user profile of a namespace.
//!
//! Pure functions; the tailnet state decides *which* peers a node sees, this module only
//! decides how they look on the wire.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::Settings;
use crate::domain::{NamespaceId, Node};
use crate::netmap::tailcfg::{self, DerpHomeParams, DerpMap, DerpNode, DerpRegion, DnsConfig, GoTime, UserProfile};

/// The namespace as its nodes see it: the one user they belong to and their DNS names. Every
/// map of the namespace shares it.
#[derive(Debug, Clone)]
pub struct NamespaceIdentity {
    pub namespace_id: NamespaceId,
    pub namespace: String,
    pub org: String,
    /// `<namespace>.<base domain>`, without trailing dot.
    pub dns_suffix: String,
}

impl NamespaceIdentity {
    pub fn new(namespace_id: NamespaceId, namespace: &str, org: &str, base_domain: &str) -> Self {
        Self {
            namespace_id,
            namespace: namespace.to_string(),
            org: org.to_string(),
            dns_suffix: format!("{namespace}.{base_domain}"),
        }
    }

    /// The namespace's single user: every node of it belongs to this login.
    pub fn login_name(&self) -> String {
        format!("{}@{}", self.namespace, self.org)
    }

    /// Node ids and user ids share no space on the client, so the namespace id is the user id.
    pub fn user_id(&self) -> i64 {
        self.namespace_id.get()
    }

    pub fn user_profile(&self) -> UserProfile {
        UserProfile {
            id: self.user_id(),
            login_name: self.login_name(),
            display_name: self.namespace.clone(),
            ..Default::default()
        }
    }

    pub fn dns_config(&self) -> DnsConfig {
        DnsConfig { domains: vec![self.dns_suffix.clone()], proxied: true, ..Default::default() }
    }

    /// The node's MagicDNS name, with the trailing dot clients expect.
    pub fn fqdn(&self, given_name: &str) -> String {
        format!("{given_name}.{}.", self.dns_suffix)
    }
}

/// The wire form of a stored node at time `at`. `online` comes from presence, which the store
/// does not hold.
pub fn wire_node(node: &Node, view: &NamespaceIdentity, online: bool, at: DateTime<Utc>) -> tailcfg::Node {
    let addresses = vec![format!("{}/32", node.ipv4), format!("{}/128", node.ipv6)];
    let tags = node.tags.to_strings();
    let expired = node.expired_at(at);
    tailcfg::Node {
        id: node.id.get(),
        stable_id: node.id.to_string(),
        name: view.fqdn(node.given_name.as_str()),
        user: view.user_id(),
        key: node.node_key,
        key_expiry: GoTime(node.key_expiry),
        machine: node.machine_key,
        disco_key: node.disco_key,
        allowed_ips: Some(addresses.clone()),
        addresses,
        endpoints: node.endpoints.iter().map(ToString::to_string).collect(),
        legacy_derp: format!("127.3.3.40:{}", node.home_derp),
        home_derp: node.home_derp,
        hostinfo: Some(node.hostinfo.clone()),
        created: GoTime::new(node.created_at),
        cap: 0,
        tags,
        last_seen: if online { None } else { node.last_seen },
        online: Some(online),
        machine_authorized: !expired,
        expired,
        ..Default::default()
    }
}

/// The self node: the same as a peer, plus capabilities only the node itself receives.
pub fn wire_self_node(node: &Node, view: &NamespaceIdentity, at: DateTime<Utc>) -> tailcfg::Node {
    let mut wire = wire_node(node, view, true, at);
    let mut caps = tailcfg::CapMap::new();
    caps.insert("https://tailscale.com/cap/ssh".to_string(), None);
    wire.cap_map = Some(caps);
    wire
}

/// This server's DERP region plus any configured extra regions.
pub fn derp_map(settings: &Settings) -> Arc<DerpMap> {
    let derp = &settings.derp;
    let (host, port) = derp_endpoint(settings);
    let ip_literal = host.parse::<std::net::IpAddr>().ok();
    let node = DerpNode {
        name: format!("{}a", derp.region_id),
        region_id: derp.region_id as i32,
        host_name: host.clone(),
        ipv4: match ip_literal {
            Some(std::net::IpAddr::V4(v4)) => v4.to_string(),
            _ => String::new(),
        },
        ipv6: match ip_literal {
            Some(std::net::IpAddr::V4(_)) => "none".to_string(),
            Some(std::net::IpAddr::V6(v6)) => v6.to_string(),
            None => String::new(),
        },
        stun_port: settings.stun_addr.map_or(-1, |a| a.port() as i32),
        derp_port: port as i32,
        insecure_for_tests: derp.insecure_for_tests,
        stun_test_ip: match ip_literal {
            Some(ip) if ip.is_loopback() => ip.to_string(),
            _ => String::new(),
        },
        ..Default::default()
    };
    let region = DerpRegion {
        region_id: derp.region_id as i32,
        region_code: derp.region_code.clone(),
        region_name: derp.region_name.clone(),
        nodes: vec![node],
        ..Default::default()
    };
    let mut regions = BTreeMap::new();
    regions.insert(derp.region_id as i32, Some(region));
    for extra in &derp.extra_regions {
        match serde_json::from_value::<DerpRegion>(extra.clone()) {
            Ok(r) => {
                regions.insert(r.region_id, Some(r));
            }
            Err(err) => tracing::warn!(%err, "ignoring an extra DERP region that does not parse"),
        }
    }
    Arc::new(DerpMap {
        home_params: Some(DerpHomeParams { region_score: BTreeMap::new() }),
        regions: Some(regions),
        omit_default_regions: true,
    })
}

/// Host and port clients dial for DERP: explicit settings, else the server URL's.
pub fn derp_endpoint(settings: &Settings) -> (String, u16) {
    let url = &settings.server_url;
    let (scheme_port, rest) = match url.split_once("://") {
        Some(("https", rest)) => (443, rest),
        Some((_, rest)) => (80, rest),
        None => (80, url.as_str()),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = split_host_port(authority, scheme_port);
    (settings.derp.host.clone().unwrap_or(host), settings.derp.port.unwrap_or(port))
}

fn split_host_port(authority: &str, default_port: u16) -> (String, u16) {
    if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        if let Some((host, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok()).unwrap_or(default_port);
            return (host.to_string(), port);
        }
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host.to_string(), port.parse().unwrap_or(default_port)),
        _ => (authority.to_string(), default_port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> Settings {
        let env = vec![
            ("TENSCALE_SERVER_URL".to_string(), url.to_string()),
            ("TENSCALE_STUN_ADDR".to_string(), "127.0.0.1:3478".to_string()),
        ];
        Settings::load_from(None, &env).unwrap()
    }

    #[test]
    fn derp_endpoint_follows_the_server_url() {
        assert_eq!(derp_endpoint(&settings("http://127.0.0.1:8080")), ("127.0.0.1".into(), 8080));
        assert_eq!(derp_endpoint(&settings("https://ts.example.com")), ("ts.example.com".into(), 443));
        assert_eq!(derp_endpoint(&settings("https://[::1]:8443/")), ("::1".into(), 8443));
    }

    #[test]
    fn derp_map_has_only_our_region() {
        let map = derp_map(&settings("http://127.0.0.1:8080"));
        let json = serde_json::to_value(&*map).unwrap();
        let node = &json["Regions"]["900"]["Nodes"][0];
        assert_eq!(node["HostName"], "127.0.0.1");
        assert_eq!(node["IPv4"], "127.0.0.1");
        assert_eq!(node["IPv6"], "none");
        assert_eq!(node["DERPPort"], 8080);
        assert_eq!(node["STUNPort"], 3478);
        assert_eq!(json["omitDefaultRegions"], true);
        assert_eq!(json["Regions"].as_object().unwrap().len(), 1);
    }
}
