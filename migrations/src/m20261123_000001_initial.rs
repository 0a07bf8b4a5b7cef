//! The initial schema: organizations, their API keys, namespaces, pre-auth keys, nodes,
//! policies, audit events and the server's own durable state (its Noise and DERP keys).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    OrgId,
    Prefix,
    Hash,
    Description,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Namespaces {
    Table,
    Id,
    OrgId,
    Name,
    NextIpIndex,
    CreatedAt,
}

#[derive(DeriveIden)]
enum PreauthKeys {
    Table,
    Id,
    NamespaceId,
    Prefix,
    Hash,
    Reusable,
    Ephemeral,
    Tags,
    Description,
    ExpiresAt,
    UsedCount,
    RevokedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Nodes {
    Table,
    Id,
    NamespaceId,
    MachineKey,
    NodeKey,
    DiscoKey,
    Hostname,
    GivenName,
    IpIndex,
    Ipv4,
    Ipv6,
    Tags,
    Ephemeral,
    KeyExpiry,
    LastSeen,
    Hostinfo,
    Endpoints,
    HomeDerp,
    PreauthKeyId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Policies {
    Table,
    Id,
    OrgId,
    NamespaceId,
    Scope,
    Document,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    OrgId,
    Actor,
    Action,
    ObjectType,
    ObjectId,
    Detail,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ServerState {
    Table,
    Name,
    Value,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Organizations::Table)
                    .col(big_pk_auto(Organizations::Id))
                    .col(string_uniq(Organizations::Name))
                    .col(timestamp_with_time_zone(Organizations::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(big_pk_auto(ApiKeys::Id))
                    .col(big_integer(ApiKeys::OrgId))
                    .col(string(ApiKeys::Prefix))
                    .col(string_uniq(ApiKeys::Hash))
                    .col(string(ApiKeys::Description))
                    .col(timestamp_with_time_zone(ApiKeys::CreatedAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::LastUsedAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::RevokedAt))
                    .foreign_key(&mut cascade(
                        "fk_api_keys_org",
                        ApiKeys::Table,
                        ApiKeys::OrgId,
                        Organizations::Table,
                        Organizations::Id,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Namespaces::Table)
                    .col(big_pk_auto(Namespaces::Id))
                    .col(big_integer(Namespaces::OrgId))
                    .col(string(Namespaces::Name))
                    .col(big_integer(Namespaces::NextIpIndex))
                    .col(timestamp_with_time_zone(Namespaces::CreatedAt))
                    .foreign_key(&mut cascade(
                        "fk_namespaces_org",
                        Namespaces::Table,
                        Namespaces::OrgId,
                        Organizations::Table,
                        Organizations::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_namespaces_org_name")
                    .table(Namespaces::Table)
                    .col(Namespaces::OrgId)
                    .col(Namespaces::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(PreauthKeys::Table)
                    .col(big_pk_auto(PreauthKeys::Id))
                    .col(big_integer(PreauthKeys::NamespaceId))
                    .col(string(PreauthKeys::Prefix))
                    .col(string_uniq(PreauthKeys::Hash))
                    .col(boolean(PreauthKeys::Reusable))
                    .col(boolean(PreauthKeys::Ephemeral))
                    .col(text(PreauthKeys::Tags))
                    .col(string(PreauthKeys::Description))
                    .col(timestamp_with_time_zone(PreauthKeys::ExpiresAt))
                    .col(big_integer(PreauthKeys::UsedCount))
                    .col(timestamp_with_time_zone_null(PreauthKeys::RevokedAt))
                    .col(timestamp_with_time_zone(PreauthKeys::CreatedAt))
                    .foreign_key(&mut cascade(
                        "fk_preauth_keys_namespace",
                        PreauthKeys::Table,
                        PreauthKeys::NamespaceId,
                        Namespaces::Table,
                        Namespaces::Id,
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Nodes::Table)
                    .col(big_pk_auto(Nodes::Id))
                    .col(big_integer(Nodes::NamespaceId))
                    .col(string(Nodes::MachineKey))
                    .col(string_uniq(Nodes::NodeKey))
                    .col(string(Nodes::DiscoKey))
                    .col(string(Nodes::Hostname))
                    .col(string(Nodes::GivenName))
                    .col(big_integer(Nodes::IpIndex))
                    .col(string(Nodes::Ipv4))
                    .col(string(Nodes::Ipv6))
                    .col(text(Nodes::Tags))
                    .col(boolean(Nodes::Ephemeral))
                    .col(timestamp_with_time_zone_null(Nodes::KeyExpiry))
                    .col(timestamp_with_time_zone_null(Nodes::LastSeen))
                    .col(text(Nodes::Hostinfo))
                    .col(text(Nodes::Endpoints))
                    .col(integer(Nodes::HomeDerp))
                    .col(big_integer_null(Nodes::PreauthKeyId))
                    .col(timestamp_with_time_zone(Nodes::CreatedAt))
                    .foreign_key(&mut cascade(
                        "fk_nodes_namespace",
                        Nodes::Table,
                        Nodes::NamespaceId,
                        Namespaces::Table,
                        Namespaces::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("ux_nodes_namespace_ip", Nodes::IpIndex),
            ("ux_nodes_namespace_given_name", Nodes::GivenName),
            ("ux_nodes_namespace_machine", Nodes::MachineKey),
        ] {
            manager
                .create_index(
                    Index::create().name(name).table(Nodes::Table).col(Nodes::NamespaceId).col(col).unique().to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Policies::Table)
                    .col(big_pk_auto(Policies::Id))
                    .col(big_integer(Policies::OrgId))
                    .col(big_integer_null(Policies::NamespaceId))
                    // "org" for the organization's default, "ns:<id>" for a namespace override;
                    // a string rather than a nullable id so that uniqueness holds on both backends.
                    .col(string(Policies::Scope))
                    .col(text(Policies::Document))
                    .col(timestamp_with_time_zone(Policies::UpdatedAt))
                    .foreign_key(&mut cascade(
                        "fk_policies_org",
                        Policies::Table,
                        Policies::OrgId,
                        Organizations::Table,
                        Organizations::Id,
                    ))
                    .foreign_key(&mut cascade(
                        "fk_policies_namespace",
                        Policies::Table,
                        Policies::NamespaceId,
                        Namespaces::Table,
                        Namespaces::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_policies_org_scope")
                    .table(Policies::Table)
                    .col(Policies::OrgId)
                    .col(Policies::Scope)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(big_pk_auto(AuditEvents::Id))
                    .col(big_integer_null(AuditEvents::OrgId))
                    .col(string(AuditEvents::Actor))
                    .col(string(AuditEvents::Action))
                    .col(string(AuditEvents::ObjectType))
                    .col(string(AuditEvents::ObjectId))
                    .col(text(AuditEvents::Detail))
                    .col(timestamp_with_time_zone(AuditEvents::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_audit_events_org_time")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::OrgId)
                    .col(AuditEvents::CreatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ServerState::Table)
                    .col(string(ServerState::Name).primary_key())
                    .col(text(ServerState::Value))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ServerState::Table.into_iden(),
            AuditEvents::Table.into_iden(),
            Policies::Table.into_iden(),
            Nodes::Table.into_iden(),
            PreauthKeys::Table.into_iden(),
            Namespaces::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            Organizations::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

/// A foreign key that deletes the child rows with their parent.
fn cascade(
    name: &str,
    from_table: impl IntoIden,
    from_col: impl IntoIden,
    to_table: impl IntoIden,
    to_col: impl IntoIden,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from_table, from_col)
        .to(to_table, to_col)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}
