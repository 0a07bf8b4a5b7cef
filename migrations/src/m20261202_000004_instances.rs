//! Instance leases: each running instance of a deployment holds a row here, renewed every few
//! seconds. A row whose `expires_at` has passed belongs to an instance that crashed or lost
//! the database; another instance removes it and announces that the nodes streaming from it
//! are offline. `mesh_url` is where the other instances reach its DERP relay directly (not
//! through the load balancer); empty when the instance takes no part in a mesh.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Instances {
    Table,
    Id,
    MeshUrl,
    StartedAt,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Instances::Table)
                    .col(string(Instances::Id).primary_key())
                    .col(string_null(Instances::MeshUrl))
                    .col(timestamp_with_time_zone(Instances::StartedAt))
                    .col(timestamp_with_time_zone(Instances::ExpiresAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Instances::Table).to_owned()).await
    }
}
