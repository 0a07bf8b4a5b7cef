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
//! - [`credentials`]: organizations, API keys, pre-auth keys and browser-key settings, with
//!   the rule that a key's tags are the policy's to grant;
//! - [`clock`]: the one clock the writer and the store read, which tests can set;
//! - [`client_state`]: what clients report on map requests, stored when it changed;
//! - [`lease`]: this instance's lease, renewed while it runs, and the removal of lapsed ones.
//!
//! **Architecture invariant:** only `state` writes nodes, namespaces and policies, and no such
//! write commits without its events.

pub mod audit;
pub mod client_state;
pub mod credentials;
pub mod events;
pub mod lease;
pub mod nodes;
pub mod policy;
pub mod registration;
pub mod store;
pub mod sweeps;

/// The one clock lives with the store, which stamps every row with it.
pub use store::clock;

use std::time::Duration;

pub use audit::{Actor, Audit, Describe};
use chrono::{DateTime, Utc};
pub use events::{Bus, Event};
use store::nodes::{NewNode, NodeChange, RegisterError};
use store::outbox::NewEvent;
use store::policies::PolicyScope;
use store::{Namespace, Node, PreauthKey, Store, StoreResult};

use crate::domain::{InstanceId, NamespaceId, NodeId, OrgId};
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

    /// The time now, by the one clock of state ([`clock`]).
    pub fn now(&self) -> DateTime<Utc> {
        self.store.now()
    }

    /// Creates a node from a pre-auth key (the key's use, the address and the name are taken
    /// in the same transaction).
    pub async fn register_node(&self, key: &PreauthKey, new: &NewNode) -> Result<Node, RegisterError> {
        let at = self.now();
        let joined = |n: &Node| events::records(&[Event::node_joined(n, at, self.instance)]);
        let node = self.store.register_node(key, new, &joined).await?;
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
        let at = self.now();
        let events = move |n: &Node| events::records(&changed(n, old_key, at));
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
        let at = self.now();
        let events = move |n: &Node| with_audit(events::records(&changed(n, old_key, at)), audit, n);
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
        let change = NodeChange { last_seen: Some(self.now()), ..Default::default() };
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
                match store.prune_events(store.now() - age).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(n, "pruned old events"),
                    Err(err) => tracing::warn!(%err, "pruning events failed; retrying"),
                }
            }
        });
    }
}

/// `records` with the audit record of `made` when the change is made on somebody's behalf.
fn with_audit<T>(mut records: Vec<NewEvent>, audit: Option<&Audit<'_, T>>, made: &T) -> Vec<NewEvent> {
    records.extend(audit.map(|a| a.record(made)));
    records
}

/// A node's change made `at`, and the retirement of the node key it replaced, if any.
fn changed(node: &Node, old_key: NodePublic, at: DateTime<Utc>) -> Vec<Event> {
    let mut events = vec![Event::node_changed(node, at)];
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

        let pruned = writer.store().prune_events(writer.now() + chrono::Duration::seconds(1)).await.unwrap();
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
        let pruned = writer.store().prune_events(writer.now() - chrono::Duration::hours(1)).await.unwrap();
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
