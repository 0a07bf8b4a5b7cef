//! Registration's rules and client reports as domain outcomes, on SQLite in memory. The wire
//! translation is exercised by tests/control.rs and the real clients (tests/realclient).

use chrono::Duration;
use sea_orm::{ConnectionTrait, Statement};

use super::client_state::ClientReport;
use super::clock::Clock;
use super::registration::{Refusal, RegisterAttempt, Registered, RegistrationError};
use super::store::preauth_keys::{KeyRefusal, NewPreauthKey};
use super::store::{Namespace, StoreError};
use super::{Bus, Writer};
use crate::domain::{NamespaceName, Node, OrgName, Tags};
use crate::keys::{DiscoPublic, MachinePublic, NodePublic};

async fn writer() -> Writer {
    writer_on(Clock::system()).await
}

async fn writer_on(clock: Clock) -> Writer {
    let store = super::store::Store::connect("sqlite::memory:").await.unwrap().with_clock(clock);
    store.migrate().await.unwrap();
    Writer::new(store, Bus::local())
}

async fn namespace(writer: &Writer, name: &str) -> Namespace {
    let org = match writer.store().org_by_name("acme").await {
        Ok(org) => org,
        Err(_) => writer.create_org(&OrgName::parse("acme").unwrap(), None).await.unwrap(),
    };
    writer.create_namespace(org.id, &NamespaceName::parse(name).unwrap(), None).await.unwrap()
}

async fn key(writer: &Writer, ns: &Namespace, reusable: bool) -> String {
    let spec = NewPreauthKey {
        reusable,
        ephemeral: false,
        tags: Tags::default(),
        expires_at: writer.now() + Duration::hours(1),
        description: String::new(),
    };
    writer.create_preauth_key(ns, &spec, None).await.unwrap().1
}

fn attempt(machine: u8, node_key: u8, auth_key: Option<&str>) -> RegisterAttempt {
    RegisterAttempt {
        machine: MachinePublic::from_bytes([machine; 32]),
        node_key: NodePublic::from_bytes([node_key; 32]),
        old_node_key: None,
        expiry: None,
        auth_key: auth_key.map(str::to_string),
        hostinfo: Some(serde_json::from_value(serde_json::json!({"Hostname": "laptop"})).unwrap()),
    }
}

async fn join(writer: &Writer, attempt: &RegisterAttempt) -> Node {
    match writer.register(attempt).await {
        Ok(Registered::Joined { node, .. }) => node,
        other => panic!("expected a join, got {other:?}"),
    }
}

