//! The tenants: an organization (a SaaS customer) and its namespaces (one isolated tailnet
//! each), as every layer above the store sees them. The store converts each row once, on the
//! way out; its bookkeeping (a namespace's address counter) stays inside it.

use chrono::{DateTime, Utc};

use super::{NamespaceId, NamespaceName, OrgId, OrgName};

/// A customer of the service: it owns namespaces, API keys and a default policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: OrgId,
    pub name: OrgName,
    pub created_at: DateTime<Utc>,
}

/// One tailnet of an organization; its name is unique within the organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub id: NamespaceId,
    pub org_id: OrgId,
    pub name: NamespaceName,
    pub created_at: DateTime<Utc>,
}
