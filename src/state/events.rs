//! Change events, their durable record, and the wake-up that carries them to every instance.
//!
//! Every change to tailnet state appends its [`Event`]s to the outbox (`store::outbox`) in
//! the transaction that makes the change. The bus only wakes readers: in-process, and with
//! Redis on every instance behind the load balancer. Each instance runs one [`start_reader`]
//! that reads the outbox by sequence number from where it stopped, so a lost wake-up (Redis
//! restarting, a slow subscriber) delays an event by at most [`CATCH_UP_INTERVAL`] and never
//! loses it. An instance starts reading at the sequence current when it starts.
//!
//! **Architecture invariant:** an event is applied only after the change it describes is
//! committed, and every instance applies every event in sequence order.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};

use super::store::outbox::{NewEvent, RecordKind};
use super::store::Store;
use crate::domain::{InstanceId, NamespaceId, NodeId, OrgId};
use crate::keys::NodePublic;

/// How often a reader looks at the outbox without being woken: the bound on how late an
/// event can be when its wake-up was lost.
pub const CATCH_UP_INTERVAL: Duration = Duration::from_secs(1);

/// Events read per query while catching up.
const READ_BATCH: u64 = 500;

/// Something changed; receivers reload what they need from the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A node was created or any of its stored fields changed. When the change left its key
    /// expired, `expired_key` names it, so every instance cuts that key's DERP connections
    /// without reading the node back from the store (build it with [`Event::node_changed`]).
    NodeChanged {
        namespace_id: NamespaceId,
        node_id: NodeId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expired_key: Option<NodePublic>,
        /// Set when the change is an ephemeral node's registration: the instance it registered
        /// on, which deletes it should it never open a map stream (a client that dies before
        /// its first poll). Build it with [`Event::node_joined`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ephemeral_joined_on: Option<InstanceId>,
    },
    /// A node was deleted.
    NodeRemoved { namespace_id: NamespaceId, node_id: NodeId, node_key: NodePublic },
    /// A node took a new node key (rotation, re-registration); the old one is void, and
    /// whatever still uses it (a DERP connection) is cut off.
    NodeKeyRetired { node_key: NodePublic },
    /// A namespace was deleted, with all its nodes.
    NamespaceRemoved { namespace_id: NamespaceId, node_keys: Vec<NodePublic> },
    /// An org default (`namespace_id: None`) or namespace policy changed.
    PolicyChanged { org_id: OrgId, namespace_id: Option<NamespaceId> },
    /// A node's map stream opened or closed on `instance` (absent in events of versions
    /// before instance leases).
    Presence {
        namespace_id: NamespaceId,
        node_id: NodeId,
        online: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<InstanceId>,
    },
    /// `instance` is gone: it stopped and released its lease, or its lease lapsed (a crash, a
    /// lost database) and `successor` removed it. Every node it streamed is offline unless it
    /// streams elsewhere now; `successor`, when there is one, runs the ephemeral clean-up of
    /// those nodes, so each is deleted by one instance.
    InstanceGone { instance: InstanceId, successor: Option<InstanceId> },
    /// An instance started and knows nobody's presence yet: every instance announces again
    /// the nodes streaming from it.
    PresenceSync,
}

impl Event {
    /// The event for `node` as just stored `at`.
    pub fn node_changed(node: &super::store::Node, at: chrono::DateTime<chrono::Utc>) -> Self {
        let expired = node.expired_at(at);
        Self::NodeChanged {
            namespace_id: node.namespace_id,
            node_id: node.id,
            expired_key: expired.then_some(node.node_key),
            ephemeral_joined_on: None,
        }
    }

    /// The event for `node` as just registered `at` on `instance`.
    pub fn node_joined(node: &super::store::Node, at: chrono::DateTime<chrono::Utc>, instance: InstanceId) -> Self {
        match Self::node_changed(node, at) {
            Self::NodeChanged { namespace_id, node_id, expired_key, .. } => Self::NodeChanged {
                namespace_id,
                node_id,
                expired_key,
                ephemeral_joined_on: node.ephemeral.then_some(instance),
            },
            other => other,
        }
    }

    /// The namespace the event concerns, if one.
    pub fn namespace_id(&self) -> Option<NamespaceId> {
        match self {
            Event::NodeChanged { namespace_id, .. }
            | Event::NodeRemoved { namespace_id, .. }
            | Event::NamespaceRemoved { namespace_id, .. }
            | Event::Presence { namespace_id, .. } => Some(*namespace_id),
            Event::PolicyChanged { namespace_id, .. } => *namespace_id,
            Event::NodeKeyRetired { .. } | Event::PresenceSync | Event::InstanceGone { .. } => None,
        }
    }

    /// The outbox row for this event.
    pub(in crate::state) fn to_record(&self) -> NewEvent {
        // An enum of plain fields and keys always serializes.
        let payload = serde_json::to_string(self).unwrap_or_default();
        NewEvent { kind: RecordKind::Change, namespace_id: self.namespace_id(), org_id: None, payload }
    }
}

/// The outbox rows for `events`.
pub(in crate::state) fn records(events: &[Event]) -> Vec<NewEvent> {
    events.iter().map(Event::to_record).collect()
}

/// Wakes the outbox readers after a commit: this instance's at once, and with Redis every
/// other instance's.
#[derive(Clone)]
pub struct Bus {
    local: Arc<Notify>,
    redis: Option<(redis::aio::ConnectionManager, String)>,
}

impl Bus {
    /// A bus for one instance alone.
    pub fn local() -> Self {
        Self { local: Arc::new(Notify::new()), redis: None }
    }

