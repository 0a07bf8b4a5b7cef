//! Relay harness for tests and benchmarks: a plain-TCP listener that does the `GET /derp`
//! upgrade itself and hands each connection to [`serve_client`], plus a throughput benchmark
//! (N pairs of raw clients through the relay) next to a plain loopback TCP copy baseline.
//!
//! The production front (TLS, actix hand-off) lives elsewhere; this one exists so tests and the
//! bench binary exercise the relay through real sockets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::client::DerpClient;
use super::crypto::DerpSecret;
use super::server::{serve_client, Admission, DerpServer, TenantId};
use super::DerpError;
use crate::keys::NodePublic;

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
    let key = super::mesh::MeshKey::parse(&hex::encode(rand::random::<[u8; 32]>())).expect("64 hex digits");
    let mut relays = Vec::with_capacity(n);
    for _ in 0..n {
        let metrics =
            super::server::DerpMetrics::register(&prometheus::Registry::new()).map_err(std::io::Error::other)?;
        let config = super::server::DerpConfig { mesh_key: Some(key.clone()), ..Default::default() };
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

/// One benchmark's result.
#[derive(Debug, Clone)]
pub struct Throughput {
    pub packets: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Throughput {
    pub fn packets_per_sec(&self) -> f64 {
        self.packets as f64 / self.elapsed.as_secs_f64()
    }

    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

impl std::fmt::Display for Throughput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>10.0} packets/s  {:>8.1} MB/s  ({} packets in {:.2?})",
            self.packets_per_sec(),
            self.mb_per_sec(),
            self.packets,
            self.elapsed
        )
    }
}

/// Packets per flush on the sending side: a busy client's writes coalesce like this too.
const SEND_BATCH: usize = 16;

/// `pairs` sender→receiver client pairs push `packet_size`-byte packets through a relay at
/// `relay` for `duration`, counting packets received.
///
/// `window` bounds the packets a sender has in flight (sent, not yet received), like a
/// transport with flow control would; with `window` ≤ the relay's queue length nothing is
/// dropped and the figure is the relay's sustainable rate. `None` floods: the relay then drops
/// at the receivers' queues and CPU goes into dropping (an overload test, not a throughput one).
pub async fn relay_throughput(
    relay: SocketAddr,
    pairs: usize,
    packet_size: usize,
    window: Option<u64>,
    duration: Duration,
) -> Result<Throughput, DerpError> {
    relay_throughput_between(relay, relay, || async {}, pairs, packet_size, window, duration).await
}

/// [`relay_throughput`] with the senders on relay `from` and the receivers on relay `to` (two
/// meshed relays: every packet crosses the mesh). `routed` is awaited once every client is
/// connected and must return once `from` can route to the receivers.
pub async fn relay_throughput_between<R, F>(
    from: SocketAddr,
    to: SocketAddr,
    routed: R,
    pairs: usize,
    packet_size: usize,
    window: Option<u64>,
    duration: Duration,
) -> Result<Throughput, DerpError>
where
    R: FnOnce() -> F,
    F: std::future::Future<Output = ()>,
{
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let mut pending = Vec::new();
    for _ in 0..pairs {
        let a = DerpClient::connect_tcp(from, "127.0.0.1", &DerpSecret::generate()).await?;
        let b = DerpClient::connect_tcp(to, "127.0.0.1", &DerpSecret::generate()).await?;
        pending.push((a, b));
    }
    routed().await;
    for (a, b) in pending {
        let dst = b.public_key();
        let (mut sender, a_rx) = a.into_split();
        let (b_tx, mut receiver) = b.into_split();
        let pair_received = Arc::new(AtomicU64::new(0));
        let wake = Arc::new(Notify::new());
        let (stop_tx, seen, wake_tx) = (stop.clone(), pair_received.clone(), wake.clone());
        tasks.push(tokio::spawn(async move {
            let _keep = a_rx;
            let packet = vec![0x5au8; packet_size];
            let mut sent = 0u64;
            while !stop_tx.load(Ordering::Relaxed) {
                let room = window.map_or(SEND_BATCH as u64, |w| w.saturating_sub(sent - seen.load(Ordering::Acquire)));
                if room == 0 {
                    // The timeout only guards against a lost packet stalling the window.
                    let _ = tokio::time::timeout(Duration::from_millis(50), wake_tx.notified()).await;
                    continue;
                }
                for _ in 0..room.min(SEND_BATCH as u64) {
                    sender.write_packet(&dst, &packet).await?;
                    sent += 1;
                }
                sender.flush().await?;
            }
            Ok::<(), DerpError>(())
        }));
        let count = received.clone();
        tasks.push(tokio::spawn(async move {
            let _keep = b_tx;
            loop {
                receiver.recv_packet().await?;
                pair_received.fetch_add(1, Ordering::Release);
                count.fetch_add(1, Ordering::Relaxed);
                wake.notify_one();
            }
        }));
    }
    // Warm up, then measure a clean window.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start_count = received.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(duration).await;
    let packets = received.load(Ordering::Relaxed) - start_count;
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.abort();
    }
    Ok(Throughput { packets, bytes: packets * packet_size as u64, elapsed })
}

/// The baseline: the same pairs and record sizes (DERP header + key + packet) through a plain
/// loopback TCP proxy that only copies bytes, measured the same way.
pub async fn tcp_copy_throughput(pairs: usize, packet_size: usize, duration: Duration) -> std::io::Result<Throughput> {
    let record = 5 + 32 + packet_size;
    let sink = TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr = sink.local_addr()?;
    let proxy = TcpListener::bind("127.0.0.1:0").await?;
    let proxy_addr = proxy.local_addr()?;
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks: Vec<JoinHandle<std::io::Result<()>>> = Vec::new();
    tasks.push(tokio::spawn(async move {
        while let Ok((mut inbound, _)) = proxy.accept().await {
            tokio::spawn(async move {
                let mut outbound = TcpStream::connect(sink_addr).await?;
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                tokio::io::copy(&mut inbound, &mut outbound).await
            });
        }
        Ok(())
    }));
    let count = received.clone();
    tasks.push(tokio::spawn(async move {
        while let Ok((mut stream, _)) = sink.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = stream.read(&mut buf).await?;
                    if n == 0 {
                        return Ok::<(), std::io::Error>(());
                    }
                    count.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
        Ok(())
    }));
    for _ in 0..pairs {
        let stream = TcpStream::connect(proxy_addr).await?;
        stream.set_nodelay(true)?;
        tasks.push(tokio::spawn(async move {
            let mut writer = BufWriter::with_capacity(16 << 10, stream);
            let data = vec![0x5au8; record];
            loop {
                for _ in 0..SEND_BATCH {
                    writer.write_all(&data).await?;
                }
                writer.flush().await?;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start_bytes = received.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(duration).await;
    let bytes = received.load(Ordering::Relaxed) - start_bytes;
    let elapsed = start.elapsed();
    for task in tasks {
        task.abort();
    }
    let packets = bytes / record as u64;
    Ok(Throughput { packets, bytes: packets * packet_size as u64, elapsed })
}
