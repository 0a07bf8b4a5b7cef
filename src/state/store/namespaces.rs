//! Namespaces: one isolated tailnet each, named uniquely within an organization.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::entities::{namespace, node};
use super::outbox::EventsFor;
use super::{corrupt, Membership, Namespace, Store, StoreError, StoreResult};
use crate::domain::{NamespaceId, NamespaceName, OrgId};

/// The first address index handed out (100.64.0.1, fd7a:115c:a1e0::1).
pub const FIRST_IP_INDEX: i64 = 1;

impl Store {
    pub(in crate::state) async fn create_namespace(
        &self,
        org_id: OrgId,
        name: &NamespaceName,
        events: EventsFor<'_, Namespace>,
    ) -> StoreResult<Namespace> {
        let model = namespace::ActiveModel {
            org_id: Set(org_id),
            name: Set(name.to_string()),
            next_ip_index: Set(FIRST_IP_INDEX),
            created_at: Set(self.now()),
            ..Default::default()
        };
        let insert = async |txn: &DatabaseTransaction| {
            let row = model
                .insert(txn)
                .await
                .map_err(|e| StoreError::conflict_or_db(e, format!("namespace {name} already exists")))?;
            Namespace::try_from(row)
        };
        self.change(insert, events).await
    }

    /// A page of the org's namespaces ordered by id, starting after `after`.
    pub async fn list_namespaces(&self, org_id: OrgId, after: Option<i64>, limit: u64) -> StoreResult<Vec<Namespace>> {
        let mut query = namespace::Entity::find().filter(namespace::Column::OrgId.eq(org_id));
        if let Some(after) = after {
            query = query.filter(namespace::Column::Id.gt(after));
        }
        converted(query.order_by_asc(namespace::Column::Id).limit(limit).all(&self.db).await?)
    }

    /// Every namespace of the org, in id order.
    pub async fn namespaces_of_org(&self, org_id: OrgId) -> StoreResult<Vec<Namespace>> {
        converted(
            namespace::Entity::find()
                .filter(namespace::Column::OrgId.eq(org_id))
                .order_by_asc(namespace::Column::Id)
                .all(&self.db)
                .await?,
        )
    }

    pub async fn namespace_by_name(&self, org_id: OrgId, name: &str) -> StoreResult<Namespace> {
        namespace::Entity::find()
            .filter(namespace::Column::OrgId.eq(org_id))
            .filter(namespace::Column::Name.eq(name))
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound("namespace"))?
            .try_into()
    }

    /// The org's namespace with this id; another org's is `NotFound`, like a missing one.
    pub async fn namespace_in_org(&self, org_id: OrgId, id: NamespaceId) -> StoreResult<Namespace> {
        namespace::Entity::find_by_id(id)
            .filter(namespace::Column::OrgId.eq(org_id))
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound("namespace"))?
            .try_into()
    }

    pub async fn namespace_by_id(&self, id: NamespaceId) -> StoreResult<Namespace> {
        namespace::Entity::find_by_id(id).one(&self.db).await?.ok_or(StoreError::NotFound("namespace"))?.try_into()
    }

    /// The namespace and the organization that owns it: what a node belongs to.
    pub async fn membership(&self, namespace_id: NamespaceId) -> StoreResult<Membership> {
        let namespace = self.namespace_by_id(namespace_id).await?;
        let org = self.org_by_id(namespace.org_id).await?;
        Ok(Membership { namespace, org })
    }

    pub async fn all_namespaces(&self) -> StoreResult<Vec<Namespace>> {
        converted(namespace::Entity::find().all(&self.db).await?)
    }

    /// Deletes the namespace with its keys, nodes and policy (by cascade). Returns the node
    /// keys that were registered in it, so their connections can be closed.
    pub(in crate::state) async fn delete_namespace(
        &self,
        ns: &Namespace,
        events: EventsFor<'_, Vec<String>>,
    ) -> StoreResult<Vec<String>> {
        let delete = async |txn: &DatabaseTransaction| {
            let node_keys: Vec<String> = node::Entity::find()
                .filter(node::Column::NamespaceId.eq(ns.id))
                .all(txn)
                .await?
                .into_iter()
                .map(|n| n.node_key)
                .collect();
            // Children first: cascades are declared, but deleting explicitly keeps SQLite
            // connections that were opened without foreign keys honest too.
            delete_children(txn, ns.id).await?;
            namespace::Entity::delete_by_id(ns.id).exec(txn).await?;
            StoreResult::Ok(node_keys)
        };
        self.change(delete, events).await
    }

    /// Takes the next address index of a namespace; indexes only grow, so two nodes never
    /// share an address and a deleted node's address is not handed out again.
    ///
    /// The counter is incremented before it is read: that UPDATE takes the namespace row's
    /// lock (PostgreSQL) or the write lock (SQLite) until the caller's transaction ends, so
    /// registrations racing in one namespace — on this instance or another — wait their turn
    /// instead of failing, and whatever the caller does next in the transaction (choosing a
    /// free node name) is serialised per namespace too.
    pub(in crate::state) async fn take_ip_index<C: ConnectionTrait>(
        conn: &C,
        namespace_id: NamespaceId,
    ) -> StoreResult<i64> {
        use crate::domain::addresses::{is_reserved_index, MAX_INDEX};
        use sea_orm::sea_query::{Expr, ExprTrait};
        let bumped = namespace::Entity::update_many()
            .col_expr(namespace::Column::NextIpIndex, Expr::col(namespace::Column::NextIpIndex).add(1))
            .filter(namespace::Column::Id.eq(namespace_id))
            .exec(conn)
            .await?;
        if bumped.rows_affected != 1 {
            return Err(StoreError::NotFound("namespace"));
        }
        let ns =
            namespace::Entity::find_by_id(namespace_id).one(conn).await?.ok_or(StoreError::NotFound("namespace"))?;
        let mut index = ns.next_ip_index - 1;
        if is_reserved_index(index) {
            while is_reserved_index(index) {
                index += 1;
            }
            namespace::Entity::update_many()
                .col_expr(namespace::Column::NextIpIndex, Expr::value(index + 1))
                .filter(namespace::Column::Id.eq(namespace_id))
                .exec(conn)
                .await?;
        }
        if index > MAX_INDEX {
            return Err(StoreError::Conflict("the namespace has no free addresses left".into()));
        }
        Ok(index)
    }
}

