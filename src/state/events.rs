//! Change events and the bus that carries them to every instance.
//!
//! Every change to tailnet state is published as an [`Event`] after it is stored. Without
//! Redis the bus is an in-process broadcast; with Redis every instance publishes to one
//! channel and applies what it receives (its own events included), so all instances behind
//! a load balancer converge on the same view.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::keys::NodePublic;

/// Something changed; receivers reload what they need from the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A node was created or any of its stored fields changed. When the change left its key
    /// expired, `expired_key` names it, so every instance cuts that key's DERP connections
    /// without reading the node back from the store (build it with [`Event::node_changed`]).
    NodeChanged {
        namespace_id: i64,
        node_id: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expired_key: Option<NodePublic>,
    },
    /// A node was deleted.
    NodeRemoved { namespace_id: i64, node_id: i64, node_key: NodePublic },
    /// A node took a new node key (rotation, re-registration); the old one is void, and
    /// whatever still uses it (a DERP connection) is cut off.
    NodeKeyRetired { node_key: NodePublic },
    /// A namespace was deleted, with all its nodes.
    NamespaceRemoved { namespace_id: i64, node_keys: Vec<NodePublic> },
    /// An org default (`namespace_id: None`) or namespace policy changed.
    PolicyChanged { org_id: i64, namespace_id: Option<i64> },
    /// A node's map stream opened or closed somewhere.
    Presence { namespace_id: i64, node_id: i64, online: bool },
    /// An instance started and knows nobody's presence yet: every instance announces again
    /// the nodes streaming from it.
    PresenceSync,
}

impl Event {
    /// The event for `node` as just stored.
    pub fn node_changed(node: &crate::state::store::Node) -> Self {
        let expired = node.expired_at(crate::state::store::now());
        Self::NodeChanged {
            namespace_id: node.namespace_id,
            node_id: node.id,
            expired_key: expired.then(|| NodePublic::parse(&node.node_key).ok()).flatten(),
        }
    }
}

/// Where events go.
#[derive(Clone)]
pub enum Bus {
    Local(broadcast::Sender<Event>),
    Redis { publisher: redis::aio::ConnectionManager, channel: String },
}

impl Bus {
    pub async fn publish(&self, event: &Event) {
        match self {
            Bus::Local(tx) => {
                let _ = tx.send(event.clone());
            }
            Bus::Redis { publisher, channel } => {
                let payload = match serde_json::to_string(event) {
                    Ok(p) => p,
                    Err(err) => return tracing::error!(%err, "cannot encode event"),
                };
                // ConnectionManager fails the first command after a dropped connection and
                // reconnects behind it, so one retry covers a Redis restart.
                for attempt in 0..3 {
                    let mut conn = publisher.clone();
                    let sent: redis::RedisResult<i64> =
                        redis::cmd("PUBLISH").arg(channel).arg(&payload).query_async(&mut conn).await;
                    match sent {
                        Ok(_) => return,
                        Err(err) if attempt == 2 => tracing::error!(%err, "event lost: Redis publish failed"),
                        Err(_) => continue,
                    }
                }
            }
        }
    }
}

/// Connects to Redis, subscribes to `channel`, and returns the bus plus a stream of the
/// events received on it.
pub async fn redis_bus(url: &str, channel: &str) -> anyhow::Result<(Bus, tokio::sync::mpsc::UnboundedReceiver<Event>)> {
    use futures::StreamExt;
    let client = redis::Client::open(url)?;
    let publisher = redis::aio::ConnectionManager::new(client.clone()).await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    tokio::spawn(async move {
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let Ok(payload) = msg.get_payload::<String>() else { continue };
            match serde_json::from_str::<Event>(&payload) {
                Ok(event) => {
                    if tx.send(event).is_err() {
                        break;
                    }
                }
                Err(err) => tracing::warn!(%err, "ignoring undecodable event"),
            }
        }
        tracing::error!("Redis subscription ended; cross-instance events stop");
    });
    Ok((Bus::Redis { publisher, channel: channel.to_string() }, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_a_stable_json_form() {
        let e = Event::Presence { namespace_id: 1, node_id: 2, online: true };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(text, r#"{"kind":"presence","namespace_id":1,"node_id":2,"online":true}"#);
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), e);
        assert_eq!(serde_json::to_string(&Event::PresenceSync).unwrap(), r#"{"kind":"presence_sync"}"#);
    }
}
