//! Relay throughput next to a plain loopback TCP copy, and the memory of idle connections.
//!
//! `cargo run --release -p tenscale-derp-bench -- [pairs] [seconds] [idle_connections]`
//! (`idle_connections` = 0 skips the memory part; it re-runs this binary as the client side so
//! the server's RSS is measured alone.)
//!
//! `cargo run --release -p tenscale-derp-bench -- mesh [pairs] [seconds]`: two meshed relays;
//! pairs on one relay next to pairs whose every packet crosses the mesh.

use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use tenscale_derp::client::DerpClient;
use tenscale_derp::crypto::DerpSecret;
use tenscale_derp::server::{DerpConfig, DerpMetrics, DerpServer, DropReason};
use tenscale_derp::testkit::{meshed_relays, spawn_plain_relay, AdmitAll};
use tenscale_machine::Machine;

use self::throughput::{relay_throughput, relay_throughput_between, tcp_copy_throughput};

mod throughput;

const PACKET: usize = 1200;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn start_relay() -> (Arc<DerpServer>, std::net::SocketAddr) {
    let metrics = DerpMetrics::register(&Registry::new()).expect("metrics");
    let server = DerpServer::new(DerpSecret::generate(), DerpConfig::default(), Arc::new(AdmitAll), metrics);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    spawn_plain_relay(server.clone(), listener);
    (server, addr)
}

/// Client side of the idle test: open `n` connections to `addr`, print "ready", wait for EOF.
async fn idle_clients(addr: std::net::SocketAddr, n: usize) {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(DerpClient::connect_tcp(addr, "127.0.0.1", &DerpSecret::generate()).await.expect("connect"));
    }
    println!("ready");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(clients);
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("idle-clients") {
        let addr = args[2].parse().expect("addr");
        let n = args[3].parse().expect("n");
        idle_clients(addr, n).await;
        return;
    }
    if args.get(1).map(String::as_str) == Some("mesh") {
        let pairs: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(4);
        let secs: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(5);
        mesh(pairs, Duration::from_secs(secs)).await;
        return;
    }
    let pairs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(4);
    let secs: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let idle: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(0);
    let duration = Duration::from_secs(secs);

    let (server, addr) = start_relay().await;
    let m = server.metrics();
    let queue_full = || m.dropped(DropReason::QueueFull).get();
    println!("machine: {}", Machine::probe());
    // The copy and the unwindowed relay are driven and counted the same way: senders write as
    // fast as their sockets take, receivers count what arrives (drops cannot inflate it).
    let tcp = tcp_copy_throughput(pairs, PACKET, duration).await.expect("tcp bench");
    println!("TCP copy,   {pairs} pairs, {PACKET} B:            {tcp}");
    let flood = relay_throughput(addr, pairs, PACKET, None, duration).await.expect("relay flood");
    let dropped = queue_full();
    println!("DERP relay, {pairs} pairs, {PACKET} B, unwindowed: {flood}  (queue_full drops: {dropped})");
    // With at most 32 packets in flight per sender (the relay's queue length), nothing can be
    // dropped; this adds the benchmark's own receiver-to-sender feedback to every window.
    let windowed = relay_throughput(addr, pairs, PACKET, Some(32), duration).await.expect("relay bench");
    println!(
        "DERP relay, {pairs} pairs, {PACKET} B, window 32:  {windowed}  (queue_full drops: {})",
        queue_full() - dropped
    );
    println!(
        "relay / copy: unwindowed {:.2}, window 32 {:.2}",
        flood.packets_per_sec() / tcp.packets_per_sec(),
        windowed.packets_per_sec() / tcp.packets_per_sec()
    );

    if idle > 0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (server, addr) = start_relay().await;
        let before = rss_kib();
        let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args(["idle-clients", &addr.to_string(), &idle.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn clients");
        let stdout = child.stdout.take().expect("stdout");
        let ready = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).map(|_| line)
        })
        .await
        .expect("join")
        .expect("read");
        assert_eq!(ready.trim(), "ready");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let connected = server.metrics().connections.get();
        let after = rss_kib();
        println!(
            "idle: {connected} DERP connections, server RSS {before} KiB -> {after} KiB, {:.1} KiB/connection",
            (after - before) as f64 / connected.max(1) as f64
        );
        drop(child.stdin.take());
        let _ = child.wait();
    }
}

/// One relay's pairs next to pairs split over two meshed relays, windowed and not.
async fn mesh(pairs: usize, duration: Duration) {
    println!("machine: {}", Machine::probe());
    for window in [Some(32), None] {
        // Fresh relays for each round: no routes left over from the last one.
        let relays = meshed_relays(2).await.expect("two meshed relays");
        let ((a, a_addr), (b, b_addr)) = (relays[0].clone(), relays[1].clone());
        let label = window.map_or("unwindowed".to_string(), |w| format!("window {w}"));
        let one = relay_throughput(a_addr, pairs, PACKET, window, duration).await.expect("one relay");
        println!("one relay,      {pairs} pairs, {PACKET} B, {label:>10}: {one}");
        let routed = || async {
            while a.mesh_routes() < pairs {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let across =
            relay_throughput_between(a_addr, b_addr, routed, pairs, PACKET, window, duration).await.expect("mesh");
        println!("across the mesh, {pairs} pairs, {PACKET} B, {label:>10}: {across}");
        println!("  across / one relay: {:.2}", across.packets_per_sec() / one.packets_per_sec());
        println!(
            "  forwarded by relay 1: {}, received from the mesh by relay 2: {}",
            a.metrics().packets_forwarded.get(),
            b.metrics().packets_from_mesh.get()
        );
    }
}
