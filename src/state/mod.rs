//! State: the one writer. Every change to who is in which tailnet goes through [`Writer`],
//! which writes the rows and appends the change's [`Event`]s to the outbox in one
//! transaction, then wakes the readers.
//!
//! - [`store`]: sea-orm entities and every query, the same on SQLite and PostgreSQL; its
//!   event-bearing writes are visible only inside `state`, so a change that would skip its
//!   event does not compile;
//! - [`events`]: the [`Event`]s, the wake-up bus and the outbox reader every instance runs;
//! - [`audit`]: who asks for a change, and its line in the audit log (an outbox record
//!   appended in the change's transaction);
//! - [`registration`]: registration's rules (keys, restarts, rotation, logout) as outcomes;
//! - [`nodes`]: an admin's changes to a node (rename, retag, expire) and their rules;
//! - [`policy`]: a policy's rules (syntax, meaning, its own tests) and which one governs;
//! - [`sweeps`]: the changes time makes (key expiry, idle ephemeral nodes), once per deployment;
//! - [`client_state`]: what clients report on map requests, stored when it changed;
//! - [`lease`]: this instance's lease, renewed while it runs, and the removal of lapsed ones.
//!
//! **Architecture invariant:** only `state` writes nodes, namespaces and policies, and no such
//! write commits without its events.

pub mod audit;
pub mod client_state;
pub mod events;
pub mod lease;
pub mod nodes;
pub mod policy;
pub mod registration;
pub mod store;
pub mod sweeps;

use std::time::Duration;

pub use audit::{Actor, Audit, Describe};
use chrono::{DateTime, Utc};
pub use events::{Bus, Event};
use store::browser_keys::{BrowserKeySettingsRow, NewBrowserKeySettings};
use store::nodes::{NewNode, NodeChange, RegisterError};
use store::outbox::NewEvent;
use store::policies::PolicyScope;
use store::preauth_keys::NewPreauthKey;
use store::{ApiKey, Namespace, Node, Organization, PreauthKey, Store, StoreResult};

use crate::domain::{InstanceId, NamespaceId, NamespaceName, NodeId, OrgId, OrgName};
use crate::keys::NodePublic;

/// The one writer of tailnet state. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    store: Store,
    bus: Bus,
    /// This process: the holder of the map streams whose presence it records.
    instance: InstanceId,
}

impl Writer {
    /// The writer of a new instance (a fresh [`InstanceId`]).
    pub fn new(store: Store, bus: Bus) -> Self {
        Self { store, bus, instance: InstanceId::random() }
    }

    /// The instance this writer speaks for.
    pub fn instance(&self) -> InstanceId {
        self.instance
    }

    /// The store, for reading.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates a node from a pre-auth key (the key's use, the address and the name are taken
    /// in the same transaction).
    pub async fn register_node(&self, key: &PreauthKey, new: &NewNode) -> Result<Node, RegisterError> {
        let node = self.store.register_node(key, new, &|n| events::records(&[Event::node_changed(n)])).await?;
        self.bus.wake().await;
        Ok(node)
    }

    /// A known machine registers again with a usable key: it keeps its node, takes `change`
    /// (a new node key, say), and the key's use is recorded.
    pub(in crate::state) async fn reauthorize_node(
        &self,
        node: &Node,
        key: &PreauthKey,
        change: NodeChange,
    ) -> Result<Node, RegisterError> {
        let old_key = node.node_key;
        let events = move |n: &Node| events::records(&changed(n, old_key));
        let node = self.store.reauthorize_node(node, key, change, &events).await?;
        self.bus.wake().await;
        Ok(node)
    }

    /// The one write of a node's stored fields under the named changes (client state,
    /// rename, retag, expiry, key rotation), which own their checks. A node key replaced by
    /// `change` is retired (cut off DERP everywhere).
    pub(in crate::state) async fn update_node(
        &self,
        node: &Node,
        change: NodeChange,
        audit: Option<&Audit<'_, Node>>,
    ) -> StoreResult<Node> {
        let old_key = node.node_key;
        let events = move |n: &Node| with_audit(events::records(&changed(n, old_key)), audit, n);
        let node = self.store.update_node(node, change, &events).await?;
        self.bus.wake().await;
        Ok(node)
    }

