//! The outbox: every change's events, appended in the transaction that made the change.
//!
//! `seq` is the deployment's event sequence (auto-increment; never reused, since SQLite's
//! `AUTOINCREMENT` and PostgreSQL's sequences do not hand out a number twice, even after the
//! newest rows are pruned). Instances apply events in `seq` order and catch up from here after
//! missing a wake-up.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Events {
    Table,
    Seq,
    NamespaceId,
    Payload,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(big_pk_auto(Events::Seq))
                    // No foreign key: an event outlives the namespace it tells about.
                    .col(big_integer_null(Events::NamespaceId))
                    .col(text(Events::Payload))
                    .col(timestamp_with_time_zone(Events::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_events_created_at").table(Events::Table).col(Events::CreatedAt).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Events::Table).to_owned()).await
    }
}
