//! The org policy: stored verbatim, refused with line and column when not HuJSON or not valid.

use reqwest::StatusCode;

use crate::common::{problem, spawn, Backend};
use crate::on_both_backends;

on_both_backends!(store_verbatim, refuse_with_position);

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

    let events = t.app.state.store.audit_events(org.id, 10).await.unwrap();
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
    problem(t.req(reqwest::Method::POST, "/v1/policy", &org.key).send().await.unwrap(), StatusCode::METHOD_NOT_ALLOWED).await;

    // None of the refused documents replaced the stored one.
    assert_eq!(t.get("/v1/policy", &org.key).await.text().await.unwrap(), POLICY);
    t.finish().await;
}
