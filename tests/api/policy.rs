//! The org policy: stored verbatim, refused with line and column when not HuJSON or not valid.

use reqwest::StatusCode;

use crate::on_both_backends;
use crate::support::api::{problem, spawn, Backend};

on_both_backends!(
    store_verbatim,
    refuse_with_position,
    namespace_override_and_validate,
    tests_run_at_save,
    key_tags_follow_tag_owners
);

const POLICY: &str = "// Who may reach what.\n{\n  \"tagOwners\": {\"tag:cli\": []},\n  \"acls\": [\n    {\"action\": \"accept\", \"src\": [\"tag:cli\"], \"dst\": [\"*:*\"]}, // hub\n  ],\n}\n";

async fn store_verbatim(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    let none = problem(t.get("/v1/policy", &org.key).await, StatusCode::NOT_FOUND).await;
    assert!(none["detail"].as_str().unwrap().contains("no policy"));

    let saved = t.put_policy(&org.key, "application/hujson", POLICY).await;
    assert_eq!(saved.status(), StatusCode::OK);
    assert_eq!(saved.text().await.unwrap(), POLICY);
    let got = t.get("/v1/policy", &org.key).await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.headers()["content-type"], "application/hujson");
    assert_eq!(got.text().await.unwrap(), POLICY, "comments and layout are kept");

    let plain = r#"{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}"#;
    assert_eq!(t.put_policy(&org.key, "application/json; charset=utf-8", plain).await.status(), StatusCode::OK);
    assert_eq!(t.get("/v1/policy", &org.key).await.text().await.unwrap(), plain);

    let events = t.app.state.api.store.audit_events(org.id, 10).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.action == "policy.update").count(), 2);
    t.finish().await;
}

