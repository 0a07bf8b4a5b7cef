//! The measures: N pairs of raw clients through the relay (or across two meshed relays), next
//! to a plain loopback TCP copy of the same records as the baseline.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tenscale_derp::client::DerpClient;
use tenscale_derp::crypto::DerpSecret;
use tenscale_derp::DerpError;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

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
