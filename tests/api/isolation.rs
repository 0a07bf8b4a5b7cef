//! Two organizations: nothing org A's key asks for can read or change anything of org B.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::on_both_backends;
use crate::support::api::{json, problem, spawn, Backend};

on_both_backends!(orgs_cannot_see_each_other);

async fn orgs_cannot_see_each_other(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let a = t.org("org-a").await;
    let b = t.org("org-b").await;

    // B: a namespace with a key, a node and a policy. A: its own namespace "alice".
    json(t.post("/v1/namespaces", &b.key, json!({"name": "bob"})).await, StatusCode::CREATED).await;
    let b_key =
        json(t.post("/v1/namespaces/bob/keys", &b.key, json!({"reusable": true})).await, StatusCode::CREATED).await;
    let b_ns = t.app.state.api.store.namespace_by_name(b.id, "bob").await.unwrap();
    let b_node = t.register_node(b_ns.id, b_key["key"].as_str().unwrap(), "bobs-laptop").await.id;
    let b_policy = "{\"acls\": []}";
    assert_eq!(t.put_policy(&b.key, "application/hujson", b_policy).await.status(), StatusCode::OK);
    json(t.post("/v1/namespaces", &a.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;
    let key_id = &b_key["id"];

    // Reads through B's namespace name, and through A's own namespace with B's ids.
    for path in [
        "/v1/namespaces/bob".to_string(),
        "/v1/namespaces/bob/keys".to_string(),
        "/v1/namespaces/bob/nodes".to_string(),
        format!("/v1/namespaces/bob/nodes/{b_node}"),
        format!("/v1/namespaces/alice/nodes/{b_node}"),
    ] {
        problem(t.get(&path, &a.key).await, StatusCode::NOT_FOUND).await;
    }
    let listed = json(t.get("/v1/namespaces", &a.key).await, StatusCode::OK).await;
    assert_eq!(listed["namespaces"].as_array().unwrap().len(), 1);
    assert_eq!(listed["namespaces"][0]["name"], "alice");
    problem(t.get("/v1/policy", &a.key).await, StatusCode::NOT_FOUND).await;

    // Changes.
    let changes = [
        (Method::POST, "/v1/namespaces/bob/keys".to_string(), Some(json!({}))),
        (Method::DELETE, format!("/v1/namespaces/bob/keys/{key_id}"), None),
        (Method::DELETE, format!("/v1/namespaces/alice/keys/{key_id}"), None),
        (Method::PATCH, format!("/v1/namespaces/bob/nodes/{b_node}"), Some(json!({"name": "pwned"}))),
        (Method::PATCH, format!("/v1/namespaces/alice/nodes/{b_node}"), Some(json!({"name": "pwned"}))),
        (Method::POST, format!("/v1/namespaces/bob/nodes/{b_node}/expire"), None),
        (Method::POST, format!("/v1/namespaces/alice/nodes/{b_node}/expire"), None),
        (Method::DELETE, format!("/v1/namespaces/bob/nodes/{b_node}"), None),
        (Method::DELETE, format!("/v1/namespaces/alice/nodes/{b_node}"), None),
        (Method::DELETE, "/v1/namespaces/bob".to_string(), None),
    ];
    for (method, path, body) in changes {
        let mut request = t.req(method.clone(), &path, &a.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        problem(request.send().await.unwrap(), StatusCode::NOT_FOUND).await;
    }
    // A's own policy and namespace of the same name are A's alone.
    assert_eq!(t.put_policy(&a.key, "application/hujson", "{}").await.status(), StatusCode::OK);
    json(t.post("/v1/namespaces", &a.key, json!({"name": "bob"})).await, StatusCode::CREATED).await;

    // B sees everything exactly as it left it.
    json(t.get("/v1/namespaces/bob", &b.key).await, StatusCode::OK).await;
    let keys = json(t.get("/v1/namespaces/bob/keys", &b.key).await, StatusCode::OK).await;
    assert_eq!(keys["keys"][0]["usable"], true);
    let node = json(t.get(&format!("/v1/namespaces/bob/nodes/{b_node}"), &b.key).await, StatusCode::OK).await;
    assert_eq!(node["name"], "bobs-laptop");
    assert_eq!(node["expired"], false);
    assert_eq!(t.get("/v1/policy", &b.key).await.text().await.unwrap(), b_policy);
    let b_list = json(t.get("/v1/namespaces", &b.key).await, StatusCode::OK).await;
    assert_eq!(b_list["namespaces"].as_array().unwrap().len(), 1);
    // And no audit event of A's mentions B's objects.
    let a_events = t.app.state.api.store.audit_events(a.id, 100).await.unwrap();
    let b_ids = [b_node.to_string(), key_id.to_string()];
    assert!(a_events.iter().all(|e| !b_ids.contains(&e.object_id)));
    t.finish().await;
}
