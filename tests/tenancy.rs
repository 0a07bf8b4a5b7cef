//! Attacks on tenancy through the control protocol (issue 15, item 5): a leaked pre-auth key
//! of one namespace, guessed and altered keys, and a machine presenting another machine's node
//! key. Every refused attempt is checked to leave no trace: node counts, key use counts and
//! the outbox are read back. The rules themselves are unit-tested in
//! `src/state/registration_tests.rs`; these drive them over ts2021 on both databases.

#[macro_use]
mod support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::json;
use support::{
    announces, join_ok, map_until, next_map, random_key, register_request, Backend, SimNode, TestServer, TwoNamespaces,
};
use tenscale::derp::crypto::DerpSecret;
use tenscale::domain::{NamespaceId, Node, PreauthKeyId};
use tenscale::keys::{MachinePublic, NodePublic};
use tenscale::netmap::tailcfg::{GoTime, MapRequest, RegisterResponse};

/// Namespace A (org acme) and namespace B (org globex), each with a reusable key; B has one
/// node, `b`, registered by its own machine.
struct Tenants {
    server: TestServer,
    ns_a: NamespaceId,
    ns_b: NamespaceId,
    key_a: String,
    key_b: String,
    b: SimNode,
}

async fn tenants(backend: Backend) -> Tenants {
    let TwoNamespaces { server, ns_a, ns_b, key_a, key_b } = TwoNamespaces::start(backend).await;
    let b = join_ok(&server, &key_b).await;
    Tenants { server, ns_a, ns_b, key_a, key_b, b }
}

/// What the store holds that an attempt could change: the nodes of each namespace, the use
/// counts of each key, the outbox's last sequence number.
#[derive(Debug, PartialEq)]
struct Trace {
    nodes: Vec<Vec<Identity>>,
    key_uses: Vec<u64>,
    last_event: i64,
}

/// A node's identity and authorization (not what its map requests report).
#[derive(Debug, PartialEq)]
struct Identity {
    id: i64,
    namespace: NamespaceId,
    machine: MachinePublic,
    node_key: NodePublic,
    key_expiry: Option<DateTime<Utc>>,
    ipv4: std::net::Ipv4Addr,
    preauth_key_id: Option<PreauthKeyId>,
}

fn identity(node: &Node) -> Identity {
    Identity {
        id: node.id.get(),
        namespace: node.namespace_id,
        machine: node.machine_key,
        node_key: node.node_key,
        key_expiry: node.key_expiry,
        ipv4: node.ipv4,
        preauth_key_id: node.preauth_key_id,
    }
}

async fn trace(t: &Tenants) -> Trace {
    let store = &t.server.state().api.store;
    let mut nodes = Vec::new();
    let mut key_uses = Vec::new();
    for ns in [t.ns_a, t.ns_b] {
        nodes.push(store.nodes_in_namespace(ns).await.unwrap().iter().map(identity).collect());
        key_uses.extend(store.list_preauth_keys(ns).await.unwrap().iter().map(|k| k.used_count));
    }
    Trace { nodes, key_uses, last_event: store.last_event_seq().await.unwrap() }
}

async fn uses(t: &Tenants, secret: &str) -> u64 {
    t.server.state().api.store.preauth_key_by_secret(secret).await.unwrap().expect("key exists").used_count
}

async fn stored(t: &Tenants, key: &NodePublic) -> Option<Node> {
    t.server.state().api.store.node_by_node_key(key).await.unwrap()
}

fn new_node_key() -> NodePublic {
    DerpSecret::from_bytes(random_key()).public()
}

fn refused(resp: &RegisterResponse, error: &str) {
    assert_eq!(resp.error, error, "{resp:?}");
    assert!(!resp.machine_authorized, "{resp:?}");
}

fn accepted(resp: &RegisterResponse) {
    assert!(resp.error.is_empty() && resp.machine_authorized, "{resp:?}");
}

