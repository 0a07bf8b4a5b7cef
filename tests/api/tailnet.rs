//! API mutations reach connected nodes: a node holding a map session (opened the way the
//! control plane opens one) shows as online and hears of changes made through the API.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tenscale::netmap::framing::MapMessage;
use tokio::sync::mpsc::Receiver;

use crate::on_both_backends;
use crate::support::api::{json, spawn, Backend};

on_both_backends!(mutations_reach_map_sessions);
on_both_backends!(identical_deltas_are_shared_and_policies_narrow_them);

/// The text of the next map message that mentions `needle`, within a few seconds.
async fn next_mentioning(rx: &mut Receiver<MapMessage>, needle: &str) -> String {
    next_raw_mentioning(rx, needle).await.1
}

async fn mutations_reach_map_sessions(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    json(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;
    let key =
        json(t.post("/v1/namespaces/alice/keys", &org.key, json!({"reusable": true})).await, StatusCode::CREATED).await;
    let ns = t.app.state.api.store.namespace_by_name(org.id, "alice").await.unwrap();
    let secret = key["key"].as_str().unwrap();
    let watcher = t.register_node(ns.id, secret, "watcher").await;
    let peer = t.register_node(ns.id, secret, "peer").await;

    let mut session = t.app.state.api.tailnet.subscribe(watcher.clone()).await.expect("map session");
    next_mentioning(&mut session.rx, "peer").await;
    let seen = json(t.get(&format!("/v1/namespaces/alice/nodes/{}", watcher.id), &org.key).await, StatusCode::OK).await;
    assert_eq!(seen["online"], true);

    let peer_path = format!("/v1/namespaces/alice/nodes/{}", peer.id);
    json(t.patch(&peer_path, &org.key, json!({"name": "renamed-peer"})).await, StatusCode::OK).await;
    next_mentioning(&mut session.rx, "renamed-peer").await;

    assert_eq!(t.delete(&peer_path, &org.key).await.status(), StatusCode::NO_CONTENT);
    let removed = next_mentioning(&mut session.rx, "PeersRemoved").await;
    let removed: serde_json::Value = serde_json::from_str(&removed).unwrap();
    assert_eq!(removed["PeersRemoved"], json!([peer.id]));

    // Deleting the namespace tells the session it is logged out (a real client then stops in
    // NeedsLogin: tests/realclient/test_deletion.py), and the stream is held, not ended.
    assert_eq!(t.delete("/v1/namespaces/alice", &org.key).await.status(), StatusCode::NO_CONTENT);
    let goodbye = next_mentioning(&mut session.rx, "was deleted").await;
    let goodbye: serde_json::Value = serde_json::from_str(&goodbye).unwrap();
    assert_eq!(goodbye["Node"]["Expired"], json!(true), "{goodbye}");
    assert_ne!(goodbye["Node"]["MachineAuthorized"], json!(true), "{goodbye}");
    assert!(goodbye["Health"][0].as_str().unwrap().contains("namespace"), "{goodbye}");
    let held = tokio::time::timeout(Duration::from_millis(500), session.rx.recv()).await;
    assert!(held.is_err(), "the stream stays open after the goodbye: {held:?}");
    t.finish().await;
}

/// The next message whose decoded text mentions `needle`, as it arrived.
async fn next_raw_mentioning(rx: &mut Receiver<MapMessage>, needle: &str) -> (MapMessage, String) {
    let wait = async {
        loop {
            let message = rx.recv().await.expect("session open");
            let text = serde_json::to_string(&message.clone().into_response().expect("decodable")).unwrap();
            if text.contains(needle) {
                return (message, text);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await.unwrap_or_else(|_| panic!("no map message with {needle}"))
}

/// Under allow-all, one join reaches every session as the same framed bytes. A saved policy
/// then narrows views (sessions that shared one peer table get their own) and deleting it
/// widens them again.
async fn identical_deltas_are_shared_and_policies_narrow_them(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    json(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;
    let key =
        json(t.post("/v1/namespaces/alice/keys", &org.key, json!({"reusable": true})).await, StatusCode::CREATED).await;
    let ns = t.app.state.api.store.namespace_by_name(org.id, "alice").await.unwrap();
    let secret = key["key"].as_str().unwrap();
    let tailnet = &t.app.state.api.tailnet;
    let a = t.register_node(ns.id, secret, "node-a").await;
    let b = t.register_node(ns.id, secret, "node-b").await;
    let mut sa = tailnet.subscribe(a.clone()).await.unwrap();
    next_mentioning(&mut sa.rx, "node-a").await;
    let mut sb = tailnet.subscribe(b.clone()).await.unwrap();
    next_mentioning(&mut sa.rx, "node-b").await;

    let c = t.register_node(ns.id, secret, "node-c").await;
    let mut sc = tailnet.subscribe(c.clone()).await.unwrap();
    let (to_a, _) = next_raw_mentioning(&mut sa.rx, "node-c").await;
    let (to_b, _) = next_raw_mentioning(&mut sb.rx, "node-c").await;
    match (&to_a, &to_b) {
        (MapMessage::Framed(x), MapMessage::Framed(y)) => {
            assert_eq!(x, y, "a and b get the same bytes");
            assert_eq!(x.as_ptr(), y.as_ptr(), "encoded once, shared");
        }
        other => panic!("peer-only deltas should be shared frames, got {other:?}"),
    }
    let (_, first_c) = next_raw_mentioning(&mut sc.rx, "node-a").await;
    assert!(first_c.contains("node-b") && first_c.contains("DERPMap"), "c's first message is its full map");

    // Only a and b may talk: c drops out of their maps, and they out of c's.
    let policy = json!({"acls": [{"action": "accept", "src": [format!("{}/32", a.ipv4), format!("{}/32", b.ipv4)],
        "dst": [format!("{}:*", a.ipv4), format!("{}:*", b.ipv4)]}]});
    let put = t.req(Method::PUT, "/v1/namespaces/alice/policy", &org.key).json(&policy).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    for rx in [&mut sa.rx, &mut sb.rx] {
        let (_, removed) = next_raw_mentioning(rx, "PeersRemoved").await;
        let removed: serde_json::Value = serde_json::from_str(&removed).unwrap();
        assert_eq!(removed["PeersRemoved"], json!([c.id]));
    }
    let (_, removed) = next_raw_mentioning(&mut sc.rx, "PeersRemoved").await;
    let removed: serde_json::Value = serde_json::from_str(&removed).unwrap();
    let mut gone: Vec<i64> = serde_json::from_value(removed["PeersRemoved"].clone()).unwrap();
    gone.sort_unstable();
    assert_eq!(gone, vec![a.id.min(b.id).get(), a.id.max(b.id).get()]);

    // Back to allow-all: c reappears for a.
    assert_eq!(t.delete("/v1/namespaces/alice/policy", &org.key).await.status(), StatusCode::NO_CONTENT);
    let (_, back) = next_raw_mentioning(&mut sa.rx, "node-c").await;
    assert!(back.contains("PeersChanged"), "c comes back as a changed peer: {back}");
    t.finish().await;
}
