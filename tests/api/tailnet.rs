//! API mutations reach connected nodes: a node holding a map session (opened the way the
//! control plane opens one) shows as online and hears of changes made through the API.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tenscale::control::tailcfg::MapResponse;
use tokio::sync::mpsc::Receiver;

use crate::common::{json, spawn, Backend};
use crate::on_both_backends;

on_both_backends!(mutations_reach_map_sessions);

/// The next map message that mentions `needle`, within a few seconds.
async fn next_mentioning(rx: &mut Receiver<Box<MapResponse>>, needle: &str) -> String {
    let wait = async {
        loop {
            let message = rx.recv().await.expect("session open");
            let text = serde_json::to_string(&message).unwrap();
            if text.contains(needle) {
                return text;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await.unwrap_or_else(|_| panic!("no map message with {needle}"))
}

async fn mutations_reach_map_sessions(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    json(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;
    let key = json(t.post("/v1/namespaces/alice/keys", &org.key, json!({"reusable": true})).await, StatusCode::CREATED).await;
    let ns = t.app.state.store.namespace_by_name(org.id, "alice").await.unwrap();
    let secret = key["key"].as_str().unwrap();
    let watcher = t.register_node(ns.id, secret, "watcher").await;
    let peer = t.register_node(ns.id, secret, "peer").await;

    let mut session = t.app.state.tailnet.subscribe(watcher.clone()).await.expect("map session");
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

    // Deleting the namespace ends the session.
    assert_eq!(t.delete("/v1/namespaces/alice", &org.key).await.status(), StatusCode::NO_CONTENT);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while session.rx.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the map stream ends when its namespace is deleted");
    t.finish().await;
}
