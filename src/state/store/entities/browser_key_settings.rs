use sea_orm::entity::prelude::*;

use crate::domain::OrgId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "browser_key_settings")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub org_id: OrgId,
    #[sea_orm(unique)]
    pub issuer: String,
    pub audience: String,
    /// JSON list of stored verification keys (secrets sealed).
    #[sea_orm(column_type = "Text")]
    pub verification_keys: String,
    pub namespace_claim: String,
    pub create_namespaces: bool,
    /// JSON list of tags.
    #[sea_orm(column_type = "Text")]
    pub tags: String,
    pub expires_in_secs: i64,
    /// JSON list of exact origins.
    #[sea_orm(column_type = "Text")]
    pub allowed_origins: String,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
