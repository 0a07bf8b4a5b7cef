//! Input that the databases would treat differently, or that serde would read too kindly, is
//! refused at the edge with a 400 that says why, identically on SQLite and PostgreSQL
//! (issue 15, item 6).

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::on_both_backends;
use crate::support::api::{json, problem, spawn, Backend};

on_both_backends!(
    nul_characters_are_refused,
    bodies_are_objects,
    headscale_reads_null_as_the_default,
    wrong_methods_and_paths,
    a_stalled_body_is_timed_out
);

async fn nul_characters_are_refused(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    json(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;

    for path in [
        "/v1/namespaces/a%00b",
        "/v1/namespaces/a%00b/keys",
        "/v1/namespaces/a%00b/nodes",
        "/v1/namespaces/a%00b/policy",
        "/api/v1/node?user=a%00b",
    ] {
        let refused = t.get(path, &org.key).await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{path}");
        let body = refused.text().await.unwrap();
        assert!(body.contains("NUL character"), "{path}: {body}");
    }

    let key = problem(
        t.post_raw("/v1/namespaces/alice/keys", &org.key, r#"{"description": "a\u0000b"}"#).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(key["detail"].as_str().unwrap().contains("NUL character"), "{key}");
    // An escaped backslash before "u0000" is six characters of text, not a NUL.
    json(
        t.post_raw("/v1/namespaces/alice/keys", &org.key, r#"{"description": "a\\u0000b"}"#).await,
        StatusCode::CREATED,
    )
    .await;

    let policy = t.put_policy(&org.key, "application/hujson", "{\n  // a comment with a \0 in it\n}").await;
    let policy = problem(policy, StatusCode::BAD_REQUEST).await;
    assert!(policy["detail"].as_str().unwrap().contains("NUL character"), "{policy}");
    t.finish().await;
}

async fn bodies_are_objects(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    let refused = problem(t.post("/v1/namespaces", &org.key, json!(["x"])).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(refused["detail"], "the request body must be a JSON object");
    let listed = json(t.get("/v1/namespaces", &org.key).await, StatusCode::OK).await;
    assert_eq!(listed["namespaces"], json!([]), "nothing was created");

    json(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;
    let positional = json!([true, false, [], 3600, "positional"]);
    problem(t.post("/v1/namespaces/alice/keys", &org.key, positional).await, StatusCode::BAD_REQUEST).await;

    for (content_type, body) in [("application/json", "[]"), ("application/hujson", " [ ] ")] {
        let policy = problem(t.put_policy(&org.key, content_type, body).await, StatusCode::BAD_REQUEST).await;
        assert!(policy["detail"].as_str().unwrap().contains("a policy is a JSON object"), "{policy}");
    }
    let hs = t.req(Method::PUT, "/api/v1/policy", &org.key).json(&json!({"policy": "[]"})).send().await.unwrap();
    assert_eq!(hs.status(), StatusCode::BAD_REQUEST);
    assert!(hs.text().await.unwrap().contains("a policy is a JSON object"));
    t.finish().await;
}

async fn headscale_reads_null_as_the_default(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    let user = json(t.post("/api/v1/user", &org.key, json!({"name": "alice"})).await, StatusCode::OK).await;
    let id = user["user"]["id"].as_str().unwrap().to_string();
    let body = json!({"user": id, "reusable": null, "ephemeral": null, "expiration": null, "aclTags": null});
    let created = json(t.post("/api/v1/preauthkey", &org.key, body).await, StatusCode::OK).await;
    let key = &created["preAuthKey"];
    assert_eq!((key["reusable"].as_bool(), key["ephemeral"].as_bool()), (Some(false), Some(false)), "{created}");
    assert_eq!(key["aclTags"], json!([]));
    t.finish().await;
}

async fn wrong_methods_and_paths(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    let wrong = t.req(Method::DELETE, "/v1/namespaces", &org.key).send().await.unwrap();
    assert_eq!(wrong.headers()["allow"], "GET, POST");
    let body = problem(wrong, StatusCode::METHOD_NOT_ALLOWED).await;
    assert_eq!(body["detail"], "method not allowed; this resource takes GET, POST");

    let hs = t.req(Method::PUT, "/api/v1/node", &org.key).send().await.unwrap();
    assert_eq!(hs.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(hs.headers()["allow"], "GET");

    for path in ["/nope", "/v2/tailnet", "/v1/nope"] {
        let missing = problem(t.get(path, &org.key).await, StatusCode::NOT_FOUND).await;
        assert_eq!(missing["detail"], "no such endpoint", "{path}");
    }
    t.finish().await;
}

async fn a_stalled_body_is_timed_out(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = spawn(backend, &[("TENSCALE_BODY_TIMEOUT", "1s")]).await;
    let org = t.org("acme").await;
    let mut conn = tokio::net::TcpStream::connect(t.app.addr).await.unwrap();
    let head = format!(
        "POST /v1/namespaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"na",
        org.key
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 10 s to a body that stalled");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "answered after {:?}", started.elapsed());
    let listed = json(t.get("/v1/namespaces", &org.key).await, StatusCode::OK).await;
    assert_eq!(listed["namespaces"], json!([]), "nothing was created");
    t.finish().await;
}
