//! API keys of organizations: `tskey-api-<48 hex>`, stored as digests.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, Set,
};

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
        expires_at: Option<DateTime<Utc>>,
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
            expires_at: Set(expires_at),
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

    /// The organization's key with this id.
    pub async fn api_key(&self, org_id: OrgId, id: ApiKeyId) -> StoreResult<ApiKey> {
        let row = api_key::Entity::find_by_id(id).filter(api_key::Column::OrgId.eq(org_id)).one(&self.db).await?;
        row.map(ApiKey::from).ok_or(StoreError::NotFound("API key"))
    }

    /// The organization's key whose shown prefix is `prefix` (`tskey-api-` and 8 hex digits).
    pub async fn api_key_by_prefix(&self, org_id: OrgId, prefix: &str) -> StoreResult<ApiKey> {
        let row = api_key::Entity::find()
            .filter(api_key::Column::OrgId.eq(org_id))
            .filter(api_key::Column::Prefix.eq(prefix))
            .one(&self.db)
            .await?;
        row.map(ApiKey::from).ok_or(StoreError::NotFound("API key"))
    }

    pub(in crate::state) async fn revoke_api_key(
        &self,
        org_id: OrgId,
        id: ApiKeyId,
        events: EventsFor<'_, ApiKey>,
    ) -> StoreResult<ApiKey> {
        let now = self.now();
        let revoke = move |active: &mut api_key::ActiveModel| {
            // A key revoked before keeps the moment it was.
            if matches!(active.revoked_at, ActiveValue::Unchanged(None)) {
                active.revoked_at = Set(Some(now));
            }
        };
        self.update_api_key(org_id, id, revoke, events).await
    }

    /// Ends the key's life now, unless it already ended.
    pub(in crate::state) async fn expire_api_key(
        &self,
        org_id: OrgId,
        id: ApiKeyId,
        events: EventsFor<'_, ApiKey>,
    ) -> StoreResult<ApiKey> {
        let now = self.now();
        let expire = move |active: &mut api_key::ActiveModel| {
            let ended = matches!(&active.expires_at, ActiveValue::Unchanged(Some(at)) if *at <= now);
            if !ended {
                active.expires_at = Set(Some(now));
            }
        };
        self.update_api_key(org_id, id, expire, events).await
    }

    /// Replaces key `id` by a new one with its description and its lifetime's length, in one
    /// unit of work: the old key is revoked as the new one is made. A revoked key is not
    /// rotated (`Conflict`). The new plaintext is returned here and never again.
    pub(in crate::state) async fn rotate_api_key(
        &self,
        org_id: OrgId,
        id: ApiKeyId,
        events: EventsFor<'_, (ApiKey, String)>,
    ) -> StoreResult<(ApiKey, String)> {
        let now = self.now();
        let rotate = async |txn: &DatabaseTransaction| {
            let old = find_in_org(txn, org_id, id).await?;
            if old.revoked_at.is_some() {
                return Err(StoreError::Conflict("the API key is revoked; create a new one instead".into()));
            }
            let lifetime = old.expires_at.map(|at| at - old.created_at);
            let (secret, shown) = new_secret(API_KEY_PREFIX);
            let replacement = api_key::ActiveModel {
                org_id: Set(org_id),
                prefix: Set(shown),
                hash: Set(hash_secret(&secret)),
                description: Set(old.description.clone()),
                created_at: Set(now),
                last_used_at: Set(None),
                revoked_at: Set(None),
                expires_at: Set(lifetime.and_then(|life| now.checked_add_signed(life))),
                ..Default::default()
            };
            let mut retired: api_key::ActiveModel = old.into();
            retired.revoked_at = Set(Some(now));
            retired.update(txn).await?;
            Ok((ApiKey::from(replacement.insert(txn).await?), secret))
        };
        self.change(rotate, events).await
    }

    /// Removes the key; what it was is returned for the events.
    pub(in crate::state) async fn delete_api_key(
        &self,
        org_id: OrgId,
        id: ApiKeyId,
        events: EventsFor<'_, ApiKey>,
    ) -> StoreResult<ApiKey> {
        let delete = async |txn: &DatabaseTransaction| {
            let row = find_in_org(txn, org_id, id).await?;
            api_key::Entity::delete_by_id(id).exec(txn).await?;
            Ok(ApiKey::from(row))
        };
        self.change(delete, events).await
    }

    async fn update_api_key(
        &self,
        org_id: OrgId,
        id: ApiKeyId,
        edit: impl FnOnce(&mut api_key::ActiveModel),
        events: EventsFor<'_, ApiKey>,
    ) -> StoreResult<ApiKey> {
        let update = async |txn: &DatabaseTransaction| {
            let mut active: api_key::ActiveModel = find_in_org(txn, org_id, id).await?.into();
            edit(&mut active);
            Ok(active.update(txn).await?.into())
        };
        self.change(update, events).await
    }

    /// The live (unrevoked, unexpired) key whose plaintext is `secret`, if any: found by its
    /// shown prefix, then its digest compared in constant time.
    pub async fn authenticate_api_key(&self, secret: &str) -> StoreResult<Option<ApiKey>> {
        let Some(prefix) = lookup_prefix(secret, API_KEY_PREFIX) else {
            return Ok(None);
        };
        let candidates = api_key::Entity::find()
            .filter(api_key::Column::Prefix.eq(prefix))
            .filter(api_key::Column::RevokedAt.is_null())
            .all(&self.db)
            .await?;
        let now = self.now();
        let found = candidates.into_iter().find(|key| secret_matches(secret, &key.hash)).map(ApiKey::from);
        Ok(found.filter(|key| key.live_at(now)))
    }
}

/// The row of key `id`, if it belongs to `org_id`.
async fn find_in_org(txn: &DatabaseTransaction, org_id: OrgId, id: ApiKeyId) -> StoreResult<api_key::Model> {
    api_key::Entity::find_by_id(id)
        .filter(api_key::Column::OrgId.eq(org_id))
        .one(txn)
        .await?
        .ok_or(StoreError::NotFound("API key"))
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
            expires_at: row.expires_at,
        }
    }
}
