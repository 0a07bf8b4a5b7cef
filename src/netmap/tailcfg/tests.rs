//! tailcfg against bytes from a real client, plus the null/[]/absent distinctions.

use serde_json::{json, Value};

use super::*;

macro_rules! capture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/", $name))
    };
}

const REGISTER_CAPTURES: [&str; 4] = [
    capture!("register_request.json"),
    capture!("register_restart.json"),
    capture!("register_logout.json"),
    capture!("register_rotation.json"),
];
const MAP_CAPTURES: [&str; 3] = [
    capture!("map_request_stream.json"),
    capture!("map_request_lite.json"),
    capture!("map_request_lite_with_netinfo.json"),
];

#[test]
fn every_captured_register_request_parses() {
    for text in REGISTER_CAPTURES {
        let req: RegisterRequest = serde_json::from_str(text).unwrap();
        assert_eq!(req.version, 130);
        assert!(!req.node_key.is_zero());
        assert!(req.nl_key.starts_with("nlpub:"));
        assert!(req.auth.as_ref().is_some_and(|a| a.auth_key.starts_with("tskey-auth-")));
        assert_eq!(req.hostinfo.as_ref().and_then(|h| h.hostname()), Some("node-a"));
        assert_eq!(req.hostinfo.as_ref().and_then(|h| h.os()), Some("linux"));
    }
}

#[test]
fn register_expiry_and_rotation_read_as_the_client_meant() {
    let first: RegisterRequest = serde_json::from_str(REGISTER_CAPTURES[0]).unwrap();
    assert!(first.expiry.is_zero());
    assert!(first.old_node_key.is_zero());
    let logout: RegisterRequest = serde_json::from_str(REGISTER_CAPTURES[2]).unwrap();
    assert_eq!(logout.expiry.get().map(|t| t.timestamp()), Some(123));
    assert!(logout.expiry.is_before(chrono::Utc::now()));
    let rotation: RegisterRequest = serde_json::from_str(REGISTER_CAPTURES[3]).unwrap();
    assert!(!rotation.old_node_key.is_zero());
    assert_ne!(rotation.old_node_key, rotation.node_key);
}

#[test]
fn every_captured_map_request_parses() {
    let stream: MapRequest = serde_json::from_str(MAP_CAPTURES[0]).unwrap();
    assert!(stream.stream && stream.keep_alive && !stream.omit_peers);
    assert_eq!(stream.compress, "zstd");
    assert!(stream.endpoints.is_none(), "long poll carries no Endpoints key");
    assert_eq!(stream.debug_flags, vec!["netstack"]);
    assert!(!stream.disco_key.is_zero());

    let lite: MapRequest = serde_json::from_str(MAP_CAPTURES[1]).unwrap();
    assert!(!lite.stream && lite.omit_peers);
    assert_eq!(lite.hostinfo.as_ref().unwrap().preferred_derp(), None);

    let netinfo: MapRequest = serde_json::from_str(MAP_CAPTURES[2]).unwrap();
    let hostinfo = netinfo.hostinfo.as_ref().unwrap();
    assert_eq!(hostinfo.preferred_derp(), Some(900));
    assert_eq!(hostinfo.ipn_version(), Some("1.90.9-ERR-BuildInfo"));
    assert_eq!(hostinfo.services().len(), 3);
    assert_eq!(hostinfo.services()[0], Service { proto: "peerapi4".into(), port: 58436, description: String::new() });
    assert_eq!(netinfo.endpoints.as_deref(), Some(&["127.0.0.1:46133".to_owned(), "192.0.2.10:46133".to_owned()][..]));
    assert_eq!(netinfo.endpoint_types, Some(vec![2, 1]));
}

#[test]
fn hostinfo_is_echoed_verbatim() {
    let raw: Value = serde_json::from_str(MAP_CAPTURES[2]).unwrap();
    let req: MapRequest = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(serde_json::to_value(req.hostinfo.unwrap()).unwrap(), raw["Hostinfo"]);
}

