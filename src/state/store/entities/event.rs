use sea_orm::entity::prelude::*;

use crate::domain::{NamespaceId, OrgId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    /// `change` or `audit` (`outbox::RecordKind`).
    pub kind: String,
    pub namespace_id: Option<NamespaceId>,
    pub org_id: Option<OrgId>,
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
