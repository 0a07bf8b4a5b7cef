//! The Headscale-compatible surface (`/api/v1`): Headscale's JSON field names, every
//! endpoint's success and failure, gRPC-gateway errors, and organization isolation.

use chrono::SubsecRound;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use tenscale::domain::NodeId;

use crate::on_both_backends;
use crate::support::api::{json, spawn, Backend, Org, TestApp};

on_both_backends!(
    users,
    preauth_keys,
    nodes,
    policy,
    errors_and_isolation,
    ids_are_decimal_digits,
    health_check_and_key_deletion,
    api_keys
);

/// Asserts a gRPC-gateway error `{code, message, details}` with `status` and gRPC `code`.
async fn rpc_error(response: Response, status: StatusCode, code: i64) -> Value {
    let url = response.url().clone();
    assert_eq!(response.status(), status, "status of {url}");
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert_eq!(content_type, "application/json", "{url}");
    let body: Value = response.json().await.expect("error body");
    assert_eq!(body["code"], code, "{url}: {body}");
    assert!(body["message"].is_string(), "{url}: {body}");
    assert_eq!(body["details"], json!([]), "{url}: {body}");
    assert_eq!(body.as_object().unwrap().len(), 3, "{url}: {body}");
    body
}

fn keys_of(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value.as_object().expect("an object").keys().map(String::as_str).collect();
    keys.sort();
    keys
}

async fn audit_actions(t: &TestApp, org: &Org) -> Vec<String> {
    t.app.state.api.store.audit_events(org.id, 100).await.unwrap().into_iter().map(|e| e.action).collect()
}

async fn post_empty(t: &TestApp, path: &str, key: &str) -> Response {
    t.req(Method::POST, path, key).send().await.unwrap()
}

async fn create_user(t: &TestApp, org: &Org, name: &str) -> Value {
    let created = json(t.post("/api/v1/user", &org.key, json!({"name": name})).await, StatusCode::OK).await;
    created["user"].clone()
}

async fn users(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    let alice = create_user(&t, &org, "alice").await;
    assert_eq!(
        keys_of(&alice),
        ["createdAt", "displayName", "email", "id", "name", "profilePicUrl", "provider", "providerId"]
    );
    assert_eq!(alice["name"], "alice");
    let id = alice["id"].as_str().expect("uint64 ids are text");
    let ns = t.app.state.api.store.namespace_by_name(org.id, "alice").await.unwrap();
    assert_eq!(id, ns.id.to_string(), "a user is a namespace");
    alice["createdAt"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().expect("RFC 3339");
    // Headscale's optional fields are accepted.
    create_user(&t, &org, "bob").await;
    json(
        t.post("/api/v1/user", &org.key, json!({"name": "carol", "displayName": "Carol", "email": "c@x"})).await,
        StatusCode::OK,
    )
    .await;

    let list = json(t.get("/api/v1/user", &org.key).await, StatusCode::OK).await;
    let names: Vec<&str> = list["users"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "bob", "carol"]);
    let one = json(t.get("/api/v1/user?name=bob", &org.key).await, StatusCode::OK).await;
    assert_eq!(one["users"].as_array().unwrap().len(), 1);
    assert_eq!(one["users"][0]["name"], "bob");
    let by_id = json(t.get(&format!("/api/v1/user?id={id}"), &org.key).await, StatusCode::OK).await;
    assert_eq!(by_id["users"][0]["name"], "alice");
    let none = json(t.get("/api/v1/user?name=nobody", &org.key).await, StatusCode::OK).await;
    assert_eq!(none, json!({"users": []}));

    rpc_error(t.post("/api/v1/user", &org.key, json!({"name": "alice"})).await, StatusCode::CONFLICT, 6).await;
    rpc_error(t.post("/api/v1/user", &org.key, json!({"name": "Bad Name"})).await, StatusCode::BAD_REQUEST, 3).await;
    rpc_error(t.post("/api/v1/user", &org.key, json!({})).await, StatusCode::BAD_REQUEST, 3).await;
    rpc_error(t.post_raw("/api/v1/user", &org.key, "{nope").await, StatusCode::BAD_REQUEST, 3).await;

    let rename = format!("/api/v1/user/{id}/rename/alicia");
    let refused = rpc_error(post_empty(&t, &rename, &org.key).await, StatusCode::NOT_IMPLEMENTED, 12).await;
    assert!(refused["message"].as_str().unwrap().contains("cannot be renamed"), "{refused}");
    rpc_error(post_empty(&t, "/api/v1/user/999999/rename/x", &org.key).await, StatusCode::NOT_FOUND, 5).await;

    let deleted = json(t.delete(&format!("/api/v1/user/{id}"), &org.key).await, StatusCode::OK).await;
    assert_eq!(deleted, json!({}));
    assert!(t.app.state.api.store.namespace_by_name(org.id, "alice").await.is_err());
    rpc_error(t.delete(&format!("/api/v1/user/{id}"), &org.key).await, StatusCode::NOT_FOUND, 5).await;
    rpc_error(t.delete("/api/v1/user/alice", &org.key).await, StatusCode::BAD_REQUEST, 3).await;

    let actions = audit_actions(&t, &org).await;
    assert_eq!(actions.iter().filter(|a| *a == "namespace.create").count(), 3, "{actions:?}");
    assert_eq!(actions.iter().filter(|a| *a == "namespace.delete").count(), 1, "{actions:?}");
    t.finish().await;
}