/// A's key used every way it could reach B: a node registered with it lands in A; B's machine
/// presenting it with B's node key, or rotating its live key, stays B's node and spends
/// nothing of A's key; an expired B node cannot rotate with it, and nothing changes.
async fn a_leaked_key_never_registers_into_another_namespace(backend: Backend) {
    let t = tenants(backend).await;
    let b_before = stored(&t, &t.b.node_key).await.expect("b is stored");

    // A new machine with A's key: a node of A, nothing in B.
    let stranger = join_ok(&t.server, &t.key_a).await;
    assert_eq!(stranger.stored(&t.server).await.namespace_id, t.ns_a);
    assert_eq!(uses(&t, &t.key_a).await, 1);

    // B's machine, its own node key, A's key: the node is B's as before, A's key untouched.
    let before = trace(&t).await;
    let again = t.b.client.register(&register_request(t.b.node_key, Some(&t.key_a))).await.unwrap();
    accepted(&again);
    assert_eq!(stored(&t, &t.b.node_key).await.as_ref().map(identity), Some(identity(&b_before)));
    assert_eq!(trace(&t).await, before);

    // B's machine rotating its live key, presenting A's key: still B's node, A's key unspent.
    let rotated_key = new_node_key();
    let mut rotate = register_request(rotated_key, Some(&t.key_a));
    rotate.old_node_key = t.b.node_key;
    accepted(&t.b.client.register(&rotate).await.unwrap());
    let b_rotated = stored(&t, &rotated_key).await.expect("rotated node");
    assert_eq!((b_rotated.id, b_rotated.namespace_id), (b_before.id, t.ns_b));
    assert_eq!(uses(&t, &t.key_a).await, 1);

    // B's node expires; rotating it with A's key is refused and changes nothing.
    // An hour ago: before the server started, so the expiry sweep has nothing to announce.
    let past = Some(Utc::now() - chrono::Duration::hours(1));
    let writer = &t.server.state().api.writer;
    writer.set_key_expiry(&b_rotated, past, None).await.unwrap();
    let before = trace(&t).await;
    let mut rotate = register_request(new_node_key(), Some(&t.key_a));
    rotate.old_node_key = rotated_key;
    refused(&t.b.client.register(&rotate).await.unwrap(), "pre-auth key is for another namespace");
    assert_eq!(trace(&t).await, before, "a refused rotation left a trace");
    assert!(stored(&t, &rotate.node_key).await.is_none());
    // B's own key does rotate it: the refusal was about the namespace, not the attempt.
    let mut rotate = register_request(new_node_key(), Some(&t.key_b));
    rotate.old_node_key = rotated_key;
    accepted(&t.b.client.register(&rotate).await.unwrap());
    assert_eq!(stored(&t, &rotate.node_key).await.map(|n| (n.id, n.namespace_id)), Some((b_before.id, t.ns_b)));

    // B's machine with a new node key and A's key joins A as a node of its own: B's node is
    // neither moved nor changed, and B holds exactly the nodes it held.
    let b_now = stored(&t, &rotate.node_key).await.expect("b");
    let joined_key = new_node_key();
    accepted(&t.b.client.register(&register_request(joined_key, Some(&t.key_a))).await.unwrap());
    let joined = stored(&t, &joined_key).await.expect("joined");
    assert_eq!(joined.namespace_id, t.ns_a);
    assert_ne!(joined.id, b_before.id);
    let store = &t.server.state().api.store;
    let in_b: Vec<_> = store.nodes_in_namespace(t.ns_b).await.unwrap().iter().map(identity).collect();
    assert_eq!(in_b, vec![identity(&b_now)]);
}

/// Keys that are not quite B's key, or are other secrets of the deployment, register nothing,
/// spend nothing and append nothing to the outbox.
async fn guessed_and_altered_keys_leave_no_trace(backend: Backend) {
    let t = tenants(backend).await;
    let store = &t.server.state().api.store;
    let writer = &t.server.state().api.writer;
    let shown = store.preauth_key_by_secret(&t.key_b).await.unwrap().unwrap().prefix;
    // What the store keeps of B's key (it never hands the digest out).
    let digest = tenscale::state::store::hash_secret(&t.key_b);
    let org = store.org_by_name("globex").await.unwrap();
    let (_, api_key) = writer.create_api_key(org.id, "attacker's guess", None).await.unwrap();
    let flip = |text: &str| {
        let mut bytes = text.as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'0' { b'1' } else { b'0' };
        String::from_utf8(bytes).unwrap()
    };
    let key_b = t.key_b.as_str();
    let guesses = [
        flip(key_b),
        key_b[..key_b.len() - 1].to_string(),
        format!("{key_b}0"),
        key_b.to_uppercase(),
        shown.clone(),
        format!("{shown}{}", "0".repeat(40)),
        digest,
        key_b.replacen("tskey-auth-", "tskey-api-", 1),
        api_key,
        format!("{}é", &key_b[..key_b.len() - 1]),
        "tskey-auth-".to_string(),
    ];
    let before = trace(&t).await;
    for guess in &guesses {
        let client = t.server.control_client().await;
        let node_key = new_node_key();
        let resp = client.register(&register_request(node_key, Some(guess))).await.unwrap();
        refused(&resp, "invalid pre-auth key");
        assert!(stored(&t, &node_key).await.is_none(), "{guess} registered a node");
        // The same guess from B's own machine with a new node key.
        let resp = t.b.client.register(&register_request(new_node_key(), Some(guess))).await.unwrap();
        refused(&resp, "invalid pre-auth key");
    }
    assert_eq!(trace(&t).await, before, "a refused key left a trace");
    // The genuine key still works.
    join_ok(&t.server, &t.key_b).await;
}

