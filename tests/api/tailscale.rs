//! The Tailscale-compatible surface (`/api/v2`): a tailnet is a namespace named in the path,
//! the API key as Basic user name or Bearer token, keys in Tailscale's shape, errors as
//! `{message}`, and organization isolation. Tailscale's own Go client drives the same surface
//! in tests/apiclients.

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::api::{json, spawn, Backend};

on_both_backends!(keys_in_tailscales_shape);

/// Asserts Tailscale's error body: `{"message"}` and nothing else, with `status`.
async fn ts_error(response: Response, status: StatusCode) -> String {
    let url = response.url().clone();
    assert_eq!(response.status(), status, "status of {url}");
    let body: Value = response.json().await.expect("error body");
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{url}: {body}");
    body["message"].as_str().expect("a message").to_string()
}

async fn keys_in_tailscales_shape(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    let globex = t.org("globex").await;
    json(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;
    let policy = r#"{"tagOwners": {"tag:ci": []}, "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}"#;
    t.put_policy(&org.key, "application/json", policy).await;
    let basic = |method: Method, path: &str, key: &str| t.client.request(method, t.url(path)).basic_auth(key, Some(""));

    // Basic with the key as user name, as Tailscale's clients send it.
    let spec = json!({"capabilities": {"devices": {"create": {"reusable": true, "ephemeral": true,
        "preauthorized": false, "tags": ["tag:ci"]}}}, "expirySeconds": 3600, "description": "CI runners"});
    let made = basic(Method::POST, "/api/v2/tailnet/alice/keys", &org.key).json(&spec).send().await.unwrap();
    let made = json(made, StatusCode::OK).await;
    let secret = made["key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("tskey-auth-"), "{made}");
    assert_eq!(made["keyType"], "auth");
    assert_eq!(made["description"], "CI runners");
    assert_eq!(made["invalid"], false);
    let create = &made["capabilities"]["devices"]["create"];
    assert_eq!(create, &json!({"reusable": true, "ephemeral": true, "preauthorized": true, "tags": ["tag:ci"]}));
    let lifetime = made["expires"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap()
        - made["created"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert!((3599..=3600).contains(&lifetime.num_seconds()), "{made}");
    let id = made["id"].as_str().unwrap().to_string();

    // Listed (no secret) and read back; the same key on /v1.
    let listed = json(t.get("/api/v2/tailnet/alice/keys?all=true", &org.key).await, StatusCode::OK).await;
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1, "{listed}");
    assert!(listed["keys"][0].get("key").is_none(), "{listed}");
    let got = json(t.get(&format!("/api/v2/tailnet/alice/keys/{id}"), &org.key).await, StatusCode::OK).await;
    assert_eq!(got["id"], id.as_str());
    let v1 = json(t.get("/v1/namespaces/alice/keys", &org.key).await, StatusCode::OK).await;
    assert_eq!(v1["keys"][0]["id"].to_string(), id, "{v1}");

    // Refusals: `-`, another organization's or a missing tailnet, a tag the policy does not
    // own, another key type, a wrong credential.
    let message = ts_error(t.get("/api/v2/tailnet/-/keys", &org.key).await, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("name the tailnet"), "{message}");
    ts_error(t.get("/api/v2/tailnet/alice/keys", &globex.key).await, StatusCode::NOT_FOUND).await;
    ts_error(t.get(&format!("/api/v2/tailnet/alice/keys/{id}"), &globex.key).await, StatusCode::NOT_FOUND).await;
    ts_error(t.get("/api/v2/tailnet/bob/keys", &org.key).await, StatusCode::NOT_FOUND).await;
    ts_error(t.get("/api/v2/tailnet/alice/keys/999999", &org.key).await, StatusCode::NOT_FOUND).await;
    let untagged = json!({"capabilities": {"devices": {"create": {"tags": ["tag:prod"]}}}});
    let message =
        ts_error(t.post("/api/v2/tailnet/alice/keys", &org.key, untagged).await, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("tag:prod"), "{message}");
    let client = json!({"keyType": "client", "scopes": ["all"]});
    let message = ts_error(t.post("/api/v2/tailnet/alice/keys", &org.key, client).await, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("keyType"), "{message}");
    let wrong = basic(Method::GET, "/api/v2/tailnet/alice/keys", "tskey-api-wrong").send().await.unwrap();
    ts_error(wrong, StatusCode::UNAUTHORIZED).await;
    let with_password = t.client.get(t.url("/api/v2/tailnet/alice/keys")).basic_auth(&org.key, Some("secret"));
    let message = ts_error(with_password.send().await.unwrap(), StatusCode::UNAUTHORIZED).await;
    assert!(message.contains("empty password"), "{message}");
    ts_error(t.get("/api/v2/tailnet/alice/devices", &org.key).await, StatusCode::NOT_FOUND).await;

    // No expiry: 90 days, within the server's maximum.
    let default = json(t.post("/api/v2/tailnet/alice/keys", &org.key, json!({})).await, StatusCode::OK).await;
    let lifetime = default["expires"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap()
        - default["created"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert!((90 * 86400 - 1..=90 * 86400).contains(&lifetime.num_seconds()), "{default}");

    // Deleted: revoked, no longer listed, still readable as invalid; its secret registers nothing.
    let deleted = t.req(Method::DELETE, &format!("/api/v2/tailnet/alice/keys/{id}"), &org.key).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let listed = json(t.get("/api/v2/tailnet/alice/keys", &org.key).await, StatusCode::OK).await;
    assert!(listed["keys"].as_array().unwrap().iter().all(|k| k["id"] != id.as_str()), "{listed}");
    let got = json(t.get(&format!("/api/v2/tailnet/alice/keys/{id}"), &org.key).await, StatusCode::OK).await;
    assert_eq!(got["invalid"], true, "{got}");
    assert!(got["revoked"].is_string(), "{got}");
    let audit = t.raw_rows("SELECT payload FROM events WHERE kind = 'audit'", &["payload"]).await;
    assert!(audit.iter().any(|row| row.contains("preauth_key.revoke")), "{audit:?}");
}
