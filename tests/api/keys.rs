//! Pre-auth keys: creation with defaults and options, validation, listing, revocation.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::json;

use crate::on_both_backends;
use crate::support::api::{json, problem, spawn, Backend};

on_both_backends!(create_with_defaults_and_options, refused_keys, list_and_revoke, tags_follow_policy);

fn time(value: &serde_json::Value) -> DateTime<Utc> {
    value.as_str().expect("a timestamp").parse().expect("RFC 3339")
}

async fn create_with_defaults_and_options(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    json(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;

    let before = Utc::now();
    let key = json(t.post("/v1/namespaces/alice/keys", &org.key, json!({})).await, StatusCode::CREATED).await;
    let secret = key["key"].as_str().unwrap();
    assert!(secret.starts_with("tskey-auth-") && secret.len() == "tskey-auth-".len() + 48, "{secret}");
    assert!(secret.starts_with(key["prefix"].as_str().unwrap()));
    assert_eq!(key["reusable"], false);
    assert_eq!(key["ephemeral"], false);
    assert_eq!(key["tags"], json!([]));
    assert_eq!(key["description"], "");
    assert_eq!(key["namespace"], "alice");
    assert!(key["id"].is_i64());
    let lifetime = time(&key["expires_at"]) - before;
    assert!((3590..=3610).contains(&lifetime.num_seconds()), "{lifetime}");

    // No body at all also means the defaults.
    let bare = t.req(reqwest::Method::POST, "/v1/namespaces/alice/keys", &org.key).send().await.unwrap();
    let bare = json(bare, StatusCode::CREATED).await;
    assert_eq!(bare["reusable"], false);
    assert_ne!(bare["key"], key["key"]);

    let spec = json!({"reusable": true, "ephemeral": true, "tags": ["tag:web", "tag:cli", "tag:web"],
        "expires_in": 7776000, "description": "CLI hub"});
    let full = json(t.post("/v1/namespaces/alice/keys", &org.key, spec).await, StatusCode::CREATED).await;
    assert_eq!(full["reusable"], true);
    assert_eq!(full["ephemeral"], true);
    assert_eq!(full["tags"], json!(["tag:cli", "tag:web"]));
    assert_eq!(full["description"], "CLI hub");
    let lifetime = (time(&full["expires_at"]) - time(&full["created_at"])).num_seconds();
    assert!((90 * 86400 - 5..=90 * 86400).contains(&lifetime), "{lifetime}");
    t.finish().await;
}

async fn refused_keys(backend: Backend) {
    let t = spawn(backend, &[("TENSCALE_MAX_KEY_EXPIRY", "1d")]).await;
    let org = t.org("acme").await;
    json(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;
    let path = "/v1/namespaces/alice/keys";

    for (body, needle) in [
        (json!({"tags": ["cli"]}), "invalid tag"),
        (json!({"tags": ["tag:CLI"]}), "invalid tag"),
        (json!({"tags": ["tag:"]}), "invalid tag"),
        (json!({"expires_in": 0}), "expires_in"),
        (json!({"expires_in": 86401}), "86400"),
        // Past what a duration holds (once a panic): refused like any other out-of-range value.
        (json!({"expires_in": 9_223_372_036_854_775_808u64}), "86400"),
        (json!({"expires_in": u64::MAX}), "86400"),
        (json!({"expires_in": i64::MAX}), "86400"),
        (json!({"expires_in": -5}), "expected u64"),
        (json!({"reusable": "yes"}), "invalid type"),
        (json!({"single_use": true}), "unknown field `single_use`"),
        (json!({"description": "x".repeat(300)}), "description"),
    ] {
        let refused = problem(t.post(path, &org.key, body.clone()).await, StatusCode::BAD_REQUEST).await;
        assert!(refused["detail"].as_str().unwrap().contains(needle), "{body}: {refused}");
    }
    json(t.post(path, &org.key, json!({"expires_in": 86400})).await, StatusCode::CREATED).await;
    problem(t.post("/v1/namespaces/bob/keys", &org.key, json!({})).await, StatusCode::NOT_FOUND).await;
    problem(t.get("/v1/namespaces/bob/keys", &org.key).await, StatusCode::NOT_FOUND).await;
    let list = json(t.get(path, &org.key).await, StatusCode::OK).await;
    assert_eq!(list["keys"].as_array().unwrap().len(), 1, "only the valid request created a key");
    t.finish().await;
}

async fn list_and_revoke(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    json(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;
    let path = "/v1/namespaces/alice/keys";
    let a = json(t.post(path, &org.key, json!({"description": "first"})).await, StatusCode::CREATED).await;
    let b =
        json(t.post(path, &org.key, json!({"reusable": true, "tags": ["tag:cli"]})).await, StatusCode::CREATED).await;

    let response = t.get(path, &org.key).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    for created in [&a, &b] {
        let secret = created["key"].as_str().unwrap();
        assert!(!text.contains(secret) && !text.contains(&secret["tskey-auth-".len()..]), "listing leaks a secret");
    }
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["id"], a["id"]);
    assert_eq!(keys[0]["prefix"], a["prefix"]);
    assert_eq!(keys[0]["description"], "first");
    assert_eq!(keys[1]["tags"], json!(["tag:cli"]));
    assert!(keys.iter().all(|k| k.get("key").is_none() && k["usable"] == true && k["revoked_at"].is_null()));

    let a_path = format!("{path}/{}", a["id"]);
    assert_eq!(t.delete(&a_path, &org.key).await.status(), StatusCode::NO_CONTENT);
    let list = json(t.get(path, &org.key).await, StatusCode::OK).await;
    assert!(list["keys"][0]["revoked_at"].is_string());
    assert_eq!(list["keys"][0]["usable"], false);
    assert_eq!(list["keys"][1]["usable"], true);
    // The store agrees: a revoked key cannot register.
    let stored = t.app.state.api.store.preauth_key_by_secret(a["key"].as_str().unwrap()).await.unwrap().unwrap();
    assert!(stored.usable_at(Utc::now()).is_err());

    problem(t.delete(&format!("{path}/999999"), &org.key).await, StatusCode::NOT_FOUND).await;
    problem(t.delete(&format!("{path}/abc"), &org.key).await, StatusCode::NOT_FOUND).await;
    problem(t.delete(&format!("/v1/namespaces/bob/keys/{}", b["id"]), &org.key).await, StatusCode::NOT_FOUND).await;
    problem(t.get(&a_path, &org.key).await, StatusCode::METHOD_NOT_ALLOWED).await;
    t.finish().await;
}

async fn tags_follow_policy(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    json(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;
    let policy = r#"{"tagOwners": {"tag:cli": []}}"#;
    assert_eq!(t.put_policy(&org.key, "application/hujson", policy).await.status(), StatusCode::OK);
    let path = "/v1/namespaces/alice/keys";
    let refused = problem(t.post(path, &org.key, json!({"tags": ["tag:web"]})).await, StatusCode::BAD_REQUEST).await;
    assert!(refused["detail"].as_str().unwrap().contains("tagOwners"), "{refused}");
    json(t.post(path, &org.key, json!({"tags": ["tag:cli"]})).await, StatusCode::CREATED).await;
    t.finish().await;
}