    /// Deletes the node; false when it was already gone.
    pub async fn delete_node(&self, node: &Node, audit: Option<&Audit<'_, Node>>) -> StoreResult<bool> {
        let removed = Event::NodeRemoved { namespace_id: node.namespace_id, node_id: node.id, node_key: node.node_key };
        let records = with_audit(events::records(&[removed]), audit, node);
        let deleted = self.store.delete_node(node.id, &records).await?;
        if deleted {
            self.bus.wake().await;
        }
        Ok(deleted)
    }

    /// Deletes the namespace with everything in it; its nodes are cut off DERP everywhere.
    /// Returns how many nodes it held.
    pub async fn delete_namespace(&self, ns: &Namespace, audit: Option<&Audit<'_, usize>>) -> StoreResult<usize> {
        let namespace_id = ns.id;
        let events = move |keys: &Vec<String>| {
            let node_keys = keys.iter().filter_map(|k| NodePublic::parse(k).ok()).collect();
            with_audit(events::records(&[Event::NamespaceRemoved { namespace_id, node_keys }]), audit, &keys.len())
        };
        let node_keys = self.store.delete_namespace(ns, &events).await?;
        self.bus.wake().await;
        Ok(node_keys.len())
    }

    /// A map stream of the node opened on this instance (or is announced again).
    pub async fn node_online(&self, namespace_id: NamespaceId, node_id: NodeId) -> StoreResult<()> {
        self.record(&[Event::Presence { namespace_id, node_id, online: true, instance: Some(self.instance) }]).await
    }

    /// The node's last map stream ended: it was last seen now, and is offline everywhere.
    pub async fn node_offline(&self, namespace_id: NamespaceId, node_id: NodeId) -> StoreResult<()> {
        let offline = Event::Presence { namespace_id, node_id, online: false, instance: Some(self.instance) };
        let node = match self.store.node_by_id(node_id).await {
            Ok(node) => node,
            // Deleted meanwhile: nothing to stamp, but peers still learn it went.
            Err(store::StoreError::NotFound(_)) => return self.record(&[offline]).await,
            Err(err) => return Err(err),
        };
        let change = NodeChange { last_seen: Some(store::now()), ..Default::default() };
        self.store.update_node(&node, change, &|_| events::records(std::slice::from_ref(&offline))).await?;
        self.bus.wake().await;
        Ok(())
    }

    /// Asks every instance to announce again the nodes streaming from it.
    pub async fn presence_sync(&self) -> StoreResult<()> {
        self.record(&[Event::PresenceSync]).await
    }

    async fn record(&self, events: &[Event]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.store.record_events(&events::records(events)).await?;
        self.bus.wake().await;
        Ok(())
    }

    /// Deletes events older than `retention`, every `every`, for as long as the process runs.
    pub fn spawn_pruning(&self, retention: Duration, every: Duration) {
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Ok(age) = chrono::Duration::from_std(retention) else { return };
                match store.prune_events(store::now() - age).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(n, "pruned old events"),
                    Err(err) => tracing::warn!(%err, "pruning events failed; retrying"),
                }
            }
        });
    }
}

