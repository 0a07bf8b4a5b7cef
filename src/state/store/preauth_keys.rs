//! Pre-auth keys: `tskey-auth-<48 hex>`, stored as digests, scoped to one namespace.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, Set,
};

use super::entities::preauth_key;
use super::outbox::EventsFor;
use super::{
    corrupt, hash_secret, lookup_prefix, new_secret, secret_matches, PreauthKey, Store, StoreError, StoreResult,
};
pub use crate::domain::KeyRefusal;
use crate::domain::{NamespaceId, PreauthKeyId, Tags};

pub const AUTH_KEY_PREFIX: &str = "tskey-auth-";

/// What a new key may do; already checked by the caller (tags well-formed, expiry in range).
#[derive(Debug, Clone)]
pub struct NewPreauthKey {
    pub reusable: bool,
    pub ephemeral: bool,
    pub tags: Tags,
    pub expires_at: DateTime<Utc>,
    pub description: String,
}

impl Store {
    /// Creates a key; the plaintext is returned here and never again.
    pub(in crate::state) async fn create_preauth_key(
        &self,
        namespace_id: NamespaceId,
        spec: &NewPreauthKey,
        events: EventsFor<'_, PreauthKey>,
    ) -> StoreResult<(PreauthKey, String)> {
        let (secret, shown) = new_secret(AUTH_KEY_PREFIX);
        let model = preauth_key::ActiveModel {
            namespace_id: Set(namespace_id),
            prefix: Set(shown),
            hash: Set(hash_secret(&secret)),
            reusable: Set(spec.reusable),
            ephemeral: Set(spec.ephemeral),
            tags: Set(spec.tags.to_json()),
            description: Set(spec.description.clone()),
            expires_at: Set(spec.expires_at),
            used_count: Set(0),
            revoked_at: Set(None),
            created_at: Set(self.now()),
            ..Default::default()
        };
        let key = self.change(async |txn| model.insert(txn).await?.try_into(), events).await?;
        Ok((key, secret))
    }

    pub async fn list_preauth_keys(&self, namespace_id: NamespaceId) -> StoreResult<Vec<PreauthKey>> {
        preauth_key::Entity::find()
            .filter(preauth_key::Column::NamespaceId.eq(namespace_id))
            .order_by_asc(preauth_key::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(PreauthKey::try_from)
            .collect()
    }

    pub(in crate::state) async fn revoke_preauth_key(
        &self,
        namespace_id: NamespaceId,
        id: PreauthKeyId,
        events: EventsFor<'_, PreauthKey>,
    ) -> StoreResult<PreauthKey> {
        let revoke = async |txn: &DatabaseTransaction| {
            let key = preauth_key::Entity::find_by_id(id)
                .filter(preauth_key::Column::NamespaceId.eq(namespace_id))
                .one(txn)
                .await?
                .ok_or(StoreError::NotFound("pre-auth key"))?;
            let mut active: preauth_key::ActiveModel = key.into();
            active.revoked_at = Set(Some(self.now()));
            active.update(txn).await?.try_into()
        };
        self.change(revoke, events).await
    }

    /// Deletes the namespace's key `id`; the nodes it registered stay (they only remember its
    /// id). `NotFound` when the namespace has no such key.
    pub(in crate::state) async fn delete_preauth_key(
        &self,
        namespace_id: NamespaceId,
        id: PreauthKeyId,
        events: EventsFor<'_, PreauthKey>,
    ) -> StoreResult<PreauthKey> {
        let delete = async |txn: &DatabaseTransaction| {
            let key = preauth_key::Entity::find_by_id(id)
                .filter(preauth_key::Column::NamespaceId.eq(namespace_id))
                .one(txn)
                .await?
                .ok_or(StoreError::NotFound("pre-auth key"))?;
            preauth_key::Entity::delete_by_id(id).exec(txn).await?;
            key.try_into()
        };
        self.change(delete, events).await
    }

    /// The key whose plaintext is `secret`, whatever its state: found by its shown prefix,
    /// then its digest compared in constant time.
    pub async fn preauth_key_by_secret(&self, secret: &str) -> StoreResult<Option<PreauthKey>> {
        let Some(prefix) = lookup_prefix(secret, AUTH_KEY_PREFIX) else {
            return Ok(None);
        };
        let candidates =
            preauth_key::Entity::find().filter(preauth_key::Column::Prefix.eq(prefix)).all(&self.db).await?;
        candidates.into_iter().find(|key| secret_matches(secret, &key.hash)).map(PreauthKey::try_from).transpose()
    }

    /// Records one use of a key, refusing a second use of a single-use key even when two
    /// registrations race: the update only matches while the key is still usable.
    pub(in crate::state) async fn consume_preauth_key<C: ConnectionTrait>(
        conn: &C,
        key: &PreauthKey,
    ) -> Result<(), KeyRefusal> {
        use sea_orm::sea_query::{Expr, ExprTrait};
        let mut update = preauth_key::Entity::update_many()
            .col_expr(preauth_key::Column::UsedCount, Expr::col(preauth_key::Column::UsedCount).add(1))
            .filter(preauth_key::Column::Id.eq(key.id))
            .filter(preauth_key::Column::RevokedAt.is_null());
        if !key.reusable {
            update = update.filter(preauth_key::Column::UsedCount.eq(0));
        }
        match update.exec(conn).await {
            Ok(result) if result.rows_affected == 1 => Ok(()),
            Ok(_) => Err(KeyRefusal::AlreadyUsed),
            Err(_) => Err(KeyRefusal::Unknown),
        }
    }
}

/// The key a stored row describes, tags parsed, without its digest: that never leaves the
/// store.
impl TryFrom<preauth_key::Model> for PreauthKey {
    type Error = StoreError;

    fn try_from(row: preauth_key::Model) -> Result<Self, Self::Error> {
        let tags = Tags::from_stored(&row.tags).map_err(|e| corrupt("pre-auth key", row.id, e))?;
        let used_count = u64::try_from(row.used_count).map_err(|e| corrupt("pre-auth key", row.id, e))?;
        Ok(PreauthKey {
            id: row.id,
            namespace_id: row.namespace_id,
            prefix: row.prefix,
            reusable: row.reusable,
            ephemeral: row.ephemeral,
            tags,
            description: row.description,
            expires_at: row.expires_at,
            used_count,
            revoked_at: row.revoked_at,
            created_at: row.created_at,
        })
    }
}
