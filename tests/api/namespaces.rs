//! Namespaces: create, list with pagination, get, delete, and their failure cases.

use reqwest::StatusCode;
use serde_json::json;

use crate::on_both_backends;
use crate::support::api::{json, problem, spawn, Backend};

on_both_backends!(create_get_delete, pagination, refused_bodies);

async fn create_get_delete(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;

    let created = json(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;
    assert_eq!(created["name"], "alice");
    assert!(created["created_at"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().is_ok());

    let dup = problem(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CONFLICT).await;
    assert_eq!(dup["type"], "urn:tenscale:problem:conflict");

    let got = json(t.get("/v1/namespaces/alice", &org.key).await, StatusCode::OK).await;
    assert_eq!(got, created);
    problem(t.get("/v1/namespaces/nobody", &org.key).await, StatusCode::NOT_FOUND).await;
    problem(t.get("/v1/namespaces/Not_A_Name", &org.key).await, StatusCode::NOT_FOUND).await;

    // Deleting removes the namespace's keys too: a recreated namespace starts empty.
    json(t.post("/v1/namespaces/alice/keys", &org.key, json!({})).await, StatusCode::CREATED).await;
    assert_eq!(t.delete("/v1/namespaces/alice", &org.key).await.status(), StatusCode::NO_CONTENT);
    problem(t.get("/v1/namespaces/alice", &org.key).await, StatusCode::NOT_FOUND).await;
    problem(t.delete("/v1/namespaces/alice", &org.key).await, StatusCode::NOT_FOUND).await;
    json(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;
    let keys = json(t.get("/v1/namespaces/alice/keys", &org.key).await, StatusCode::OK).await;
    assert_eq!(keys["keys"], json!([]));

    let events = t.app.state.api.store.audit_events(org.id, 100).await.unwrap();
    let actions: Vec<&str> = events.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["namespace.create", "preauth_key.create", "namespace.delete", "namespace.create"]);
    assert!(events.iter().all(|e| e.actor.starts_with("api-key:")));
    t.finish().await;
}

async fn pagination(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    let names = ["n1", "n2", "n3", "n4", "n5"];
    for name in names {
        json(t.post("/v1/namespaces", &org.key, json!({"name": name})).await, StatusCode::CREATED).await;
    }
    let all = json(t.get("/v1/namespaces", &org.key).await, StatusCode::OK).await;
    assert_eq!(all["namespaces"].as_array().unwrap().len(), 5);
    assert_eq!(all["next_cursor"], json!(null));

    let mut seen = Vec::new();
    let mut path = "/v1/namespaces?limit=2".to_string();
    let mut pages = 0;
    loop {
        let page = json(t.get(&path, &org.key).await, StatusCode::OK).await;
        pages += 1;
        let items = page["namespaces"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|n| n["name"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/namespaces?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, names);
    assert_eq!(pages, 3);

    for bad in ["limit=0", "limit=1001", "limit=x", "cursor=abc", "colour=red"] {
        let body = problem(t.get(&format!("/v1/namespaces?{bad}"), &org.key).await, StatusCode::BAD_REQUEST).await;
        assert!(body["detail"].as_str().unwrap().len() > 5, "{bad}: {body}");
    }
    json(t.get("/v1/namespaces?limit=1000", &org.key).await, StatusCode::OK).await;
    t.finish().await;
}

async fn refused_bodies(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;

    let bad_name =
        problem(t.post("/v1/namespaces", &org.key, json!({"name": "Bad_Name"})).await, StatusCode::BAD_REQUEST).await;
    assert!(bad_name["detail"].as_str().unwrap().contains("invalid namespace name"), "{bad_name}");

    let unknown = problem(
        t.post("/v1/namespaces", &org.key, json!({"name": "ok", "colour": "red"})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let detail = unknown["detail"].as_str().unwrap();
    assert!(detail.contains("unknown field `colour`") && detail.contains("line 1"), "{detail}");

    let malformed = problem(t.post_raw("/v1/namespaces", &org.key, "{\"name\": ").await, StatusCode::BAD_REQUEST).await;
    assert_eq!(malformed["type"], "urn:tenscale:problem:malformed-request");

    problem(t.post_raw("/v1/namespaces", &org.key, "").await, StatusCode::BAD_REQUEST).await;
    problem(t.post("/v1/namespaces", &org.key, json!({"name": 5})).await, StatusCode::BAD_REQUEST).await;

    let form = t
        .req(reqwest::Method::POST, "/v1/namespaces", &org.key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=ok")
        .send()
        .await
        .unwrap();
    problem(form, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;

    problem(
        t.req(reqwest::Method::PUT, "/v1/namespaces", &org.key).send().await.unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
    problem(t.get("/v1/nothing-here", &org.key).await, StatusCode::NOT_FOUND).await;

    // Nothing was created by any of these.
    let all = json(t.get("/v1/namespaces", &org.key).await, StatusCode::OK).await;
    assert_eq!(all["namespaces"], json!([]));
    t.finish().await;
}