/// The one call of the APIs that takes a key's secret, Headscale's `preauthkey/expire`:
/// organization acme, naming its own user (namespace A), cannot expire globex's key by its
/// secret or by its shown prefix; the key still registers afterwards. (No API call registers
/// or moves a node between namespaces: the Headscale surface offers neither.)
async fn another_organization_cannot_spend_or_expire_a_key(backend: Backend) {
    let t = tenants(backend).await;
    let store = &t.server.state().api.store;
    let acme = store.org_by_name("acme").await.unwrap();
    let (_, acme_api) = t.server.state().api.writer.create_api_key(acme.id, "acme", None).await.unwrap();
    let shown = store.preauth_key_by_secret(&t.key_b).await.unwrap().unwrap().prefix;
    let http = reqwest::Client::new();
    let before = trace(&t).await;
    let expire = |user: i64, key: String| {
        http.post(format!("{}/api/v1/preauthkey/expire", t.server.base_url()))
            .bearer_auth(&acme_api)
            .json(&json!({"user": user.to_string(), "key": key}))
            .send()
    };
    for (user, key) in [
        (t.ns_a.get(), t.key_b.clone()),
        (t.ns_a.get(), shown.clone()),
        (t.ns_b.get(), t.key_b.clone()),
        (t.ns_b.get(), shown),
    ] {
        let resp = expire(user, key.clone()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "user {user}, key {key}");
    }
    // B's pre-auth key as an API key: refused as a credential.
    let resp = http.get(format!("{}/api/v1/user", t.server.base_url())).bearer_auth(&t.key_b).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(trace(&t).await, before);
    assert!(store.preauth_key_by_secret(&t.key_b).await.unwrap().unwrap().revoked_at.is_none());
    join_ok(&t.server, &t.key_b).await;
}

/// Another machine presenting node `a1`'s key — to register it (even with a valid key of a1's
/// namespace), to rotate it away, to log it out, or to open its map — is refused; a1's row is
/// unchanged and its own map stream keeps being served.
async fn a_node_key_stays_with_its_machine(backend: Backend) {
    let t = tenants(backend).await;
    let a1 = join_ok(&t.server, &t.key_a).await;
    let mut a1_stream = a1.stream().await;
    next_map(&mut a1_stream).await;
    let a1_before = a1.stored(&t.server).await;

    let thief = t.server.control_client().await;
    let before = trace(&t).await;
    let another_machine = "this node key belongs to another machine";
    for key in [Some(t.key_a.as_str()), Some(t.key_b.as_str()), None] {
        refused(&thief.register(&register_request(a1.node_key, key)).await.unwrap(), another_machine);
        let mut rotate = register_request(new_node_key(), key);
        rotate.old_node_key = a1.node_key;
        refused(&thief.register(&rotate).await.unwrap(), another_machine);
        assert!(stored(&t, &rotate.node_key).await.is_none());
        let mut logout = register_request(a1.node_key, key);
        logout.expiry = GoTime::new(DateTime::from_timestamp(123, 0).unwrap());
        let out = thief.register(&logout).await.unwrap();
        assert_eq!(out.error, another_machine, "{out:?}");
    }
    let map = support::stream_request(a1.node_key);
    assert!(thief.map_once(&MapRequest { stream: false, ..map.clone() }).await.is_err(), "map of another's key");
    assert!(thief.map_stream(&map).await.is_err(), "map stream of another's key");
    assert_eq!(trace(&t).await, before, "a refused attempt left a trace");
    assert_eq!(identity(&a1.stored(&t.server).await), identity(&a1_before));

    // a1's own stream is still served: it hears of a node that joins now.
    let a2 = join_ok(&t.server, &t.key_a).await;
    map_until(&mut a1_stream, |m| announces(m, &a2.node_key)).await;
    // And a1's machine can still do what the thief could not: rotate its own key.
    let mut rotate = register_request(new_node_key(), None);
    rotate.old_node_key = a1.node_key;
    accepted(&tokio::time::timeout(Duration::from_secs(10), a1.client.register(&rotate)).await.unwrap().unwrap());
}

on_both_backends!(
    a_leaked_key_never_registers_into_another_namespace,
    guessed_and_altered_keys_leave_no_trace,
    another_organization_cannot_spend_or_expire_a_key,
    a_node_key_stays_with_its_machine,
);
