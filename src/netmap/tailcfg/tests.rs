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

// --- properties: decoding what we encode gives it back -------------------------------------

mod props {
    use chrono::DateTime;
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;
    use serde_json::{Map, Number};

    use super::*;
    use crate::keys::{DiscoPublic, NodePublic};

    /// Every capture, decoded, encoded and decoded again, is the value first decoded.
    #[test]
    fn every_capture_survives_a_round_trip() {
        for text in REGISTER_CAPTURES {
            let first: RegisterRequest = serde_json::from_str(text).unwrap();
            let again: RegisterRequest = serde_json::from_slice(&serde_json::to_vec(&first).unwrap()).unwrap();
            assert_eq!(again, first);
        }
        for text in MAP_CAPTURES {
            let first: MapRequest = serde_json::from_str(text).unwrap();
            let again: MapRequest = serde_json::from_slice(&serde_json::to_vec(&first).unwrap()).unwrap();
            assert_eq!(again, first);
        }
    }

    /// A finite float: JSON has no NaN or infinity. Hostinfo carries floats (`Location`,
    /// `NetInfo.DERPLatency`) that peers receive as they were sent.
    fn float() -> impl Strategy<Value = f64> {
        prop_oneof![
            proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO,
            (0.0f64..1.0),
        ]
    }

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            float().prop_map(|f| Value::Number(Number::from_f64(f).expect("finite"))),
            "\\PC{0,12}".prop_map(Value::String),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..4).prop_map(Value::Array),
                btree_map("[A-Za-z0-9-]{1,10}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn hostinfo() -> impl Strategy<Value = Hostinfo> {
        let keys = prop_oneof![
            Just("Hostname".to_owned()),
            Just("OS".to_owned()),
            Just("IpnVersion".to_owned()),
            Just("Location".to_owned()),
            Just("NetInfo".to_owned()),
            Just("RequestTags".to_owned()),
            "[A-Za-z]{1,12}",
        ];
        let net_info = (any::<i32>(), btree_map("[0-9]{1,3}-v[46]", float(), 0..4)).prop_map(|(derp, latency)| {
            let latency: Map<String, Value> =
                latency.into_iter().map(|(k, v)| (k, Value::Number(Number::from_f64(v).expect("finite")))).collect();
            json!({"PreferredDERP": derp, "DERPLatency": latency})
        });
        (btree_map(keys, json_value(), 0..6), proptest::option::of(net_info), proptest::option::of((float(), float())))
            .prop_map(|(raw, net_info, location)| {
                let mut raw: Map<String, Value> = raw.into_iter().collect();
                if let Some(net_info) = net_info {
                    raw.insert("NetInfo".into(), net_info);
                }
                if let Some((latitude, longitude)) = location {
                    raw.insert("Location".into(), json!({"Latitude": latitude, "Longitude": longitude}));
                }
                // The way in a client's body takes (keys respelled to Go's).
                Hostinfo::from(raw)
            })
    }

    /// A time as the decoder yields it: Go's zero instant is read as "unset".
    fn go_time() -> impl Strategy<Value = GoTime> {
        let at = (-62_135_596_800i64..253_402_300_799, 0u32..1_000_000_000)
            .prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).expect("in range"));
        proptest::option::of(at).prop_map(|at| {
            let at = at.filter(|at| at.timestamp() != -62_135_596_800 || at.timestamp_subsec_nanos() != 0);
            GoTime(at)
        })
    }

    fn register_request() -> impl Strategy<Value = RegisterRequest> {
        let auth =
            proptest::option::of("\\PC{0,30}".prop_map(|auth_key| RegisterAuth { auth_key, oauth2_token: None }));
        (
            (any::<u32>(), any::<[u8; 32]>(), any::<[u8; 32]>(), "\\PC{0,20}", auth),
            (go_time(), "\\PC{0,20}", proptest::option::of(hostinfo()), any::<bool>()),
            (proptest::option::of("\\PC{0,20}"), "\\PC{0,20}"),
        )
            .prop_map(
                |(
                    (version, node_key, old_node_key, nl_key, auth),
                    (expiry, followup, hostinfo, ephemeral),
                    (node_key_signature, tailnet),
                )| RegisterRequest {
                    version,
                    node_key: NodePublic(node_key),
                    old_node_key: NodePublic(old_node_key),
                    nl_key,
                    auth,
                    expiry,
                    followup,
                    hostinfo,
                    ephemeral,
                    node_key_signature,
                    tailnet,
                },
            )
    }

    fn map_request() -> impl Strategy<Value = MapRequest> {
        (
            (any::<u32>(), "zstd|", any::<bool>(), any::<[u8; 32]>(), any::<[u8; 32]>(), any::<bool>()),
            (proptest::option::of(hostinfo()), "\\PC{0,20}", any::<i64>()),
            (proptest::option::of(vec("\\PC{0,25}", 0..4)), proptest::option::of(vec(any::<i32>(), 0..4))),
            ("\\PC{0,20}", any::<bool>(), any::<bool>(), vec("\\PC{0,10}", 0..3)),
        )
            .prop_map(
                |(
                    (version, compress, keep_alive, node_key, disco_key, stream),
                    (hostinfo, map_session_handle, map_session_seq),
                    (endpoints, endpoint_types),
                    (tka_head, read_only, omit_peers, debug_flags),
                )| MapRequest {
                    version,
                    compress,
                    keep_alive,
                    node_key: NodePublic(node_key),
                    disco_key: DiscoPublic(disco_key),
                    stream,
                    hostinfo,
                    map_session_handle,
                    map_session_seq,
                    endpoints,
                    endpoint_types,
                    tka_head,
                    read_only,
                    omit_peers,
                    debug_flags,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn register_requests_round_trip(request in register_request()) {
            let json = serde_json::to_vec(&request).unwrap();
            prop_assert_eq!(serde_json::from_slice::<RegisterRequest>(&json).unwrap(), request);
        }

        #[test]
        fn map_requests_round_trip(request in map_request()) {
            let json = serde_json::to_vec(&request).unwrap();
            prop_assert_eq!(serde_json::from_slice::<MapRequest>(&json).unwrap(), request);
        }
    }
}
