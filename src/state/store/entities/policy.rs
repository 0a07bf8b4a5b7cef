use sea_orm::entity::prelude::*;

use crate::domain::{NamespaceId, OrgId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "policies")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub org_id: OrgId,
    pub namespace_id: Option<NamespaceId>,
    /// "org" or "ns:<namespace id>".
    pub scope: String,
    /// The HuJSON document exactly as it was saved.
    #[sea_orm(column_type = "Text")]
    pub document: String,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
