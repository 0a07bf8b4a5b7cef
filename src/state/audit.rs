//! Who asks for a change, and how the audit log describes it once made. A change made on
//! somebody's behalf takes an [`Audit`]; its line is computed from the change's result (the
//! id of what was created, say) and appended in the change's own transaction.

use std::fmt;

use super::store::audit::AuditLine;
use super::store::outbox::NewEvent;
use crate::domain::{ApiKeyId, OrgId};

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An organization's API key, by id.
    ApiKey(ApiKeyId),
    /// A browser-key JWT, by its `jti`.
    BrowserToken(String),
    /// The operator's command line.
    Cli,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::ApiKey(id) => write!(f, "api-key:{id}"),
            Actor::BrowserToken(jti) => write!(f, "browser-jwt:{jti}"),
            Actor::Cli => f.write_str("cli"),
        }
    }
}

/// Describes a change of a `T` for the audit log, from the `T` it made.
pub type Describe<'a, T> = &'a (dyn Fn(&T) -> AuditLine + Send + Sync);

/// A change on `by`'s behalf in organization `org_id`, and how to describe it.
pub struct Audit<'a, T> {
    pub org_id: OrgId,
    pub by: Actor,
    pub describe: Describe<'a, T>,
}

impl<T> Audit<'_, T> {
    /// The audit record of `made`.
    pub(in crate::state) fn record(&self, made: &T) -> NewEvent {
        (self.describe)(made).record(self.org_id, &self.by.to_string())
    }
}