fn refusal(result: Result<Registered, RegistrationError>) -> Refusal {
    match result {
        Err(RegistrationError::Refused(refusal)) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_new_machine_needs_a_usable_key() {
    let writer = writer().await;
    let ns = namespace(&writer, "alice").await;
    assert_eq!(refusal(writer.register(&attempt(1, 1, None)).await), Refusal::KeyRequired);
    assert_eq!(refusal(writer.register(&attempt(1, 1, Some("tskey-auth-nope"))).await), KeyRefusal::Unknown.into());

    let single_use = key(&writer, &ns, false).await;
    let node = join(&writer, &attempt(1, 1, Some(&single_use))).await;
    assert_eq!((node.namespace_id, node.given_name.as_str()), (ns.id, "laptop"));
    assert_eq!(refusal(writer.register(&attempt(2, 2, Some(&single_use))).await), KeyRefusal::AlreadyUsed.into());
}

#[tokio::test]
async fn a_node_key_is_bound_to_its_machine() {
    let writer = writer().await;
    let ns = namespace(&writer, "alice").await;
    let secret = key(&writer, &ns, true).await;
    join(&writer, &attempt(1, 1, Some(&secret))).await;

    // Another machine presenting the key, even with a valid pre-auth key, gets nothing.
    assert_eq!(refusal(writer.register(&attempt(2, 1, Some(&secret))).await), Refusal::AnotherMachine);
    let mut rotation = attempt(2, 9, None);
    rotation.old_node_key = Some(NodePublic::from_bytes([1; 32]));
    assert_eq!(refusal(writer.register(&rotation).await), Refusal::AnotherMachine);

    // Its own machine restarting is answered without a key.
    match writer.register(&attempt(1, 1, None)).await.unwrap() {
        Registered::Known { node, expired, .. } => {
            assert!(!expired && node.belongs_to(&MachinePublic::from_bytes([1; 32])))
        }
        other => panic!("a restart is a known node, got {other:?}"),
    }
}

#[tokio::test]
async fn an_expired_node_rotates_only_with_a_key_of_its_namespace() {
    let writer = writer().await;
    let alice = namespace(&writer, "alice").await;
    let bob = namespace(&writer, "bob").await;
    let node = join(&writer, &attempt(1, 1, Some(&key(&writer, &alice, true).await))).await;
    let mut logout = attempt(1, 1, None);
    logout.expiry = Some(writer.now() - Duration::seconds(1));
    assert!(matches!(writer.register(&logout).await.unwrap(), Registered::LoggedOut));

    let mut rotation = attempt(1, 2, None);
    rotation.old_node_key = Some(node.node_key);
    assert_eq!(refusal(writer.register(&rotation).await), Refusal::ExpiredNodeNeedsKey(KeyRefusal::Unknown));
    rotation.auth_key = Some(key(&writer, &bob, true).await);
    assert_eq!(refusal(writer.register(&rotation).await), Refusal::KeyOfAnotherNamespace);
    rotation.auth_key = Some(key(&writer, &alice, true).await);
    match writer.register(&rotation).await.unwrap() {
        Registered::Known { node: rotated, expired: false, .. } => {
            assert_eq!(
                (rotated.id, rotated.node_key, rotated.ipv4),
                (node.id, NodePublic::from_bytes([2; 32]), node.ipv4)
            )
        }
        other => panic!("expected the rotated node, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unchanged_report_writes_nothing() {
    let writer = writer().await;
    let ns = namespace(&writer, "alice").await;
    let node = join(&writer, &attempt(1, 1, Some(&key(&writer, &ns, true).await))).await;
    let report = ClientReport {
        disco_key: Some(DiscoPublic::from_bytes([7; 32])),
        endpoints: Some(vec!["192.0.2.1:41641".parse().unwrap()]),
        hostinfo: Some(node.hostinfo.clone()),
    };
    let node = writer.report_client_state(node, report.clone()).await.unwrap();
    assert_eq!(node.endpoints, vec!["192.0.2.1:41641".parse().unwrap()]);
    let seq = writer.store().last_event_seq().await.unwrap();

    let again = writer.report_client_state(node.clone(), report).await.unwrap();
    assert_eq!(again, node);
    assert_eq!(writer.store().last_event_seq().await.unwrap(), seq, "no event for a report that changed nothing");
}

/// A row that does not convert is left out of lists and an error on its own, never a node
/// with a zero key.
#[tokio::test]
async fn a_damaged_row_never_becomes_a_node() {
    let writer = writer().await;
    let ns = namespace(&writer, "alice").await;
    let secret = key(&writer, &ns, true).await;
    let good = join(&writer, &attempt(1, 1, Some(&secret))).await;
    let bad = join(&writer, &attempt(2, 2, Some(&secret))).await;
    let sql = format!("UPDATE nodes SET node_key = 'nodekey:not-hex' WHERE id = {}", bad.id);
    let db = &writer.store().db;
    db.execute_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();

    let listed = writer.store().nodes_in_namespace(ns.id).await.unwrap();
    assert_eq!(listed.iter().map(|n| n.id).collect::<Vec<_>>(), vec![good.id]);
    assert!(matches!(writer.store().node_by_id(bad.id).await, Err(StoreError::Corrupt(_))));
}

/// Two instances (two writers on one database) sweeping the same interval: the expiry is
/// announced by exactly one of them, and neither announces it again.
#[tokio::test]
async fn a_key_expiry_is_announced_once_per_deployment() {
    let (clock, hand) = Clock::manual(chrono::Utc::now());
    let one = writer_on(clock).await;
    let other = Writer::new(one.store().clone(), Bus::local());
    assert_ne!(one.instance(), other.instance());
    let ns = namespace(&one, "alice").await;
    let secret = key(&one, &ns, false).await;
    let node = join(&one, &attempt(1, 2, Some(&secret))).await;
    assert_eq!(one.sweep_expired().await.unwrap(), 0, "the first sweep only sets the mark");
    hand.advance(Duration::milliseconds(5)); // the expiry falls after the mark

    one.set_key_expiry(&node, Some(one.now()), None).await.unwrap();
    let before = one.store().last_event_seq().await.unwrap();
    hand.advance(Duration::milliseconds(5)); // the sweeps look past the expiry
    let (a, b) = tokio::join!(one.sweep_expired(), other.sweep_expired());
    let (a, b) = (a.unwrap(), b.unwrap());
    let (again_a, again_b) = (one.sweep_expired().await.unwrap(), other.sweep_expired().await.unwrap());
    assert_eq!(a + b + again_a + again_b, 1, "announced {a} + {b}, then {again_a} + {again_b}");
    let announced = one.store().events_after(before, 10).await.unwrap();
    assert_eq!(announced.len(), 1, "one NodeChanged for the expiry: {announced:?}");
}
