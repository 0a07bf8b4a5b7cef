//! The embedded DERP relay through the full server, with our raw DERP client and nodes
//! registered through the control protocol: admission by the store, forwarding inside one
//! namespace only, and disconnection when a node is deleted or expires; a client cannot claim
//! another node's key. Each scenario runs on SQLite and on PostgreSQL.

#[macro_use]
mod support;

use std::time::Duration;

use support::{counter, join_ok, Backend, SimNode, TestServer, TwoNamespaces};
use tenscale::derp::client::DerpClient;
use tenscale::derp::crypto::DerpSecret;
use tenscale::derp::frame::{Frame, FrameType, PeerGoneReason};
use tenscale::derp::DerpError;
use tenscale::keys::NodePublic;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Derp = DerpClient<TcpStream>;

async fn derp_as(server: &TestServer, secret: [u8; 32]) -> Result<Derp, DerpError> {
    DerpClient::connect_tcp(server.app.addr, "127.0.0.1", &DerpSecret::from_bytes(secret)).await
}

async fn derp(server: &TestServer, node: &SimNode) -> Derp {
    derp_as(server, node.node_secret).await.expect("registered node is admitted to DERP")
}

/// The next packet within `within`.
async fn packet_within(client: &mut Derp, within: Duration) -> Option<(NodePublic, Vec<u8>)> {
    let got = tokio::time::timeout(within, client.receiver.recv_packet()).await.ok()?;
    let (src, packet) = got.expect("connection stays open");
    Some((src, packet.to_vec()))
}

