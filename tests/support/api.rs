//! The REST API's side of the harness: a [`TestApp`] is the real server (through
//! `tenscale::app::start`) on a random port with generous rate limits, against a fresh SQLite
//! file or a fresh PostgreSQL database on the server `TEST_POSTGRES_URL` names, plus an HTTP
//! client and helpers for the API.

use std::net::IpAddr;

use rand::RngCore;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::Value;
use tenscale::app::{self, RunningApp};
use tenscale::config::Settings;
use tenscale::domain::{NamespaceId, OrgId, OrgName};
use tenscale::keys::{MachinePublic, NodePublic};
use tenscale::state::registration::{RegisterAttempt, Registered};
use tenscale::state::store::Node;

use super::postgres_url;
pub use super::Backend;

fn admin_url() -> String {
    format!("{}/postgres", postgres_url())
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub app: RunningApp,
    pub database_url: String,
    backend: Backend,
    /// Taken by `finish`; still here in `Drop` only when a test panicked.
    cleanup: Option<Cleanup>,
}

enum Cleanup {
    File(std::path::PathBuf),
    Database(String),
}

impl Cleanup {
    async fn run(self) {
        match self {
            Cleanup::File(path) => {
                let _ = std::fs::remove_file(&path);
                // The secrets key a SQLite deployment keeps beside its database.
                let mut key = path.into_os_string();
                key.push(".secrets-key");
                let _ = std::fs::remove_file(key);
            }
            Cleanup::Database(name) => {
                if let Ok(admin) = Database::connect(admin_url()).await {
                    let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                    admin.close().await.ok();
                }
            }
        }
    }
}

impl Drop for TestApp {
    /// A failed test never reaches `finish`; remove its database anyway, on a runtime of its
    /// own (the test's runtime is unwinding).
    fn drop(&mut self) {
        if let Some(cleanup) = self.cleanup.take() {
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    rt.block_on(cleanup.run());
                }
            })
            .join();
        }
    }
}

