use sea_orm::entity::prelude::*;

use crate::domain::{NamespaceId, PreauthKeyId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "preauth_keys")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: PreauthKeyId,
    pub namespace_id: NamespaceId,
    pub prefix: String,
    /// SHA-256 of the whole key, hex.
    pub hash: String,
    pub reusable: bool,
    pub ephemeral: bool,
    /// JSON array of tags.
    #[sea_orm(column_type = "Text")]
    pub tags: String,
    pub description: String,
    pub expires_at: DateTimeUtc,
    pub used_count: i64,
    pub revoked_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
