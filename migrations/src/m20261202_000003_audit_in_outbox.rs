//! The audit log moves into the outbox: an audit record is appended in the transaction of the
//! change it describes, beside that change's events, so a committed change is never missing
//! from the log (and webhooks will read the same records).
//!
//! `kind` tells the two apart: `change` (what instances apply; pruned after the retention)
//! and `audit` (who did what; kept). `org_id` is the organization an audit record belongs to.
//! The rows of the old `audit_events` table are copied over, oldest first, then it is dropped.

use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Events {
    Table,
    Kind,
    OrgId,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter().table(Events::Table).add_column(string(Events::Kind).default("change")).to_owned(),
            )
            .await?;
        manager
            .alter_table(Table::alter().table(Events::Table).add_column(big_integer_null(Events::OrgId)).to_owned())
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_events_kind_org")
                    .table(Events::Table)
                    .col(Events::Kind)
                    .col(Events::OrgId)
                    .to_owned(),
            )
            .await?;
        copy_audit_events(manager).await?;
        manager.drop_table(Table::drop().table(AuditEvents::Table).to_owned()).await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Err(DbErr::Migration("the audit log cannot move back out of the outbox".into()))
    }
}

/// One `INSERT … SELECT` per backend: only the JSON constructor differs.
async fn copy_audit_events(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let payload = match db.get_database_backend() {
        DbBackend::Postgres => {
            "json_build_object('actor', actor, 'action', action, 'object_type', object_type, \
             'object_id', object_id, 'detail', detail::json)::text"
        }
        _ => {
            "json_object('actor', actor, 'action', action, 'object_type', object_type, \
             'object_id', object_id, 'detail', json(detail))"
        }
    };
    let copy = format!(
        "INSERT INTO events (kind, org_id, payload, created_at) \
         SELECT 'audit', org_id, {payload}, created_at FROM audit_events ORDER BY id"
    );
    db.execute_unprepared(&copy).await?;
    Ok(())
}
