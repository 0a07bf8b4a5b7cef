//! Organizations: the SaaS customers that own namespaces.

use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, Set};

use super::entities::organization as org;
use super::outbox::EventsFor;
use super::{now, Organization, Store, StoreError, StoreResult};
use crate::domain::{OrgId, OrgName};

impl Store {
    pub(in crate::state) async fn create_org(
        &self,
        name: &OrgName,
        events: EventsFor<'_, Organization>,
    ) -> StoreResult<Organization> {
        let model = org::ActiveModel { name: Set(name.to_string()), created_at: Set(now()), ..Default::default() };
        let insert = async |txn: &DatabaseTransaction| {
            model
                .insert(txn)
                .await
                .map_err(|e| StoreError::conflict_or_db(e, format!("organization {name} already exists")))
        };
        self.change(insert, events).await
    }

    pub async fn list_orgs(&self) -> StoreResult<Vec<Organization>> {
        Ok(org::Entity::find().order_by_asc(org::Column::Id).all(&self.db).await?)
    }

    pub async fn org_by_name(&self, name: &str) -> StoreResult<Organization> {
        org::Entity::find()
            .filter(org::Column::Name.eq(name))
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound("organization"))
    }

    pub async fn org_by_id(&self, id: OrgId) -> StoreResult<Organization> {
        org::Entity::find_by_id(id).one(&self.db).await?.ok_or(StoreError::NotFound("organization"))
    }
}