/// The namespace a stored row describes; its address counter stays in the store.
impl TryFrom<namespace::Model> for Namespace {
    type Error = StoreError;

    fn try_from(row: namespace::Model) -> Result<Self, Self::Error> {
        let name = NamespaceName::parse(&row.name).map_err(|e| corrupt("namespace", row.id, e))?;
        Ok(Namespace { id: row.id, org_id: row.org_id, name, created_at: row.created_at })
    }
}

fn converted(rows: Vec<namespace::Model>) -> StoreResult<Vec<Namespace>> {
    rows.into_iter().map(Namespace::try_from).collect()
}

async fn delete_children<C: ConnectionTrait>(conn: &C, namespace_id: NamespaceId) -> StoreResult<()> {
    use super::entities::{policy, preauth_key};
    node::Entity::delete_many().filter(node::Column::NamespaceId.eq(namespace_id)).exec(conn).await?;
    preauth_key::Entity::delete_many().filter(preauth_key::Column::NamespaceId.eq(namespace_id)).exec(conn).await?;
    policy::Entity::delete_many().filter(policy::Column::NamespaceId.eq(namespace_id)).exec(conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};

    use super::*;
    use crate::domain::OrgName;

    async fn namespace_at(next_ip_index: i64) -> (Store, NamespaceId) {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        let org = store.create_org(&OrgName::parse("acme").unwrap(), &|_| Vec::new()).await.unwrap();
        let ns = store.create_namespace(org.id, &NamespaceName::parse("a").unwrap(), &|_| Vec::new()).await.unwrap();
        let row = namespace::Entity::find_by_id(ns.id).one(&store.db).await.unwrap().unwrap();
        let mut active: namespace::ActiveModel = row.into();
        active.next_ip_index = Set(next_ip_index);
        active.update(&store.db).await.unwrap();
        (store, ns.id)
    }

    async fn take(store: &Store, ns: NamespaceId) -> StoreResult<i64> {
        store.change(async |txn| Store::take_ip_index(txn, ns).await, |_| Vec::new()).await
    }

    #[tokio::test]
    async fn indexes_grow_and_skip_the_reserved_ranges() {
        let (store, ns) = namespace_at(FIRST_IP_INDEX).await;
        assert_eq!(take(&store, ns).await.unwrap(), 1);
        assert_eq!(take(&store, ns).await.unwrap(), 2);

        let quad100_block = i64::from(u32::from_be_bytes([100, 100, 100, 0]) - u32::from_be_bytes([100, 64, 0, 0]));
        let (store, ns) = namespace_at(quad100_block - 1).await;
        assert_eq!(take(&store, ns).await.unwrap(), quad100_block - 1);
        assert_eq!(take(&store, ns).await.unwrap(), quad100_block + 256, "100.100.100.0/24 is skipped");
        assert_eq!(take(&store, ns).await.unwrap(), quad100_block + 257);
        let stored = namespace::Entity::find_by_id(ns).one(&store.db).await.unwrap().unwrap();
        assert_eq!(stored.next_ip_index, quad100_block + 258);
    }

    #[tokio::test]
    async fn a_full_namespace_refuses() {
        let (store, ns) = namespace_at(crate::domain::addresses::MAX_INDEX + 1).await;
        assert!(matches!(take(&store, ns).await, Err(StoreError::Conflict(_))));
    }
}
