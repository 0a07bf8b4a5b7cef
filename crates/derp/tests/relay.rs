//! End-to-end tests of the relay through real loopback sockets: a listener that writes the 101
//! itself, then `serve_client`; raw clients on the other side.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prometheus::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use tenscale_base::keys::NodePublic;
use tenscale_derp::client::DerpClient;
use tenscale_derp::crypto::{ClientInfo, DerpSecret};
use tenscale_derp::frame::{self, Frame, FrameType, PeerGoneReason};
use tenscale_derp::server::{DerpConfig, DerpMetrics, DerpServer, DropReason, TenantId};
use tenscale_derp::testkit::{spawn_plain_relay, StaticAdmission};
use tenscale_derp::DerpError;

type Client = DerpClient<TcpStream>;

struct Relay {
    server: Arc<DerpServer>,
    addr: SocketAddr,
    admission: StaticAdmission,
}

async fn relay(config: DerpConfig) -> Relay {
    let admission = StaticAdmission::default();
    let metrics = DerpMetrics::register(&Registry::new()).unwrap();
    let server = DerpServer::new(DerpSecret::generate(), config, Arc::new(admission.clone()), metrics);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    spawn_plain_relay(server.clone(), listener);
    Relay { server, addr, admission }
}

impl Relay {
    /// A handshaken client admitted under `tenant`.
    async fn client(&self, tenant: i64) -> Client {
        let secret = DerpSecret::generate();
        self.admission.allow(secret.public(), TenantId(tenant));
        self.connect(&secret).await.unwrap()
    }

    async fn connect(&self, secret: &DerpSecret) -> Result<Client, DerpError> {
        DerpClient::connect_tcp(self.addr, "127.0.0.1", secret).await
    }

    /// A TCP stream past the 101, before any frame.
    async fn raw(&self) -> TcpStream {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        stream
            .write_all(b"GET /derp HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n")
            .await
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
        stream
    }

    fn dropped(&self, reason: DropReason) -> u64 {
        self.server.metrics().dropped(reason).get()
    }

