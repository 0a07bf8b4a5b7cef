//! The DERP mesh between two instances of one deployment (one PostgreSQL database, one
//! Redis, one mesh key): packets between nodes of one namespace connected to different
//! instances arrive; nothing crosses namespaces, on the sending or the receiving instance; and
//! a connection without the mesh key gets no mesh powers. The instances find each other
//! through their leases, with no peer list.

mod support;

use std::time::Duration;

use support::{counter, eventually, join_ok, SimNode, TestServer};
use tenscale::derp::client::DerpClient;
use tenscale::derp::crypto::{ClientInfo, DerpSecret};
use tenscale::derp::frame::Frame;
use tenscale::keys::NodePublic;
use tokio::net::TcpStream;

type Derp = DerpClient<TcpStream>;

const MESH_KEY: &str = "6d6573686b65792d666f722d74656e7363616c652d746573742d6f6e6c792121";

async fn derp(server: &TestServer, node: &SimNode) -> Derp {
    DerpClient::connect_tcp(server.app.addr, "127.0.0.1", &DerpSecret::from_bytes(node.node_secret))
        .await
        .expect("registered node is admitted to DERP")
}

async fn meshed_pair() -> (TestServer, TestServer) {
    let (one, two) = TestServer::start_postgres_pair(&[("TENSCALE_DERP_MESH_KEY", MESH_KEY)]).await;
    for server in [&one, &two] {
        let derp = server.state().derp.clone();
        eventually(Duration::from_secs(10), "the mesh link is up", || {
            let up = derp.metrics().mesh_links.get() == 1;
            async move { up }
        })
        .await;
    }
    (one, two)
}

/// Waits until `server` routes `key` through the mesh (it heard PeerPresent for it).
async fn routes(server: &TestServer, count: usize) {
    let derp = server.state().derp.clone();
    eventually(Duration::from_secs(5), &format!("{count} keys are routed through the mesh"), || {
        let n = derp.mesh_routes();
        async move { n == count }
    })
    .await;
}

async fn packet_within(client: &mut Derp, within: Duration) -> Option<(NodePublic, Vec<u8>)> {
    let got = tokio::time::timeout(within, client.receiver.recv_packet()).await.ok()?;
    let (src, packet) = got.expect("connection stays open");
    Some((src, packet.to_vec()))
}

fn dropped(server: &TestServer, reason: &str) -> f64 {
    counter(&server.state().api.metrics, "tenscale_derp_packets_dropped_total", ("reason", reason))
}

#[actix_rt::test]
async fn packets_cross_instances_inside_a_namespace_and_never_between_namespaces() {
    let (one, two) = meshed_pair().await;
    let ns_a = one.namespace("acme", "a").await;
    let ns_b = one.namespace("globex", "b").await;
    let key_a = one.preauth_key(ns_a, true, false, &[]).await;
    let key_b = one.preauth_key(ns_b, true, false, &[]).await;
    let (a1, a2, b) = (join_ok(&one, &key_a).await, join_ok(&two, &key_a).await, join_ok(&two, &key_b).await);

    let mut a1_derp = derp(&one, &a1).await;
    let mut a2_derp = derp(&two, &a2).await;
    let mut b_derp = derp(&two, &b).await;
    routes(&one, 2).await; // a2 and b, on instance 2
    routes(&two, 1).await; // a1, on instance 1

    let started = tokio::time::Instant::now();
    a1_derp.send_packet(&a2.node_key, b"one to two").await.unwrap();
    let got = packet_within(&mut a2_derp, Duration::from_secs(2)).await.expect("a2 gets a1's packet via the mesh");
    assert_eq!(got, (a1.node_key, b"one to two".to_vec()));
    eprintln!("a1@1 -> a2@2 through the mesh: {:?}", started.elapsed());
    a2_derp.send_packet(&a1.node_key, b"two to one").await.unwrap();
    let got = packet_within(&mut a1_derp, Duration::from_secs(2)).await.expect("a1 gets a2's packet via the mesh");
    assert_eq!(got, (a2.node_key, b"two to one".to_vec()));
    assert_eq!(one.state().derp.metrics().packets_forwarded.get(), 1);
    assert_eq!(two.state().derp.metrics().packets_from_mesh.get(), 1);

    // b (namespace B, on instance 2) knows a1's key: instance 2 drops it like an unknown key.
    let before = dropped(&two, "other_namespace");
    b_derp.send_packet(&a1.node_key, b"cross-tenant").await.unwrap();
    let b_derp_stays = b_derp.send_packet(&a1.node_key, b"again").await;
    assert!(b_derp_stays.is_ok());
    eventually(Duration::from_secs(2), "instance 2 counts the cross-namespace drops", || {
        let n = dropped(&two, "other_namespace");
        async move { n >= before + 2.0 }
    })
    .await;
    assert_eq!(packet_within(&mut a1_derp, Duration::from_millis(300)).await, None, "nothing crossed namespaces");

    // A mesh peer that forwards a cross-namespace packet anyway: the receiving instance
    // names the source's tenant itself and drops it too.
    let mut peer = mesh_peer(&one, MESH_KEY).await;
    let before = dropped(&one, "other_namespace");
    let forged = Frame::ForwardPacket { src: b.node_key, dst: a1.node_key, packet: b"forged".to_vec().into() };
    peer.send_frame(&forged).await.unwrap();
    eventually(Duration::from_secs(2), "instance 1 drops the forwarded cross-namespace packet", || {
        let n = dropped(&one, "other_namespace");
        async move { n >= before + 1.0 }
    })
    .await;
    assert_eq!(packet_within(&mut a1_derp, Duration::from_millis(300)).await, None, "the forged packet is dropped");

    // a2 leaves instance 2: instance 1 forgets the route, and a1's packets to it are unknown.
    drop(a2_derp);
    routes(&one, 1).await;
    let before = dropped(&one, "unknown_peer");
    a1_derp.send_packet(&a2.node_key, b"anyone?").await.unwrap();
    eventually(Duration::from_secs(2), "instance 1 drops the packet to a departed key", || {
        let n = dropped(&one, "unknown_peer");
        async move { n >= before + 1.0 }
    })
    .await;
}

