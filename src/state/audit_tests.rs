//! The audit log lives in the outbox: a line is committed with its change or not at all, and
//! pruning old events leaves it.

use chrono::Duration;
use serde_json::json;

use super::store::audit::AuditLine;
use super::store::{Namespace, StoreError};
use super::{Actor, Audit, Bus, Writer};
use crate::domain::{NamespaceName, OrgName};

async fn writer() -> Writer {
    let store = super::store::Store::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    Writer::new(store, Bus::local())
}

fn created(ns: &Namespace) -> AuditLine {
    AuditLine {
        action: "namespace.create",
        object_type: "namespace",
        object_id: ns.name.to_string(),
        detail: json!({}),
    }
}

#[tokio::test]
async fn a_line_commits_with_its_change_or_not_at_all() {
    let writer = writer().await;
    let org = writer.create_org(&OrgName::parse("acme").unwrap(), None).await.unwrap();
    let audit = Audit { org_id: org.id, by: Actor::ApiKey(crate::domain::ApiKeyId::new(7)), describe: &created };
    let name = NamespaceName::parse("alice").unwrap();
    writer.create_namespace(org.id, &name, Some(&audit)).await.unwrap();
    let refused = writer.create_namespace(org.id, &name, Some(&audit)).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");

    let lines = writer.store().audit_events(org.id, 10).await.unwrap();
    let seen: Vec<_> = lines.iter().map(|l| (l.action.as_str(), l.actor.as_str(), l.object_id.as_str())).collect();
    assert_eq!(seen, [("namespace.create", "api-key:7", "alice")], "the refused create left no line");
    assert!(
        writer.store().audit_events(crate::domain::OrgId::new(org.id.get() + 1), 10).await.unwrap().is_empty(),
        "lines belong to their org"
    );
}

#[tokio::test]
async fn pruning_events_keeps_the_audit_log() {
    let writer = writer().await;
    let org = writer.create_org(&OrgName::parse("acme").unwrap(), None).await.unwrap();
    let audit = Audit { org_id: org.id, by: Actor::Cli, describe: &created };
    writer.create_namespace(org.id, &NamespaceName::parse("alice").unwrap(), Some(&audit)).await.unwrap();
    writer.presence_sync().await.unwrap();

    let pruned = writer.store().prune_events(writer.now() + Duration::seconds(1)).await.unwrap();
    assert_eq!(pruned, 1, "only the change event goes");
    assert_eq!(writer.store().audit_events(org.id, 10).await.unwrap().len(), 1);
    assert!(writer.store().events_after(0, 10).await.unwrap().is_empty(), "readers never see audit records");
}
