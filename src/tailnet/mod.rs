//! Tailnet state: which nodes are in which namespace, who is online, and the fan-out of
//! every change to the map sessions that must hear about it.
//!
//! TEMPORARY STUB on branch `api`, written against the agreed signatures; replaced by the
//! real module on merge.
pub mod addresses;

use crate::keys::NodePublic;

/// A change the map sessions must hear about.
#[derive(Debug, Clone)]
pub enum Event {
    NodeChanged { namespace_id: i64, node_id: i64 },
    NodeRemoved { namespace_id: i64, node_id: i64, node_key: NodePublic },
    NamespaceRemoved { namespace_id: i64, node_keys: Vec<NodePublic> },
    PolicyChanged { org_id: i64, namespace_id: Option<i64> },
}

/// Stub: remembers published events so tests can look at them.
#[derive(Debug, Default)]
pub struct Tailnet {
    published: std::sync::Mutex<Vec<Event>>,
}

impl Tailnet {
    pub async fn publish(&self, event: Event) {
        if let Ok(mut events) = self.published.lock() {
            events.push(event);
        }
    }

    pub fn is_online(&self, _node_id: i64) -> bool {
        false
    }
}
