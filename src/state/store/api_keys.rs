//! API keys of organizations: `tskey-api-<48 hex>`, stored as digests.

use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, Set};

use super::entities::api_key;
use super::outbox::EventsFor;
use super::{hash_secret, lookup_prefix, new_secret, secret_matches, ApiKey, Store, StoreError, StoreResult};
use crate::domain::{ApiKeyId, OrgId};

pub const API_KEY_PREFIX: &str = "tskey-api-";

impl Store {
    /// Creates a key; the plaintext is returned here and never again.
    pub(in crate::state) async fn create_api_key(
        &self,
        org_id: OrgId,
        description: &str,
        events: EventsFor<'_, ApiKey>,
    ) -> StoreResult<(ApiKey, String)> {
        let (secret, shown) = new_secret(API_KEY_PREFIX);
        let model = api_key::ActiveModel {
            org_id: Set(org_id),
            prefix: Set(shown),
            hash: Set(hash_secret(&secret)),
            description: Set(description.to_string()),
            created_at: Set(self.now()),
            last_used_at: Set(None),
            revoked_at: Set(None),
            ..Default::default()
        };
        let key = self.change(async |txn| StoreResult::Ok(model.insert(txn).await?.into()), events).await?;
        Ok((key, secret))
    }

    pub async fn list_api_keys(&self, org_id: OrgId) -> StoreResult<Vec<ApiKey>> {
        let rows = api_key::Entity::find()
            .filter(api_key::Column::OrgId.eq(org_id))
            .order_by_asc(api_key::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(ApiKey::from).collect())
    }

    pub(in crate::state) async fn revoke_api_key(
        &self,
        org_id: OrgId,
        id: ApiKeyId,
        events: EventsFor<'_, ApiKey>,
    ) -> StoreResult<ApiKey> {
        let revoke = async |txn: &DatabaseTransaction| {
            let key = api_key::Entity::find_by_id(id)
                .filter(api_key::Column::OrgId.eq(org_id))
                .one(txn)
                .await?
                .ok_or(StoreError::NotFound("API key"))?;
            let mut active: api_key::ActiveModel = key.into();
            active.revoked_at = Set(Some(self.now()));
            Ok(active.update(txn).await?.into())
        };
        self.change(revoke, events).await
    }

    /// The live (unrevoked) key whose plaintext is `secret`, if any: found by its shown
    /// prefix, then its digest compared in constant time.
    pub async fn authenticate_api_key(&self, secret: &str) -> StoreResult<Option<ApiKey>> {
        let Some(prefix) = lookup_prefix(secret, API_KEY_PREFIX) else {
            return Ok(None);
        };
        let candidates = api_key::Entity::find()
            .filter(api_key::Column::Prefix.eq(prefix))
            .filter(api_key::Column::RevokedAt.is_null())
            .all(&self.db)
            .await?;
        Ok(candidates.into_iter().find(|key| secret_matches(secret, &key.hash)).map(ApiKey::from))
    }
}

/// The key a stored row describes, without its digest: that never leaves the store.
impl From<api_key::Model> for ApiKey {
    fn from(row: api_key::Model) -> Self {
        ApiKey {
            id: row.id,
            org_id: row.org_id,
            prefix: row.prefix,
            description: row.description,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
        }
    }
}
