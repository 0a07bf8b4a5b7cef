//! Stored policy documents: the org default (scope "org") and per-namespace overrides.

use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, Set};

use super::entities::policy;
use super::outbox::NewEvent;
use super::{now, PolicyDoc, Store, StoreResult};
use crate::domain::{NamespaceId, OrgId};

/// Which policy a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyScope {
    Org,
    Namespace(NamespaceId),
}

impl PolicyScope {
    fn key(self) -> String {
        match self {
            PolicyScope::Org => "org".to_string(),
            PolicyScope::Namespace(id) => format!("ns:{id}"),
        }
    }
}

impl Store {
    pub async fn policy(&self, org_id: OrgId, scope: PolicyScope) -> StoreResult<Option<PolicyDoc>> {
        Ok(policy::Entity::find()
            .filter(policy::Column::OrgId.eq(org_id))
            .filter(policy::Column::Scope.eq(scope.key()))
            .one(&self.db)
            .await?)
    }

    /// Saves `document` verbatim, replacing what the scope held.
    pub(in crate::state) async fn put_policy(
        &self,
        org_id: OrgId,
        scope: PolicyScope,
        document: &str,
        events: &[NewEvent],
    ) -> StoreResult<PolicyDoc> {
        self.change(async |txn| save_policy(txn, org_id, scope, document).await, |_| events.to_vec()).await
    }

    /// Removes the scope's document; true when there was one. `events` are appended only then.
    pub(in crate::state) async fn delete_policy(
        &self,
        org_id: OrgId,
        scope: PolicyScope,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        let delete = async |txn: &DatabaseTransaction| {
            let result = policy::Entity::delete_many()
                .filter(policy::Column::OrgId.eq(org_id))
                .filter(policy::Column::Scope.eq(scope.key()))
                .exec(txn)
                .await?;
            Ok(result.rows_affected > 0)
        };
        self.change(delete, |&deleted| if deleted { events.to_vec() } else { Vec::new() }).await
    }
}

async fn save_policy<C: ConnectionTrait>(
    conn: &C,
    org_id: OrgId,
    scope: PolicyScope,
    document: &str,
) -> StoreResult<PolicyDoc> {
    let existing = policy::Entity::find()
        .filter(policy::Column::OrgId.eq(org_id))
        .filter(policy::Column::Scope.eq(scope.key()))
        .one(conn)
        .await?;
    if let Some(existing) = existing {
        let mut active: policy::ActiveModel = existing.into();
        active.document = Set(document.to_string());
        active.updated_at = Set(now());
        return Ok(active.update(conn).await?);
    }
    Ok(policy::ActiveModel {
        org_id: Set(org_id),
        namespace_id: Set(match scope {
            PolicyScope::Org => None,
            PolicyScope::Namespace(id) => Some(id),
        }),
        scope: Set(scope.key()),
        document: Set(document.to_string()),
        updated_at: Set(now()),
        ..Default::default()
    }
    .insert(conn)
    .await?)
}