/// A map update as tailscale-rs 0.6.1 writes it (built from its serde types in
/// ts_control_serde: `HostInfo`, `IpnVersion`, `NetInfo.PreferredDerp`; not a capture).
#[test]
fn tailscale_rs_spelling_is_read_as_go_spelling() {
    let body = r#"{"Version":130,"NodeKey":"nodekey:0000000000000000000000000000000000000000000000000000000000000001",
        "OmitPeers":true,"HostInfo":{"IpnVersion":"0.6.1","App":"tailscale-rs","Hostname":"rs-node",
        "NetInfo":{"PreferredDerp":900,"DerpLatency":{"900-v4":0.001}},"Custom":1}}"#;
    let req: MapRequest = serde_json::from_str(body).unwrap();
    let hostinfo = req.hostinfo.unwrap();
    assert_eq!(hostinfo.hostname(), Some("rs-node"));
    assert_eq!(hostinfo.ipn_version(), Some("0.6.1"));
    assert_eq!(hostinfo.preferred_derp(), Some(900));
    let echoed = serde_json::to_value(&hostinfo).unwrap();
    assert_eq!(echoed["NetInfo"]["DERPLatency"]["900-v4"], 0.001);
    assert_eq!(echoed["Custom"], 1, "unknown keys stay as sent");
}

#[test]
fn hostinfo_keeps_previous_net_info_when_missing() {
    let old: MapRequest = serde_json::from_str(MAP_CAPTURES[2]).unwrap();
    let new: MapRequest = serde_json::from_str(MAP_CAPTURES[1]).unwrap();
    let mut hostinfo = new.hostinfo.unwrap();
    hostinfo.keep_net_info_from(old.hostinfo.as_ref().unwrap());
    assert_eq!(hostinfo.preferred_derp(), Some(900));
}

/// Removes values Go's `omitempty` would leave out (false, 0, "", [], {}), recursively, so two
/// encodings can be compared for meaning rather than for spelling.
fn strip_empty(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.values_mut().for_each(strip_empty);
            let empty = [json!(false), json!(""), json!(0), json!(0.0), json!([]), json!({}), Value::Null];
            map.retain(|_, v| !empty.contains(v));
        }
        Value::Array(items) => items.iter_mut().for_each(strip_empty),
        _ => {}
    }
}

#[test]
fn captured_first_map_response_round_trips() {
    let original: Value = serde_json::from_str(capture!("map_response_first.json")).unwrap();
    let parsed: MapResponse = serde_json::from_value(original.clone()).unwrap();
    let node = parsed.node.as_ref().unwrap();
    assert!(node.key_expiry.is_zero());
    assert!(node.machine_authorized);
    assert_eq!(node.addresses.len(), 2);
    assert_eq!(
        parsed.derp_map.as_ref().unwrap().regions.as_ref().unwrap()[&900].as_ref().unwrap().nodes[0].derp_port,
        55765
    );
    assert_eq!(parsed.packet_filter, Some(vec![FilterRule::allow_all()]));
    assert_eq!(parsed.peers, Some(vec![]));

    let written = serde_json::to_value(&parsed).unwrap();
    // Times, keys and the zero time must come back exactly as the client wrote them.
    assert_eq!(written["ControlTime"], original["ControlTime"]);
    assert_eq!(written["Node"]["KeyExpiry"], "0001-01-01T00:00:00Z");
    assert_eq!(written["Node"]["Created"], original["Node"]["Created"]);
    assert_eq!(written["Node"]["Machine"], original["Node"]["Machine"]);
    assert_eq!(written["Node"]["Hostinfo"], original["Node"]["Hostinfo"]);
    assert_eq!(written["DERPMap"]["omitDefaultRegions"], true);

    let (mut a, mut b) = (original, written.clone());
    strip_empty(&mut a);
    strip_empty(&mut b);
    assert_eq!(a, b);
    let reparsed: MapResponse = serde_json::from_value(written).unwrap();
    assert_eq!(reparsed, parsed);
}

#[test]
fn packet_filter_absent_null_and_empty_stay_distinct() {
    let unchanged = serde_json::to_value(MapResponse::default()).unwrap();
    assert_eq!(unchanged, json!({}));
    let drop_all = MapResponse { packet_filter: Some(vec![]), ..MapResponse::default() };
    assert_eq!(serde_json::to_value(&drop_all).unwrap(), json!({"PacketFilter": []}));

    let chunks: MapResponse = serde_json::from_value(json!({"PacketFilters": {"*": null, "base": []}})).unwrap();
    let filters = chunks.packet_filters.as_ref().unwrap();
    assert_eq!(filters["*"], None);
    assert_eq!(filters["base"], Some(vec![]));
    assert_eq!(serde_json::to_value(&chunks).unwrap(), json!({"PacketFilters": {"*": null, "base": []}}));
    let null: MapResponse = serde_json::from_value(json!({"PacketFilter": null})).unwrap();
    assert_eq!(null.packet_filter, None);
}

