//! The one unit of work. Every write of the store is one [`Store::change`]: begin, run the
//! writes, append the change's outbox records, commit — or, on any error on the way, drop the
//! transaction (which rolls it back), so nothing of the change is kept.
//!
//! **Invariant:** this is the only place a transaction of the store commits, and it cannot
//! commit without the records the change names (an empty list is a decision too, made where
//! the change is defined). Which records a change carries is the writer's business
//! (`state::Writer`); that they land in the same transaction as its rows is this module's.

use sea_orm::{DatabaseTransaction, TransactionTrait};

use super::outbox::{append, NewEvent};
use super::{Store, StoreError};

impl Store {
    /// Runs `write` in a new transaction, appends `records(&written)` to the outbox inside it,
    /// and commits. A write may decide it changed nothing (a row already gone, say) and say so
    /// in its result; `records` then returns no records for it.
    pub(in crate::state) async fn change<T, E>(
        &self,
        write: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T, E>,
        records: impl FnOnce(&T) -> Vec<NewEvent>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let txn = self.db.begin().await.map_err(StoreError::from)?;
        let written = write(&txn).await?;
        append(&txn, &records(&written), self.now()).await?;
        txn.commit().await.map_err(StoreError::from)?;
        Ok(written)
    }
}