/// Waits until the server closes `client`'s connection; fails after `within`.
async fn closed_within(client: &mut Derp, within: Duration) {
    let closed = tokio::time::timeout(within, async {
        loop {
            match client.recv().await {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the DERP connection open");
}

fn dropped(server: &TestServer, reason: &str) -> f64 {
    counter(&server.state().api.metrics, "tenscale_derp_packets_dropped_total", ("reason", reason))
}

/// Two nodes of namespace A and one of namespace B, registered.
struct Tenants {
    server: TestServer,
    key_a: String,
    a1: SimNode,
    a2: SimNode,
    b: SimNode,
}

async fn tenants(backend: Backend) -> Tenants {
    let TwoNamespaces { server, key_a, key_b, .. } = TwoNamespaces::start(backend).await;
    let a1 = join_ok(&server, &key_a).await;
    let a2 = join_ok(&server, &key_a).await;
    let b = join_ok(&server, &key_b).await;
    Tenants { server, key_a, a1, a2, b }
}

async fn unregistered_keys_are_refused(backend: Backend) {
    let t = tenants(backend).await;
    let refused = derp_as(&t.server, support::random_key()).await;
    assert!(matches!(refused, Err(DerpError::Refused)), "{:?}", refused.err());
    assert_eq!(t.server.state().derp.metrics().admission_refused.get(), 1);
    // A registered node still gets in.
    derp(&t.server, &t.a1).await;
}

async fn nodes_of_one_namespace_exchange_packets(backend: Backend) {
    let t = tenants(backend).await;
    let mut a1 = derp(&t.server, &t.a1).await;
    let mut a2 = derp(&t.server, &t.a2).await;
    a1.send_packet(&t.a2.node_key, b"hello a2").await.unwrap();
    let (src, packet) = packet_within(&mut a2, Duration::from_secs(5)).await.expect("a2 receives");
    assert_eq!((src, packet.as_slice()), (t.a1.node_key, &b"hello a2"[..]));
    a2.send_packet(&t.a1.node_key, b"hello a1").await.unwrap();
    let (src, packet) = packet_within(&mut a1, Duration::from_secs(5)).await.expect("a1 receives");
    assert_eq!((src, packet.as_slice()), (t.a2.node_key, &b"hello a1"[..]));
}

async fn another_namespace_delivers_nothing(backend: Backend) {
    let t = tenants(backend).await;
    let mut a1 = derp(&t.server, &t.a1).await;
    let mut a2 = derp(&t.server, &t.a2).await;
    let mut b = derp(&t.server, &t.b).await;
    const SENT: usize = 20;
    for i in 0..SENT {
        b.send_packet(&t.a1.node_key, format!("intrusion {i}").as_bytes()).await.unwrap();
    }
    // Counted as other-namespace drops once the relay has read them all.
    let server = &t.server;
    support::eventually(Duration::from_secs(5), "all intruding packets are counted", || async {
        dropped(server, "other_namespace") >= SENT as f64
    })
    .await;
    assert_eq!(dropped(server, "other_namespace"), SENT as f64);
    // a1 receives nothing within a window...
    assert!(packet_within(&mut a1, Duration::from_secs(1)).await.is_none(), "a packet crossed namespaces");
    // ...yet its connection works: the next packet it gets is a2's.
    a2.send_packet(&t.a1.node_key, b"from a2").await.unwrap();
    let (src, packet) = packet_within(&mut a1, Duration::from_secs(5)).await.expect("a1 receives a2");
    assert_eq!((src, packet.as_slice()), (t.a2.node_key, &b"from a2"[..]));
    // The sender learns no more than for an unknown key: nothing arrives at b either.
    assert!(packet_within(&mut b, Duration::from_millis(200)).await.is_none());
    // Nor the other way: what a1 sends to b's key is dropped, and b receives nothing of it.
    for i in 0..SENT {
        a1.send_packet(&t.b.node_key, format!("leak {i}").as_bytes()).await.unwrap();
    }
    support::eventually(Duration::from_secs(5), "all leaking packets are counted", || async {
        dropped(server, "other_namespace") >= 2.0 * SENT as f64
    })
    .await;
    assert!(packet_within(&mut b, Duration::from_secs(1)).await.is_none(), "a packet crossed namespaces");
}

async fn deleting_a_node_disconnects_it(backend: Backend) {
    let t = tenants(backend).await;
    let mut a1 = derp(&t.server, &t.a1).await;
    let mut a2 = derp(&t.server, &t.a2).await;
    // a1 talked to a2, so a2 is told when a1 goes.
    a1.send_packet(&t.a2.node_key, b"hi").await.unwrap();
    packet_within(&mut a2, Duration::from_secs(5)).await.expect("a2 receives");

    let node = t.a1.stored(&t.server).await;
    let state = t.server.state();
    assert!(state.api.writer.delete_node(&node, None).await.unwrap());
    closed_within(&mut a1, Duration::from_secs(1)).await;
    let gone = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match a2.recv().await.expect("a2 stays connected") {
                Some(Frame::PeerGone { key, reason }) => return (key, reason),
                Some(_) => continue,
                None => panic!("a2 was disconnected"),
            }
        }
    })
    .await
    .expect("a2 hears that a1 is gone");
    assert_eq!(gone, (t.a1.node_key, PeerGoneReason::Disconnected));
    // And it cannot come back.
    assert!(matches!(derp_as(&t.server, t.a1.node_secret).await, Err(DerpError::Refused)));
}

async fn expired_keys_are_refused_and_cut_off(backend: Backend) {
    let t = tenants(backend).await;
    let state = t.server.state();
    let past = Some(chrono::Utc::now() - chrono::Duration::seconds(5));

    // Expired before connecting: refused.
    let node = t.a1.stored(&t.server).await;
    state.api.writer.set_key_expiry(&node, past, None).await.unwrap();
    assert!(matches!(derp_as(&t.server, t.a1.node_secret).await, Err(DerpError::Refused)));

    // Expiring while connected: disconnected at once.
    let mut a2 = derp(&t.server, &t.a2).await;
    let node = t.a2.stored(&t.server).await;
    state.api.writer.set_key_expiry(&node, past, None).await.unwrap();
    closed_within(&mut a2, Duration::from_secs(1)).await;
    assert!(matches!(derp_as(&t.server, t.a2.node_secret).await, Err(DerpError::Refused)));
}

/// Opens `/derp` and sends a ClientInfo that names `claimed` but is sealed with `sealer`'s
/// private key; returns every byte the server sends after its ServerKey frame.
async fn forged_client_info(server: &TestServer, claimed: &NodePublic, sealer: &DerpSecret) -> Vec<u8> {
    let mut stream = TcpStream::connect(server.app.addr).await.unwrap();
    stream.write_all(b"GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n").await.unwrap();
    // The 101 head, then the ServerKey frame: type(1) length(4) magic(8) key(32).
    let mut got = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 512];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before ServerKey");
        got.extend_from_slice(&chunk[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            if got.len() >= end + 4 + 45 {
                break end + 4;
            }
        }
    };
    assert!(got.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&got));
    let frame = &got[head_end..];
    assert_eq!(frame[0], FrameType::ServerKey as u8);
    let server_key = NodePublic(frame[13..45].try_into().unwrap());
    let sealed = sealer.seal(&server_key, br#"{"version":2,"CanAckPings":true}"#).unwrap();
    stream.write_all(&Frame::ClientInfo { key: *claimed, sealed: sealed.into() }.to_bytes()).await.unwrap();
    let mut rest = got[head_end + 45..].to_vec();
    let closed = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the server kept a forged ClientInfo's connection open");
    rest
}

