//! A stored policy document: which policy it is (the organization's default or one
//! namespace's own) and its text as the admin wrote it (HuJSON, comments kept). Parsing and
//! compiling it is the policy compiler's business (`tenscale-policy`), not this crate's.

use chrono::{DateTime, Utc};

use super::{NamespaceId, OrgId};

/// Which policy a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyScope {
    /// The organization's default, in force in every namespace without a policy of its own.
    Org,
    /// One namespace's own policy.
    Namespace(NamespaceId),
}

/// A policy as saved: valid when it was saved (the writer checks before it stores).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    pub org_id: OrgId,
    pub scope: PolicyScope,
    /// The text as the admin wrote it.
    pub text: String,
    pub updated_at: DateTime<Utc>,
}
