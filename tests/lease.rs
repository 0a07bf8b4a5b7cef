//! Presence that survives a crash (issue 14, item 2): each instance holds a lease in the
//! store. When one is killed (`kill -9`, no chance to say goodbye), the others mark the nodes
//! that streamed from it offline within the lease time plus one second, start the ephemeral
//! timeout for its ephemeral nodes, and exactly one instance deletes each; a node that
//! reconnects to another instance is online at once. When one stops gracefully (SIGTERM), it
//! releases its lease at once and its nodes go offline without waiting for the lease.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::child::ChildInstance;
use support::{map_until_within, next_map, redis_url, reports_online, PgDatabase, SimNode, TestServer};
use tenscale::state::Event;
use tokio::time::Instant;

const LEASE: Duration = Duration::from_secs(3);
const EPHEMERAL_TIMEOUT: Duration = Duration::from_secs(2);

struct Deployment {
    db: Arc<PgDatabase>,
    channel: String,
}

impl Deployment {
    fn new(db: PgDatabase) -> Self {
        Self { db: Arc::new(db), channel: format!("tenscale:test:{}", hex::encode(&support::random_key()[..8])) }
    }

    fn env(&self, lease: &str) -> Vec<(&'static str, String)> {
        vec![
            ("TENSCALE_REDIS_URL", redis_url()),
            ("TENSCALE_REDIS_CHANNEL", self.channel.clone()),
            ("TENSCALE_PRESENCE_LEASE", lease.to_string()),
            ("TENSCALE_EPHEMERAL_TIMEOUT", format!("{}s", EPHEMERAL_TIMEOUT.as_secs())),
        ]
    }

    async fn in_process(&self, lease: &str) -> TestServer {
        let env = self.env(lease);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        TestServer::start_on(&self.db, &env).await
    }

    async fn child(&self, lease: &str) -> ChildInstance {
        let env = self.env(lease);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        ChildInstance::start(&self.db.url, &env).await
    }
}

/// How many NodeRemoved events the outbox holds for `node_id`.
async fn removals(server: &TestServer, node_id: tenscale::domain::NodeId) -> usize {
    let events = server.state().api.store.events_after(0, 100_000).await.unwrap();
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<Event>(&e.payload).ok())
        .filter(|e| matches!(e, Event::NodeRemoved { node_id: id, .. } if *id == node_id))
        .count()
}

#[actix_rt::test]
async fn a_killed_instance_s_nodes_go_offline_within_the_lease_and_its_ephemerals_are_deleted_once() {
    let deployment = Deployment::new(PgDatabase::create().await);
    let lease = format!("{}s", LEASE.as_secs());
    let one = deployment.in_process(&lease).await;
    let three = deployment.in_process(&lease).await;
    let doomed = deployment.child(&lease).await;
    let ns = one.namespace("acme", "alice").await;
    let key = one.preauth_key(ns, true, false, &[]).await;
    let ephemeral_key = one.preauth_key(ns, true, true, &[]).await;

    let observer = support::join_ok(&one, &key).await;
    let mut seen = observer.stream().await;
    next_map(&mut seen).await;
    let hub = doomed.join(&key).await;
    let browser = doomed.join(&ephemeral_key).await;
    let (hub_id, browser_id) = (hub.stored(&one).await.id, browser.stored(&one).await.id);
    let _hub_stream = hub.stream().await;
    let _browser_stream = browser.stream().await;
    for (node, id) in [(&hub, hub_id), (&browser, browser_id)] {
        map_until_within(&mut seen, Duration::from_secs(5), |m| reports_online(m, &node.node_key, id, true)).await;
    }

    doomed.signal("-KILL");
    let killed = Instant::now();
    let bound = LEASE + Duration::from_secs(1);
    map_until_within(&mut seen, bound, |m| reports_online(m, &hub.node_key, hub_id, false)).await;
    let offline_after = killed.elapsed();
    eprintln!("killed instance's node offline to a peer after {offline_after:?} (lease {LEASE:?})");
    assert!(offline_after <= bound, "{offline_after:?}");
    for survivor in [&one, &three] {
        let tailnet = survivor.state().api.tailnet.clone();
        support::eventually(Duration::from_secs(3), "every survivor has the killed instance's nodes offline", || {
            let online = tailnet.is_online(hub_id) || tailnet.is_online(browser_id);
            async move { !online }
        })
        .await;
    }

    // The ephemeral node is deleted an ephemeral timeout later, once, by one instance.
    let removed = map_until_within(&mut seen, EPHEMERAL_TIMEOUT + Duration::from_secs(3), |m| {
        m.peers_removed.iter().flatten().any(|id| *id == browser_id.get())
    })
    .await;
    assert!(!support::announces(&removed, &browser.node_key));
    eprintln!("its ephemeral node deleted {:?} after the kill", killed.elapsed());
    assert!(one.state().api.store.node_by_id(browser_id).await.is_err(), "the ephemeral node is gone");
    // Both survivors had the timeout's chance to delete it as well.
    tokio::time::sleep(EPHEMERAL_TIMEOUT).await;
    assert_eq!(removals(&one, browser_id).await, 1, "exactly one instance deleted the ephemeral node");
    assert!(one.state().api.store.node_by_id(hub_id).await.is_ok(), "a non-ephemeral node is kept");

    // The hub reconnects through another instance: online again at once.
    let back = three.control_client_as(hub.machine).await;
    let reconnected = Instant::now();
    let _hub_again = SimNode::stream_on(&back, hub.node_key).await;
    // "At once": well inside a lease (3 s), with room for a loaded machine's scheduling.
    map_until_within(&mut seen, Duration::from_secs(3), |m| reports_online(m, &hub.node_key, hub_id, true)).await;
    eprintln!("reconnected node online again after {:?}", reconnected.elapsed());
}

#[actix_rt::test]
async fn a_draining_instance_releases_its_lease_at_once() {
    let deployment = Deployment::new(PgDatabase::create().await);
    let one = deployment.in_process("15s").await;
    let draining = deployment.child("15s").await;
    let ns = one.namespace("acme", "alice").await;
    let key = one.preauth_key(ns, true, false, &[]).await;
    let observer = support::join_ok(&one, &key).await;
    let mut seen = observer.stream().await;
    next_map(&mut seen).await;
    let hub = draining.join(&key).await;
    let hub_id = hub.stored(&one).await.id;
    let _hub_stream = hub.stream().await;
    map_until_within(&mut seen, Duration::from_secs(5), |m| reports_online(m, &hub.node_key, hub_id, true)).await;

    draining.signal("-TERM");
    let signalled = Instant::now();
    map_until_within(&mut seen, Duration::from_secs(2), |m| reports_online(m, &hub.node_key, hub_id, false)).await;
    eprintln!("drained instance's node offline to a peer after {:?} (lease 15 s)", signalled.elapsed());
    let leases = one.state().api.store.live_instances(chrono::Utc::now()).await.unwrap();
    assert_eq!(leases.len(), 1, "only the running instance holds a lease: {leases:?}");
}
