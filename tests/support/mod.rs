//! Shared test support: a real server on a random port against a fresh database — a SQLite
//! file in a temporary directory, or a new database on the local PostgreSQL — optionally
//! with its events on the local Redis; plus a simulated node speaking our protocol client.
#![allow(dead_code)]

pub mod api;
pub mod child;
pub mod postgres;

/// Runs `$scenario(Backend)` once per database, as two tests named `<scenario>::sqlite` and
/// `<scenario>::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[actix_rt::test]
            async fn sqlite() {
                super::$scenario($crate::support::Backend::Sqlite).await
            }
            #[actix_rt::test]
            async fn postgres() {
                super::$scenario($crate::support::Backend::Postgres).await
            }
        }
    )*};
}

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use sea_orm::{ConnectionTrait, Database};
use tenscale::control::client::ClientError;
use tenscale::keys::{DiscoPublic, NodePublic};
use tenscale::netmap::tailcfg::{MapRequest, MapResponse, RegisterAuth, RegisterRequest, RegisterResponse};

use tenscale::app::{AppState, RunningApp};
use tenscale::config::Settings;
use tenscale::control::client::{fetch_server_key, Client};
use tenscale::domain::{NamespaceId, NamespaceName, NodeId, OrgName, Tag, Tags};
use tenscale::state::store::preauth_keys::NewPreauthKey;
use x25519_dalek::StaticSecret;

pub fn random_key() -> [u8; 32] {
    use rand::RngCore;
    let mut k = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut k);
    k
}

/// The PostgreSQL server the tests use (trust authentication); `TEST_POSTGRES_URL` overrides.
pub fn postgres_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// The Redis the tests use; `TEST_REDIS_URL` overrides.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Which database a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A server with two tenants: namespace `a` of org acme and namespace `b` of org globex, each
/// with a reusable key and no node yet.
pub struct TwoNamespaces {
    pub server: TestServer,
    pub ns_a: NamespaceId,
    pub ns_b: NamespaceId,
    pub key_a: String,
    pub key_b: String,
}

impl TwoNamespaces {
    pub async fn start(backend: Backend) -> Self {
        let server = TestServer::start(backend, &[]).await;
        let ns_a = server.namespace("acme", "a").await;
        let ns_b = server.namespace("globex", "b").await;
        let key_a = server.preauth_key(ns_a, true, false, &[]).await;
        let key_b = server.preauth_key(ns_b, true, false, &[]).await;
        TwoNamespaces { server, ns_a, ns_b, key_a, key_b }
    }
}

pub struct TestServer {
    pub app: RunningApp,
    _dir: Option<TempDir>,
    /// Shared by the instances of one cluster; the database goes when the last one does.
    _db: Option<Arc<PgDatabase>>,
}

/// A fresh PostgreSQL database `tenscale_t_<hex>`, dropped (with its connections) on drop.
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create() -> Self {
        let name = format!("tenscale_t_{}", hex::encode(&random_key()[..6]));
        let admin = Database::connect(format!("{}/postgres", postgres_url())).await.expect("PostgreSQL reachable");
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("CREATE DATABASE");
        let _ = admin.close().await;
        PgDatabase { url: format!("{}/{name}", postgres_url()), name }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Drop runs outside async context: a small runtime of its own, on its own thread.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let admin = Database::connect(format!("{}/postgres", postgres_url())).await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let done = admin.execute_unprepared(&sql).await.ok();
                let _ = admin.close().await;
                done
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("test database {} was not dropped", self.name);
        }
    }
}

