//! Durable values of the server itself (its Noise and DERP private keys, how far the
//! deployment's expiry sweep has got), shared by every instance on the same database so that
//! clients see one server.

use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, Set};

use super::entities::server_state;
use super::outbox::NewEvent;
use super::{Store, StoreError, StoreResult};

impl Store {
    /// The value stored under `name`, creating it with `make` on first use. When two
    /// instances race, the loser reads the winner's value.
    pub(in crate::state) async fn state_value_or_insert(
        &self,
        name: &str,
        make: impl FnOnce() -> String,
    ) -> StoreResult<String> {
        if let Some(row) = server_state::Entity::find_by_id(name.to_string()).one(&self.db).await? {
            return Ok(row.value);
        }
        let insert =
            server_state::ActiveModel { name: Set(name.to_string()), value: Set(make()) }.insert(&self.db).await;
        match insert {
            Ok(row) => Ok(row.value),
            Err(err) => match StoreError::conflict_or_db(err, "raced") {
                StoreError::Conflict(_) => server_state::Entity::find_by_id(name.to_string())
                    .one(&self.db)
                    .await?
                    .map(|row| row.value)
                    .ok_or(StoreError::NotFound("server state")),
                other => Err(other),
            },
        }
    }
}

impl Store {
    /// Moves the value under `name` from `expected` to `new`, with `records`, in one change:
    /// true for the caller whose update found `expected` (the claim), false for any other
    /// (the value moved meanwhile, here or on another instance), which appends nothing.
    pub(in crate::state) async fn advance_state_value(
        &self,
        name: &str,
        expected: &str,
        new: &str,
        records: &[NewEvent],
    ) -> StoreResult<bool> {
        let claim = async |txn: &DatabaseTransaction| {
            let moved = server_state::Entity::update_many()
                .col_expr(server_state::Column::Value, Expr::value(new))
                .filter(server_state::Column::Name.eq(name))
                .filter(server_state::Column::Value.eq(expected))
                .exec(txn)
                .await?;
            StoreResult::Ok(moved.rows_affected == 1)
        };
        self.change(claim, |&claimed| if claimed { records.to_vec() } else { Vec::new() }).await
    }
}
