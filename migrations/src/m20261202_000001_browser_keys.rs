//! Browser keys: each organization's settings for exchanging its backend's JWTs for one-hour
//! ephemeral pre-auth keys, and the token ids (`jti`) already spent, so that a token is
//! accepted once — across instances sharing the database, and across restarts.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum BrowserKeySettings {
    Table,
    Id,
    OrgId,
    Issuer,
    Audience,
    VerificationKeys,
    NamespaceClaim,
    CreateNamespaces,
    Tags,
    ExpiresInSecs,
    AllowedOrigins,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SpentTokenIds {
    Table,
    Id,
    OrgId,
    Jti,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(BrowserKeySettings::Table)
                    .col(big_pk_auto(BrowserKeySettings::Id))
                    .col(big_integer_uniq(BrowserKeySettings::OrgId))
                    // Unique: a token names its organization by its issuer.
                    .col(string_uniq(BrowserKeySettings::Issuer))
                    .col(string(BrowserKeySettings::Audience))
                    // JSON; HS256 secrets sealed with the server's secrets key, never in clear.
                    .col(text(BrowserKeySettings::VerificationKeys))
                    .col(string(BrowserKeySettings::NamespaceClaim))
                    .col(boolean(BrowserKeySettings::CreateNamespaces))
                    .col(text(BrowserKeySettings::Tags))
                    .col(big_integer(BrowserKeySettings::ExpiresInSecs))
                    .col(text(BrowserKeySettings::AllowedOrigins))
                    .col(timestamp_with_time_zone(BrowserKeySettings::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_browser_key_settings_org")
                            .from(BrowserKeySettings::Table, BrowserKeySettings::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SpentTokenIds::Table)
                    .col(big_pk_auto(SpentTokenIds::Id))
                    .col(big_integer(SpentTokenIds::OrgId))
                    .col(string(SpentTokenIds::Jti))
                    // When the token would have expired anyway: the row may go after that.
                    .col(timestamp_with_time_zone(SpentTokenIds::ExpiresAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_spent_token_ids_org")
                            .from(SpentTokenIds::Table, SpentTokenIds::OrgId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_spent_token_ids_org_jti")
                    .table(SpentTokenIds::Table)
                    .col(SpentTokenIds::OrgId)
                    .col(SpentTokenIds::Jti)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(SpentTokenIds::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(BrowserKeySettings::Table).to_owned()).await
    }
}