/// An organization and one of its API keys.
#[derive(Debug, Clone)]
pub struct Org {
    pub id: OrgId,
    pub key: String,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Starts a server with generous rate limits; `env` adds or overrides `TENSCALE_*` settings.
pub async fn spawn(backend: Backend, env: &[(&str, &str)]) -> TestApp {
    let (database_url, cleanup) = match backend {
        Backend::Sqlite => {
            let path = std::env::temp_dir().join(format!("tenscale-test-{}.db", random_hex(8)));
            (format!("sqlite://{}?mode=rwc", path.display()), Cleanup::File(path))
        }
        Backend::Postgres => {
            let name = format!("tenscale_test_{}", random_hex(8));
            let admin = Database::connect(admin_url()).await.expect("PostgreSQL reachable (TEST_POSTGRES_URL)");
            admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create database");
            admin.close().await.ok();
            (format!("{}/{name}", postgres_url()), Cleanup::Database(name))
        }
    };
    let mut vars: Vec<(String, String)> = vec![
        ("TENSCALE_LISTEN_ADDR".into(), "127.0.0.1:0".into()),
        ("TENSCALE_DATABASE_URL".into(), database_url.clone()),
        ("TENSCALE_STUN_ADDR".into(), "off".into()),
        ("TENSCALE_RATE_LIMIT_PER_SECOND".into(), "100000".into()),
        ("TENSCALE_RATE_LIMIT_BURST".into(), "100000".into()),
    ];
    for (k, v) in env {
        vars.retain(|(name, _)| name != k);
        vars.push((k.to_string(), v.to_string()));
    }
    let settings = Settings::load_from(None, &vars).expect("test settings");
    let app = app::start(settings).await.expect("server starts");
    TestApp {
        base: format!("http://{}", app.addr),
        client: client_from(None),
        app,
        database_url,
        backend,
        cleanup: Some(cleanup),
    }
}

/// A client, optionally bound to a local address (any 127.x.y.z works on Linux loopback), so
/// tests can appear as different client IPs.
pub fn client_from(local: Option<IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

impl TestApp {
    /// Stops the server and removes its database.
    pub async fn finish(mut self) {
        self.app.handle.stop(false).await;
        if let Some(cleanup) = self.cleanup.take() {
            cleanup.run().await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with `key` as Bearer credential.
    pub fn req(&self, method: Method, path: &str, key: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(key)
    }

    pub async fn get(&self, path: &str, key: &str) -> Response {
        self.req(Method::GET, path, key).send().await.expect("request")
    }

    pub async fn delete(&self, path: &str, key: &str) -> Response {
        self.req(Method::DELETE, path, key).send().await.expect("request")
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Response {
        self.req(Method::POST, path, key).json(&body).send().await.expect("request")
    }

    pub async fn patch(&self, path: &str, key: &str, body: Value) -> Response {
        self.req(Method::PATCH, path, key).json(&body).send().await.expect("request")
    }

    /// POSTs raw bytes as JSON (for malformed bodies).
    pub async fn post_raw(&self, path: &str, key: &str, body: &str) -> Response {
        self.req(Method::POST, path, key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    pub async fn put_policy(&self, key: &str, content_type: &str, body: &str) -> Response {
        self.req(Method::PUT, "/v1/policy", key)
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    /// A new organization with one API key, made the way the CLI makes them.
    pub async fn org(&self, name: &str) -> Org {
        let writer = &self.app.state.api.writer;
        let org = writer.create_org(&OrgName::parse(name).unwrap(), None).await.unwrap();
        let (_, key) = writer.create_api_key(org.id, "test", None).await.unwrap();
        Org { id: org.id, key }
    }

    /// Registers a node in `namespace` with `preauth_key`, the way the control plane does.
    pub async fn register_node(&self, namespace_id: NamespaceId, preauth_key: &str, hostname: &str) -> Node {
        let mut machine = [0u8; 32];
        let mut node = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut machine);
        rand::thread_rng().fill_bytes(&mut node);
        let hostinfo = serde_json::json!({"OS": "linux", "IPNVersion": "1.80.0", "Hostname": hostname});
        let attempt = RegisterAttempt {
            machine: MachinePublic::from_bytes(machine),
            node_key: NodePublic::from_bytes(node),
            old_node_key: None,
            expiry: None,
            auth_key: Some(preauth_key.to_string()),
            hostinfo: Some(serde_json::from_value(hostinfo).expect("a Hostinfo object")),
        };
        match self.app.state.api.writer.register(&attempt).await.expect("register node") {
            Registered::Joined { node, .. } => {
                assert_eq!(node.namespace_id, namespace_id, "the key is of namespace {namespace_id}");
                node
            }
            other => panic!("a new machine with a key joins, got {other:?}"),
        }
    }

    /// A direct connection to the test database, for reading tables behind the API's back.
    pub async fn raw_db(&self) -> DatabaseConnection {
        Database::connect(&self.database_url).await.expect("database")
    }

    /// Every row of `sql` as one text per row (columns joined by '|').
    pub async fn raw_rows(&self, sql: &str, columns: &[&str]) -> Vec<String> {
        let db = self.raw_db().await;
        let rows =
            db.query_all_raw(Statement::from_string(db.get_database_backend(), sql.to_string())).await.expect("query");
        let texts = rows
            .iter()
            .map(|row| {
                columns.iter().map(|c| row.try_get::<String>("", c).unwrap_or_default()).collect::<Vec<_>>().join("|")
            })
            .collect();
        db.close().await.ok();
        texts
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }
}

/// Asserts `response` is a problem+json with `status` and returns its body.
pub async fn problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status, "status of {}", response.url());
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem body");
    assert_eq!(body["status"], status.as_u16());
    for field in ["type", "title", "detail"] {
        assert!(body[field].is_string(), "problem lacks {field}: {body}");
    }
    body
}

/// Asserts the status and returns the JSON body.
pub async fn json(response: Response, status: StatusCode) -> Value {
    let url = response.url().clone();
    let actual = response.status();
    let headers = format!("{:?}", response.headers());
    let text = response.text().await.unwrap_or_default();
    assert_eq!(actual, status, "{url}: {headers} {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}"))
}
