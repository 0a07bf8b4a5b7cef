//! Instance leases (the `instances` table): which instances of the deployment are alive, and
//! where their DERP relays take mesh connections.
//!
//! Each write is one statement or one transaction, so two instances racing to remove the
//! same lapsed lease cannot both succeed: the `DELETE … WHERE expires_at < now` that removes
//! the row is the claim, and only its winner appends the events.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, Set};

use super::entities::instance;
use super::outbox::NewEvent;
use super::{Store, StoreResult};
use crate::domain::InstanceId;

/// A live instance as its lease row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceLease {
    pub id: InstanceId,
    /// Where its relay takes mesh connections (`http://host:port`), if it meshes.
    pub mesh_url: Option<String>,
    pub expires_at: DateTime<Utc>,
}

impl InstanceLease {
    fn from_row(row: instance::Model) -> Option<Self> {
        match row.id.parse() {
            Ok(id) => Some(Self { id, mesh_url: row.mesh_url.filter(|u| !u.is_empty()), expires_at: row.expires_at }),
            Err(_) => {
                tracing::warn!(id = %row.id, "ignoring an instance lease whose id is not 16 hex digits");
                None
            }
        }
    }
}

impl Store {
    /// Extends the lease of `id` to `expires_at`, creating it if it is not there. Returns
    /// false when it had to be created although `id` held it before, i.e. another instance
    /// took it for lapsed meanwhile (the caller announces its nodes again).
    pub(in crate::state) async fn renew_lease(
        &self,
        id: InstanceId,
        mesh_url: Option<&str>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let updated = instance::Entity::update_many()
            .col_expr(instance::Column::ExpiresAt, sea_orm::sea_query::Expr::value(expires_at))
            .filter(instance::Column::Id.eq(id.to_string()))
            .exec(&self.db)
            .await?;
        if updated.rows_affected == 1 {
            return Ok(true);
        }
        let row = instance::ActiveModel {
            id: Set(id.to_string()),
            mesh_url: Set(mesh_url.map(str::to_string)),
            started_at: Set(self.now()),
            expires_at: Set(expires_at),
        };
        instance::Entity::insert(row).exec(&self.db).await?;
        Ok(false)
    }

    /// Every lease not yet lapsed at `now`.
    pub async fn live_instances(&self, now: DateTime<Utc>) -> StoreResult<Vec<InstanceLease>> {
        let rows = instance::Entity::find().filter(instance::Column::ExpiresAt.gte(now)).all(&self.db).await?;
        Ok(rows.into_iter().filter_map(InstanceLease::from_row).collect())
    }

    /// The instances whose lease lapsed before `now`.
    pub async fn lapsed_instances(&self, now: DateTime<Utc>) -> StoreResult<Vec<InstanceId>> {
        let rows = instance::Entity::find().filter(instance::Column::ExpiresAt.lt(now)).all(&self.db).await?;
        Ok(rows.into_iter().filter_map(InstanceLease::from_row).map(|l| l.id).collect())
    }

    /// Removes the lease of `id` if it lapsed before `now`, with `events`, in one transaction.
    /// False when it was renewed or another instance removed it first.
    pub(in crate::state) async fn reap_lease(
        &self,
        id: InstanceId,
        now: DateTime<Utc>,
        events: &[NewEvent],
    ) -> StoreResult<bool> {
        let claim = async |txn: &DatabaseTransaction| {
            let deleted = instance::Entity::delete_many()
                .filter(instance::Column::Id.eq(id.to_string()))
                .filter(instance::Column::ExpiresAt.lt(now))
                .exec(txn)
                .await?;
            Ok(deleted.rows_affected == 1)
        };
        // Only the instance whose DELETE removed the row announces it gone.
        self.change(claim, |&claimed| if claimed { events.to_vec() } else { Vec::new() }).await
    }

    /// Removes the lease of `id` whatever its expiry (the instance is stopping), with `events`.
    pub(in crate::state) async fn release_lease(&self, id: InstanceId, events: &[NewEvent]) -> StoreResult<()> {
        let release = async |txn: &DatabaseTransaction| {
            instance::Entity::delete_many().filter(instance::Column::Id.eq(id.to_string())).exec(txn).await?;
            Ok(())
        };
        self.change(release, |_| events.to_vec()).await
    }
}
