//! The OpenAPI document, the docs page, probes and metrics.

use reqwest::StatusCode;
use serde_json::Value;

use crate::on_both_backends;
use crate::support::api::{spawn, Backend};

on_both_backends!(openapi_matches_committed_file, probes_and_metrics);

/// Fails when `openapi/openapi.json` is stale. Regenerate: `cargo run -- openapi > openapi/openapi.json`.
async fn openapi_matches_committed_file(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let served = t.client.get(t.url("/openapi.json")).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["content-type"], "application/json");
    let served = served.text().await.unwrap();
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
        .expect("openapi/openapi.json is committed");
    assert!(
        committed.trim_end() == served.trim_end(),
        "openapi/openapi.json differs from the served document; run: cargo run -- openapi > openapi/openapi.json"
    );

    let doc: Value = serde_json::from_str(&served).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let name = format!("{method} {path}");
            assert!(op["summary"].is_string(), "{name}: summary");
            let responses = op["responses"].as_object().unwrap();
            let success = responses.iter().find(|(code, _)| code.starts_with('2')).expect("a success response");
            let has_example = success.1["content"].as_object().is_none_or(|c| {
                c.values().all(|media| media.get("example").is_some() || media["schema"].get("$ref").is_some())
            });
            assert!(has_example, "{name}: example");
            if path.starts_with("/v1/") || path.starts_with("/api/v1/") {
                assert!(responses.contains_key("401") && responses.contains_key("429"), "{name}: error responses");
                assert!(
                    responses.keys().any(|c| ["400", "403", "404"].contains(&c.as_str())),
                    "{name}: its own errors"
                );
            }
            if let Some(body) = op.get("requestBody") {
                assert!(
                    body["content"].as_object().unwrap().values().all(|m| m.get("example").is_some()),
                    "{name}: request example"
                );
            }
        }
    }

    let redirect = t.client.get(t.url("/docs")).send().await.unwrap();
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    let page = t.client.get(t.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    let init = t.client.get(t.url("/docs/swagger-initializer.js")).send().await.unwrap();
    assert!(init.text().await.unwrap().contains("/openapi.json"), "the UI loads our document");
    t.finish().await;
}

async fn probes_and_metrics(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let health: Value = t.client.get(t.url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let ready = t.client.get(t.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    let counter = prometheus::IntCounter::new("tenscale_api_test_total", "test counter").unwrap();
    t.app.state.api.metrics.register(Box::new(counter.clone())).unwrap();
    counter.inc_by(3);
    let metrics = t.client.get(t.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(metrics.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert!(metrics.text().await.unwrap().contains("tenscale_api_test_total 3"));
    t.finish().await;
}
