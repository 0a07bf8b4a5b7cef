//! Nodes: listing, reading, renaming, retagging, expiring and deleting nodes that registered
//! through the store the way the control plane registers them.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tenscale::domain::NodeId;

use crate::on_both_backends;
use crate::support::api::{json, problem, spawn, Backend, Org, TestApp};

on_both_backends!(list_and_get, rename_and_retag, expire_and_delete);

/// Namespace "alice" with two nodes, "laptop" and "phone"; returns their ids.
async fn two_nodes(t: &TestApp, org: &Org) -> (NodeId, NodeId) {
    json(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;
    let key =
        json(t.post("/v1/namespaces/alice/keys", &org.key, json!({"reusable": true})).await, StatusCode::CREATED).await;
    let ns = t.app.state.api.store.namespace_by_name(org.id, "alice").await.unwrap();
    let secret = key["key"].as_str().unwrap();
    let a = t.register_node(ns.id, secret, "Laptop").await;
    let b = t.register_node(ns.id, secret, "phone").await;
    (a.id, b.id)
}

async fn list_and_get(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    let (a, b) = two_nodes(&t, &org).await;

    let list = json(t.get("/v1/namespaces/alice/nodes", &org.key).await, StatusCode::OK).await;
    let nodes = list["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    let laptop = &nodes[0];
    assert_eq!(laptop["id"], a.get());
    assert_eq!(laptop["name"], "laptop");
    assert_eq!(laptop["hostname"], "Laptop");
    assert_eq!(laptop["namespace"], "alice");
    assert_eq!(laptop["addresses"], json!(["100.64.0.1", "fd7a:115c:a1e0::1"]));
    assert_eq!(nodes[1]["addresses"], json!(["100.64.0.2", "fd7a:115c:a1e0::2"]));
    assert_eq!(laptop["tags"], json!([]));
    assert_eq!(laptop["ephemeral"], false);
    assert_eq!(laptop["online"], false);
    assert_eq!(laptop["os"], "linux");
    assert_eq!(laptop["client_version"], "1.80.0");
    assert_eq!(laptop["expired"], false);
    assert!(laptop["last_seen"].is_string() && laptop["created_at"].is_string());
    assert!(laptop.get("key_expiry").is_some());

    let one = json(t.get(&format!("/v1/namespaces/alice/nodes/{b}"), &org.key).await, StatusCode::OK).await;
    assert_eq!(&one, &nodes[1]);
    problem(t.get("/v1/namespaces/alice/nodes/999999", &org.key).await, StatusCode::NOT_FOUND).await;
    problem(t.get("/v1/namespaces/alice/nodes/laptop", &org.key).await, StatusCode::NOT_FOUND).await;
    problem(t.get("/v1/namespaces/bob/nodes", &org.key).await, StatusCode::NOT_FOUND).await;

    // A node is found only through its own namespace.
    json(t.post("/v1/namespaces", &org.key, json!({"name": "other"})).await, StatusCode::CREATED).await;
    problem(t.get(&format!("/v1/namespaces/other/nodes/{a}"), &org.key).await, StatusCode::NOT_FOUND).await;
    let empty = json(t.get("/v1/namespaces/other/nodes", &org.key).await, StatusCode::OK).await;
    assert_eq!(empty["nodes"], json!([]));
    t.finish().await;
}

async fn rename_and_retag(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    let (a, _) = two_nodes(&t, &org).await;
    let path = format!("/v1/namespaces/alice/nodes/{a}");

    let renamed = json(t.patch(&path, &org.key, json!({"name": "build-box"})).await, StatusCode::OK).await;
    assert_eq!(renamed["name"], "build-box");
    assert_eq!(renamed["tags"], json!([]));
    let tagged = json(t.patch(&path, &org.key, json!({"tags": ["tag:ci", "tag:a"]})).await, StatusCode::OK).await;
    assert_eq!(tagged["tags"], json!(["tag:a", "tag:ci"]));
    assert_eq!(tagged["name"], "build-box");
    let same = json(t.patch(&path, &org.key, json!({})).await, StatusCode::OK).await;
    assert_eq!(same, tagged);
    let stored = t.app.state.api.store.node_by_id(a).await.unwrap();
    assert_eq!(stored.given_name.as_str(), "build-box");

    let taken = problem(t.patch(&path, &org.key, json!({"name": "phone"})).await, StatusCode::CONFLICT).await;
    assert!(taken["detail"].as_str().unwrap().contains("phone"), "{taken}");
    for body in
        [json!({"name": "Bad Name"}), json!({"tags": ["ci"]}), json!({"hostname": "x"}), json!({"tags": "tag:a"})]
    {
        problem(t.patch(&path, &org.key, body).await, StatusCode::BAD_REQUEST).await;
    }
    problem(t.patch("/v1/namespaces/alice/nodes/999999", &org.key, json!({"name": "x"})).await, StatusCode::NOT_FOUND)
        .await;

    // With a policy, tags must be declared in tagOwners.
    let policy = r#"{"tagOwners": {"tag:ci": []}}"#;
    assert_eq!(t.put_policy(&org.key, "application/hujson", policy).await.status(), StatusCode::OK);
    problem(t.patch(&path, &org.key, json!({"tags": ["tag:web"]})).await, StatusCode::BAD_REQUEST).await;
    let ok = json(t.patch(&path, &org.key, json!({"tags": []})).await, StatusCode::OK).await;
    assert_eq!(ok["tags"], json!([]));

    let actions: Vec<String> =
        t.app.state.api.store.audit_events(org.id, 100).await.unwrap().into_iter().map(|e| e.action).collect();
    assert_eq!(actions.iter().filter(|a| *a == "node.update").count(), 3, "{actions:?}");
    t.finish().await;
}

async fn expire_and_delete(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    let (a, b) = two_nodes(&t, &org).await;
    let expire = |id: NodeId| format!("/v1/namespaces/alice/nodes/{id}/expire");

    let expired: Value = json(t.post(&expire(a), &org.key, json!(null)).await, StatusCode::OK).await;
    assert_eq!(expired["expired"], true);
    assert!(expired["key_expiry"].is_string());
    let stored = t.app.state.api.store.node_by_id(a).await.unwrap();
    assert!(stored.expired_at(chrono::Utc::now()));
    problem(t.post(&expire(NodeId::new(999999)), &org.key, json!(null)).await, StatusCode::NOT_FOUND).await;
    problem(t.req(Method::GET, &expire(a), &org.key).send().await.unwrap(), StatusCode::METHOD_NOT_ALLOWED).await;

    let path = format!("/v1/namespaces/alice/nodes/{a}");
    assert_eq!(t.delete(&path, &org.key).await.status(), StatusCode::NO_CONTENT);
    problem(t.get(&path, &org.key).await, StatusCode::NOT_FOUND).await;
    problem(t.delete(&path, &org.key).await, StatusCode::NOT_FOUND).await;
    let list = json(t.get("/v1/namespaces/alice/nodes", &org.key).await, StatusCode::OK).await;
    assert_eq!(list["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(list["nodes"][0]["id"], b.get());

    // Deleting the namespace deletes its nodes.
    assert_eq!(t.delete("/v1/namespaces/alice", &org.key).await.status(), StatusCode::NO_CONTENT);
    assert!(t.app.state.api.store.node_by_id(b).await.is_err());
    t.finish().await;
}
