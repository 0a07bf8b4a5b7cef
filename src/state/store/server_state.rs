//! Durable values of the server itself (its Noise and DERP private keys), shared by every
//! instance on the same database so that clients see one server.

use sea_orm::{ActiveModelTrait, EntityTrait, Set};

use super::entities::server_state;
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
