use sea_orm::entity::prelude::*;

use crate::domain::OrgId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "spent_token_ids")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub org_id: OrgId,
    pub jti: String,
    pub expires_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
