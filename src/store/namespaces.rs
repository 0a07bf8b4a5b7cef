//! Namespaces: one isolated tailnet each, named uniquely within an organization.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};

use super::entities::{namespace, node};
use super::{now, Namespace, Store, StoreError, StoreResult};
use crate::domain::NamespaceName;

/// The first address index handed out (100.64.0.1, fd7a:115c:a1e0::1).
pub const FIRST_IP_INDEX: i64 = 1;

impl Store {
    pub async fn create_namespace(&self, org_id: i64, name: &NamespaceName) -> StoreResult<Namespace> {
        namespace::ActiveModel {
            org_id: Set(org_id),
            name: Set(name.to_string()),
            next_ip_index: Set(FIRST_IP_INDEX),
            created_at: Set(now()),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .map_err(|e| StoreError::conflict_or_db(e, format!("namespace {name} already exists")))
    }

    /// A page of the org's namespaces ordered by id, starting after `after`.
    pub async fn list_namespaces(&self, org_id: i64, after: Option<i64>, limit: u64) -> StoreResult<Vec<Namespace>> {
        let mut query = namespace::Entity::find().filter(namespace::Column::OrgId.eq(org_id));
        if let Some(after) = after {
            query = query.filter(namespace::Column::Id.gt(after));
        }
        Ok(query.order_by_asc(namespace::Column::Id).limit(limit).all(&self.db).await?)
    }

    /// Every namespace of the org, in id order.
    pub async fn namespaces_of_org(&self, org_id: i64) -> StoreResult<Vec<Namespace>> {
        Ok(namespace::Entity::find()
            .filter(namespace::Column::OrgId.eq(org_id))
            .order_by_asc(namespace::Column::Id)
            .all(&self.db)
            .await?)
    }

    pub async fn namespace_by_name(&self, org_id: i64, name: &str) -> StoreResult<Namespace> {
        namespace::Entity::find()
            .filter(namespace::Column::OrgId.eq(org_id))
            .filter(namespace::Column::Name.eq(name))
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound("namespace"))
    }

    pub async fn namespace_by_id(&self, id: i64) -> StoreResult<Namespace> {
        namespace::Entity::find_by_id(id).one(&self.db).await?.ok_or(StoreError::NotFound("namespace"))
    }

    pub async fn all_namespaces(&self) -> StoreResult<Vec<Namespace>> {
        Ok(namespace::Entity::find().all(&self.db).await?)
    }

    /// Deletes the namespace with its keys, nodes and policy (by cascade). Returns the node
    /// keys that were registered in it, so their connections can be closed.
    pub async fn delete_namespace(&self, ns: &Namespace) -> StoreResult<Vec<String>> {
        let txn = self.db.begin().await?;
        let node_keys: Vec<String> = node::Entity::find()
            .filter(node::Column::NamespaceId.eq(ns.id))
            .all(&txn)
            .await?
            .into_iter()
            .map(|n| n.node_key)
            .collect();
        // Children first: cascades are declared, but deleting explicitly keeps SQLite
        // connections that were opened without foreign keys honest too.
        delete_children(&txn, ns.id).await?;
        namespace::Entity::delete_by_id(ns.id).exec(&txn).await?;
        txn.commit().await?;
        Ok(node_keys)
    }

    /// Takes the next address index of a namespace; indexes only grow, so two nodes never
    /// share an address and a deleted node's address is not handed out again. The update is
    /// one statement, so concurrent instances on PostgreSQL serialise on the row.
    pub(crate) async fn take_ip_index<C: ConnectionTrait>(conn: &C, namespace_id: i64) -> StoreResult<i64> {
        use sea_orm::sea_query::Expr;
        let ns = namespace::Entity::find_by_id(namespace_id)
            .one(conn)
            .await?
            .ok_or(StoreError::NotFound("namespace"))?;
        let mut index = ns.next_ip_index;
        while crate::tailnet::addresses::is_reserved_index(index) {
            index += 1;
        }
        let updated = namespace::Entity::update_many()
            .col_expr(namespace::Column::NextIpIndex, Expr::value(index + 1))
            .filter(namespace::Column::Id.eq(namespace_id))
            .filter(namespace::Column::NextIpIndex.eq(ns.next_ip_index))
            .exec(conn)
            .await?;
        if updated.rows_affected != 1 {
            return Err(StoreError::Conflict("address allocation raced; retry".into()));
        }
        Ok(index)
    }
}

async fn delete_children<C: ConnectionTrait>(conn: &C, namespace_id: i64) -> StoreResult<()> {
    use super::entities::{policy, preauth_key};
    node::Entity::delete_many().filter(node::Column::NamespaceId.eq(namespace_id)).exec(conn).await?;
    preauth_key::Entity::delete_many()
        .filter(preauth_key::Column::NamespaceId.eq(namespace_id))
        .exec(conn)
        .await?;
    policy::Entity::delete_many().filter(policy::Column::NamespaceId.eq(namespace_id)).exec(conn).await?;
    Ok(())
}
