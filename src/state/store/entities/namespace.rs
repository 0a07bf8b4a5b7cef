use sea_orm::entity::prelude::*;

use crate::domain::{NamespaceId, OrgId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "namespaces")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: NamespaceId,
    pub org_id: OrgId,
    pub name: String,
    /// The next address index to hand out; only grows, so an address is never reused.
    pub next_ip_index: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