/// A directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("tenscale-test-{}", hex::encode(&random_key()[..8])));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn settings_with(extra: &[(&str, &str)], db_url: &str) -> Settings {
    let mut env: Vec<(String, String)> = vec![
        ("TENSCALE_LISTEN_ADDR".into(), "127.0.0.1:0".into()),
        ("TENSCALE_DATABASE_URL".into(), db_url.into()),
        ("TENSCALE_STUN_ADDR".into(), "127.0.0.1:0".into()),
        ("TENSCALE_WORKERS".into(), "1".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::load_from(None, &env).unwrap()
}

impl TestServer {
    pub async fn start(backend: Backend, extra: &[(&str, &str)]) -> Self {
        match backend {
            Backend::Sqlite => Self::start_sqlite_with(extra).await,
            Backend::Postgres => Self::start_postgres_with(extra).await,
        }
    }

    pub async fn start_sqlite() -> Self {
        Self::start_sqlite_with(&[]).await
    }

    pub async fn start_sqlite_with(extra: &[(&str, &str)]) -> Self {
        let dir = TempDir::new();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.0.display());
        let app = tenscale::app::start(settings_with(extra, &url)).await.expect("server starts");
        TestServer { app, _dir: Some(dir), _db: None }
    }

    /// One server on a fresh PostgreSQL database.
    pub async fn start_postgres_with(extra: &[(&str, &str)]) -> Self {
        let db = Arc::new(PgDatabase::create().await);
        Self::start_on(&db, extra).await
    }

    /// A server on the database at `url`, which the caller owns (a private PostgreSQL).
    pub async fn start_on_url(url: &str, extra: &[(&str, &str)]) -> Self {
        let app = tenscale::app::start(settings_with(extra, url)).await.expect("server starts");
        TestServer { app, _dir: None, _db: None }
    }

    /// A server on an existing database (another instance of the same deployment).
    pub async fn start_on(db: &Arc<PgDatabase>, extra: &[(&str, &str)]) -> Self {
        let app = tenscale::app::start(settings_with(extra, &db.url)).await.expect("server starts");
        TestServer { app, _dir: None, _db: Some(db.clone()) }
    }

    /// Two instances of one deployment: the same fresh PostgreSQL database, events over the
    /// local Redis on a channel of their own (so parallel tests do not hear each other).
    pub async fn start_postgres_pair(extra: &[(&str, &str)]) -> (Self, Self) {
        Self::start_postgres_pair_on(&redis_url(), extra).await
    }

    /// Two instances of one deployment whose events go through the Redis at `redis`.
    pub async fn start_postgres_pair_on(redis: &str, extra: &[(&str, &str)]) -> (Self, Self) {
        let db = Arc::new(PgDatabase::create().await);
        let channel = format!("tenscale:test:{}", hex::encode(&random_key()[..8]));
        let mut env: Vec<(&str, &str)> = vec![("TENSCALE_REDIS_URL", redis), ("TENSCALE_REDIS_CHANNEL", &channel)];
        env.extend_from_slice(extra);
        let first = Self::start_on(&db, &env).await;
        let second = Self::start_on(&db, &env).await;
        (first, second)
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.app.state
    }

    /// The PostgreSQL database, for starting another instance on it.
    pub fn database(&self) -> Option<&Arc<PgDatabase>> {
        self._db.as_ref()
    }

    /// The Redis settings of this instance, for starting another instance of the deployment.
    pub fn redis_env(&self) -> Vec<(&'static str, &str)> {
        let settings = &self.state().settings;
        match &settings.redis_url {
            Some(url) => {
                vec![("TENSCALE_REDIS_URL", url.expose()), ("TENSCALE_REDIS_CHANNEL", &settings.redis_channel)]
            }
            None => vec![],
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.app.addr)
    }

    pub async fn control_client(&self) -> Client {
        self.control_client_as(random_key()).await
    }

    /// A ts2021 connection as the machine with private key `machine`.
    pub async fn control_client_as(&self, machine: [u8; 32]) -> Client {
        let key = fetch_server_key(&self.base_url()).await.expect("GET /key").public_key;
        let machine = StaticSecret::from(machine);
        Client::connect(&self.app.addr.to_string(), &key, &machine).await.expect("ts2021 connect")
    }

    /// Creates (or finds) `org` and a namespace in it; returns the namespace id.
    pub async fn namespace(&self, org: &str, name: &str) -> NamespaceId {
        let writer = &self.state().api.writer;
        let org = match writer.store().org_by_name(org).await {
            Ok(o) => o,
            Err(_) => writer.create_org(&OrgName::parse(org).unwrap(), None).await.unwrap(),
        };
        writer.create_namespace(org.id, &NamespaceName::parse(name).unwrap(), None).await.unwrap().id
    }

    pub async fn preauth_key(&self, ns: NamespaceId, reusable: bool, ephemeral: bool, tags: &[&str]) -> String {
        let spec = NewPreauthKey {
            reusable,
            ephemeral,
            tags: Tags::new(tags.iter().map(|t| Tag::parse(t).unwrap()).collect()),
            expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
            description: String::new(),
        };
        self.create_preauth_key(ns, &spec).await
    }

    pub async fn expired_key(&self, ns: NamespaceId) -> String {
        let spec = NewPreauthKey {
            reusable: true,
            ephemeral: false,
            tags: Tags::default(),
            expires_at: chrono::Utc::now() - chrono::Duration::seconds(1),
            description: String::new(),
        };
        self.create_preauth_key(ns, &spec).await
    }

    async fn create_preauth_key(&self, ns: NamespaceId, spec: &NewPreauthKey) -> String {
        let writer = &self.state().api.writer;
        let ns = writer.store().namespace_by_id(ns).await.unwrap();
        writer.create_preauth_key(&ns, spec, None).await.unwrap().1
    }
}

/// A reusable, untagged, non-ephemeral pre-auth key valid for an hour: what tests that seed
/// the store beside a child server give their nodes.
pub fn reusable_key_spec() -> NewPreauthKey {
    NewPreauthKey {
        reusable: true,
        ephemeral: false,
        tags: Tags::default(),
        expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
        description: String::new(),
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let handle = self.app.handle.clone();
        // Stop without waiting: the runtime is going away with the test.
        drop(handle.stop(false));
    }
}

// --- A simulated node: our protocol client, one node key. ---

