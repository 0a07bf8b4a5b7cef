//! Browser-key settings (one row per organization, found by id or by its JWT issuer) and the
//! token ids already spent. A token id is spent by inserting it: the unique index on
//! (org, jti) decides, so two instances racing on one token cannot both accept it.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, Set};

use super::entities::{browser_key_settings, spent_token_id};
use super::outbox::EventsFor;
use super::{corrupt, Store, StoreError, StoreResult};
use crate::domain::{BrowserKeySettings, OrgId, Tags};

/// What a row holds, apart from its keys and time; the API layer seals the verification keys.
#[derive(Debug, Clone)]
pub struct NewBrowserKeySettings {
    pub issuer: String,
    pub audience: String,
    pub sealed_keys: String,
    pub namespace_claim: String,
    pub create_namespaces: bool,
    pub tags: Tags,
    pub expires_in_secs: i64,
    pub allowed_origins: Vec<String>,
}

/// The settings a stored row describes, tags and origins parsed.
impl TryFrom<browser_key_settings::Model> for BrowserKeySettings {
    type Error = StoreError;

    fn try_from(row: browser_key_settings::Model) -> Result<Self, Self::Error> {
        let damaged = |e: String| corrupt("browser-key settings", row.id, e);
        let tags = Tags::from_stored(&row.tags).map_err(|e| damaged(e.to_string()))?;
        let allowed_origins = serde_json::from_str(&row.allowed_origins)
            .map_err(|e| damaged(format!("allowed origins are not a list: {e}")))?;
        Ok(BrowserKeySettings {
            org_id: row.org_id,
            issuer: row.issuer,
            audience: row.audience,
            sealed_keys: row.verification_keys,
            namespace_claim: row.namespace_claim,
            create_namespaces: row.create_namespaces,
            tags,
            expires_in_secs: row.expires_in_secs,
            allowed_origins,
            updated_at: row.updated_at,
        })
    }
}

fn converted(row: Option<browser_key_settings::Model>) -> StoreResult<Option<BrowserKeySettings>> {
    row.map(BrowserKeySettings::try_from).transpose()
}

impl Store {
    pub async fn browser_key_settings(&self, org_id: OrgId) -> StoreResult<Option<BrowserKeySettings>> {
        converted(
            browser_key_settings::Entity::find()
                .filter(browser_key_settings::Column::OrgId.eq(org_id))
                .one(&self.db)
                .await?,
        )
    }

    pub async fn browser_key_settings_by_issuer(&self, issuer: &str) -> StoreResult<Option<BrowserKeySettings>> {
        converted(
            browser_key_settings::Entity::find()
                .filter(browser_key_settings::Column::Issuer.eq(issuer))
                .one(&self.db)
                .await?,
        )
    }

    /// Rows whose allowed origins may include `origin` (a textual match the caller confirms).
    pub async fn browser_key_settings_mentioning(&self, origin: &str) -> StoreResult<Vec<BrowserKeySettings>> {
        browser_key_settings::Entity::find()
            .filter(browser_key_settings::Column::AllowedOrigins.contains(format!("\"{origin}\"")))
            .all(&self.db)
            .await?
            .into_iter()
            .map(BrowserKeySettings::try_from)
            .collect()
    }

    /// Replaces the organization's settings. Another organization's issuer is a conflict.
    pub(in crate::state) async fn put_browser_key_settings(
        &self,
        org_id: OrgId,
        new: NewBrowserKeySettings,
        events: EventsFor<'_, BrowserKeySettings>,
    ) -> StoreResult<BrowserKeySettings> {
        let conflict = |err| StoreError::conflict_or_db(err, "another organization already uses this issuer");
        let save = async |txn: &DatabaseTransaction| {
            let existing = browser_key_settings::Entity::find()
                .filter(browser_key_settings::Column::OrgId.eq(org_id))
                .one(txn)
                .await?;
            let update = existing.is_some();
            let mut row = match existing {
                Some(row) => browser_key_settings::ActiveModel::from(row),
                None => browser_key_settings::ActiveModel { org_id: Set(org_id), ..Default::default() },
            };
            row.issuer = Set(new.issuer);
            row.audience = Set(new.audience);
            row.verification_keys = Set(new.sealed_keys);
            row.namespace_claim = Set(new.namespace_claim);
            row.create_namespaces = Set(new.create_namespaces);
            row.tags = Set(new.tags.to_json());
            row.expires_in_secs = Set(new.expires_in_secs);
            row.allowed_origins = Set(origins_text(&new.allowed_origins));
            row.updated_at = Set(self.now());
            let saved = match update {
                true => row.update(txn).await.map_err(conflict)?,
                false => row.insert(txn).await.map_err(conflict)?,
            };
            BrowserKeySettings::try_from(saved)
        };
        self.change(save, events).await
    }

    /// Spends `jti` for the organization: true the first time, false for a replay. Ids whose
    /// tokens have expired are forgotten on the way (a replay of those fails on `exp`).
    pub(in crate::state) async fn spend_token_id(
        &self,
        org_id: OrgId,
        jti: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        spent_token_id::Entity::delete_many()
            .filter(spent_token_id::Column::ExpiresAt.lt(self.now() - chrono::Duration::minutes(5)))
            .exec(&self.db)
            .await?;
        let spent = spent_token_id::ActiveModel {
            org_id: Set(org_id),
            jti: Set(jti.to_string()),
            expires_at: Set(expires_at),
            ..Default::default()
        };
        match spent.insert(&self.db).await {
            Ok(_) => Ok(true),
            Err(err) => match StoreError::conflict_or_db(err, "replay") {
                StoreError::Conflict(_) => Ok(false),
                other => Err(other),
            },
        }
    }
}

/// The stored form of the allowed origins: a JSON list of strings, which the `contains`
/// lookup above searches for `"<origin>"`.
fn origins_text(origins: &[String]) -> String {
    serde_json::Value::from(origins.to_vec()).to_string()
}
