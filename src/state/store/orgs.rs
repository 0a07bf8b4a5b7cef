//! Organizations: the SaaS customers that own namespaces.

use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, Set};

use super::entities::organization as org;
use super::outbox::EventsFor;
use super::{corrupt, Organization, Store, StoreError, StoreResult};
use crate::domain::{OrgId, OrgName};

impl Store {
    pub(in crate::state) async fn create_org(
        &self,
        name: &OrgName,
        events: EventsFor<'_, Organization>,
    ) -> StoreResult<Organization> {
        let model = org::ActiveModel { name: Set(name.to_string()), created_at: Set(self.now()), ..Default::default() };
        let insert = async |txn: &DatabaseTransaction| {
            let row = model
                .insert(txn)
                .await
                .map_err(|e| StoreError::conflict_or_db(e, format!("organization {name} already exists")))?;
            Organization::try_from(row)
        };
        self.change(insert, events).await
    }

    pub async fn list_orgs(&self) -> StoreResult<Vec<Organization>> {
        org::Entity::find()
            .order_by_asc(org::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(TryInto::try_into)
            .collect()
    }

    pub async fn org_by_name(&self, name: &str) -> StoreResult<Organization> {
        org::Entity::find()
            .filter(org::Column::Name.eq(name))
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound("organization"))?
            .try_into()
    }

    pub async fn org_by_id(&self, id: OrgId) -> StoreResult<Organization> {
        org::Entity::find_by_id(id).one(&self.db).await?.ok_or(StoreError::NotFound("organization"))?.try_into()
    }
}

impl TryFrom<org::Model> for Organization {
    type Error = StoreError;

    fn try_from(row: org::Model) -> Result<Self, Self::Error> {
        let name = OrgName::parse(&row.name).map_err(|e| corrupt("organization", row.id, e))?;
        Ok(Organization { id: row.id, name, created_at: row.created_at })
    }
}