/// A ClientInfo naming a2's key but sealed by another private key — a node of the same
/// namespace, a node of another namespace, an unregistered key — is refused: the connection
/// closes without a ServerInfo (so without any packet), and the genuine a2, connected all
/// along, keeps receiving its packets. (`src/derp/tests.rs` checks the same refusal against
/// the bare relay; this is the whole server, with admission by the store.)
async fn a_client_cannot_claim_another_nodes_key(backend: Backend) {
    let t = tenants(backend).await;
    let mut a1 = derp(&t.server, &t.a1).await;
    let mut a2 = derp(&t.server, &t.a2).await;
    let failed_before = t.server.state().derp.metrics().handshake_failed.get();
    let sealers = [
        DerpSecret::from_bytes(t.a1.node_secret),
        DerpSecret::from_bytes(t.b.node_secret),
        DerpSecret::from_bytes(support::random_key()),
    ];
    for (i, sealer) in sealers.iter().enumerate() {
        let answer = forged_client_info(&t.server, &t.a2.node_key, sealer).await;
        assert!(answer.is_empty(), "sealer {i}: the server answered a forged ClientInfo with {answer:?}");
        // The genuine holder still gets what is sent to its key.
        let packet = format!("to the real a2, {i}");
        a1.send_packet(&t.a2.node_key, packet.as_bytes()).await.unwrap();
        let (src, got) = packet_within(&mut a2, Duration::from_secs(5)).await.expect("a2 receives");
        assert_eq!((src, got), (t.a1.node_key, packet.into_bytes()));
    }
    assert_eq!(t.server.state().derp.metrics().handshake_failed.get(), failed_before + sealers.len() as u64);
    // The key's holder can still open a second connection for it.
    derp(&t.server, &t.a2).await;
}

/// Key rotation (re-register with OldNodeKey), or the same machine registering again with a
/// pre-auth key and a new node key, retires the old key: its DERP connection is cut and it is
/// refused from then on; the new key gets in.
async fn a_rotated_away_key_is_cut_off(backend: Backend) {
    let t = tenants(backend).await;
    let a1_id = t.a1.stored(&t.server).await.id;
    let mut old = derp(&t.server, &t.a1).await;
    let new_secret = support::random_key();
    let new_key = DerpSecret::from_bytes(new_secret).public();
    let mut rotate = support::register_request(new_key, None);
    rotate.old_node_key = t.a1.node_key;
    let resp = t.a1.client.register(&rotate).await.unwrap();
    assert!(resp.error.is_empty() && resp.machine_authorized, "{resp:?}");
    closed_within(&mut old, Duration::from_secs(1)).await;
    assert!(matches!(derp_as(&t.server, t.a1.node_secret).await, Err(DerpError::Refused)));
    let mut current = derp_as(&t.server, new_secret).await.expect("the new key is admitted");

    let newest_secret = support::random_key();
    let newest_key = DerpSecret::from_bytes(newest_secret).public();
    let resp = t.a1.client.register(&support::register_request(newest_key, Some(&t.key_a))).await.unwrap();
    assert!(resp.error.is_empty() && resp.machine_authorized, "{resp:?}");
    assert_eq!(t.server.state().api.store.node_by_node_key(&newest_key).await.unwrap().expect("same node").id, a1_id);
    closed_within(&mut current, Duration::from_secs(1)).await;
    assert!(matches!(derp_as(&t.server, new_secret).await, Err(DerpError::Refused)));
    derp_as(&t.server, newest_secret).await.expect("the newest key is admitted");
}

on_both_backends!(
    unregistered_keys_are_refused,
    nodes_of_one_namespace_exchange_packets,
    another_namespace_delivers_nothing,
    deleting_a_node_disconnects_it,
    expired_keys_are_refused_and_cut_off,
    a_rotated_away_key_is_cut_off,
    a_client_cannot_claim_another_nodes_key,
);
