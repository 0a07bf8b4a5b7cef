//! The audit log: who did what to which object, and when. Its records are outbox records of
//! kind `audit`, appended in the transaction of the change they describe, so a committed
//! change is never missing from the log; pruning old events leaves them alone.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::outbox::{NewEvent, RecordKind};
use super::{Store, StoreResult};
use crate::domain::OrgId;

/// How the audit log describes one change.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditLine {
    pub action: &'static str,
    pub object_type: &'static str,
    pub object_id: String,
    pub detail: serde_json::Value,
}

/// A line of the audit log as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Its place in the outbox's sequence.
    pub seq: i64,
    pub org_id: OrgId,
    /// `api-key:<id>`, `browser-jwt:<jti>`, `cli`.
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub detail: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// The stored payload of an audit record.
#[derive(Serialize, Deserialize)]
struct Payload {
    actor: String,
    action: String,
    object_type: String,
    object_id: String,
    #[serde(default)]
    detail: serde_json::Value,
}

impl AuditLine {
    /// The outbox record of this line, by `actor` in organization `org_id`.
    pub(in crate::state) fn record(&self, org_id: OrgId, actor: &str) -> NewEvent {
        let payload = Payload {
            actor: actor.to_string(),
            action: self.action.to_string(),
            object_type: self.object_type.to_string(),
            object_id: self.object_id.clone(),
            detail: self.detail.clone(),
        };
        NewEvent {
            kind: RecordKind::Audit,
            namespace_id: None,
            org_id: Some(org_id),
            // Strings and a JSON value always serialize.
            payload: serde_json::to_string(&payload).unwrap_or_default(),
        }
    }
}

impl Store {
    /// The organization's newest `limit` audit lines, newest first. A record that does not
    /// read back (never written by us) is logged and left out.
    pub async fn audit_events(&self, org_id: OrgId, limit: u64) -> StoreResult<Vec<AuditEvent>> {
        let records = self.audit_records(org_id, limit).await?;
        Ok(records
            .into_iter()
            .filter_map(|record| match serde_json::from_str::<Payload>(&record.payload) {
                Ok(p) => Some(AuditEvent {
                    seq: record.seq,
                    org_id,
                    actor: p.actor,
                    action: p.action,
                    object_type: p.object_type,
                    object_id: p.object_id,
                    detail: p.detail,
                    created_at: record.created_at,
                }),
                Err(err) => {
                    tracing::error!(seq = record.seq, %err, "an audit record does not read back; it is left out");
                    None
                }
            })
            .collect())
    }
}
