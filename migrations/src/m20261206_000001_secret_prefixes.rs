//! Indexes on the shown prefixes of API and pre-auth keys: a presented key is now found by its
//! prefix (not by its digest), and its digest then compared in constant time by the server.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Prefix,
}

#[derive(DeriveIden)]
enum PreauthKeys {
    Table,
    Prefix,
}

const API_KEYS_INDEX: &str = "idx_api_keys_prefix";
const PREAUTH_KEYS_INDEX: &str = "idx_preauth_keys_prefix";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(Index::create().name(API_KEYS_INDEX).table(ApiKeys::Table).col(ApiKeys::Prefix).to_owned())
            .await?;
        manager
            .create_index(
                Index::create().name(PREAUTH_KEYS_INDEX).table(PreauthKeys::Table).col(PreauthKeys::Prefix).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(PREAUTH_KEYS_INDEX).table(PreauthKeys::Table).to_owned()).await?;
        manager.drop_index(Index::drop().name(API_KEYS_INDEX).table(ApiKeys::Table).to_owned()).await
    }
}
