//! Who may use the relay: the one question the relay asks of the server around it.

use futures::future::BoxFuture;
use tenscale_base::keys::NodePublic;

/// The namespace (tailnet) a node belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantId(pub i64);

/// Decides whether a node key may use the relay, and under which tenant.
pub trait Admission: Send + Sync + 'static {
    /// `Some(tenant)` admits the key; `None` refuses it. Should look at current keys only.
    fn admit(&self, key: &NodePublic) -> BoxFuture<'static, Option<TenantId>>;
}
