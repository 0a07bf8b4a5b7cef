//! PostgreSQL stops under a running instance (issue 14, fault b): probes and the API answer
//! 503 within seconds instead of hanging, a registration fails with an error the client can
//! retry, and once the database is back everything works again without a restart.

mod support;

use std::time::Duration;

use support::postgres::PrivatePostgres;
use support::{eventually, join, join_ok, register_request, TestServer};
use tenscale::domain::{NamespaceName, OrgName};
use tokio::time::Instant;

/// How long a request may take while the database is down: the pool's acquire timeout (3 s)
/// plus slack. Before the timeout was set, `/readyz` hung for about 16 s.
const ANSWER_WITHIN: Duration = Duration::from_secs(6);

#[actix_rt::test]
async fn a_stopped_database_is_a_503_and_the_instance_recovers_without_a_restart() {
    let mut pg = PrivatePostgres::start().await;
    let server = TestServer::start_on_url(&pg.url(), &[]).await;
    let writer = &server.state().api.writer;
    let org = writer.create_org(&OrgName::parse("acme").unwrap(), None).await.unwrap();
    let (_, api_key) = writer.create_api_key(org.id, "test", None).await.unwrap();
    let ns = writer.create_namespace(org.id, &NamespaceName::parse("alice").unwrap(), None).await.unwrap();
    let key = server.preauth_key(ns.id, true, false, &[]).await;
    let before = join_ok(&server, &key).await;

    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", server.base_url())).bearer_auth(&api_key).send();

    pg.stop();

    let started = Instant::now();
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 503, "readyz while the database is down");
    assert!(started.elapsed() < ANSWER_WITHIN, "readyz took {:?}", started.elapsed());

    let started = Instant::now();
    let listed = get("/v1/namespaces").await.unwrap();
    let took = started.elapsed();
    assert_eq!(listed.status(), 503);
    assert_eq!(listed.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = listed.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap_or_default().contains("database is unreachable"), "{problem}");
    assert!(took < ANSWER_WITHIN, "the API took {took:?}");

    // A node that registers now is told to retry (HTTP 503, which clients back off and retry).
    let client = server.control_client().await;
    let node_key = tenscale::keys::NodePublic::from_bytes(support::random_key());
    let refused = client.register(&register_request(node_key, Some(&key))).await;
    match refused {
        Err(tenscale::control::client::ClientError::Status { status, body }) => {
            assert_eq!(status, 503, "{body}");
            assert!(body.contains("database is unreachable"), "{body}");
        }
        other => panic!("a registration while the database is down: {other:?}"),
    }

    pg.restart().await;
    eventually(Duration::from_secs(30), "readyz answers 200 again", || async {
        get("/readyz").await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert_eq!(get("/v1/namespaces").await.unwrap().status(), 200);
    let (_, resp) = join(&server, &key).await;
    assert!(resp.error.is_empty() && resp.machine_authorized, "registration after the outage: {resp:?}");
    let stored = server.state().api.store.nodes_in_namespace(ns.id).await.unwrap();
    assert_eq!(stored.len(), 2, "the node from before and the one after; nothing lost or doubled");
    assert!(stored.iter().any(|n| n.node_key == before.node_key));
}
