//! Authentication, rate limits, the body limit, and secrets kept only as digests.

use std::net::IpAddr;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::on_both_backends;
use crate::support::api::{client_from, json, problem, spawn, Backend};

on_both_backends!(authentication, rate_limits, body_limit, secrets_stored_hashed, metrics_token);

async fn authentication(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    let no_header = t.client.get(t.url("/v1/namespaces")).send().await.unwrap();
    assert_eq!(no_header.headers()["www-authenticate"], "Bearer");
    let body = problem(no_header, StatusCode::UNAUTHORIZED).await;
    assert_eq!(body["type"], "urn:tenscale:problem:unauthorized");

    let wrong_secret = format!("tskey-api-{}", "0".repeat(48));
    for key in [wrong_secret.as_str(), "tskey-auth-123", "nonsense"] {
        problem(t.get("/v1/namespaces", key).await, StatusCode::UNAUTHORIZED).await;
    }
    let basic = t.client.get(t.url("/v1/namespaces")).basic_auth("u", Some("p")).send().await.unwrap();
    problem(basic, StatusCode::UNAUTHORIZED).await;
    // Refused before the body is looked at, and nothing is created.
    let unauth_post = t.client.post(t.url("/v1/namespaces")).json(&json!({"name": "x"})).send().await.unwrap();
    problem(unauth_post, StatusCode::UNAUTHORIZED).await;
    let unknown_path = t.client.get(t.url("/v1/nothing")).send().await.unwrap();
    problem(unknown_path, StatusCode::UNAUTHORIZED).await;

    json(t.get("/v1/namespaces", &org.key).await, StatusCode::OK).await;
    // A revoked key stops working at once.
    let key_id = t.app.state.api.store.list_api_keys(org.id).await.unwrap()[0].id;
    t.app.state.api.writer.revoke_api_key(org.id, key_id, None).await.unwrap();
    problem(t.get("/v1/namespaces", &org.key).await, StatusCode::UNAUTHORIZED).await;
    assert!(t.app.state.api.store.list_namespaces(org.id, None, 10).await.unwrap().is_empty());
    t.finish().await;
}

async fn rate_limits(backend: Backend) {
    let limits = [("TENSCALE_RATE_LIMIT_PER_SECOND", "1"), ("TENSCALE_RATE_LIMIT_BURST", "3")];
    let t = spawn(backend, &limits).await;
    let one = t.org("org-one").await;
    let two = t.org("org-two").await;
    let from = |ip: &str| client_from(Some(ip.parse::<IpAddr>().unwrap()));
    let get = |client: reqwest::Client, key: String| {
        let url = t.url("/v1/namespaces");
        async move { client.get(url).bearer_auth(key).send().await.unwrap() }
    };

    // Per address: the burst passes, the next request is refused with Retry-After.
    let first = from("127.0.0.1");
    for _ in 0..3 {
        assert_eq!(get(first.clone(), one.key.clone()).await.status(), StatusCode::OK);
    }
    let refused = get(first.clone(), one.key.clone()).await;
    let retry: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let body = problem(refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["type"], "urn:tenscale:problem:rate-limited");

    // Per key: the same key from a fresh address is still out of tokens; another key is not.
    problem(get(from("127.0.0.2"), one.key.clone()).await, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(get(from("127.0.0.3"), two.key.clone()).await.status(), StatusCode::OK);

    // Unauthenticated guessing is limited per address before the key is checked.
    let guesser = from("127.0.0.4");
    for _ in 0..3 {
        assert_eq!(get(guesser.clone(), "tskey-api-guess".into()).await.status(), StatusCode::UNAUTHORIZED);
    }
    problem(get(guesser, "tskey-api-guess".into()).await, StatusCode::TOO_MANY_REQUESTS).await;

    // Probes are not limited.
    for _ in 0..5 {
        assert_eq!(first.get(t.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
    }
    t.finish().await;
}

async fn body_limit(backend: Backend) {
    let t = spawn(backend, &[("TENSCALE_BODY_LIMIT_BYTES", "1024")]).await;
    let org = t.org("acme").await;
    let big = json!({"name": "x".repeat(2000)});
    let refused = problem(t.post("/v1/namespaces", &org.key, big).await, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(refused["detail"].as_str().unwrap().contains("1024"), "{refused}");
    json(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;

    let description = "d".repeat(1100);
    let key = t.post("/v1/namespaces/alice/keys", &org.key, json!({"description": description})).await;
    problem(key, StatusCode::PAYLOAD_TOO_LARGE).await;
    let policy = format!("{{\"acls\": []}} // {}", "c".repeat(1100));
    problem(t.put_policy(&org.key, "application/hujson", &policy).await, StatusCode::PAYLOAD_TOO_LARGE).await;
    let patch = t.req(Method::PATCH, "/v1/namespaces/alice/nodes/1", &org.key).json(&json!({"name": "n".repeat(1100)}));
    problem(patch.send().await.unwrap(), StatusCode::PAYLOAD_TOO_LARGE).await;
    t.finish().await;
}

async fn secrets_stored_hashed(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    json(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;
    let created = json(t.post("/v1/namespaces/alice/keys", &org.key, json!({})).await, StatusCode::CREATED).await;
    let auth_key = created["key"].as_str().unwrap().to_string();

    let api_rows =
        t.raw_rows("SELECT prefix, hash, description FROM api_keys", &["prefix", "hash", "description"]).await;
    let auth_rows = t
        .raw_rows(
            "SELECT prefix, hash, description, tags FROM preauth_keys",
            &["prefix", "hash", "description", "tags"],
        )
        .await;
    assert_eq!((api_rows.len(), auth_rows.len()), (1, 1));
    for (secret, rows, kind) in [(&org.key, &api_rows, "tskey-api-"), (&auth_key, &auth_rows, "tskey-auth-")] {
        let body = &secret[kind.len()..];
        assert_eq!(body.len(), 48);
        for row in rows {
            assert!(!row.contains(secret.as_str()) && !row.contains(body), "{kind} secret stored in clear: {row}");
            let hash = row.split('|').nth(1).unwrap();
            assert_eq!(hash.len(), 64, "a SHA-256 hex digest: {row}");
            assert!(row.starts_with(&secret[..kind.len() + 8]), "the prefix is kept for display: {row}");
        }
    }
    // The stored digest still authenticates the key.
    json(t.get("/v1/namespaces", &org.key).await, StatusCode::OK).await;
    t.finish().await;
}

/// `/metrics` is open by default; with `TENSCALE_METRICS_TOKEN` set it wants that token as a
/// bearer, and an API key does not stand in for it.
async fn metrics_token(backend: Backend) {
    let open = spawn(backend, &[]).await;
    let answer = open.client.get(open.url("/metrics")).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    open.finish().await;

    let token = "m3trics-t0ken-for-the-scraper";
    let t = spawn(backend, &[("TENSCALE_METRICS_TOKEN", token)]).await;
    let org = t.org("acme").await;
    let metrics = |auth: Option<String>| {
        let mut request = t.client.get(t.url("/metrics"));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send()
    };
    for refused in
        [None, Some(format!("Bearer {token}x")), Some(token.to_string()), Some(format!("Bearer {}", org.key))]
    {
        let body = problem(metrics(refused.clone()).await.unwrap(), StatusCode::UNAUTHORIZED).await;
        assert!(body["detail"].as_str().unwrap().contains("metrics token"), "{refused:?}: {body}");
    }
    let answer = metrics(Some(format!("Bearer {token}"))).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(answer.text().await.unwrap().contains("tenscale_front_connections"));
    t.finish().await;
}
