//! The coordination plane end to end with our own protocol client: registration rules,
//! map streams and their deltas, namespace isolation. (Real Tailscale clients are exercised
//! in tests/realclient; these cover the server's rules quickly and precisely.)

mod support;

use std::time::Duration;

use futures::StreamExt;
use support::{join, map_until, next_map, random_key, register_request, stream_request, TestServer};
use tenscale::keys::NodePublic;
use tenscale::netmap::tailcfg::{MapRequest, MapResponse};

#[actix_rt::test]
async fn single_use_key_registers_once_and_peers_see_each_other() {
    let server = TestServer::start_sqlite().await;
    let ns = server.namespace("acme", "alice").await;
    let single = server.preauth_key(ns, false, false, &[]).await;
    let reusable = server.preauth_key(ns, true, false, &[]).await;

    let (a, resp) = join(&server, &single).await;
    assert!(resp.error.is_empty(), "{}", resp.error);
    assert!(resp.machine_authorized);
    let (_, again) = join(&server, &single).await;
    assert_eq!(again.error, "pre-auth key already used");

    let mut a_stream = Box::pin(a.client.map_stream(&stream_request(a.node_key)).await.expect("map"));
    let first = next_map(&mut a_stream).await;
    let me = first.node.expect("self node");
    assert_eq!(me.addresses, vec!["100.64.0.1/32", "fd7a:115c:a1e0::1/128"]);
    assert_eq!(me.name, "sim.alice.tenscale.internal.");
    assert!(first.derp_map.is_some() && first.packet_filters.is_some());

    let (b, resp) = join(&server, &reusable).await;
    assert!(resp.error.is_empty());
    let mut b_stream = Box::pin(b.client.map_stream(&stream_request(b.node_key)).await.expect("map"));
    let b_first = next_map(&mut b_stream).await;
    assert_eq!(b_first.peers.as_ref().map(Vec::len), Some(1), "b sees a");
    assert_eq!(b_first.node.unwrap().name, "sim-1.alice.tenscale.internal.");

    // a hears about b without reconnecting.
    let has_b = |m: &MapResponse| m.peers_changed.iter().flatten().any(|p| p.key == b.node_key);
    map_until(&mut a_stream, has_b).await;
}

#[actix_rt::test]
async fn namespaces_never_see_each_other() {
    let server = TestServer::start_sqlite().await;
    let ns_a = server.namespace("acme", "a").await;
    let ns_b = server.namespace("acme", "b").await;
    let key_a = server.preauth_key(ns_a, true, false, &[]).await;
    let key_b = server.preauth_key(ns_b, true, false, &[]).await;
    let (a1, _) = join(&server, &key_a).await;
    let (b1, _) = join(&server, &key_b).await;
    let mut b_stream = Box::pin(b1.client.map_stream(&stream_request(b1.node_key)).await.unwrap());
    let b_first = next_map(&mut b_stream).await;
    assert!(b_first.peers.unwrap_or_default().is_empty());
    // Same first address in both namespaces: they are separate tailnets.
    assert_eq!(b_first.node.unwrap().addresses[0], "100.64.0.1/32");

    let mut a_stream = Box::pin(a1.client.map_stream(&stream_request(a1.node_key)).await.unwrap());
    let a_first = next_map(&mut a_stream).await;
    assert!(a_first.peers.unwrap_or_default().is_empty());
    let (a2, _) = join(&server, &key_a).await;
    let _a2_stream = a2.client.map_stream(&stream_request(a2.node_key)).await.unwrap();
    map_until(&mut a_stream, |m| m.peers_changed.iter().flatten().any(|p| p.key == a2.node_key)).await;
    // b's stream hears nothing about namespace a: whatever arrives names no peer of a.
    let quiet = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(msg)) = b_stream.next().await {
            let peers = msg.peers_changed.iter().flatten().chain(msg.peers.iter().flatten());
            assert!(peers.clone().all(|p| p.key != a1.node_key && p.key != a2.node_key), "leak: {msg:?}");
        }
    })
    .await;
    assert!(quiet.is_err(), "b's stream ended unexpectedly");
}

