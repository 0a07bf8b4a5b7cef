use sea_orm::entity::prelude::*;

use crate::domain::{ApiKeyId, OrgId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: ApiKeyId,
    pub org_id: OrgId,
    /// The first characters of the key, kept to tell keys apart in listings.
    pub prefix: String,
    /// SHA-256 of the whole key, hex. The key itself is never stored.
    pub hash: String,
    pub description: String,
    pub created_at: DateTimeUtc,
    pub last_used_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
    /// When the key stops working; `None`: never.
    pub expires_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
