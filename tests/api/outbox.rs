//! The outbox: each change's events are committed with it, in order, on both databases; a
//! refused change records nothing.

use reqwest::StatusCode;
use serde_json::json;
use tenscale::domain::NodeId;
use tenscale::state::Event;

use crate::on_both_backends;
use crate::support::api::{json, spawn, Backend};

on_both_backends!(every_change_is_recorded_in_sequence);

async fn every_change_is_recorded_in_sequence(backend: Backend) {
    let t = spawn(backend, &[]).await;
    let store = &t.app.state.api.store;
    let start = store.last_event_seq().await.unwrap();
    let org = t.org("acme").await;
    json(t.post("/v1/namespaces", &org.key, json!({"name": "alice"})).await, StatusCode::CREATED).await;
    let key =
        json(t.post("/v1/namespaces/alice/keys", &org.key, json!({"reusable": true})).await, StatusCode::CREATED).await;
    let ns = store.namespace_by_name(org.id, "alice").await.unwrap();
    let secret = key["key"].as_str().unwrap();
    let a = t.register_node(ns.id, secret, "a").await;
    let b = t.register_node(ns.id, secret, "b").await;
    let b_path = format!("/v1/namespaces/alice/nodes/{}", b.id);
    json(t.patch(&b_path, &org.key, json!({"name": "renamed"})).await, StatusCode::OK).await;
    // Refused (the name is a's): no row changes, so no event either.
    let taken = t.patch(&b_path, &org.key, json!({"name": "a"})).await;
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    assert_eq!(t.delete(&b_path, &org.key).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(t.put_policy(&org.key, "application/hujson", "{\"acls\": []}").await.status(), StatusCode::OK);

    let stored = store.events_after(start, 100).await.unwrap();
    let seqs: Vec<i64> = stored.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "sequence numbers grow: {seqs:?}");
    let events: Vec<Event> = stored.iter().map(|e| serde_json::from_str(&e.payload).expect("decodable")).collect();
    let changed = |id: NodeId| Event::NodeChanged {
        namespace_id: ns.id,
        node_id: id,
        expired_key: None,
        ephemeral_joined_on: None,
    };
    let removed = Event::NodeRemoved { namespace_id: ns.id, node_id: b.id, node_key: b.node_key };
    let policy = Event::PolicyChanged { org_id: org.id, namespace_id: None };
    assert_eq!(events, vec![changed(a.id), changed(b.id), changed(b.id), removed, policy]);

    // Reading from the middle gives the rest, as an instance catching up would get them.
    let tail = store.events_after(seqs[2], 100).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs[3..].to_vec());
    t.finish().await;
}
