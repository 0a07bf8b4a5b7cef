//! A tenscale instance as its own process (the real binary), for what an in-process server
//! cannot show: a crash (`kill -9`) and a signal-driven drain.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tenscale::control::client::{fetch_server_key, Client};
use x25519_dalek::StaticSecret;

use super::{eventually, random_key, register_request, SimNode};

pub struct ChildInstance {
    pub child: Child,
    pub addr: String,
}

impl ChildInstance {
    /// Starts the binary on `db_url` with `env` on a free loopback port; waits for /healthz.
    pub async fn start(db_url: &str, env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_tenscale"))
            .arg("serve")
            .env("TENSCALE_DATABASE_URL", db_url)
            .env("TENSCALE_LISTEN_ADDR", &addr)
            .env("TENSCALE_SERVER_URL", format!("http://{addr}"))
            .env("TENSCALE_STUN_ADDR", "off")
            .env("TENSCALE_WORKERS", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the tenscale binary");
        let health = format!("http://{addr}/healthz");
        eventually(Duration::from_secs(60), "the child instance answers /healthz", || {
            let health = health.clone();
            async move { reqwest::get(&health).await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        Self { child, addr }
    }

    /// Registers a new node with `key` through this instance.
    pub async fn join(&self, key: &str) -> SimNode {
        let server_key = fetch_server_key(&format!("http://{}", self.addr)).await.expect("GET /key").public_key;
        let machine = random_key();
        let client = Client::connect(&self.addr, &server_key, &StaticSecret::from(machine)).await.expect("ts2021");
        let node_secret = random_key();
        let node_key = tenscale::derp::crypto::DerpSecret::from_bytes(node_secret).public();
        let resp = client.register(&register_request(node_key, Some(key))).await.expect("register");
        assert!(resp.error.is_empty() && resp.machine_authorized, "registration refused: {resp:?}");
        SimNode { client, node_key, node_secret, machine }
    }

    /// Sends `signal` (`-KILL`, `-TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success(), "kill {signal}");
    }
}

impl Drop for ChildInstance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
