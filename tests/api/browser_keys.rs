//! Browser keys: settings (secrets write-only and sealed at rest), the JWT exchange and each
//! of its refusals, replays, CORS, and the rate limit.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::on_both_backends;
use crate::support::api::{json, problem, spawn, Backend, TestApp};

on_both_backends!(settings_round_trip, exchange_and_every_refusal, cors_and_rate_limit, public_keys_and_jwks);

const SECRET: &str = "an-hs256-secret-that-is-long-enough-0123456789";
const ISSUER: &str = "https://app.example.com";
const ORIGIN: &str = "https://app.example.com";
/// For PostgreSQL, which has no key file beside its database.
const SECRETS_KEY: &str = "5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(ns: &str, jti: &str) -> Value {
    json!({"iss": ISSUER, "aud": "tenscale", "sub": ns, "iat": now(), "exp": now() + 300, "jti": jti})
}

fn hs_key(secret: &[u8]) -> EncodingKey {
    EncodingKey::from_secret(secret).unwrap()
}

fn hs256(claims: &Value) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &hs_key(SECRET.as_bytes())).unwrap()
}

fn settings(extra: Value) -> Value {
    let mut body = json!({
        "issuer": ISSUER, "audience": "tenscale",
        "keys": [{"kid": "k1", "alg": "HS256", "secret": SECRET}],
        "allowed_origins": [ORIGIN],
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn start(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![("TENSCALE_SECRETS_KEY", SECRETS_KEY)];
    env.extend_from_slice(extra);
    spawn(backend, &env).await
}

async fn put_settings(t: &TestApp, key: &str, body: Value) -> reqwest::Response {
    t.req(reqwest::Method::PUT, "/v1/settings/browser-keys", key).json(&body).send().await.unwrap()
}

async fn exchange(t: &TestApp, token: &str, origin: Option<&str>) -> reqwest::Response {
    let mut req = t.client.post(t.url("/v1/browser-keys")).bearer_auth(token);
    if let Some(origin) = origin {
        req = req.header("Origin", origin);
    }
    req.send().await.unwrap()
}

/// The refusal's detail, after checking its status and problem type.
async fn refused(t: &TestApp, token: &str, status: StatusCode, needle: &str) {
    let body = problem(exchange(t, token, Some(ORIGIN)).await, status).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains(needle), "{detail:?} should mention {needle:?}");
}

async fn settings_round_trip(backend: Backend) {
    let t = start(backend, &[]).await;
    let org = t.org("acme").await;
    problem(t.get("/v1/settings/browser-keys", &org.key).await, StatusCode::NOT_FOUND).await;

    let saved = json(put_settings(&t, &org.key, settings(json!({}))).await, StatusCode::OK).await;
    assert_eq!(saved["keys"], json!([{"kid": "k1", "alg": "HS256", "kind": "secret"}]));
    assert_eq!((saved["namespace_claim"].clone(), saved["expires_in"].clone()), (json!("sub"), json!(3600)));
    assert_eq!(saved["tags"], json!(["tag:browser"]));
    let shown = json(t.get("/v1/settings/browser-keys", &org.key).await, StatusCode::OK).await;
    assert_eq!(shown, saved);
    assert!(!shown.to_string().contains(SECRET), "the secret is write-only");

    // At rest the secret is sealed: a dump of the table does not hold it.
    let rows = t.raw_rows("SELECT verification_keys FROM browser_key_settings", &["verification_keys"]).await;
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].contains(SECRET) && rows[0].contains("sealed_secret"), "{}", rows[0]);

    for (body, needle) in [
        (settings(json!({"expires_in": 3601})), "expires_in"),
        (settings(json!({"allowed_origins": ["https://app.example.com/"]})), "not an origin"),
        (settings(json!({"keys": [{"alg": "HS256", "secret": "short"}]})), "32 bytes"),
        (settings(json!({"keys": [{"alg": "none"}]})), "not supported"),
        (settings(json!({"keys": []})), "at least one"),
        (settings(json!({"tags": ["browser"]})), "tag"),
        (settings(json!({"issuer": ""})), "issuer"),
    ] {
        let p = problem(put_settings(&t, &org.key, body).await, StatusCode::BAD_REQUEST).await;
        assert!(p["detail"].as_str().unwrap().contains(needle), "{p} should mention {needle}");
    }
    // Tags must be owned by the organization's policy once it has one.
    t.put_policy(&org.key, "application/json", r#"{"tagOwners": {"tag:web": []}, "acls": []}"#).await;
    let p = problem(put_settings(&t, &org.key, settings(json!({}))).await, StatusCode::BAD_REQUEST).await;
    assert!(p["detail"].as_str().unwrap().contains("tagOwners"), "{p}");
    json(put_settings(&t, &org.key, settings(json!({"tags": ["tag:web"]}))).await, StatusCode::OK).await;

    // An issuer names one organization.
    let other = t.org("globex").await;
    problem(put_settings(&t, &other.key, settings(json!({}))).await, StatusCode::CONFLICT).await;
    t.finish().await;
}

async fn exchange_and_every_refusal(backend: Backend) {
    let t = start(backend, &[]).await;
    let org = t.org("acme").await;
    json(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;
    json(put_settings(&t, &org.key, settings(json!({}))).await, StatusCode::OK).await;

    let before = now();
    let key = json(exchange(&t, &hs256(&claims("alice", "j-1")), Some(ORIGIN)).await, StatusCode::CREATED).await;
    assert!(key["key"].as_str().unwrap().starts_with("tskey-auth-"));
    assert_eq!(key["namespace"], "alice");
    assert_eq!(key["control_url"].as_str().unwrap(), t.app.state.api.settings.server_url);
    let expires: chrono::DateTime<chrono::Utc> = key["expires_at"].as_str().unwrap().parse().unwrap();
    assert!((3590..=3610).contains(&(expires.timestamp() - before)), "{expires}");
    let keys = json(t.get("/v1/namespaces/alice/keys", &org.key).await, StatusCode::OK).await;
    let issued = &keys["keys"][0];
    assert_eq!((issued["reusable"].clone(), issued["ephemeral"].clone()), (json!(false), json!(true)));
    assert_eq!(issued["tags"], json!(["tag:browser"]));

    // Each check, in turn.
    refused(&t, &hs256(&claims("alice", "j-1")), StatusCode::UNAUTHORIZED, "used before").await;
    let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&claims("alice", "j-2").to_string()));
    refused(&t, &none, StatusCode::UNAUTHORIZED, "alg none").await;
    refused(&t, "not-a-jwt", StatusCode::UNAUTHORIZED, "not a JWT").await;
    let mut c = claims("alice", "j-3");
    c["iss"] = json!("https://elsewhere");
    refused(&t, &hs256(&c), StatusCode::UNAUTHORIZED, "not configured").await;
    let wrong_secret = encode(
        &Header::new(Algorithm::HS256),
        &claims("alice", "j-4"),
        &hs_key(b"another-secret-another-secret-another"),
    )
    .unwrap();
    refused(&t, &wrong_secret, StatusCode::UNAUTHORIZED, "signature").await;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k9".into());
    let unknown_kid = encode(&header, &claims("alice", "j-5"), &hs_key(SECRET.as_bytes())).unwrap();
    refused(&t, &unknown_kid, StatusCode::UNAUTHORIZED, "kid \"k9\" is not configured").await;
    let mut c = claims("alice", "j-6");
    c["exp"] = json!(now() - 120);
    c["iat"] = json!(now() - 300);
    refused(&t, &hs256(&c), StatusCode::UNAUTHORIZED, "expired").await;
    let mut c = claims("alice", "j-7");
    c["nbf"] = json!(now() + 200);
    refused(&t, &hs256(&c), StatusCode::UNAUTHORIZED, "not valid yet").await;
    let mut c = claims("alice", "j-8");
    c["iat"] = json!(now() + 200);
    c["exp"] = json!(now() + 400);
    refused(&t, &hs256(&c), StatusCode::UNAUTHORIZED, "iat is in the future").await;
    let mut c = claims("alice", "j-9");
    c["exp"] = json!(now() + 601);
    refused(&t, &hs256(&c), StatusCode::UNAUTHORIZED, "at most 600 s").await;
    let mut c = claims("alice", "j-10");
    c["aud"] = json!("someone-else");
    refused(&t, &hs256(&c), StatusCode::UNAUTHORIZED, "aud").await;
    let mut c = claims("alice", "j-11");
    c.as_object_mut().unwrap().remove("jti");
    refused(&t, &hs256(&c), StatusCode::UNAUTHORIZED, "no jti").await;
    let mut c = claims("alice", "j-12");
    c.as_object_mut().unwrap().remove("iat");
    refused(&t, &hs256(&c), StatusCode::UNAUTHORIZED, "iat").await;
    refused(&t, &hs256(&claims("Not A Name", "j-13")), StatusCode::FORBIDDEN, "invalid namespace").await;
    refused(&t, &hs256(&claims("bob", "j-14")), StatusCode::FORBIDDEN, "namespace bob does not exist").await;
    // A token checked with the wrong algorithm family is refused before any verification.
    let rsa = EncodingKey::from_rsa_pem(include_bytes!("../fixtures/jwt/rs256-test-private.pem")).unwrap();
    let rs_token = encode(&Header::new(Algorithm::RS256), &claims("alice", "j-15"), &rsa).unwrap();
    refused(&t, &rs_token, StatusCode::UNAUTHORIZED, "signed with RS256 but key \"k1\" is HS256").await;
    // A disallowed origin.
    let p = problem(
        exchange(&t, &hs256(&claims("alice", "j-16")), Some("https://evil.example")).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("origin https://evil.example is not allowed"), "{p}");

    // Namespaces on the fly, when the settings say so.
    json(put_settings(&t, &org.key, settings(json!({"create_namespaces": true}))).await, StatusCode::OK).await;
    let key = json(exchange(&t, &hs256(&claims("bob", "j-17")), None).await, StatusCode::CREATED).await;
    assert_eq!(key["namespace"], "bob");
    json(t.get("/v1/namespaces/bob", &org.key).await, StatusCode::OK).await;

    // Counted by check, and audited.
    let metrics = t.client.get(t.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for check in [
        "replay",
        "alg",
        "signature",
        "kid",
        "exp",
        "nbf",
        "iat",
        "lifetime",
        "aud",
        "jti",
        "namespace",
        "origin",
        "iss",
    ] {
        assert!(
            metrics.contains(&format!("tenscale_browser_key_refusals_total{{check=\"{check}\"}}")),
            "{check} not counted"
        );
    }
    assert!(metrics.contains("tenscale_browser_keys_issued_total 2"));
    // The audit log, oldest first, as the outbox holds it.
    let audit: Vec<String> = t
        .app
        .state
        .api
        .store
        .audit_events(org.id, 100)
        .await
        .unwrap()
        .into_iter()
        .rev()
        .filter(|e| e.action == "browser_key.issue")
        .map(|e| format!("{}|{}", e.action, e.actor))
        .collect();
    assert_eq!(audit, ["browser_key.issue|browser-jwt:j-1", "browser_key.issue|browser-jwt:j-17"]);
    t.finish().await;
}

async fn cors_and_rate_limit(backend: Backend) {
    let t = start(backend, &[("TENSCALE_BROWSER_KEY_RATE_PER_MINUTE", "3")]).await;
    let org = t.org("acme").await;
    json(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;
    json(put_settings(&t, &org.key, settings(json!({}))).await, StatusCode::OK).await;

    let preflight = |origin: &'static str| {
        t.client
            .request(reqwest::Method::OPTIONS, t.url("/v1/browser-keys"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "authorization")
            .send()
    };
    let allowed = preflight(ORIGIN).await.unwrap();
    assert!(allowed.status().is_success());
    let h = allowed.headers();
    assert_eq!(h["access-control-allow-origin"], ORIGIN);
    assert_eq!(h["access-control-allow-methods"], "POST");
    assert!(h["access-control-allow-headers"].to_str().unwrap().contains("authorization"));
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    assert!(other.headers().get("access-control-allow-methods").is_none());

    let ok = exchange(&t, &hs256(&claims("alice", "r-1")), Some(ORIGIN)).await;
    assert_eq!(ok.headers()["access-control-allow-origin"], ORIGIN);
    json(ok, StatusCode::CREATED).await;
    let evil = exchange(&t, &hs256(&claims("alice", "r-2")), Some("https://evil.example")).await;
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    problem(evil, StatusCode::FORBIDDEN).await;
    // The address's budget is 3 a minute (the refused one counted too): the next is limited.
    json(exchange(&t, &hs256(&claims("alice", "r-3")), Some(ORIGIN)).await, StatusCode::CREATED).await;
    let limited = exchange(&t, &hs256(&claims("alice", "r-4")), Some(ORIGIN)).await;
    assert!(limited.headers().contains_key("retry-after"));
    let p = problem(limited, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(p["detail"].as_str().unwrap().contains("rate limit"), "{p}");
    // Per namespace too: three addresses, one namespace, one budget.
    json(t.post("/v1/namespaces", &org.key, json!({"name": "carol"})).await, StatusCode::CREATED).await;
    let from = |last: u8, jti: &str| {
        let client = crate::support::api::client_from(Some(std::net::IpAddr::from([127, 0, 0, last])));
        client.post(t.url("/v1/browser-keys")).bearer_auth(hs256(&claims("carol", jti))).send()
    };
    for (last, jti) in [(2, "n-1"), (3, "n-2"), (4, "n-3")] {
        json(from(last, jti).await.unwrap(), StatusCode::CREATED).await;
    }
    let p = problem(from(5, "n-4").await.unwrap(), StatusCode::TOO_MANY_REQUESTS).await;
    assert!(p["detail"].as_str().unwrap().contains("rate limit"), "{p}");
    let metrics = t.client.get(t.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tenscale_browser_key_refusals_total{check=\"rate_namespace\"} 1"), "{metrics}");
    assert!(metrics.contains("tenscale_browser_key_refusals_total{check=\"rate_ip\"} 1"));
    // Keys are not the API's business: the API key's own limits are untouched.
    json(t.get("/v1/namespaces", &org.key).await, StatusCode::OK).await;
    t.finish().await;
}

async fn public_keys_and_jwks(backend: Backend) {
    let t = start(backend, &[]).await;
    let org = t.org("acme").await;
    json(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;
    let es = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let rsa_public = include_str!("../fixtures/jwt/rs256-test-public.pem");
    let body = settings(json!({"keys": [
        {"kid": "rsa", "alg": "RS256", "pem": rsa_public},
        {"kid": "ec", "alg": "ES256", "pem": es.public_key_pem()},
        {"kid": "ed", "alg": "EdDSA", "pem": ed.public_key_pem()},
        {"kid": "hs", "alg": "HS256", "secret": SECRET},
    ]}));
    let saved = json(put_settings(&t, &org.key, body).await, StatusCode::OK).await;
    assert_eq!(saved["keys"].as_array().unwrap().len(), 4);

    let signed = |kid: &str, alg: Algorithm, key: &EncodingKey, jti: &str| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_string());
        encode(&header, &claims("alice", jti), key).unwrap()
    };
    let rsa = EncodingKey::from_rsa_pem(include_bytes!("../fixtures/jwt/rs256-test-private.pem")).unwrap();
    let ec = EncodingKey::from_ec_pem(es.serialize_pem().as_bytes()).unwrap();
    let edk = EncodingKey::from_ed_pem(ed.serialize_pem().as_bytes()).unwrap();
    for (token, jti) in [
        (signed("rsa", Algorithm::RS256, &rsa, "p-1"), "p-1"),
        (signed("ec", Algorithm::ES256, &ec, "p-2"), "p-2"),
        (signed("ed", Algorithm::EdDSA, &edk, "p-3"), "p-3"),
        (signed("hs", Algorithm::HS256, &hs_key(SECRET.as_bytes()), "p-4"), "p-4"),
    ] {
        let key = exchange(&t, &token, Some(ORIGIN)).await;
        assert_eq!(key.status(), StatusCode::CREATED, "{jti}: {}", key.text().await.unwrap());
    }
    // The HS256 secret of the shared key cannot sign for a public key's kid (alg confusion).
    let confused = signed("rsa", Algorithm::HS256, &hs_key(rsa_public.as_bytes()), "p-5");
    refused(&t, &confused, StatusCode::UNAUTHORIZED, "signed with HS256 but key \"rsa\" is RS256").await;
    let no_kid = encode(&Header::new(Algorithm::HS256), &claims("alice", "p-6"), &hs_key(SECRET.as_bytes())).unwrap();
    refused(&t, &no_kid, StatusCode::UNAUTHORIZED, "several keys").await;

    // An inline JWKS: keys with kid, several at once (rotation).
    let jwk = |pair: &rcgen::KeyPair, kid: &str| {
        let der = pair.public_key_raw();
        let (x, y) = (&der[1..33], &der[33..65]);
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "x": b64u(x), "y": b64u(y)})
    };
    let next = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let body = settings(json!({"keys": [], "jwks": {"keys": [jwk(&es, "2026-11"), jwk(&next, "2026-12")]}}));
    let saved = json(put_settings(&t, &org.key, body).await, StatusCode::OK).await;
    assert_eq!(
        saved["keys"],
        json!([{"kid": "2026-11", "alg": "ES256", "kind": "jwk"}, {"kid": "2026-12", "alg": "ES256", "kind": "jwk"}])
    );
    let next_key = EncodingKey::from_ec_pem(next.serialize_pem().as_bytes()).unwrap();
    json(exchange(&t, &signed("2026-11", Algorithm::ES256, &ec, "w-1"), Some(ORIGIN)).await, StatusCode::CREATED).await;
    json(exchange(&t, &signed("2026-12", Algorithm::ES256, &next_key, "w-2"), Some(ORIGIN)).await, StatusCode::CREATED)
        .await;
    // The old key under the new kid: the signature does not verify.
    refused(&t, &signed("2026-12", Algorithm::ES256, &ec, "w-3"), StatusCode::UNAUTHORIZED, "signature").await;
    let no_kid_jwks = settings(
        json!({"keys": [], "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": b64u(&[1; 32]), "y": b64u(&[2; 32])}]}}),
    );
    let p = problem(put_settings(&t, &org.key, no_kid_jwks).await, StatusCode::BAD_REQUEST).await;
    assert!(p["detail"].as_str().unwrap().contains("kid"), "{p}");
    t.finish().await;
}

fn b64(text: &str) -> String {
    b64u(text.as_bytes())
}

fn b64u(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Without Redis or a second instance, a spent token stays spent across a restart: the `jti`
/// is in the database, not in memory.
#[actix_rt::test]
async fn a_spent_token_stays_spent_after_a_restart() {
    let path = std::env::temp_dir().join(format!("tenscale-restart-{}.db", std::process::id()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let env = [("TENSCALE_DATABASE_URL", url.as_str())];
    let token = hs256(&claims("alice", "restart-1"));

    let t = spawn(Backend::Sqlite, &env).await;
    let org = t.org("acme").await;
    json(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;
    json(put_settings(&t, &org.key, settings(json!({}))).await, StatusCode::OK).await;
    json(exchange(&t, &token, None).await, StatusCode::CREATED).await;
    t.finish().await;

    let t = spawn(Backend::Sqlite, &env).await;
    let p = problem(exchange(&t, &token, None).await, StatusCode::UNAUTHORIZED).await;
    assert!(p["detail"].as_str().unwrap().contains("used before"), "{p}");
    t.finish().await;
    for suffix in ["", "-wal", "-shm", ".secrets-key"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
