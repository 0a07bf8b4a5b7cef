//! Shared test support: a real server on a random port against a fresh database.
#![allow(dead_code)]

use std::sync::Arc;

use tenscale::app::{AppState, RunningApp};
use tenscale::config::Settings;
use tenscale::control::client::{fetch_server_key, Client};
use tenscale::domain::{NamespaceName, OrgName, Tag, Tags};
use tenscale::store::preauth_keys::NewPreauthKey;
use x25519_dalek::StaticSecret;

pub fn random_key() -> [u8; 32] {
    use rand::RngCore;
    let mut k = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut k);
    k
}

pub struct TestServer {
    pub app: RunningApp,
    _dir: TempDir,
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
    pub async fn start_sqlite() -> Self {
        Self::start_sqlite_with(&[]).await
    }

    pub async fn start_sqlite_with(extra: &[(&str, &str)]) -> Self {
        let dir = TempDir::new();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.0.display());
        let app = tenscale::app::start(settings_with(extra, &url)).await.expect("server starts");
        TestServer { app, _dir: dir }
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.app.state
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.app.addr)
    }

    pub async fn control_client(&self) -> Client {
        let key = fetch_server_key(&self.base_url()).await.expect("GET /key").public_key;
        let machine = StaticSecret::from(random_key());
        Client::connect(&self.app.addr.to_string(), &key, &machine).await.expect("ts2021 connect")
    }

    /// Creates (or finds) `org` and a namespace in it; returns the namespace id.
    pub async fn namespace(&self, org: &str, name: &str) -> i64 {
        let store = &self.state().store;
        let org = match store.org_by_name(org).await {
            Ok(o) => o,
            Err(_) => store.create_org(&OrgName::parse(org).unwrap()).await.unwrap(),
        };
        store.create_namespace(org.id, &NamespaceName::parse(name).unwrap()).await.unwrap().id
    }

    pub async fn preauth_key(&self, ns: i64, reusable: bool, ephemeral: bool, tags: &[&str]) -> String {
        let spec = NewPreauthKey {
            reusable,
            ephemeral,
            tags: Tags::new(tags.iter().map(|t| Tag::parse(t).unwrap()).collect()),
            expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
            description: String::new(),
        };
        self.state().store.create_preauth_key(ns, &spec).await.unwrap().1
    }

    pub async fn expired_key(&self, ns: i64) -> String {
        let spec = NewPreauthKey {
            reusable: true,
            ephemeral: false,
            tags: Tags::default(),
            expires_at: chrono::Utc::now() - chrono::Duration::seconds(1),
            description: String::new(),
        };
        self.state().store.create_preauth_key(ns, &spec).await.unwrap().1
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let handle = self.app.handle.clone();
        // Stop without waiting: the runtime is going away with the test.
        drop(handle.stop(false));
    }
}
