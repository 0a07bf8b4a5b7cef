//! Who may use the relay: the reading plane answers the question the relay asks of every
//! connection ([`Admission`]), so `derp` stays a leaf that knows nothing of the store.

use futures::future::BoxFuture;

use crate::derp::server::{Admission, TenantId};
use crate::keys::NodePublic;
use crate::state::store::Store;

/// A client key must be the current key of a registered, unexpired node; the node's
/// namespace is its tenant, so the relay never forwards between namespaces.
pub struct StoreAdmission {
    store: Store,
}

impl StoreAdmission {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl Admission for StoreAdmission {
    fn admit(&self, key: &NodePublic) -> BoxFuture<'static, Option<TenantId>> {
        let (store, key) = (self.store.clone(), *key);
        Box::pin(async move {
            let node = store.node_by_node_key(&key).await.ok().flatten()?;
            (!node.expired_at(store.now())).then_some(TenantId(node.namespace_id.get()))
        })
    }
}