async fn preauth_keys(backend: Backend) {
    let t = spawn(backend, &[("TENSCALE_MAX_KEY_EXPIRY", "1d")]).await;
    let org = t.org("acme").await;
    let user = create_user(&t, &org, "alice").await;
    let id = user["id"].as_str().unwrap().to_string();
    let expiration = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();

    let spec =
        json!({"user": id, "reusable": true, "ephemeral": true, "expiration": expiration, "aclTags": ["tag:ci"]});
    let created = json(t.post("/api/v1/preauthkey", &org.key, spec).await, StatusCode::OK).await;
    let key = &created["preAuthKey"];
    assert_eq!(
        keys_of(key),
        ["aclTags", "createdAt", "ephemeral", "expiration", "id", "key", "reusable", "used", "user"]
    );
    let secret = key["key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("tskey-auth-") && secret.len() == "tskey-auth-".len() + 48, "{secret}");
    assert_eq!(key["user"]["name"], "alice");
    assert!(key["id"].is_string());
    assert_eq!(
        (key["reusable"].clone(), key["ephemeral"].clone(), key["used"].clone()),
        (json!(true), json!(true), json!(false))
    );
    assert_eq!(key["aclTags"], json!(["tag:ci"]));
    let kept = key["expiration"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    let sent = expiration.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert_eq!(kept, sent.trunc_subsecs(6), "the expiration is kept as sent (to the microsecond stored)");
    let lifetime = kept - chrono::Utc::now();
    assert!((7100..=7200).contains(&lifetime.num_seconds()), "{lifetime}");
    // Numeric user ids, proto field names and defaults (one hour, single use) work too.
    let plain = json(
        t.post("/api/v1/preauthkey", &org.key, json!({"user": id.parse::<i64>().unwrap(), "acl_tags": []})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(plain["preAuthKey"]["reusable"], false);
    let second = plain["preAuthKey"]["key"].as_str().unwrap().to_string();

    // Validation is /v1's.
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let far = (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339();
    for body in [
        json!({"user": id, "aclTags": ["ci"]}),
        json!({"user": id, "aclTags": ["tag:CI"]}),
        json!({"user": id, "expiration": past}),
        json!({"user": id, "expiration": far}),
        json!({"user": id, "expiration": "tomorrow"}),
        json!({"user": "abc"}),
        json!({"reusable": true}),
    ] {
        rpc_error(t.post("/api/v1/preauthkey", &org.key, body).await, StatusCode::BAD_REQUEST, 3).await;
    }
    rpc_error(t.post("/api/v1/preauthkey", &org.key, json!({"user": "999999"})).await, StatusCode::NOT_FOUND, 5).await;
    assert_eq!(
        t.put_policy(&org.key, "application/hujson", r#"{"tagOwners": {"tag:ci": []}}"#).await.status(),
        StatusCode::OK
    );
    let refused = rpc_error(
        t.post("/api/v1/preauthkey", &org.key, json!({"user": id, "aclTags": ["tag:web"]})).await,
        StatusCode::BAD_REQUEST,
        3,
    )
    .await;
    assert!(refused["message"].as_str().unwrap().contains("tagOwners"), "{refused}");

    // Listing shows prefixes, never secrets.
    let response = t.get(&format!("/api/v1/preauthkey?user={id}"), &org.key).await;
    let text = response.text().await.unwrap();
    assert!(!text.contains(&secret) && !text.contains(&second), "listing leaks a secret");
    let list: Value = serde_json::from_str(&text).unwrap();
    let keys = list["preAuthKeys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(secret.starts_with(keys[0]["key"].as_str().unwrap()));
    rpc_error(t.get("/api/v1/preauthkey", &org.key).await, StatusCode::BAD_REQUEST, 3).await;
    rpc_error(t.get("/api/v1/preauthkey?user=999999", &org.key).await, StatusCode::NOT_FOUND, 5).await;

    // Expire by secret, and by the listed prefix.
    let expired =
        json(t.post("/api/v1/preauthkey/expire", &org.key, json!({"user": id, "key": secret})).await, StatusCode::OK)
            .await;
    assert_eq!(expired, json!({}));
    let stored = t.app.state.api.store.preauth_key_by_secret(&secret).await.unwrap().unwrap();
    assert!(stored.usable_at(chrono::Utc::now()).is_err());
    let prefix = keys[1]["key"].as_str().unwrap();
    json(t.post("/api/v1/preauthkey/expire", &org.key, json!({"user": id, "key": prefix})).await, StatusCode::OK).await;
    let list = json(t.get(&format!("/api/v1/preauthkey?user={id}"), &org.key).await, StatusCode::OK).await;
    for key in list["preAuthKeys"].as_array().unwrap() {
        let expiration = key["expiration"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        assert!(expiration <= chrono::Utc::now(), "{key}");
    }
    for body in [json!({"user": id, "key": "tskey-auth-nope"}), json!({"user": "999999", "key": secret})] {
        rpc_error(t.post("/api/v1/preauthkey/expire", &org.key, body).await, StatusCode::NOT_FOUND, 5).await;
    }
    rpc_error(t.post("/api/v1/preauthkey/expire", &org.key, json!({"user": id})).await, StatusCode::BAD_REQUEST, 3)
        .await;

    let actions = audit_actions(&t, &org).await;
    assert_eq!(actions.iter().filter(|a| *a == "preauth_key.create").count(), 2, "{actions:?}");
    assert_eq!(actions.iter().filter(|a| *a == "preauth_key.revoke").count(), 2, "{actions:?}");
    t.finish().await;
}

/// User "alice" with nodes "laptop" (tagged by its key) and "phone"; returns their ids.
async fn two_nodes(t: &TestApp, org: &Org) -> (NodeId, NodeId) {
    let user = create_user(t, org, "alice").await;
    let spec = json!({"user": user["id"], "reusable": true, "aclTags": ["tag:ci"]});
    let key = json(t.post("/api/v1/preauthkey", &org.key, spec).await, StatusCode::OK).await;
    let secret = key["preAuthKey"]["key"].as_str().unwrap();
    let ns = t.app.state.api.store.namespace_by_name(org.id, "alice").await.unwrap();
    let a = t.register_node(ns.id, secret, "Laptop").await;
    let b = t.register_node(ns.id, secret, "phone").await;
    (a.id, b.id)
}

async fn nodes(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    let (a, b) = two_nodes(&t, &org).await;
    create_user(&t, &org, "empty").await;

    let list = json(t.get("/api/v1/node", &org.key).await, StatusCode::OK).await;
    let nodes = list["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    let laptop = &nodes[0];
    assert_eq!(
        keys_of(laptop),
        [
            "approvedRoutes",
            "availableRoutes",
            "createdAt",
            "discoKey",
            "expiry",
            "forcedTags",
            "givenName",
            "id",
            "invalidTags",
            "ipAddresses",
            "lastSeen",
            "machineKey",
            "name",
            "nodeKey",
            "online",
            "preAuthKey",
            "registerMethod",
            "subnetRoutes",
            "tags",
            "user",
            "validTags"
        ]
    );
    assert_eq!(laptop["id"], a.to_string());
    assert_eq!(laptop["name"], "Laptop");
    assert_eq!(laptop["givenName"], "laptop");
    assert_eq!(laptop["user"]["name"], "alice");
    assert_eq!(laptop["ipAddresses"], json!(["100.64.0.1", "fd7a:115c:a1e0::1"]));
    assert_eq!(laptop["validTags"], json!(["tag:ci"]));
    assert_eq!(laptop["forcedTags"], json!(["tag:ci"]));
    assert_eq!(laptop["online"], false);
    assert_eq!(laptop["registerMethod"], "REGISTER_METHOD_AUTH_KEY");
    assert!(laptop["nodeKey"].as_str().unwrap().starts_with("nodekey:"));
    assert!(laptop["machineKey"].as_str().unwrap().starts_with("mkey:"));
    assert_eq!(laptop["preAuthKey"]["aclTags"], json!(["tag:ci"]));
    assert_eq!(laptop["preAuthKey"]["used"], true);

    let only = json(t.get("/api/v1/node?user=alice", &org.key).await, StatusCode::OK).await;
    assert_eq!(only["nodes"].as_array().unwrap().len(), 2);
    let empty = json(t.get("/api/v1/node?user=empty", &org.key).await, StatusCode::OK).await;
    assert_eq!(empty, json!({"nodes": []}));
    rpc_error(t.get("/api/v1/node?user=nobody", &org.key).await, StatusCode::NOT_FOUND, 5).await;

    let one = json(t.get(&format!("/api/v1/node/{b}"), &org.key).await, StatusCode::OK).await;
    assert_eq!(one["node"], nodes[1]);
    rpc_error(t.get("/api/v1/node/999999", &org.key).await, StatusCode::NOT_FOUND, 5).await;
    rpc_error(t.get("/api/v1/node/laptop", &org.key).await, StatusCode::BAD_REQUEST, 3).await;

    // Rename.
    let renamed =
        json(post_empty(&t, &format!("/api/v1/node/{a}/rename/build-box"), &org.key).await, StatusCode::OK).await;
    assert_eq!(renamed["node"]["givenName"], "build-box");
    assert_eq!(t.app.state.api.store.node_by_id(a).await.unwrap().given_name.as_str(), "build-box");
    rpc_error(post_empty(&t, &format!("/api/v1/node/{a}/rename/phone"), &org.key).await, StatusCode::CONFLICT, 6).await;
    rpc_error(post_empty(&t, &format!("/api/v1/node/{a}/rename/Bad_Name"), &org.key).await, StatusCode::BAD_REQUEST, 3)
        .await;
    rpc_error(post_empty(&t, "/api/v1/node/999999/rename/x", &org.key).await, StatusCode::NOT_FOUND, 5).await;

    // Tags (a body may repeat the node id, as gRPC-gateway clients send it).
    let tags = format!("/api/v1/node/{a}/tags");
    let tagged = json(
        t.post(&tags, &org.key, json!({"nodeId": a.to_string(), "tags": ["tag:web", "tag:a"]})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(tagged["node"]["tags"], json!(["tag:a", "tag:web"]));
    assert_eq!(tagged["node"]["validTags"], json!(["tag:a", "tag:web"]));
    rpc_error(t.post(&tags, &org.key, json!({"tags": ["web"]})).await, StatusCode::BAD_REQUEST, 3).await;
    assert_eq!(
        t.put_policy(&org.key, "application/hujson", r#"{"tagOwners": {"tag:ci": []}}"#).await.status(),
        StatusCode::OK
    );
    rpc_error(t.post(&tags, &org.key, json!({"tags": ["tag:web"]})).await, StatusCode::BAD_REQUEST, 3).await;
    let cleared = json(t.post(&tags, &org.key, json!({"tags": []})).await, StatusCode::OK).await;
    assert_eq!(cleared["node"]["tags"], json!([]));
    rpc_error(t.post("/api/v1/node/999999/tags", &org.key, json!({"tags": []})).await, StatusCode::NOT_FOUND, 5).await;

    // Expire.
    let expired = json(post_empty(&t, &format!("/api/v1/node/{a}/expire"), &org.key).await, StatusCode::OK).await;
    let expiry = expired["node"]["expiry"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert!(expiry <= chrono::Utc::now());
    assert!(t.app.state.api.store.node_by_id(a).await.unwrap().expired_at(chrono::Utc::now()));
    rpc_error(post_empty(&t, "/api/v1/node/999999/expire", &org.key).await, StatusCode::NOT_FOUND, 5).await;
    rpc_error(t.get(&format!("/api/v1/node/{a}/expire"), &org.key).await, StatusCode::METHOD_NOT_ALLOWED, 12).await;

    // Delete.
    assert_eq!(json(t.delete(&format!("/api/v1/node/{a}"), &org.key).await, StatusCode::OK).await, json!({}));
    assert!(t.app.state.api.store.node_by_id(a).await.is_err());
    rpc_error(t.delete(&format!("/api/v1/node/{a}"), &org.key).await, StatusCode::NOT_FOUND, 5).await;

    let actions = audit_actions(&t, &org).await;
    for (action, count) in [("node.update", 3), ("node.expire", 1), ("node.delete", 1)] {
        assert_eq!(actions.iter().filter(|a| *a == action).count(), count, "{action}: {actions:?}");
    }
    t.finish().await;
}

async fn policy(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    rpc_error(t.get("/api/v1/policy", &org.key).await, StatusCode::NOT_FOUND, 5).await;

    let text = "{\n  // everyone\n  \"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}],\n}\n";
    let put = t.req(Method::PUT, "/api/v1/policy", &org.key).json(&json!({"policy": text})).send().await.unwrap();
    let saved = json(put, StatusCode::OK).await;
    assert_eq!(keys_of(&saved), ["policy", "updatedAt"]);
    assert_eq!(saved["policy"], text);
    saved["updatedAt"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().expect("RFC 3339");
    let got = json(t.get("/api/v1/policy", &org.key).await, StatusCode::OK).await;
    assert_eq!(got, saved);
    // It is the organization policy of /v1.
    assert_eq!(t.get("/v1/policy", &org.key).await.text().await.unwrap(), text);

    for bad in ["{\"acls\": [,]}", "{\"bogus\": 1}", ""] {
        let put = t.req(Method::PUT, "/api/v1/policy", &org.key).json(&json!({"policy": bad})).send().await.unwrap();
        let refused = rpc_error(put, StatusCode::BAD_REQUEST, 3).await;
        assert!(refused["message"].as_str().unwrap().contains("invalid"), "{refused}");
    }
    let wrong_type = t
        .req(Method::PUT, "/api/v1/policy", &org.key)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    rpc_error(wrong_type, StatusCode::UNSUPPORTED_MEDIA_TYPE, 3).await;
    rpc_error(t.delete("/api/v1/policy", &org.key).await, StatusCode::METHOD_NOT_ALLOWED, 12).await;
    assert_eq!(
        json(t.get("/api/v1/policy", &org.key).await, StatusCode::OK).await,
        saved,
        "refused documents change nothing"
    );
    let actions = audit_actions(&t, &org).await;
    assert_eq!(actions.iter().filter(|a| *a == "policy.update").count(), 1, "{actions:?}");
    t.finish().await;
}

async fn errors_and_isolation(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let a = t.org("org-a").await;
    let b = t.org("org-b").await;

    // Authentication, in the gRPC-gateway shape.
    let anonymous = t.client.get(t.url("/api/v1/user")).send().await.unwrap();
    rpc_error(anonymous, StatusCode::UNAUTHORIZED, 16).await;
    rpc_error(t.get("/api/v1/user", "tskey-api-bogus").await, StatusCode::UNAUTHORIZED, 16).await;
    rpc_error(t.get("/api/v1/nothing", &a.key).await, StatusCode::NOT_FOUND, 5).await;

    // B: a user with a key and a node, and a policy.
    let (b_node, _) = two_nodes(&t, &b).await;
    let b_user = t.app.state.api.store.namespace_by_name(b.id, "alice").await.unwrap().id;
    let b_keys = json(t.get(&format!("/api/v1/preauthkey?user={b_user}"), &b.key).await, StatusCode::OK).await;
    let b_prefix = b_keys["preAuthKeys"][0]["key"].as_str().unwrap().to_string();
    let b_policy = json!({"policy": "{\"acls\": []}"});
    json(t.req(Method::PUT, "/api/v1/policy", &b.key).json(&b_policy).send().await.unwrap(), StatusCode::OK).await;
    // A: its own user of the same name.
    let a_user = create_user(&t, &a, "alice").await;

    assert_eq!(json(t.get("/api/v1/node", &a.key).await, StatusCode::OK).await, json!({"nodes": []}));
    let a_users = json(t.get("/api/v1/user", &a.key).await, StatusCode::OK).await;
    assert_eq!(a_users["users"].as_array().unwrap().len(), 1);
    assert_eq!(a_users["users"][0]["id"], a_user["id"]);
    let a_keys = json(
        t.get(&format!("/api/v1/preauthkey?user={}", a_user["id"].as_str().unwrap()), &a.key).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(a_keys, json!({"preAuthKeys": []}));
    rpc_error(t.get("/api/v1/policy", &a.key).await, StatusCode::NOT_FOUND, 5).await;

    let requests = [
        (Method::GET, format!("/api/v1/user?id={b_user}"), None),
        (Method::GET, format!("/api/v1/preauthkey?user={b_user}"), None),
        (Method::POST, "/api/v1/preauthkey".to_string(), Some(json!({"user": b_user.to_string()}))),
        (
            Method::POST,
            "/api/v1/preauthkey/expire".to_string(),
            Some(json!({"user": b_user.to_string(), "key": b_prefix})),
        ),
        (Method::POST, "/api/v1/preauthkey/expire".to_string(), Some(json!({"user": a_user["id"], "key": b_prefix}))),
        (Method::GET, format!("/api/v1/node/{b_node}"), None),
        (Method::POST, format!("/api/v1/node/{b_node}/expire"), None),
        (Method::POST, format!("/api/v1/node/{b_node}/rename/pwned"), None),
        (Method::POST, format!("/api/v1/node/{b_node}/tags"), Some(json!({"tags": []}))),
        (Method::DELETE, format!("/api/v1/node/{b_node}"), None),
        (Method::POST, format!("/api/v1/user/{b_user}/rename/pwned"), None),
        (Method::DELETE, format!("/api/v1/user/{b_user}"), None),
    ];
    for (method, path, body) in requests {
        let mut request = t.req(method.clone(), &path, &a.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        if path.starts_with("/api/v1/user?") {
            assert_eq!(json(response, StatusCode::OK).await, json!({"users": []}), "{method} {path}");
        } else {
            rpc_error(response, StatusCode::NOT_FOUND, 5).await;
        }
    }

    // B sees everything as it left it.
    let node = json(t.get(&format!("/api/v1/node/{b_node}"), &b.key).await, StatusCode::OK).await;
    assert_eq!(node["node"]["givenName"], "laptop");
    assert!(node["node"]["expiry"].is_null());
    assert_eq!(node["node"]["tags"], json!(["tag:ci"]));
    let keys = json(t.get(&format!("/api/v1/preauthkey?user={b_user}"), &b.key).await, StatusCode::OK).await;
    let expiration =
        keys["preAuthKeys"][0]["expiration"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert!(expiration > chrono::Utc::now(), "B's key still works");
    assert_eq!(json(t.get("/api/v1/policy", &b.key).await, StatusCode::OK).await["policy"], "{\"acls\": []}");
    let a_events = t.app.state.api.store.audit_events(a.id, 100).await.unwrap();
    assert!(a_events.iter().all(|e| e.object_id != b_node.to_string()));
    t.finish().await;
}

/// A uint64 id is decimal digits, the document's pattern (issue 15, item 6): other text is a
/// 400 (schemathesis found `POST /api/v1/user/{old_id}/rename/…` answering it undocumented),
/// and digits that no row can have are a missing object, not a malformed one.
async fn ids_are_decimal_digits(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    let alice = create_user(&t, &org, "alice").await;
    let id = alice["id"].as_str().unwrap().to_string();

    for malformed in ["abc", "%201", "+1", "-1", "1.0", "0x1"] {
        let path = format!("/api/v1/user/{malformed}/rename/bob");
        rpc_error(post_empty(&t, &path, &org.key).await, StatusCode::BAD_REQUEST, 3).await;
        rpc_error(t.get(&format!("/api/v1/node/{malformed}"), &org.key).await, StatusCode::BAD_REQUEST, 3).await;
        let listed = t.get(&format!("/api/v1/preauthkey?user={malformed}"), &org.key).await;
        rpc_error(listed, StatusCode::BAD_REQUEST, 3).await;
    }
    // Past i64 (our row ids) and past u64: well-formed, and nothing has them.
    for beyond in ["9223372036854775808", "99999999999999999999"] {
        rpc_error(t.delete(&format!("/api/v1/user/{beyond}"), &org.key).await, StatusCode::NOT_FOUND, 5).await;
        rpc_error(t.get(&format!("/api/v1/node/{beyond}"), &org.key).await, StatusCode::NOT_FOUND, 5).await;
        let none = json(t.get(&format!("/api/v1/user?id={beyond}"), &org.key).await, StatusCode::OK).await;
        assert_eq!(none, json!({"users": []}));
        let body = json!({"user": beyond, "key": "tskey-auth-x"});
        rpc_error(t.post("/api/v1/preauthkey/expire", &org.key, body).await, StatusCode::NOT_FOUND, 5).await;
    }
    // In a body, protobuf JSON's number forms name the same user: 7, 7.0 (JSON Schema's integer).
    let number: i64 = id.parse().unwrap();
    for user in [json!(number), json!(number as f64)] {
        json(t.post("/api/v1/preauthkey", &org.key, json!({"user": user})).await, StatusCode::OK).await;
    }
    for user in [json!(-1), json!(1.5), json!(true), json!("a1")] {
        rpc_error(t.post("/api/v1/preauthkey", &org.key, json!({"user": user})).await, StatusCode::BAD_REQUEST, 3)
            .await;
    }
    t.finish().await;
}

/// `GET /api/v1/health`, `POST /api/v1/policy/check` (checks, saves nothing) and
/// `DELETE /api/v1/preauthkey` (gone from listings, unlike an expired key; only the user's).
async fn health_check_and_key_deletion(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    let health = json(t.get("/api/v1/health", &org.key).await, StatusCode::OK).await;
    assert_eq!(health, json!({"databaseConnectivity": true}));
    rpc_error(t.get("/api/v1/health", "tskey-api-wrong").await, StatusCode::UNAUTHORIZED, 16).await;

    let valid = r#"{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}"#;
    let checked = json(t.post("/api/v1/policy/check", &org.key, json!({"policy": valid})).await, StatusCode::OK).await;
    assert_eq!(checked, json!({}));
    let refused = rpc_error(
        t.post("/api/v1/policy/check", &org.key, json!({"policy": "{\"acls\": [,]}"})).await,
        StatusCode::BAD_REQUEST,
        3,
    )
    .await;
    assert!(refused["message"].as_str().unwrap().contains("line 1"), "{refused}");
    rpc_error(t.get("/api/v1/policy", &org.key).await, StatusCode::NOT_FOUND, 5).await; // nothing was saved

    let alice = create_user(&t, &org, "alice").await["id"].as_str().unwrap().to_string();
    let bob = create_user(&t, &org, "bob").await["id"].as_str().unwrap().to_string();
    let created = json(t.post("/api/v1/preauthkey", &org.key, json!({"user": alice})).await, StatusCode::OK).await;
    let secret = created["preAuthKey"]["key"].as_str().unwrap().to_string();
    let listed = |user: String| {
        let t = &t;
        let key = org.key.clone();
        async move { json(t.get(&format!("/api/v1/preauthkey?user={user}"), &key).await, StatusCode::OK).await }
    };
    let prefix = listed(alice.clone()).await["preAuthKeys"][0]["key"].as_str().unwrap().to_string();
    // Another user's key, a missing key or user: refused, and the key stays.
    let path = |user: &str, key: &str| format!("/api/v1/preauthkey?user={user}&key={key}");
    rpc_error(t.delete(&path(&bob, &prefix), &org.key).await, StatusCode::NOT_FOUND, 5).await;
    rpc_error(t.delete(&format!("/api/v1/preauthkey?user={alice}"), &org.key).await, StatusCode::BAD_REQUEST, 3).await;
    rpc_error(t.delete(&format!("/api/v1/preauthkey?key={prefix}"), &org.key).await, StatusCode::BAD_REQUEST, 3).await;
    assert_eq!(listed(alice.clone()).await["preAuthKeys"].as_array().unwrap().len(), 1);

    assert_eq!(json(t.delete(&path(&alice, &secret), &org.key).await, StatusCode::OK).await, json!({}));
    assert_eq!(listed(alice.clone()).await["preAuthKeys"], json!([]), "a deleted key is not listed");
    rpc_error(t.delete(&path(&alice, &prefix), &org.key).await, StatusCode::NOT_FOUND, 5).await;
    let audit = t.raw_rows("SELECT payload FROM events WHERE kind = 'audit'", &["payload"]).await;
    assert!(audit.iter().any(|row| row.contains("preauth_key.delete")), "{audit:?}");
}

/// `/api/v1/apikey`: the organization's keys made with an expiration kept as sent, listed,
/// expired and deleted by prefix or id (one of the two), each refused at once afterwards;
/// another organization's keys are missing; every change audited.
async fn api_keys(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let org = t.org("acme").await;
    let globex = t.org("globex").await;
    let expiration = (chrono::Utc::now() + chrono::Duration::days(3)).trunc_subsecs(6);
    let made = json(t.post("/api/v1/apikey", &org.key, json!({"expiration": expiration})).await, StatusCode::OK).await;
    assert_eq!(keys_of(&made), ["apiKey"]);
    let secret = made["apiKey"].as_str().unwrap().to_string();
    json(t.get("/v1/namespaces", &secret).await, StatusCode::OK).await; // an org API key on `/v1` too

    let listed = |key: String| {
        let t = &t;
        async move { json(t.get("/api/v1/apikey", &key).await, StatusCode::OK).await["apiKeys"].clone() }
    };
    let keys = listed(secret.clone()).await;
    assert_eq!(keys.as_array().unwrap().len(), 2, "{keys}");
    let (first, new) = (&keys[0], &keys[1]);
    assert_eq!(keys_of(new), ["createdAt", "expiration", "id", "lastSeen", "prefix"]);
    assert_eq!(first["expiration"], Value::Null, "the CLI's key never expires: {first}");
    let kept: chrono::DateTime<chrono::Utc> = new["expiration"].as_str().unwrap().parse().unwrap();
    assert_eq!(kept, expiration, "the expiration is kept as sent");
    assert!(secret.starts_with(new["prefix"].as_str().unwrap()), "{new}");
    let (new_id, new_prefix) = (new["id"].as_str().unwrap().to_string(), new["prefix"].as_str().unwrap().to_string());

    // No expiration: 90 days. One in the past: refused, and nothing is made.
    json(t.post("/api/v1/apikey", &org.key, json!({})).await, StatusCode::OK).await;
    let default: chrono::DateTime<chrono::Utc> =
        listed(org.key.clone()).await[2]["expiration"].as_str().unwrap().parse().unwrap();
    let ninety_days = chrono::Utc::now() + chrono::Duration::days(90);
    assert!((default - ninety_days).num_seconds().abs() < 60, "{default} is not 90 days from now");
    let past = json!({"expiration": "2020-01-01T00:00:00Z"});
    let refused = rpc_error(t.post("/api/v1/apikey", &org.key, past).await, StatusCode::BAD_REQUEST, 3).await;
    assert!(refused["message"].as_str().unwrap().contains("future"), "{refused}");
    assert_eq!(listed(org.key.clone()).await.as_array().unwrap().len(), 3);

    // Another organization sees none of them and cannot touch them.
    assert_eq!(listed(globex.key.clone()).await.as_array().unwrap().len(), 1);
    let expire = |key: &str, body: Value| {
        let (t, key) = (&t, key.to_string());
        async move { t.post("/api/v1/apikey/expire", &key, body).await }
    };
    rpc_error(expire(&globex.key, json!({"prefix": new_prefix})).await, StatusCode::NOT_FOUND, 5).await;
    rpc_error(expire(&globex.key, json!({"id": new_id})).await, StatusCode::NOT_FOUND, 5).await;
    rpc_error(t.delete(&format!("/api/v1/apikey/{new_prefix}"), &globex.key).await, StatusCode::NOT_FOUND, 5).await;
    // One of prefix and id, not both, not neither; an id is a uint64.
    rpc_error(expire(&org.key, json!({"prefix": new_prefix, "id": new_id})).await, StatusCode::BAD_REQUEST, 3).await;
    rpc_error(expire(&org.key, json!({})).await, StatusCode::BAD_REQUEST, 3).await;
    rpc_error(expire(&org.key, json!({"id": "seven"})).await, StatusCode::BAD_REQUEST, 3).await;
    let both = format!("/api/v1/apikey/{new_prefix}?id={new_id}");
    rpc_error(t.delete(&both, &org.key).await, StatusCode::BAD_REQUEST, 3).await;
    json(t.get("/api/v1/apikey", &secret).await, StatusCode::OK).await; // still alive

    // Expired by id: refused from the next request on, and listed with the moment it ended.
    assert_eq!(json(expire(&org.key, json!({"id": new_id})).await, StatusCode::OK).await, json!({}));
    rpc_error(t.get("/api/v1/apikey", &secret).await, StatusCode::UNAUTHORIZED, 16).await;
    assert_eq!(t.get("/v1/namespaces", &secret).await.status(), StatusCode::UNAUTHORIZED);
    let ended: chrono::DateTime<chrono::Utc> =
        listed(org.key.clone()).await[1]["expiration"].as_str().unwrap().parse().unwrap();
    assert!(ended <= chrono::Utc::now() && ended < expiration, "{ended}");

    // Deleted by prefix: gone from the listing; a second delete finds nothing.
    let delete = format!("/api/v1/apikey/{new_prefix}");
    assert_eq!(json(t.delete(&delete, &org.key).await, StatusCode::OK).await, json!({}));
    assert_eq!(listed(org.key.clone()).await.as_array().unwrap().len(), 2);
    rpc_error(t.delete(&delete, &org.key).await, StatusCode::NOT_FOUND, 5).await;

    // A key may expire itself (by prefix): this request is the last it makes.
    let own_prefix = listed(org.key.clone()).await[0]["prefix"].as_str().unwrap().to_string();
    assert_eq!(json(expire(&org.key, json!({"prefix": own_prefix})).await, StatusCode::OK).await, json!({}));
    rpc_error(t.get("/api/v1/apikey", &org.key).await, StatusCode::UNAUTHORIZED, 16).await;

    let actions = audit_actions(&t, &org).await;
    for action in ["api_key.create", "api_key.expire", "api_key.delete"] {
        assert!(actions.iter().any(|a| a == action), "{action} not in {actions:?}");
    }
}
