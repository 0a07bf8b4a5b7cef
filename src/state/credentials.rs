//! Changes that concern no map: organizations, their API keys and browser-key settings, and
//! namespaces' pre-auth keys. They carry no event for the instances, only their audit record,
//! and they too go through the one writer.
//!
//! **Rule owned here:** a key's tags are the policy's to grant. A pre-auth key may carry only
//! tags the policy in force in its namespace declares in `tagOwners`; the browser-key
//! settings only tags the organization's own policy declares (they mint keys in namespaces
//! that may not exist yet). Every caller — `/v1`, the Headscale surface, the CLI, the
//! browser-key exchange — gets the same refusal from here.

use chrono::{DateTime, Utc};

use super::store::browser_keys::NewBrowserKeySettings;
use super::store::preauth_keys::NewPreauthKey;
use super::store::{ApiKey, Namespace, Organization, PreauthKey, StoreError, StoreResult};
use super::{with_audit, Actor, Audit, Describe, Writer};
use crate::domain::{ApiKeyId, BrowserKeySettings, NamespaceName, OrgId, OrgName, PreauthKeyId, Tags};
use crate::policy::Policy;

/// Why the writer refused a new key or new browser-key settings.
#[derive(Debug, thiserror::Error)]
pub enum CredentialRefusal {
    /// A tag the governing policy does not declare in `tagOwners` (the message names it).
    #[error("{0}")]
    TagNotAllowed(String),
    /// A key asked to expire at or before the present moment.
    #[error("the expiration must be in the future")]
    ExpiryNotInFuture,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Writer {
    /// A new organization; `describe` makes its audit line (the org is only known once made).
    pub async fn create_org(
        &self,
        name: &OrgName,
        by: Option<(&Actor, Describe<'_, Organization>)>,
    ) -> StoreResult<Organization> {
        let record = move |org: &Organization| match by {
            Some((actor, describe)) => vec![describe(org).record(org.id, &actor.to_string())],
            None => Vec::new(),
        };
        self.store.create_org(name, &record).await
    }

    /// A new API key and its secret, shown this once (only its digest is stored).
    pub async fn create_api_key(
        &self,
        org_id: OrgId,
        description: &str,
        audit: Option<&Audit<'_, ApiKey>>,
    ) -> StoreResult<(ApiKey, String)> {
        self.store.create_api_key(org_id, description, None, &|key| with_audit(Vec::new(), audit, key)).await
    }

    /// [`Self::create_api_key`] for a key that stops working at `expires_at`, which must be
    /// later than now.
    pub async fn create_api_key_until(
        &self,
        org_id: OrgId,
        description: &str,
        expires_at: DateTime<Utc>,
        audit: Option<&Audit<'_, ApiKey>>,
    ) -> Result<(ApiKey, String), CredentialRefusal> {
        if expires_at <= self.now() {
            return Err(CredentialRefusal::ExpiryNotInFuture);
        }
        let events = |key: &ApiKey| with_audit(Vec::new(), audit, key);
        Ok(self.store.create_api_key(org_id, description, Some(expires_at), &events).await?)
    }

    pub async fn revoke_api_key(
        &self,
        org_id: OrgId,
        id: ApiKeyId,
        audit: Option<&Audit<'_, ApiKey>>,
    ) -> StoreResult<ApiKey> {
        self.store.revoke_api_key(org_id, id, &|key| with_audit(Vec::new(), audit, key)).await
    }

    /// Ends the key's life now (Headscale's "expire"); a key already expired keeps its time.
    pub async fn expire_api_key(
        &self,
        org_id: OrgId,
        id: ApiKeyId,
        audit: Option<&Audit<'_, ApiKey>>,
    ) -> StoreResult<ApiKey> {
        self.store.expire_api_key(org_id, id, &|key| with_audit(Vec::new(), audit, key)).await
    }

    /// A new key in place of key `id`, whose secret is shown this once; `id` is revoked in
    /// the same commit, so exactly one of the two works at any moment.
    pub async fn rotate_api_key(
        &self,
        org_id: OrgId,
        id: ApiKeyId,
        audit: Option<&Audit<'_, ApiKey>>,
    ) -> StoreResult<(ApiKey, String)> {
        self.store.rotate_api_key(org_id, id, &|(key, _)| with_audit(Vec::new(), audit, key)).await
    }

    /// Removes the key; it authenticates nothing from this commit on.
    pub async fn delete_api_key(
        &self,
        org_id: OrgId,
        id: ApiKeyId,
        audit: Option<&Audit<'_, ApiKey>>,
    ) -> StoreResult<ApiKey> {
        self.store.delete_api_key(org_id, id, &|key| with_audit(Vec::new(), audit, key)).await
    }

    /// A namespace starts empty: no event until a node joins it.
    pub async fn create_namespace(
        &self,
        org_id: OrgId,
        name: &NamespaceName,
        audit: Option<&Audit<'_, Namespace>>,
    ) -> StoreResult<Namespace> {
        self.store.create_namespace(org_id, name, &|ns| with_audit(Vec::new(), audit, ns)).await
    }

    /// A new pre-auth key of `ns` and its secret, shown this once; its tags must be the
    /// policy's to grant in `ns` (see the module's rule).
    pub async fn create_preauth_key(
        &self,
        ns: &Namespace,
        spec: &NewPreauthKey,
        audit: Option<&Audit<'_, PreauthKey>>,
    ) -> Result<(PreauthKey, String), CredentialRefusal> {
        let policy = self.policy_in_force(ns.org_id, ns.id).await?;
        tags_granted(policy.as_ref(), &spec.tags)?;
        Ok(self.store.create_preauth_key(ns.id, spec, &|key| with_audit(Vec::new(), audit, key)).await?)
    }

    pub async fn revoke_preauth_key(
        &self,
        ns: &Namespace,
        id: PreauthKeyId,
        audit: Option<&Audit<'_, PreauthKey>>,
    ) -> StoreResult<PreauthKey> {
        self.store.revoke_preauth_key(ns.id, id, &|key| with_audit(Vec::new(), audit, key)).await
    }

    /// Deletes the key for good (a revoked key stays listed; a deleted one is gone).
    pub async fn delete_preauth_key(
        &self,
        ns: &Namespace,
        id: PreauthKeyId,
        audit: Option<&Audit<'_, PreauthKey>>,
    ) -> StoreResult<PreauthKey> {
        self.store.delete_preauth_key(ns.id, id, &|key| with_audit(Vec::new(), audit, key)).await
    }

    /// Replaces the organization's browser-key settings; their tags must be the
    /// organization's policy's to grant (see the module's rule).
    pub async fn put_browser_key_settings(
        &self,
        org_id: OrgId,
        new: NewBrowserKeySettings,
        audit: Option<&Audit<'_, BrowserKeySettings>>,
    ) -> Result<BrowserKeySettings, CredentialRefusal> {
        let policy = self.org_policy(org_id).await?;
        tags_granted(policy.as_ref(), &new.tags)?;
        Ok(self.store.put_browser_key_settings(org_id, new, &|row| with_audit(Vec::new(), audit, row)).await?)
    }

    /// Spends a token id; false when it was spent already (here or on another instance).
    pub async fn spend_token_id(&self, org_id: OrgId, jti: &str, expires_at: DateTime<Utc>) -> StoreResult<bool> {
        self.store.spend_token_id(org_id, jti, expires_at).await
    }

    /// A server-wide value (a private key), created by `make` on first use.
    pub async fn state_value_or_insert(&self, name: &str, make: impl FnOnce() -> String) -> StoreResult<String> {
        self.store.state_value_or_insert(name, make).await
    }
}

/// Whether `policy` (none: allow all) grants every tag of `tags`.
fn tags_granted(policy: Option<&Policy>, tags: &Tags) -> Result<(), CredentialRefusal> {
    crate::policy::validate_tags_for_key(policy, tags).map_err(|e| CredentialRefusal::TagNotAllowed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{PolicyScope, Tag};
    use crate::state::store::Store;
    use crate::state::Bus;

    async fn writer_with_policy(policy: &str) -> (Writer, Namespace) {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        let writer = Writer::new(store, Bus::local());
        let org = writer.create_org(&OrgName::parse("acme").unwrap(), None).await.unwrap();
        let ns = writer.create_namespace(org.id, &NamespaceName::parse("alice").unwrap(), None).await.unwrap();
        writer.set_policy(org.id, PolicyScope::Org, policy, None).await.unwrap();
        (writer, ns)
    }

    fn key_with(tag: &str, writer: &Writer) -> NewPreauthKey {
        NewPreauthKey {
            reusable: false,
            ephemeral: true,
            tags: Tags::new(vec![Tag::parse(tag).unwrap()]),
            expires_at: writer.now() + chrono::Duration::hours(1),
            description: String::new(),
        }
    }

    fn settings_with(tag: &str) -> NewBrowserKeySettings {
        NewBrowserKeySettings {
            issuer: "https://app.example.com".into(),
            audience: "tenscale".into(),
            sealed_keys: "[]".into(),
            namespace_claim: "sub".into(),
            create_namespaces: false,
            tags: Tags::new(vec![Tag::parse(tag).unwrap()]),
            expires_in_secs: 3600,
            allowed_origins: vec!["https://app.example.com".into()],
        }
    }

    const POLICY: &str = r#"{"tagOwners": {"tag:browser": []}, "acls": []}"#;

    #[tokio::test]
    async fn a_key_carries_only_tags_the_policy_declares() {
        let (writer, ns) = writer_with_policy(POLICY).await;
        assert!(writer.create_preauth_key(&ns, &key_with("tag:browser", &writer), None).await.is_ok());
        let refused = writer.create_preauth_key(&ns, &key_with("tag:cli", &writer), None).await.unwrap_err();
        assert!(matches!(&refused, CredentialRefusal::TagNotAllowed(m) if m.contains("tag:cli")), "{refused:?}");
        assert_eq!(writer.store().list_preauth_keys(ns.id).await.unwrap().len(), 1, "the refused key was not stored");
    }

    #[tokio::test]
    async fn browser_key_settings_carry_only_tags_the_org_policy_declares() {
        let (writer, ns) = writer_with_policy(POLICY).await;
        let refused = writer.put_browser_key_settings(ns.org_id, settings_with("tag:cli"), None).await.unwrap_err();
        assert!(matches!(&refused, CredentialRefusal::TagNotAllowed(m) if m.contains("tag:cli")), "{refused:?}");
        assert!(writer.store().browser_key_settings(ns.org_id).await.unwrap().is_none(), "nothing was stored");
        let saved = writer.put_browser_key_settings(ns.org_id, settings_with("tag:browser"), None).await.unwrap();
        assert_eq!(saved.tags.to_strings(), ["tag:browser"]);
        assert_eq!(saved.allowed_origins, ["https://app.example.com"], "origins read back as a list");
    }
}
