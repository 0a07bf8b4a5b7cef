//! `/v1/api-keys`: the organization's API keys made with an expiry, listed, rotated (the old
//! key refused from the next request on, the new one working) and revoked, by any key of the
//! organization and by no other's.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::api::{json, problem, spawn, Backend};

on_both_backends!(made_rotated_and_revoked);

fn seconds_between(value: &Value, from: &str, to: &str) -> i64 {
    let at = |field: &str| value[field].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    (at(to) - at(from)).num_seconds()
}

async fn made_rotated_and_revoked(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    let globex = t.org("globex").await;

    // Made with an expiry (default 90 days), shown once; the new key works at once.
    let made = json(
        t.post("/v1/api-keys", &org.key, json!({"description": "signup backend", "expires_in": 3600})).await,
        StatusCode::CREATED,
    )
    .await;
    let secret = made["key"].as_str().unwrap().to_string();
    assert!(secret.starts_with(made["prefix"].as_str().unwrap()), "{made}");
    assert!((3599..=3600).contains(&seconds_between(&made, "created_at", "expires_at")), "{made}");
    json(t.get("/v1/namespaces", &secret).await, StatusCode::OK).await;
    let default = json(t.post("/v1/api-keys", &org.key, json!({})).await, StatusCode::CREATED).await;
    assert!(
        (90 * 86400 - 1..=90 * 86400).contains(&seconds_between(&default, "created_at", "expires_at")),
        "{default}"
    );
    for (body, needle) in [
        (json!({"expires_in": 0}), "expires_in"),
        (json!({"expires_in": 31_622_401}), "31622400"),
        (json!({"expires_in": u64::MAX}), "31622400"),
        (json!({"description": "x".repeat(257)}), "description"),
        (json!({"scopes": ["all"]}), "unknown field `scopes`"),
    ] {
        let refused = problem(t.post("/v1/api-keys", &org.key, body.clone()).await, StatusCode::BAD_REQUEST).await;
        assert!(refused["detail"].as_str().unwrap().contains(needle), "{body}: {refused}");
    }

    // Listed without secrets; the CLI's key never expires.
    let listed = json(t.get("/v1/api-keys", &org.key).await, StatusCode::OK).await;
    let keys = listed["api_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3, "{listed}");
    assert_eq!(keys[0]["expires_at"], Value::Null, "{listed}");
    assert!(keys.iter().all(|k| k.get("key").is_none() && k["live"] == true), "{listed}");
    let id = made["id"].as_i64().unwrap();

    // Another organization sees none of them and can touch none.
    let theirs = json(t.get("/v1/api-keys", &globex.key).await, StatusCode::OK).await;
    assert_eq!(theirs["api_keys"].as_array().unwrap().len(), 1);
    problem(t.post(&format!("/v1/api-keys/{id}/rotate"), &globex.key, json!({})).await, StatusCode::NOT_FOUND).await;
    problem(t.delete(&format!("/v1/api-keys/{id}"), &globex.key).await, StatusCode::NOT_FOUND).await;
    problem(t.delete("/v1/api-keys/not-a-number", &org.key).await, StatusCode::NOT_FOUND).await;
    json(t.get("/v1/namespaces", &secret).await, StatusCode::OK).await;

    // Rotated by itself: the old secret is refused from the next request on, the new one works
    // and keeps the description and the lifetime's length.
    let rotated = t.req(Method::POST, &format!("/v1/api-keys/{id}/rotate"), &secret).send().await.unwrap();
    let rotated = json(rotated, StatusCode::CREATED).await;
    let new_secret = rotated["key"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    assert_eq!(rotated["description"], "signup backend");
    assert!((3599..=3600).contains(&seconds_between(&rotated, "created_at", "expires_at")), "{rotated}");
    problem(t.get("/v1/namespaces", &secret).await, StatusCode::UNAUTHORIZED).await;
    json(t.get("/v1/namespaces", &new_secret).await, StatusCode::OK).await;
    let problem_body =
        problem(t.post(&format!("/v1/api-keys/{id}/rotate"), &org.key, json!({})).await, StatusCode::CONFLICT).await;
    assert!(problem_body["detail"].as_str().unwrap().contains("revoked"), "{problem_body}");

    // Revoked: refused at once; revoking again keeps the first moment.
    let new_id = rotated["id"].as_i64().unwrap();
    let revoke = format!("/v1/api-keys/{new_id}");
    assert_eq!(t.delete(&revoke, &org.key).await.status(), StatusCode::NO_CONTENT);
    problem(t.get("/v1/namespaces", &new_secret).await, StatusCode::UNAUTHORIZED).await;
    let revoked_at = |listed: Value| {
        let keys = listed["api_keys"].as_array().unwrap().clone();
        keys.into_iter().find(|k| k["id"] == new_id).unwrap()["revoked_at"].clone()
    };
    let first = revoked_at(json(t.get("/v1/api-keys", &org.key).await, StatusCode::OK).await);
    assert_eq!(t.delete(&revoke, &org.key).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(revoked_at(json(t.get("/v1/api-keys", &org.key).await, StatusCode::OK).await), first);

    let audit = t.raw_rows("SELECT payload FROM events WHERE kind = 'audit'", &["payload"]).await;
    for action in ["api_key.create", "api_key.rotate", "api_key.revoke"] {
        assert!(audit.iter().any(|row| row.contains(action)), "{action} not in {audit:?}");
    }
}
