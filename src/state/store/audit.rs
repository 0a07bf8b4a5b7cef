//! Audit events: who did what to which object, and when.

use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};

use super::entities::audit_event;
use super::{now, AuditEvent, Store, StoreResult};

/// One thing worth remembering that somebody did.
#[derive(Debug, Clone)]
pub struct AuditRecord<'a> {
    pub org_id: Option<i64>,
    /// `api-key:<id>`, `cli`, `node:<id>`, `system`.
    pub actor: &'a str,
    pub action: &'a str,
    pub object_type: &'a str,
    pub object_id: &'a str,
    pub detail: serde_json::Value,
}

impl Store {
    pub(in crate::state) async fn audit(&self, record: AuditRecord<'_>) -> StoreResult<()> {
        audit_event::ActiveModel {
            org_id: Set(record.org_id),
            actor: Set(record.actor.to_string()),
            action: Set(record.action.to_string()),
            object_type: Set(record.object_type.to_string()),
            object_id: Set(record.object_id.to_string()),
            detail: Set(record.detail.to_string()),
            created_at: Set(now()),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    pub async fn audit_events(&self, org_id: i64, limit: u64) -> StoreResult<Vec<AuditEvent>> {
        Ok(audit_event::Entity::find()
            .filter(audit_event::Column::OrgId.eq(org_id))
            .order_by_desc(audit_event::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }
}