pub fn register_request(node_key: NodePublic, auth: Option<&str>) -> RegisterRequest {
    RegisterRequest {
        version: 130,
        node_key,
        auth: auth.map(|k| RegisterAuth { auth_key: k.to_string(), ..Default::default() }),
        hostinfo: Some(serde_json::from_value(serde_json::json!({"Hostname": "sim", "OS": "linux"})).unwrap()),
        ..Default::default()
    }
}

pub fn stream_request(node_key: NodePublic) -> MapRequest {
    MapRequest {
        version: 130,
        compress: "zstd".into(),
        keep_alive: true,
        node_key,
        disco_key: DiscoPublic::from_bytes(random_key()),
        stream: true,
        ..Default::default()
    }
}

pub struct SimNode {
    pub client: Client,
    pub node_key: NodePublic,
    /// The private half of `node_key`, for DERP.
    pub node_secret: [u8; 32],
    /// The machine's private key, to connect again (to another instance, say).
    pub machine: [u8; 32],
}

impl SimNode {
    /// The node's row, which must exist.
    pub async fn stored(&self, server: &TestServer) -> tenscale::state::store::Node {
        server.state().api.store.node_by_node_key(&self.node_key).await.unwrap().expect("node is stored")
    }

    /// Opens the node's map stream.
    pub async fn stream(&self) -> MapStream {
        Self::stream_on(&self.client, self.node_key).await
    }

    /// Opens the node's map stream over `client` (a connection of the same machine).
    pub async fn stream_on(client: &Client, node_key: NodePublic) -> MapStream {
        Box::pin(client.map_stream(&stream_request(node_key)).await.expect("map stream"))
    }
}

pub type MapStream = std::pin::Pin<Box<dyn Stream<Item = Result<MapResponse, ClientError>> + Send>>;

/// Registers a new node with `key` on `server`; the node key is a real X25519 key pair.
pub async fn join(server: &TestServer, key: &str) -> (SimNode, RegisterResponse) {
    let machine = random_key();
    let client = server.control_client_as(machine).await;
    let node_secret = random_key();
    let node_key = tenscale::derp::crypto::DerpSecret::from_bytes(node_secret).public();
    let resp = client.register(&register_request(node_key, Some(key))).await.expect("register");
    (SimNode { client, node_key, node_secret, machine }, resp)
}

/// Like [`join`], failing the test unless the server authorized the node.
pub async fn join_ok(server: &TestServer, key: &str) -> SimNode {
    let (node, resp) = join(server, key).await;
    assert!(resp.error.is_empty() && resp.machine_authorized, "registration refused: {resp:?}");
    node
}

/// The next message that satisfies `want` within `within`, skipping others.
pub async fn map_until_within(
    stream: &mut (impl Stream<Item = Result<MapResponse, ClientError>> + Unpin),
    within: Duration,
    want: impl Fn(&MapResponse) -> bool,
) -> MapResponse {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let msg = tokio::time::timeout_at(deadline, next_map(stream)).await.expect("wanted message in time");
        if want(&msg) {
            return msg;
        }
    }
}

/// The next message that satisfies `want`, skipping others (self updates, keep-alives).
pub async fn map_until(
    stream: &mut (impl Stream<Item = Result<MapResponse, ClientError>> + Unpin),
    want: impl Fn(&MapResponse) -> bool,
) -> MapResponse {
    map_until_within(stream, Duration::from_secs(10), want).await
}

/// The next message that is not a keep-alive.
pub async fn next_map(stream: &mut (impl Stream<Item = Result<MapResponse, ClientError>> + Unpin)) -> MapResponse {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("map message in time")
            .expect("stream open")
            .expect("valid message");
        if !msg.keep_alive {
            return msg;
        }
    }
}

/// Whether `msg` announces (adds or changes) the peer with `key`.
pub fn announces(msg: &MapResponse, key: &NodePublic) -> bool {
    msg.peers.iter().flatten().chain(msg.peers_changed.iter().flatten()).any(|p| p.key == *key)
}

/// Whether `msg` reports peer `key` (id `id`) online (`true`) or offline (`false`).
pub fn reports_online(msg: &MapResponse, key: &NodePublic, id: NodeId, online: bool) -> bool {
    msg.peers_changed.iter().flatten().any(|p| p.key == *key && p.online.unwrap_or(false) == online)
        || msg.online_change.as_ref().is_some_and(|c| c.get(&id.get()) == Some(&online))
        || msg.peers_changed_patch.iter().flatten().any(|p| p.node_id == id.get() && p.online == Some(online))
}

/// Polls `check` until it holds; fails the test after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of counter `name` with label `label=value` in a registry, 0 if absent.
pub fn counter(registry: &prometheus::Registry, name: &str, label: (&str, &str)) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric().iter())
        .filter(|m| m.get_label().iter().any(|l| l.name() == label.0 && l.value() == label.1))
        .map(|m| m.get_counter().get_value())
        .sum()
}