async fn refuse_with_position(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    assert_eq!(t.put_policy(&org.key, "application/hujson", POLICY).await.status(), StatusCode::OK);

    let cases = [
        // Not HuJSON: an unquoted key on line 3.
        ("{\n  // c\n  acls: [],\n}", "line 3, column 3"),
        // Unterminated block comment.
        ("{\n  /* open\n}", "line 2, column 3"),
        // HuJSON, but not a policy: an unknown top-level key.
        ("{\n  \"acls\": [],\n  \"bogus\": 1,\n}", "line 3"),
        // A rule with a bad port.
        ("{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:99999\"]}]}", "line 1"),
    ];
    for (text, position) in cases {
        let refused = problem(t.put_policy(&org.key, "application/hujson", text).await, StatusCode::BAD_REQUEST).await;
        let detail = refused["detail"].as_str().unwrap();
        assert!(detail.contains(position), "{text:?}: {detail}");
    }
    let utf8 = t
        .req(reqwest::Method::PUT, "/v1/policy", &org.key)
        .header("content-type", "application/hujson")
        .body(vec![b'{', 0xff, b'}'])
        .send()
        .await
        .unwrap();
    problem(utf8, StatusCode::BAD_REQUEST).await;
    problem(t.put_policy(&org.key, "text/plain", "{}").await, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    problem(t.req(reqwest::Method::POST, "/v1/policy", &org.key).send().await.unwrap(), StatusCode::METHOD_NOT_ALLOWED)
        .await;

    // None of the refused documents replaced the stored one.
    assert_eq!(t.get("/v1/policy", &org.key).await.text().await.unwrap(), POLICY);
    t.finish().await;
}

async fn put_at(t: &crate::support::api::TestApp, path: &str, key: &str, body: &str) -> reqwest::Response {
    t.req(reqwest::Method::PUT, path, key)
        .header("content-type", "application/hujson")
        .body(body.to_string())
        .send()
        .await
        .expect("request")
}

async fn namespace_override_and_validate(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    let other = t.org("other").await;
    assert_eq!(
        t.post("/v1/namespaces", &org.key, serde_json::json!({"name": "alice"})).await.status(),
        StatusCode::CREATED
    );

    problem(t.get("/v1/namespaces/alice/policy", &org.key).await, StatusCode::NOT_FOUND).await;
    let saved = put_at(&t, "/v1/namespaces/alice/policy", &org.key, POLICY).await;
    assert_eq!(saved.status(), StatusCode::OK, "{:?}", saved.text().await);
    let got = t.get("/v1/namespaces/alice/policy", &org.key).await;
    assert_eq!(got.text().await.unwrap(), POLICY);
    // The org default is untouched, and another org sees no such namespace.
    problem(t.get("/v1/policy", &org.key).await, StatusCode::NOT_FOUND).await;
    problem(t.get("/v1/namespaces/alice/policy", &other.key).await, StatusCode::NOT_FOUND).await;
    problem(put_at(&t, "/v1/namespaces/alice/policy", &other.key, POLICY).await, StatusCode::NOT_FOUND).await;
    let bad = problem(
        put_at(&t, "/v1/namespaces/alice/policy", &org.key, "{\n  \"acls\": [,]\n}").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(bad["detail"].as_str().unwrap().contains("line 2"), "{bad}");

    assert_eq!(t.delete("/v1/namespaces/alice/policy", &org.key).await.status(), StatusCode::NO_CONTENT);
    problem(t.delete("/v1/namespaces/alice/policy", &org.key).await, StatusCode::NOT_FOUND).await;

    let ok = t.post_raw("/v1/policy/validate", &org.key, POLICY).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let unknown_group = "{\"acls\": [{\"action\": \"accept\", \"src\": [\"group:nobody\"], \"dst\": [\"*:*\"]}]}";
    let refused =
        problem(t.post_raw("/v1/policy/validate", &org.key, unknown_group).await, StatusCode::BAD_REQUEST).await;
    assert!(refused["detail"].as_str().unwrap().contains("group:nobody"), "{refused}");
    // Validation saves nothing.
    problem(t.get("/v1/policy", &org.key).await, StatusCode::NOT_FOUND).await;
    t.finish().await;
}

async fn tests_run_at_save(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    crate::support::api::json(
        t.post("/v1/namespaces", &org.key, serde_json::json!({"name": "alice"})).await,
        StatusCode::CREATED,
    )
    .await;
    let ns_id = t.app.state.api.store.namespace_by_name(org.id, "alice").await.unwrap().id;
    let open = "{\"tagOwners\": {\"tag:cli\": [], \"tag:browser\": []}, \"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}]}";
    assert_eq!(t.put_policy(&org.key, "application/hujson", open).await.status(), StatusCode::OK);
    let cli_key = crate::support::api::json(
        t.post("/v1/namespaces/alice/keys", &org.key, serde_json::json!({"tags": ["tag:cli"], "reusable": true})).await,
        StatusCode::CREATED,
    )
    .await;
    let browser_key = crate::support::api::json(
        t.post("/v1/namespaces/alice/keys", &org.key, serde_json::json!({"tags": ["tag:browser"], "reusable": true}))
            .await,
        StatusCode::CREATED,
    )
    .await;
    t.register_node(ns_id, cli_key["key"].as_str().unwrap(), "hub").await;
    t.register_node(ns_id, browser_key["key"].as_str().unwrap(), "tab").await;

    // The policy's own test says the CLI hub must not reach the browser: it does, so refused.
    let contradicting = r#"{
  "tagOwners": {"tag:cli": [], "tag:browser": []},
  "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],
  "tests": [{"src": "tag:cli", "deny": ["tag:browser:80"]}],
}"#;
    let refused =
        problem(t.put_policy(&org.key, "application/hujson", contradicting).await, StatusCode::BAD_REQUEST).await;
    let detail = refused["detail"].as_str().unwrap();
    assert!(detail.contains("test") && detail.contains("tag:cli"), "{detail}");
    assert_eq!(t.get("/v1/policy", &org.key).await.text().await.unwrap(), open, "refused policy was not saved");

    let consistent = r#"{
  "tagOwners": {"tag:cli": [], "tag:browser": []},
  "acls": [{"action": "accept", "src": ["tag:browser"], "dst": ["tag:cli:*"]}],
  "tests": [{"src": "tag:browser", "accept": ["tag:cli:80"]}, {"src": "tag:cli", "deny": ["tag:browser:80"]}],
}"#;
    assert_eq!(t.put_policy(&org.key, "application/hujson", consistent).await.status(), StatusCode::OK);
    t.finish().await;
}

async fn key_tags_follow_tag_owners(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    assert_eq!(
        t.post("/v1/namespaces", &org.key, serde_json::json!({"name": "alice"})).await.status(),
        StatusCode::CREATED
    );
    // Without a policy any well-formed tag is accepted.
    let any = t.post("/v1/namespaces/alice/keys", &org.key, serde_json::json!({"tags": ["tag:anything"]})).await;
    assert_eq!(any.status(), StatusCode::CREATED);
    assert_eq!(t.put_policy(&org.key, "application/hujson", POLICY).await.status(), StatusCode::OK);
    let undeclared = problem(
        t.post("/v1/namespaces/alice/keys", &org.key, serde_json::json!({"tags": ["tag:anything"]})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(undeclared["detail"].as_str().unwrap().contains("tag:anything"), "{undeclared}");
    let declared = t.post("/v1/namespaces/alice/keys", &org.key, serde_json::json!({"tags": ["tag:cli"]})).await;
    assert_eq!(declared.status(), StatusCode::CREATED);
    // A namespace override with its own tagOwners governs that namespace's keys.
    let own = "{\"tagOwners\": {\"tag:anything\": []}, \"acls\": []}";
    assert_eq!(put_at(&t, "/v1/namespaces/alice/policy", &org.key, own).await.status(), StatusCode::OK);
    let now_ok = t.post("/v1/namespaces/alice/keys", &org.key, serde_json::json!({"tags": ["tag:anything"]})).await;
    assert_eq!(now_ok.status(), StatusCode::CREATED);
    t.finish().await;
}