#[actix_rt::test]
async fn bad_keys_are_refused_with_readable_errors() {
    let server = TestServer::start_sqlite().await;
    let ns = server.namespace("acme", "alice").await;
    let client = server.control_client().await;
    let unknown = client
        .register(&register_request(NodePublic::from_bytes(random_key()), Some("tskey-auth-nope")))
        .await
        .unwrap();
    assert_eq!(unknown.error, "invalid pre-auth key");
    let none = client.register(&register_request(NodePublic::from_bytes(random_key()), None)).await.unwrap();
    assert!(none.error.contains("pre-auth key"), "{}", none.error);
    let expired = server.expired_key(ns).await;
    let resp = client.register(&register_request(NodePublic::from_bytes(random_key()), Some(&expired))).await.unwrap();
    assert_eq!(resp.error, "pre-auth key expired");
    // A map request for a node that never registered is a 404, not a crash.
    let err =
        client.map_once(&MapRequest { node_key: NodePublic::from_bytes(random_key()), ..Default::default() }).await;
    assert!(err.is_err());
}

#[actix_rt::test]
async fn restart_logout_and_rotation() {
    let server = TestServer::start_sqlite().await;
    let ns = server.namespace("acme", "alice").await;
    let key = server.preauth_key(ns, false, true, &["tag:cli"]).await;
    let (a, _) = join(&server, &key).await;
    // Restart: same node key, spent key re-sent: accepted without re-validation.
    let again = a.client.register(&register_request(a.node_key, Some(&key))).await.unwrap();
    assert!(again.error.is_empty() && again.machine_authorized);
    // Rotation through OldNodeKey keeps the node.
    let new_key = NodePublic::from_bytes(random_key());
    let mut rotate = register_request(new_key, Some(&key));
    rotate.old_node_key = a.node_key;
    let rotated = a.client.register(&rotate).await.unwrap();
    assert!(rotated.error.is_empty(), "{}", rotated.error);
    let node = server.state().api.store.node_by_node_key(&new_key).await.unwrap().expect("rotated node");
    assert_eq!(node.ipv4.to_string(), "100.64.0.1");
    assert_eq!(node.tags.to_strings(), vec!["tag:cli"]);
    // Logout of an ephemeral node deletes it.
    let mut logout = register_request(new_key, Some(&key));
    logout.expiry = tenscale::netmap::tailcfg::GoTime::new(chrono::DateTime::from_timestamp(123, 0).unwrap());
    let out = a.client.register(&logout).await.unwrap();
    assert!(out.node_key_expired && !out.machine_authorized);
    assert!(server.state().api.store.node_by_node_key(&new_key).await.unwrap().is_none());
}

#[actix_rt::test]
async fn a_key_reaching_its_expiry_is_announced_to_peers() {
    let server = TestServer::start_sqlite().await;
    let ns = server.namespace("acme", "alice").await;
    let key = server.preauth_key(ns, true, false, &[]).await;
    // a asks for its key to expire two seconds from now.
    let client = server.control_client().await;
    let a_key = NodePublic::from_bytes(random_key());
    let mut req = register_request(a_key, Some(&key));
    req.expiry = tenscale::netmap::tailcfg::GoTime::new(chrono::Utc::now() + chrono::Duration::seconds(2));
    assert!(client.register(&req).await.unwrap().error.is_empty());
    let _a_stream = client.map_stream(&stream_request(a_key)).await.unwrap();

    let (b, _) = join(&server, &key).await;
    let mut b_stream = Box::pin(b.client.map_stream(&stream_request(b.node_key)).await.unwrap());
    let first = next_map(&mut b_stream).await;
    let a_peer = first.peers.unwrap().into_iter().find(|p| p.key == a_key).expect("b sees a");
    assert!(!a_peer.expired);
    let expired = |m: &MapResponse| m.peers_changed.iter().flatten().any(|p| p.key == a_key && p.expired);
    map_until(&mut b_stream, expired).await;
}