#[test]
fn filter_rules_never_carry_bits() {
    let text = serde_json::to_string(&FilterRule::allow_all()).unwrap();
    assert_eq!(text, r#"{"SrcIPs":["*"],"DstPorts":[{"IP":"*","Ports":{"First":0,"Last":65535}}]}"#);
    let legacy: FilterRule = serde_json::from_str(
        r#"{"SrcIPs":["*"],"SrcBits":[0],"DstPorts":[{"IP":"*","Bits":0,"Ports":{"First":22,"Last":22}}]}"#,
    )
    .unwrap();
    let again = serde_json::to_string(&legacy).unwrap();
    assert!(!again.contains("Bits"), "{again}");
}

#[test]
fn keep_alive_and_special_keys_use_exact_casing() {
    assert_eq!(serde_json::to_string(&MapResponse::keep_alive()).unwrap(), r#"{"KeepAlive":true}"#);
    let key = crate::keys::MachinePublic::from_bytes([0xab; 32]);
    let keys = OverTLSPublicKeyResponse { legacy_public_key: Default::default(), public_key: key };
    let text = serde_json::to_value(&keys).unwrap();
    assert_eq!(text["legacyPublicKey"], format!("mkey:{}", "0".repeat(64)));
    assert_eq!(text["publicKey"], key.to_string());

    let ssh = SshPolicy {
        rules: vec![SshRule {
            rule_expires: None,
            principals: vec![SshPrincipal { node_ip: "100.64.0.3".into(), ..Default::default() }].into(),
            ssh_users: [("*".to_owned(), "=".to_owned())].into(),
            action: SshAction { accept: true, session_duration: 3_600_000_000_000, ..Default::default() },
            accept_env: vec![],
        }],
    };
    let v = serde_json::to_value(&ssh).unwrap();
    assert_eq!(v["rules"][0]["principals"][0]["nodeIP"], "100.64.0.3");
    assert_eq!(v["rules"][0]["sshUsers"]["*"], "=");
    assert_eq!(v["rules"][0]["action"]["sessionDuration"], 3_600_000_000_000i64);
    assert!(v["rules"][0].get("ruleExpires").is_none());
}

#[test]
fn register_response_writes_every_field_and_zero_time() {
    let resp = RegisterResponse { machine_authorized: true, ..Default::default() };
    let v = serde_json::to_value(&resp).unwrap();
    for key in ["User", "Login", "NodeKeyExpired", "MachineAuthorized", "AuthURL", "Error"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["User"]["Created"], "0001-01-01T00:00:00Z");
    assert_eq!(v["User"]["ID"], 0);
}

#[test]
fn times_round_trip_with_offsets_and_nulls() {
    let t: GoTime = serde_json::from_str(r#""2026-11-23T20:41:02.5+01:00""#).unwrap();
    assert_eq!(serde_json::to_string(&t).unwrap(), r#""2026-11-23T19:41:02.500Z""#);
    let z: GoTime = serde_json::from_str("null").unwrap();
    assert!(z.is_zero());
    assert!(serde_json::from_str::<GoTime>(r#""yesterday""#).is_err());
    let patch: PeerChange =
        serde_json::from_str(r#"{"NodeID":3,"KeyExpiry":"1970-01-01T00:02:03Z","Online":false}"#).unwrap();
    assert_eq!(patch.key_expiry.map(|t| t.timestamp()), Some(123));
    assert_eq!(
        serde_json::to_value(&patch).unwrap(),
        json!({"NodeID":3,"KeyExpiry":"1970-01-01T00:02:03Z","Online":false})
    );
}

#[test]
fn go_nulls_in_slices_are_accepted() {
    let node: Node =
        serde_json::from_str(r#"{"ID":1,"Addresses":null,"Endpoints":null,"Tags":null,"Hostinfo":null}"#).unwrap();
    assert!(node.addresses.is_empty() && node.hostinfo.is_none());
    let req: MapRequest = serde_json::from_str(r#"{"Endpoints":null,"DebugFlags":null,"Hostinfo":null}"#).unwrap();
    assert!(req.endpoints.is_none());
    assert!(serde_json::from_str::<MapRequest>(r#"{"NodeKey":"nodekey:12"}"#).is_err());
}
