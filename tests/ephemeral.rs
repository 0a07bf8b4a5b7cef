//! Ephemeral nodes: deleted after the inactivity timeout once their map stream is gone, and
//! removed from their peers' netmaps; kept while they come back in time; other nodes are never
//! collected. The timeout is 1 s here. Each scenario runs on SQLite and on PostgreSQL.

#[macro_use]
mod support;

use std::time::Duration;
use tenscale::domain::NodeId;

use futures::StreamExt;
use support::{
    announces, eventually, join_ok, map_until, map_until_within, next_map, Backend, MapStream, SimNode, TestServer,
};

const TIMEOUT: &str = "1s";

/// Opens `node`'s stream and waits for its first map.
async fn streaming(node: &SimNode) -> MapStream {
    let mut stream = node.stream().await;
    next_map(&mut stream).await;
    stream
}

/// Ends `node`'s stream the way a vanished client does.
fn vanish(node: &SimNode, stream: MapStream) {
    drop(stream);
    node.client.abort();
}

fn removes(msg: &tenscale::netmap::tailcfg::MapResponse, id: NodeId) -> bool {
    msg.peers_removed.iter().flatten().any(|r| *r == id.get())
}

async fn an_idle_ephemeral_node_is_deleted_and_leaves_the_netmap(backend: Backend) {
    let server = TestServer::start(backend, &[("TENSCALE_EPHEMERAL_TIMEOUT", TIMEOUT)]).await;
    let ns = server.namespace("acme", "alice").await;
    let ephemeral_key = server.preauth_key(ns, true, true, &[]).await;
    let key = server.preauth_key(ns, true, false, &[]).await;
    let watcher = join_ok(&server, &key).await;
    let eph = join_ok(&server, &ephemeral_key).await;
    let kept = join_ok(&server, &key).await;
    let (eph_id, kept_id) = (eph.stored(&server).await.id, kept.stored(&server).await.id);
    assert!(eph.stored(&server).await.ephemeral && !kept.stored(&server).await.ephemeral);

    let mut watch = streaming(&watcher).await;
    let eph_stream = streaming(&eph).await;
    let kept_stream = streaming(&kept).await;
    map_until(&mut watch, |m| announces(m, &kept.node_key)).await;

    vanish(&eph, eph_stream);
    vanish(&kept, kept_stream);
    // Deleted within a few seconds, and the watcher is told.
    map_until_within(&mut watch, Duration::from_secs(5), |m| removes(m, eph_id)).await;
    assert!(server.state().api.store.node_by_node_key(&eph.node_key).await.unwrap().is_none());
    assert!(!server.state().api.tailnet.is_online(eph_id));

    // The non-ephemeral node outlives several timeouts, offline but present.
    let quiet = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(msg) = watch.next().await {
            let msg = msg.expect("valid message");
            assert!(!removes(&msg, kept_id), "a non-ephemeral node was removed: {msg:?}");
        }
    })
    .await;
    assert!(quiet.is_err(), "the watcher's stream ended");
    let stored = kept.stored(&server).await;
    assert!(stored.last_seen.is_some());
    assert!(!server.state().api.tailnet.is_online(kept_id));
}

async fn an_ephemeral_node_that_returns_in_time_is_kept(backend: Backend) {
    let server = TestServer::start(backend, &[("TENSCALE_EPHEMERAL_TIMEOUT", TIMEOUT)]).await;
    let ns = server.namespace("acme", "alice").await;
    let ephemeral_key = server.preauth_key(ns, true, true, &[]).await;
    let eph = join_ok(&server, &ephemeral_key).await;
    let eph_id = eph.stored(&server).await.id;

    // The client restarts: new connection, same machine and node key, well within 1 s.
    let first = streaming(&eph).await;
    vanish(&eph, first);
    let tailnet = server.state().api.tailnet.clone();
    eventually(Duration::from_secs(2), "the node is offline", || async { !tailnet.is_online(eph_id) }).await;
    let again = server.control_client_as(eph.machine).await;
    let mut back = SimNode::stream_on(&again, eph.node_key).await;
    next_map(&mut back).await;

    // Several timeouts later it is still there and its stream still open.
    let quiet =
        tokio::time::timeout(Duration::from_secs(3), async { while let Some(Ok(_)) = back.next().await {} }).await;
    assert!(quiet.is_err(), "the returning ephemeral node's stream was closed");
    assert!(server.state().api.store.node_by_node_key(&eph.node_key).await.unwrap().is_some());
}

async fn an_ephemeral_node_that_never_streams_is_deleted(backend: Backend) {
    let server = TestServer::start(backend, &[("TENSCALE_EPHEMERAL_TIMEOUT", TIMEOUT)]).await;
    let ns = server.namespace("acme", "alice").await;
    let ephemeral_key = server.preauth_key(ns, true, true, &[]).await;
    let key = server.preauth_key(ns, true, false, &[]).await;
    let watcher = join_ok(&server, &key).await;
    let mut watch = streaming(&watcher).await;
    // Registers, then the client goes away before its first map poll.
    let eph = join_ok(&server, &ephemeral_key).await;
    let eph_id = eph.stored(&server).await.id;
    eph.client.abort();
    map_until(&mut watch, |m| announces(m, &eph.node_key)).await;
    map_until_within(&mut watch, Duration::from_secs(5), |m| removes(m, eph_id)).await;
    assert!(server.state().api.store.node_by_node_key(&eph.node_key).await.unwrap().is_none());
}

on_both_backends!(
    an_idle_ephemeral_node_is_deleted_and_leaves_the_netmap,
    an_ephemeral_node_that_returns_in_time_is_kept,
    an_ephemeral_node_that_never_streams_is_deleted,
);
