//! Stored policy documents: the org default (scope "org") and per-namespace overrides.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, Set};

use super::entities::policy;
use super::outbox::NewEvent;
use super::{corrupt, PolicyDocument, Store, StoreError, StoreResult};
use crate::domain::OrgId;
pub use crate::domain::PolicyScope;

/// The stored form of a scope: `org`, or `ns:<namespace id>`.
fn scope_key(scope: PolicyScope) -> String {
    match scope {
        PolicyScope::Org => "org".to_string(),
        PolicyScope::Namespace(id) => format!("ns:{id}"),
    }
}

/// The scope a stored row is for; its `scope` text and `namespace_id` must agree.
fn stored_scope(row: &policy::Model) -> Result<PolicyScope, String> {
    match (row.scope.as_str(), row.namespace_id) {
        ("org", None) => Ok(PolicyScope::Org),
        (key, Some(id)) if key == scope_key(PolicyScope::Namespace(id)) => Ok(PolicyScope::Namespace(id)),
        (key, id) => Err(format!("scope {key:?} does not match namespace {id:?}")),
    }
}

impl TryFrom<policy::Model> for PolicyDocument {
    type Error = StoreError;

    fn try_from(row: policy::Model) -> Result<Self, Self::Error> {
        let scope = stored_scope(&row).map_err(|e| corrupt("policy", row.id, e))?;
        Ok(PolicyDocument { org_id: row.org_id, scope, text: row.document, updated_at: row.updated_at })
    }
}

impl Store {
    pub async fn policy(&self, org_id: OrgId, scope: PolicyScope) -> StoreResult<Option<PolicyDocument>> {
        policy::Entity::find()
            .filter(policy::Column::OrgId.eq(org_id))
            .filter(policy::Column::Scope.eq(scope_key(scope)))
            .one(&self.db)
            .await?
            .map(PolicyDocument::try_from)
            .transpose()
    }

    /// Saves `document` verbatim, replacing what the scope held.
    pub(in crate::state) async fn put_policy(
        &self,
        org_id: OrgId,
        scope: PolicyScope,
        document: &str,
        events: &[NewEvent],
    ) -> StoreResult<PolicyDocument> {
        self.change(async |txn| save_policy(txn, org_id, scope, document, self.now()).await, |_| events.to_vec()).await
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
                .filter(policy::Column::Scope.eq(scope_key(scope)))
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
    at: DateTime<Utc>,
) -> StoreResult<PolicyDocument> {
    let existing = policy::Entity::find()
        .filter(policy::Column::OrgId.eq(org_id))
        .filter(policy::Column::Scope.eq(scope_key(scope)))
        .one(conn)
        .await?;
    if let Some(existing) = existing {
        let mut active: policy::ActiveModel = existing.into();
        active.document = Set(document.to_string());
        active.updated_at = Set(at);
        return active.update(conn).await?.try_into();
    }
    policy::ActiveModel {
        org_id: Set(org_id),
        namespace_id: Set(match scope {
            PolicyScope::Org => None,
            PolicyScope::Namespace(id) => Some(id),
        }),
        scope: Set(scope_key(scope)),
        document: Set(document.to_string()),
        updated_at: Set(at),
        ..Default::default()
    }
    .insert(conn)
    .await?
    .try_into()
}
