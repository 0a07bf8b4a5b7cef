//! An organization's browser-key settings as stored: which tokens its pages may trade for a
//! one-hour key, and what that key may do. The verification keys stay in their stored form
//! (a JSON list whose HS256 secrets are sealed with the deployment's key): only the API layer
//! holds that key, opens them and checks each (`api::browser_keys::settings`).

use chrono::{DateTime, Utc};

use super::{OrgId, Tags};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserKeySettings {
    pub org_id: OrgId,
    /// The `iss` every token must carry; unique across organizations.
    pub issuer: String,
    /// The `aud` every token must carry.
    pub audience: String,
    /// The verification keys, sealed (see the module's doc).
    pub sealed_keys: String,
    /// The claim that names the namespace.
    pub namespace_claim: String,
    /// Whether a token naming an unknown namespace creates it.
    pub create_namespaces: bool,
    /// The tags of every key handed out.
    pub tags: Tags,
    /// Lifetime of the keys handed out.
    pub expires_in_secs: i64,
    /// Exact origins whose pages may ask for keys.
    pub allowed_origins: Vec<String>,
    pub updated_at: DateTime<Utc>,
}
