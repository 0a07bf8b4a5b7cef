//! API keys of organizations: `tskey-api-<48 hex>`, stored as digests.

use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, Set};

use super::entities::api_key;
use super::outbox::EventsFor;
use super::{hash_secret, lookup_prefix, new_secret, now, secret_matches, ApiKey, Store, StoreError, StoreResult};
use crate::domain::OrgId;

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
            created_at: Set(now()),
            last_used_at: Set(None),
            revoked_at: Set(None),
            ..Default::default()
        };
        let key = self.change(async |txn| StoreResult::Ok(model.insert(txn).await?), events).await?;
        Ok((key, secret))
    }

    pub async fn list_api_keys(&self, org_id: OrgId) -> StoreResult<Vec<ApiKey>> {
        Ok(api_key::Entity::find()
            .filter(api_key::Column::OrgId.eq(org_id))
            .order_by_asc(api_key::Column::Id)
            .all(&self.db)
            .await?)
    }

    pub(in crate::state) async fn revoke_api_key(
        &self,
        org_id: OrgId,
        id: i64,
        events: EventsFor<'_, ApiKey>,
    ) -> StoreResult<ApiKey> {
        let revoke = async |txn: &DatabaseTransaction| {
            let key = api_key::Entity::find_by_id(id)
                .filter(api_key::Column::OrgId.eq(org_id))
                .one(txn)
                .await?
                .ok_or(StoreError::NotFound("API key"))?;
            let mut active: api_key::ActiveModel = key.into();
            active.revoked_at = Set(Some(now()));
            Ok(active.update(txn).await?)
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
        Ok(candidates.into_iter().find(|key| secret_matches(secret, &key.hash)))
    }
}