    /// Waits until the connection gauge reads `n`.
    async fn wait_connections(&self, n: i64) {
        for _ in 0..200 {
            if self.server.metrics().connections.get() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("connections gauge stayed at {}, wanted {n}", self.server.metrics().connections.get());
    }
}

async fn recv(client: &mut Client) -> Option<Frame> {
    timeout(Duration::from_secs(3), client.recv()).await.expect("no frame within 3 s").ok().flatten()
}

/// Next frame other than KeepAlive.
async fn recv_non_keepalive(client: &mut Client) -> Option<Frame> {
    loop {
        match recv(client).await {
            Some(Frame::KeepAlive) => continue,
            other => return other,
        }
    }
}

/// Asserts the server closes the connection (EOF or reset) soon.
async fn assert_closed(client: &mut Client) {
    let end = timeout(Duration::from_secs(3), async {
        loop {
            match client.recv().await {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "connection still open");
}

/// Ping and expect the very next (non-keep-alive) frame to be the Pong: proves nothing else
/// was queued for this client in between.
async fn assert_nothing_pending(client: &mut Client, tag: u8) {
    client.ping([tag; 8]).await.unwrap();
    assert_eq!(recv_non_keepalive(client).await, Some(Frame::Pong { data: [tag; 8] }));
}

fn disco_packet() -> Vec<u8> {
    let mut packet = frame::DISCO_MAGIC.to_vec();
    packet.resize(frame::DISCO_MIN_LEN + 10, 7);
    packet
}

#[tokio::test]
async fn handshake_gives_server_key_and_info() {
    let relay = relay(DerpConfig::default()).await;
    let client = relay.client(1).await;
    assert_eq!(client.server_key(), relay.server.public_key());
    assert_eq!(client.server_info().version, 2);
    relay.wait_connections(1).await;
    assert_eq!(relay.server.metrics().accepted.get(), 1);
}

#[tokio::test]
async fn the_real_client_info_json_is_accepted() {
    // Seal the captured JSON bytes exactly as a real client sends them.
    let relay = relay(DerpConfig::default()).await;
    let secret = DerpSecret::generate();
    relay.admission.allow(secret.public(), TenantId(1));
    let mut stream = relay.raw().await;
    let mut server_key = [0u8; 45];
    stream.read_exact(&mut server_key).await.unwrap();
    let key = match frame::decode_one(&mut bytes::BytesMut::from(&server_key[..])).unwrap() {
        Some(frame::Decoded::Frame(Frame::ServerKey { key })) => key,
        other => panic!("{other:?}"),
    };
    let json = include_bytes!("../../../tests/fixtures/derp_clientinfo.json");
    let sealed = secret.seal(&key, json).unwrap();
    let info = Frame::ClientInfo { key: secret.public(), sealed: sealed.into() };
    stream.write_all(&info.to_bytes()).await.unwrap();
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], FrameType::ServerInfo as u8);
    let mut body = vec![0u8; frame::parse_header(&head).1];
    stream.read_exact(&mut body).await.unwrap();
    assert_eq!(secret.open(&key, &body).unwrap(), br#"{"version":2}"#);
}

#[tokio::test]
async fn unknown_key_is_refused_after_client_info() {
    let relay = relay(DerpConfig::default()).await;
    let stranger = DerpSecret::generate();
    let result = relay.connect(&stranger).await;
    assert!(matches!(result, Err(DerpError::Refused)), "{:?}", result.err());
    assert_eq!(relay.server.metrics().admission_refused.get(), 1);
    assert_eq!(relay.server.metrics().connections.get(), 0);
    // A known key still gets in afterwards.
    relay.client(1).await;
}

#[tokio::test]
async fn client_info_from_a_key_that_does_not_own_the_box_is_refused() {
    let relay = relay(DerpConfig::default()).await;
    let owner = DerpSecret::generate();
    let claimed = DerpSecret::generate();
    relay.admission.allow(claimed.public(), TenantId(1));
    let mut stream = relay.raw().await;
    let mut server_key = [0u8; 45];
    stream.read_exact(&mut server_key).await.unwrap();
    let key = NodePublic(server_key[13..].try_into().unwrap());
    // Sealed by `owner`, but claiming to be `claimed`: the box does not open.
    let sealed = owner.seal(&key, br#"{"version":2}"#).unwrap();
    stream.write_all(&Frame::ClientInfo { key: claimed.public(), sealed: sealed.into() }.to_bytes()).await.unwrap();
    let mut rest = Vec::new();
    let n = timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "server answered a forged ClientInfo");
    assert_eq!(relay.server.metrics().handshake_failed.get(), 1);
}

#[tokio::test]
async fn packet_between_same_tenant_clients_arrives_with_source_key() {
    let relay = relay(DerpConfig::default()).await;
    let mut a = relay.client(1).await;
    let mut b = relay.client(1).await;
    a.note_preferred(true).await.unwrap();
    a.send_packet(&b.public_key(), b"hello from a").await.unwrap();
    let frame = recv_non_keepalive(&mut b).await;
    assert_eq!(frame, Some(Frame::RecvPacket { src: a.public_key(), packet: Bytes::from_static(b"hello from a") }));
    // And back, a full 64 KiB packet.
    let big = vec![0xabu8; frame::MAX_PACKET_SIZE];
    b.send_packet(&a.public_key(), &big).await.unwrap();
    match recv_non_keepalive(&mut a).await {
        Some(Frame::RecvPacket { src, packet }) => {
            assert_eq!(src, b.public_key());
            assert_eq!(&packet[..], &big[..]);
        }
        other => panic!("{other:?}"),
    }
    let metrics = relay.server.metrics();
    assert_eq!(metrics.packets_relayed.get(), 2);
    assert_eq!(metrics.bytes_relayed.get(), 12 + frame::MAX_PACKET_SIZE as u64);
}

#[tokio::test]
async fn other_tenant_destination_looks_exactly_like_an_unknown_one() {
    let relay = relay(DerpConfig::default()).await;
    let mut a = relay.client(1).await; // tenant A's sender
    let mut c = relay.client(2).await; // tenant B's node
    let nobody = DerpSecret::generate().public();

    // Ordinary packets: dropped silently in both cases.
    a.send_packet(&c.public_key(), b"cross-tenant").await.unwrap();
    a.send_packet(&nobody, b"to nobody").await.unwrap();
    assert_nothing_pending(&mut a, 1).await;
    assert_eq!(relay.dropped(DropReason::OtherNamespace), 1);
    assert_eq!(relay.dropped(DropReason::UnknownPeer), 1);
    assert_eq!(relay.server.metrics().packets_relayed.get(), 0);

    // Disco packets: both answered with the same PeerGone(NotHere).
    a.send_packet(&c.public_key(), &disco_packet()).await.unwrap();
    let other_tenant = recv_non_keepalive(&mut a).await;
    a.send_packet(&nobody, &disco_packet()).await.unwrap();
    let unknown = recv_non_keepalive(&mut a).await;
    assert_eq!(other_tenant, Some(Frame::PeerGone { key: c.public_key(), reason: PeerGoneReason::NotHere }));
    assert_eq!(unknown, Some(Frame::PeerGone { key: nobody, reason: PeerGoneReason::NotHere }));

    // Tenant B's node received none of it; a same-tenant packet is its first frame.
    let mut d = relay.client(2).await;
    d.send_packet(&c.public_key(), b"same tenant").await.unwrap();
    match recv_non_keepalive(&mut c).await {
        Some(Frame::RecvPacket { src, .. }) => assert_eq!(src, d.public_key()),
        other => panic!("{other:?}"),
    }
    assert_nothing_pending(&mut d, 2).await;
}

#[tokio::test]
async fn peer_gone_not_here_is_rate_limited() {
    let relay = relay(DerpConfig::default()).await;
    let mut a = relay.client(1).await;
    let nobody = DerpSecret::generate().public();
    for _ in 0..10 {
        a.send_packet(&nobody, &disco_packet()).await.unwrap();
    }
    for _ in 0..3 {
        assert!(matches!(
            recv_non_keepalive(&mut a).await,
            Some(Frame::PeerGone { reason: PeerGoneReason::NotHere, .. })
        ));
    }
    assert_nothing_pending(&mut a, 3).await;
    assert_eq!(relay.dropped(DropReason::UnknownPeer), 10);
}

#[tokio::test]
async fn ping_gets_pong_and_client_pong_is_ignored() {
    let relay = relay(DerpConfig::default()).await;
    let mut a = relay.client(1).await;
    a.ping(*b"12345678").await.unwrap();
    assert_eq!(recv_non_keepalive(&mut a).await, Some(Frame::Pong { data: *b"12345678" }));
    a.send_frame(&Frame::Pong { data: [9; 8] }).await.unwrap();
    // A long ping (up to 1000 bytes) is answered with its first 8 bytes.
    let mut long = Frame::Ping { data: *b"abcdefgh" }.to_bytes().to_vec();
    long[1..5].copy_from_slice(&20u32.to_be_bytes());
    long.extend_from_slice(&[0u8; 12]);
    a.sender.send_raw(&long).await.unwrap();
    assert_eq!(recv_non_keepalive(&mut a).await, Some(Frame::Pong { data: *b"abcdefgh" }));
}

#[tokio::test]
async fn keep_alives_are_sent_on_the_configured_interval() {
    let config =
        DerpConfig { keep_alive: Duration::from_millis(100), keep_alive_jitter: Duration::ZERO, ..Default::default() };
    let relay = relay(config).await;
    let mut a = relay.client(1).await;
    let start = std::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(recv(&mut a).await, Some(Frame::KeepAlive));
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[tokio::test]
async fn close_node_disconnects_every_connection_and_tells_receivers() {
    let relay = relay(DerpConfig::default()).await;
    let secret = DerpSecret::generate();
    relay.admission.allow(secret.public(), TenantId(1));
    let mut a1 = relay.connect(&secret).await.unwrap();
    let mut a2 = relay.connect(&secret).await.unwrap();
    let mut b = relay.client(1).await;
    let mut other_tenant = relay.client(2).await;
    relay.wait_connections(4).await;
    a2.send_packet(&b.public_key(), b"x").await.unwrap();
    assert!(matches!(recv_non_keepalive(&mut b).await, Some(Frame::RecvPacket { .. })));

    assert_eq!(relay.server.close_node(&secret.public()), 2);
    assert_closed(&mut a1).await;
    assert_closed(&mut a2).await;
    assert_eq!(relay.server.connection_count(&secret.public()), 0);
    assert_eq!(
        recv_non_keepalive(&mut b).await,
        Some(Frame::PeerGone { key: secret.public(), reason: PeerGoneReason::Disconnected })
    );
    assert_nothing_pending(&mut b, 4).await;
    assert_nothing_pending(&mut other_tenant, 5).await;
    relay.wait_connections(2).await;
}

#[tokio::test]
async fn duplicate_connections_most_recent_wins() {
    let relay = relay(DerpConfig::default()).await;
    let secret = DerpSecret::generate();
    relay.admission.allow(secret.public(), TenantId(1));
    let mut old = relay.connect(&secret).await.unwrap();
    let mut new = relay.connect(&secret).await.unwrap();
    let mut b = relay.client(1).await;
    relay.wait_connections(3).await;
    b.send_packet(&secret.public(), b"one").await.unwrap();
    assert!(matches!(recv_non_keepalive(&mut new).await, Some(Frame::RecvPacket { .. })));
    assert_nothing_pending(&mut old, 1).await;
    // When the newest goes, the older one takes over, and no PeerGone is sent yet.
    drop(new);
    relay.wait_connections(2).await;
    b.send_packet(&secret.public(), b"two").await.unwrap();
    assert!(matches!(recv_non_keepalive(&mut old).await, Some(Frame::RecvPacket { .. })));
    assert_nothing_pending(&mut b, 2).await;
    // The last one leaving triggers PeerGone to the peer that received from it.
    old.send_packet(&b.public_key(), b"reply").await.unwrap();
    assert!(matches!(recv_non_keepalive(&mut b).await, Some(Frame::RecvPacket { .. })));
    drop(old);
    assert_eq!(
        recv_non_keepalive(&mut b).await,
        Some(Frame::PeerGone { key: secret.public(), reason: PeerGoneReason::Disconnected })
    );
}

#[tokio::test]
async fn slow_receiver_causes_queue_full_drops_not_unbounded_memory() {
    // A generous write timeout so the stalled writer is not closed during the test.
    let config = DerpConfig { send_queue_len: 4, write_timeout: Duration::from_secs(30), ..Default::default() };
    let relay = relay(config).await;
    let a = relay.client(1).await;
    let mut b = relay.client(1).await;
    let dst = b.public_key();
    let (mut sender, _a_rx) = a.into_split();
    const SENT: u64 = 20_000; // 24 MB: far more than the socket buffers hold
    let packet = vec![1u8; 1200];
    for _ in 0..SENT {
        sender.write_packet(&dst, &packet).await.unwrap();
    }
    sender.flush().await.unwrap();
    // Every packet is accounted for: either relayed (queued) or dropped as queue_full.
    let metrics = relay.server.metrics();
    for _ in 0..300 {
        if metrics.packets_relayed.get() + relay.dropped(DropReason::QueueFull) == SENT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let relayed = metrics.packets_relayed.get();
    assert_eq!(relayed + relay.dropped(DropReason::QueueFull), SENT);
    assert!(relay.dropped(DropReason::QueueFull) > SENT / 2, "queue_full = {}", relay.dropped(DropReason::QueueFull));
    // The receiver then gets exactly what was queued: nothing more was kept anywhere.
    let mut received = 0;
    while received < relayed {
        b.receiver.recv_packet().await.unwrap();
        received += 1;
    }
    assert_nothing_pending(&mut b, 6).await;
}

#[tokio::test]
async fn every_client_frame_type_is_handled_or_skipped() {
    let relay = relay(DerpConfig::default()).await;
    let mut a = relay.client(1).await;
    let k = NodePublic([3; 32]);
    // Types a server never reads from a client are skipped; the connection lives on.
    let skipped = [
        Frame::ServerKey { key: k },
        Frame::ServerInfo { sealed: Bytes::from(vec![0u8; 40]) },
        Frame::RecvPacket { src: k, packet: Bytes::from_static(b"p") },
        Frame::KeepAlive,
        Frame::PeerGone { key: k, reason: PeerGoneReason::NotHere },
        Frame::PeerPresent(frame::PeerPresent { key: k, ip: std::net::Ipv6Addr::LOCALHOST, port: 1, flags: 1 }),
        Frame::Health { problem: "x".into() },
        Frame::Restarting { reconnect_in_ms: 1, try_for_ms: 2 },
        Frame::NotePreferred { preferred: false },
        Frame::Pong { data: [0; 8] },
    ];
    for frame in &skipped {
        a.send_frame(frame).await.unwrap();
    }
    // Unassigned type bytes, including one with a large payload, are skipped too.
    a.sender.send_raw(&[0x0b, 0, 0, 0, 3, 1, 2, 3]).await.unwrap();
    let mut big = vec![0xee, 0, 0x08, 0, 0];
    big.resize(5 + (0x08 << 16), 0);
    a.sender.send_raw(&big).await.unwrap();
    assert_nothing_pending(&mut a, 7).await;
    relay.wait_connections(1).await;
}

#[tokio::test]
async fn mesh_frames_and_bad_frames_close_the_connection() {
    let relay = relay(DerpConfig::default()).await;
    let k = NodePublic([4; 32]);
    let closing: Vec<Vec<u8>> = vec![
        Frame::WatchConns.to_bytes().to_vec(),
        Frame::ClosePeer { key: k }.to_bytes().to_vec(),
        Frame::ForwardPacket { src: k, dst: k, packet: Bytes::from_static(b"f") }.to_bytes().to_vec(),
        Frame::ClientInfo { key: k, sealed: Bytes::from(vec![0u8; 40]) }.to_bytes().to_vec(),
        vec![0x07, 0, 0, 0, 2, 1, 1],       // NotePreferred of 2 bytes
        vec![0x12, 0, 0, 0, 3, 1, 2, 3],    // short Ping
        vec![0x04, 0, 0, 0, 4, 1, 2, 3, 4], // SendPacket shorter than a key
        vec![0x04, 0xff, 0xff, 0xff, 0xff], // oversize SendPacket
        vec![0xee, 0x7f, 0xff, 0xff, 0xff], // oversize unknown frame
    ];
    for (i, bytes) in closing.iter().enumerate() {
        let mut a = relay.client(1).await;
        a.sender.send_raw(bytes).await.unwrap();
        assert_closed(&mut a).await;
        relay.wait_connections(0).await;
        assert_eq!(relay.server.metrics().protocol_errors.get(), i as u64 + 1);
    }
}

#[tokio::test]
async fn garbage_before_the_handshake_closes_without_harm() {
    let relay = relay(DerpConfig::default()).await;
    let garbage: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\n\r\n",
        &[0x02, 0, 0, 0, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], // ClientInfo too short
        &[0x02, 0x10, 0, 0, 0],                              // ClientInfo too long
        &[
            0x04, 0, 0, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0,
        ], // SendPacket first
    ];
    for bytes in garbage {
        let mut stream = relay.raw().await;
        stream.write_all(bytes).await.unwrap();
        let mut rest = Vec::new();
        let _ = timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await.expect("not closed");
        assert_eq!(rest.len(), 45, "only ServerKey was sent");
    }
    assert_eq!(relay.server.metrics().handshake_failed.get(), 4);
    relay.client(1).await;
}

#[tokio::test]
async fn silent_client_is_dropped_after_the_client_info_timeout() {
    let config = DerpConfig { client_info_timeout: Duration::from_millis(200), ..Default::default() };
    let relay = relay(config).await;
    let mut stream = relay.raw().await;
    let mut rest = Vec::new();
    let start = std::time::Instant::now();
    timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await.expect("not closed").unwrap();
    assert!(start.elapsed() >= Duration::from_millis(150));
    assert_eq!(rest.len(), 45);
}

#[tokio::test]
async fn shutdown_sends_restarting_then_closes() {
    let relay = relay(DerpConfig::default()).await;
    let mut a = relay.client(1).await;
    let mut b = relay.client(2).await;
    relay.wait_connections(2).await;
    relay.server.shutdown().await;
    for c in [&mut a, &mut b] {
        assert_eq!(recv_non_keepalive(c).await, Some(Frame::Restarting { reconnect_in_ms: 500, try_for_ms: 30_000 }));
        assert_closed(c).await;
    }
    assert_eq!(relay.server.metrics().connections.get(), 0);
    // New clients are turned away.
    let secret = DerpSecret::generate();
    relay.admission.allow(secret.public(), TenantId(1));
    assert!(relay.connect(&secret).await.is_err());
}

#[tokio::test]
async fn client_info_fields_are_optional() {
    // An old or minimal client: empty JSON object.
    let relay = relay(DerpConfig::default()).await;
    let secret = DerpSecret::generate();
    relay.admission.allow(secret.public(), TenantId(1));
    let stream = {
        let mut s = TcpStream::connect(relay.addr).await.unwrap();
        s.write_all(b"GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n").await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        s
    };
    let client = DerpClient::handshake(stream, &secret, &ClientInfo::default()).await.unwrap();
    assert_eq!(client.server_info().version, 2);
}

#[tokio::test]
async fn non_upgrade_request_gets_426() {
    let relay = relay(DerpConfig::default()).await;
    let mut stream = TcpStream::connect(relay.addr).await.unwrap();
    stream.write_all(b"GET /derp HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut response = Vec::new();
    let _ = timeout(Duration::from_secs(3), stream.read_to_end(&mut response)).await.unwrap();
    assert!(response.starts_with(b"HTTP/1.1 426"));
}