/// A raw DERP connection that claims to be a relay, with `mesh_key` in its ClientInfo.
async fn mesh_peer(server: &TestServer, mesh_key: &str) -> Derp {
    let info = ClientInfo { mesh_key: Some(mesh_key.to_string()), ..ClientInfo::v2() };
    DerpClient::connect_tcp_with(server.app.addr, "127.0.0.1", &DerpSecret::generate(), &info)
        .await
        .expect("a mesh peer is let in")
}

#[actix_rt::test]
async fn only_the_mesh_key_opens_the_mesh() {
    let (one, _two) = meshed_pair().await;
    let ns = one.namespace("acme", "a").await;
    let key = one.preauth_key(ns, true, false, &[]).await;
    let a = join_ok(&one, &key).await;
    let _a_derp = derp(&one, &a).await;

    // The right key: the watcher hears of a (and of nothing else).
    let mut watcher = mesh_peer(&one, MESH_KEY).await;
    watcher.send_frame(&Frame::WatchConns).await.unwrap();
    let present = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match watcher.recv().await.unwrap() {
                Some(Frame::PeerPresent(p)) => return p.key,
                Some(_) => continue,
                None => panic!("the mesh peer was closed"),
            }
        }
    })
    .await
    .expect("a watcher with the mesh key hears PeerPresent");
    assert_eq!(present, a.node_key);

    // A wrong key, with a key that is no node's: refused like any stranger.
    let wrong = "00".repeat(32);
    let info = ClientInfo { mesh_key: Some(wrong.clone()), ..ClientInfo::v2() };
    let refused = DerpClient::connect_tcp_with(one.app.addr, "127.0.0.1", &DerpSecret::generate(), &info).await;
    assert!(refused.is_err(), "a wrong mesh key does not get in");

    // A wrong key from a registered node: an ordinary client, whose WatchConns closes it
    // before a single PeerPresent.
    let info = ClientInfo { mesh_key: Some(wrong), ..ClientInfo::v2() };
    let mut node =
        DerpClient::connect_tcp_with(one.app.addr, "127.0.0.1", &DerpSecret::from_bytes(a.node_secret), &info)
            .await
            .expect("a registered node is admitted as a client");
    node.send_frame(&Frame::WatchConns).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match node.recv().await {
                Ok(Some(Frame::PeerPresent(_))) => return Err("PeerPresent reached a client"),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return Ok(()),
            }
        }
    })
    .await
    .expect("the connection is closed");
    outcome.unwrap();
}
