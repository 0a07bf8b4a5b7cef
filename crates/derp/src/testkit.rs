//! The relay's harness for tests and benchmarks (feature `testkit`): a plain-TCP listener that
//! does the `GET /derp` upgrade itself and hands each connection to [`serve_client`], admission
//! tables in memory, and meshed relays on loopback.
//!
//! The production front (TLS, the actix hand-off) is the server's; this one exists so tests
//! and the bench (`crates/derp-bench`) drive the relay through real sockets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tenscale_base::keys::NodePublic;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::crypto::DerpSecret;
use crate::server::{Admission, DerpConfig, DerpMetrics, DerpServer, MeshKey, TenantId};
use crate::session::serve_client;

/// An admission table in memory: key → tenant. Cloning shares the table.
#[derive(Clone, Default)]
pub struct StaticAdmission(pub Arc<RwLock<HashMap<NodePublic, TenantId>>>);

impl StaticAdmission {
    pub fn allow(&self, key: NodePublic, tenant: TenantId) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).insert(key, tenant);
    }

    pub fn forget(&self, key: &NodePublic) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

impl Admission for StaticAdmission {
    fn admit(&self, key: &NodePublic) -> BoxFuture<'static, Option<TenantId>> {
        let tenant = self.0.read().unwrap_or_else(|e| e.into_inner()).get(key).copied();
        Box::pin(async move { tenant })
    }
}

/// Admits every key under tenant 1 (benchmarks).
pub struct AdmitAll;

impl Admission for AdmitAll {
    fn admit(&self, _key: &NodePublic) -> BoxFuture<'static, Option<TenantId>> {
        Box::pin(async { Some(TenantId(1)) })
    }
}

/// `n` relays on loopback that mesh with each other (every key admitted, one tenant); returns
/// once every mesh link is up.
pub async fn meshed_relays(n: usize) -> std::io::Result<Vec<(Arc<DerpServer>, SocketAddr)>> {
    let key = MeshKey::parse(&hex::encode(rand::random::<[u8; 32]>())).expect("64 hex digits");
    let mut relays = Vec::with_capacity(n);
    for _ in 0..n {
        let metrics = DerpMetrics::register(&prometheus::Registry::new()).map_err(std::io::Error::other)?;
        let config = DerpConfig { mesh_key: Some(key.clone()), ..Default::default() };
        let server = DerpServer::new(DerpSecret::generate(), config, Arc::new(AdmitAll), metrics);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        spawn_plain_relay(server.clone(), listener);
        relays.push((server, addr));
    }
    for (server, addr) in &relays {
        let others: Vec<String> =
            relays.iter().filter(|(_, a)| a != addr).map(|(_, a)| format!("http://{a}")).collect();
        server.set_mesh_peers(&others);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while relays.iter().any(|(s, _)| s.metrics().mesh_links.get() < (n - 1) as i64) {
        if Instant::now() > deadline {
            return Err(std::io::Error::other("mesh links did not come up within 10 s"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(relays)
}

/// Listens on `listener`: reads each request head, answers 101 (or 426 without
/// `Upgrade: DERP`), then runs [`serve_client`].
pub fn spawn_plain_relay(server: Arc<DerpServer>, listener: TcpListener) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let server = server.clone();
            tokio::spawn(async move {
                if let Ok(stream) = upgrade(stream, &server).await {
                    serve_client(server, stream, peer).await;
                }
            });
        }
    })
}

/// Reads the request head byte by byte (so no frame byte is consumed) and writes the 101.
async fn upgrade(mut stream: TcpStream, server: &DerpServer) -> std::io::Result<TcpStream> {
    stream.set_nodelay(true)?;
    let mut head = Vec::with_capacity(128);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8 << 10 || stream.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    if !text.starts_with("get /derp ") || !text.contains("\r\nupgrade: derp\r\n") {
        stream.write_all(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n").await?;
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\nDerp-Version: 2\r\nDerp-Public-Key: {}\r\n\r\n",
        server.public_key().hex()
    );
    stream.write_all(response.as_bytes()).await?;
    Ok(stream)
}