/// Changes that concern no map: organizations, credentials, settings. They carry no event
/// for the instances, only their audit record, and they too go through the one writer.
impl Writer {
    /// A new organization; `describe` makes its audit line (the org is only known once made).
    pub async fn create_org(
        &self,
        name: &OrgName,
        by: Option<(&Actor, Describe<'_, Organization>)>,
    ) -> StoreResult<Organization> {
        let record = move |org: &Organization| match by {
            Some((actor, describe)) => vec![describe(org).record(org.id, &actor.to_string())],
            None => Vec::new(),
        };
        self.store.create_org(name, &record).await
    }

    /// A new API key and its secret, shown this once (only its digest is stored).
    pub async fn create_api_key(
        &self,
        org_id: OrgId,
        description: &str,
        audit: Option<&Audit<'_, ApiKey>>,
    ) -> StoreResult<(ApiKey, String)> {
        self.store.create_api_key(org_id, description, &|key| with_audit(Vec::new(), audit, key)).await
    }

    pub async fn revoke_api_key(
        &self,
        org_id: OrgId,
        id: i64,
        audit: Option<&Audit<'_, ApiKey>>,
    ) -> StoreResult<ApiKey> {
        self.store.revoke_api_key(org_id, id, &|key| with_audit(Vec::new(), audit, key)).await
    }

    /// A namespace starts empty: no event until a node joins it.
    pub async fn create_namespace(
        &self,
        org_id: OrgId,
        name: &NamespaceName,
        audit: Option<&Audit<'_, Namespace>>,
    ) -> StoreResult<Namespace> {
        self.store.create_namespace(org_id, name, &|ns| with_audit(Vec::new(), audit, ns)).await
    }

    /// A new pre-auth key and its secret, shown this once.
    pub async fn create_preauth_key(
        &self,
        namespace_id: NamespaceId,
        spec: &NewPreauthKey,
        audit: Option<&Audit<'_, PreauthKey>>,
    ) -> StoreResult<(PreauthKey, String)> {
        self.store.create_preauth_key(namespace_id, spec, &|key| with_audit(Vec::new(), audit, key)).await
    }

    pub async fn revoke_preauth_key(
        &self,
        namespace_id: NamespaceId,
        id: i64,
        audit: Option<&Audit<'_, PreauthKey>>,
    ) -> StoreResult<PreauthKey> {
        self.store.revoke_preauth_key(namespace_id, id, &|key| with_audit(Vec::new(), audit, key)).await
    }

    pub async fn put_browser_key_settings(
        &self,
        org_id: OrgId,
        new: NewBrowserKeySettings,
        audit: Option<&Audit<'_, BrowserKeySettingsRow>>,
    ) -> StoreResult<BrowserKeySettingsRow> {
        self.store.put_browser_key_settings(org_id, new, &|row| with_audit(Vec::new(), audit, row)).await
    }

    /// Spends a token id; false when it was spent already (here or on another instance).
    pub async fn spend_token_id(&self, org_id: OrgId, jti: &str, expires_at: DateTime<Utc>) -> StoreResult<bool> {
        self.store.spend_token_id(org_id, jti, expires_at).await
    }

    /// A server-wide value (a private key), created by `make` on first use.
    pub async fn state_value_or_insert(&self, name: &str, make: impl FnOnce() -> String) -> StoreResult<String> {
        self.store.state_value_or_insert(name, make).await
    }
}

/// `records` with the audit record of `made` when the change is made on somebody's behalf.
fn with_audit<T>(mut records: Vec<NewEvent>, audit: Option<&Audit<'_, T>>, made: &T) -> Vec<NewEvent> {
    records.extend(audit.map(|a| a.record(made)));
    records
}

/// A node's change, and the retirement of the node key it replaced, if any.
fn changed(node: &Node, old_key: NodePublic) -> Vec<Event> {
    let mut events = vec![Event::node_changed(node)];
    if node.node_key != old_key {
        events.push(Event::NodeKeyRetired { node_key: old_key });
    }
    events
}

fn policy_changed(org_id: OrgId, scope: PolicyScope) -> Event {
    let namespace_id = match scope {
        PolicyScope::Org => None,
        PolicyScope::Namespace(id) => Some(id),
    };
    Event::PolicyChanged { org_id, namespace_id }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn writer() -> Writer {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        Writer::new(store, Bus::local())
    }

    /// Pruning keeps the sequence growing: a reader that saw the newest event before the prune
    /// still finds every later one (SQLite's plain rowids would reuse the pruned numbers).
    #[tokio::test]
    async fn pruned_sequence_numbers_are_never_handed_out_again() {
        let writer = writer().await;
        writer.presence_sync().await.unwrap();
        writer.presence_sync().await.unwrap();
        let seen = writer.store().last_event_seq().await.unwrap();
        assert_eq!(seen, 2);

        let pruned = writer.store().prune_events(store::now() + chrono::Duration::seconds(1)).await.unwrap();
        assert_eq!(pruned, 2);
        assert_eq!(writer.store().last_event_seq().await.unwrap(), 0, "the table is empty");

        writer.node_online(NamespaceId::new(1), NodeId::new(7)).await.unwrap();
        let after = writer.store().events_after(seen, 10).await.unwrap();
        assert_eq!(after.len(), 1, "the event after the prune is found by a reader that stopped at {seen}");
        assert!(after[0].seq > seen);
    }

    /// A recent event survives a prune by age.
    #[tokio::test]
    async fn pruning_keeps_recent_events() {
        let writer = writer().await;
        writer.presence_sync().await.unwrap();
        let pruned = writer.store().prune_events(store::now() - chrono::Duration::hours(1)).await.unwrap();
        assert_eq!(pruned, 0);
        assert_eq!(writer.store().events_after(0, 10).await.unwrap().len(), 1);
    }
}

#[cfg(test)]
#[path = "registration_tests.rs"]
mod registration_tests;

#[cfg(test)]
#[path = "audit_tests.rs"]
mod audit_tests;
