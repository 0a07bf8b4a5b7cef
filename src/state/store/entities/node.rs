use sea_orm::entity::prelude::*;

use crate::domain::{NamespaceId, NodeId, PreauthKeyId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nodes")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: NodeId,
    pub namespace_id: NamespaceId,
    pub machine_key: String,
    pub node_key: String,
    pub disco_key: String,
    pub hostname: String,
    pub given_name: String,
    pub ip_index: i64,
    pub ipv4: String,
    pub ipv6: String,
    #[sea_orm(column_type = "Text")]
    pub tags: String,
    pub ephemeral: bool,
    pub key_expiry: Option<DateTimeUtc>,
    pub last_seen: Option<DateTimeUtc>,
    /// The client's last Hostinfo, raw JSON.
    #[sea_orm(column_type = "Text")]
    pub hostinfo: String,
    /// JSON array of "ip:port" strings.
    #[sea_orm(column_type = "Text")]
    pub endpoints: String,
    pub home_derp: i32,
    pub preauth_key_id: Option<PreauthKeyId>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