    /// A bus shared through Redis channel `channel`. The subscription reconnects after Redis
    /// restarts, and wakes the reader then, since messages sent meanwhile are gone.
    pub async fn redis(url: &str, channel: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let publisher = redis::aio::ConnectionManager::new(client.clone()).await?;
        let local = Arc::new(Notify::new());
        // The first subscription is made here, so start-up fails on a wrong URL.
        let pubsub = subscribe(&client, channel).await?;
        tokio::spawn(relay_wake_ups(client, channel.to_string(), pubsub, Arc::downgrade(&local)));
        Ok(Self { local, redis: Some((publisher, channel.to_string())) })
    }

    /// Tells every reader the outbox grew. A wake-up that does not arrive only delays the
    /// events until the next catch-up.
    ///
    /// The change is committed already, so its writer does not wait for Redis: a Redis that
    /// is down or slow costs the other instances at most one catch-up interval.
    pub(in crate::state) async fn wake(&self) {
        self.local.notify_one();
        let Some((publisher, channel)) = &self.redis else { return };
        let (mut conn, channel) = (publisher.clone(), channel.clone());
        tokio::spawn(async move {
            let mut command = redis::cmd("PUBLISH");
            command.arg(&channel).arg("wake");
            let publish = command.query_async::<i64>(&mut conn);
            match tokio::time::timeout(CATCH_UP_INTERVAL, publish).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => tracing::debug!(%err, "Redis publish failed; other instances catch up from the outbox"),
                Err(_) => tracing::debug!("Redis publish timed out; other instances catch up from the outbox"),
            }
        });
    }
}

async fn subscribe(client: &redis::Client, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// Turns every message on the channel into a wake-up of this instance's reader, for as long
/// as the bus exists; resubscribes after the connection drops.
async fn relay_wake_ups(
    client: redis::Client,
    channel: String,
    mut pubsub: redis::aio::PubSub,
    local: std::sync::Weak<Notify>,
) {
    use futures::StreamExt;
    loop {
        {
            let mut messages = pubsub.on_message();
            while messages.next().await.is_some() {
                let Some(local) = local.upgrade() else { return };
                local.notify_one();
            }
        }
        tracing::warn!("Redis subscription lost; resubscribing (the outbox is read meanwhile)");
        pubsub = loop {
            if local.strong_count() == 0 {
                return;
            }
            match subscribe(&client, &channel).await {
                Ok(p) => break p,
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        tracing::info!("Redis subscription restored");
        if let Some(local) = local.upgrade() {
            local.notify_one();
        }
    }
}

/// Reads the outbox in sequence from the current end on, and sends each event to the
/// returned receiver; woken by `bus`, and every [`CATCH_UP_INTERVAL`] regardless.
pub async fn start_reader(store: Store, bus: &Bus) -> anyhow::Result<mpsc::UnboundedReceiver<Event>> {
    let mut last = store.last_event_seq().await?;
    let wake = bus.local.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let _ = tokio::time::timeout(CATCH_UP_INTERVAL, wake.notified()).await;
            match forward_after(&store, last, &tx).await {
                Ok(Some(seq)) => last = seq,
                Ok(None) => {}
                Err(Closed) => return,
            }
        }
    });
    Ok(rx)
}

struct Closed;

/// Sends every event after `seq`; the sequence number of the last one sent. A store error
/// ends this round (the next wake-up or catch-up resumes from the last event sent).
async fn forward_after(store: &Store, mut seq: i64, tx: &mpsc::UnboundedSender<Event>) -> Result<Option<i64>, Closed> {
    let start = seq;
    loop {
        let batch = match store.events_after(seq, READ_BATCH).await {
            Ok(batch) => batch,
            Err(err) => {
                tracing::warn!(%err, seq, "reading the outbox failed; retrying");
                break;
            }
        };
        let full = batch.len() as u64 == READ_BATCH;
        for stored in batch {
            seq = stored.seq;
            match serde_json::from_str::<Event>(&stored.payload) {
                Ok(event) => tx.send(event).map_err(|_| Closed)?,
                Err(err) => tracing::error!(%err, seq, "skipping an undecodable event"),
            }
        }
        if !full {
            break;
        }
    }
    Ok((seq != start).then_some(seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_a_stable_json_form() {
        let e = Event::Presence {
            namespace_id: NamespaceId::new(1),
            node_id: NodeId::new(2),
            online: true,
            instance: None,
        };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(text, r#"{"kind":"presence","namespace_id":1,"node_id":2,"online":true}"#);
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), e);
        assert_eq!(serde_json::to_string(&Event::PresenceSync).unwrap(), r#"{"kind":"presence_sync"}"#);
    }

    #[test]
    fn instance_ids_travel_as_hex_text() {
        let (gone, successor): (InstanceId, InstanceId) = ("00000000000000ff".parse().unwrap(), "0a".parse().unwrap());
        let e = Event::Presence {
            namespace_id: NamespaceId::new(1),
            node_id: NodeId::new(2),
            online: false,
            instance: Some(gone),
        };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(
            text,
            r#"{"kind":"presence","namespace_id":1,"node_id":2,"online":false,"instance":"00000000000000ff"}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), e);
        let e = Event::InstanceGone { instance: gone, successor: Some(successor) };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(text, r#"{"kind":"instance_gone","instance":"00000000000000ff","successor":"000000000000000a"}"#);
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), e);
        assert!(serde_json::from_str::<Event>(r#"{"kind":"instance_gone","instance":"xyz","successor":null}"#).is_err());
    }
}
