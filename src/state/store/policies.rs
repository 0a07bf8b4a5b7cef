//! Stored policy documents: the org default (scope "org") and per-namespace overrides.

use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};

use super::entities::policy;
use super::{now, PolicyDoc, Store, StoreResult};

/// Which policy a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyScope {
    Org,
    Namespace(i64),
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
    pub async fn policy(&self, org_id: i64, scope: PolicyScope) -> StoreResult<Option<PolicyDoc>> {
        Ok(policy::Entity::find()
            .filter(policy::Column::OrgId.eq(org_id))
            .filter(policy::Column::Scope.eq(scope.key()))
            .one(&self.db)
            .await?)
    }

    /// Saves `document` verbatim, replacing what the scope held.
    pub async fn put_policy(&self, org_id: i64, scope: PolicyScope, document: &str) -> StoreResult<PolicyDoc> {
        if let Some(existing) = self.policy(org_id, scope).await? {
            let mut active: policy::ActiveModel = existing.into();
            active.document = Set(document.to_string());
            active.updated_at = Set(now());
            return Ok(active.update(&self.db).await?);
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
        .insert(&self.db)
        .await?)
    }

    /// Removes the scope's document; true when there was one.
    pub async fn delete_policy(&self, org_id: i64, scope: PolicyScope) -> StoreResult<bool> {
        let result = policy::Entity::delete_many()
            .filter(policy::Column::OrgId.eq(org_id))
            .filter(policy::Column::Scope.eq(scope.key()))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected > 0)
    }
}
