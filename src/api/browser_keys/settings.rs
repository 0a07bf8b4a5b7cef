//! An organization's browser-key settings: the JSON the API takes and shows, the validated
//! domain value, and the stored row (HS256 secrets sealed with [`SecretsKey`]).
//!
//! Parse at the edge: [`BrowserKeyConfig::from_body`] is the only way to a config from input,
//! [`BrowserKeyConfig::from_row`] the only way back from the store; both check every key, so a
//! config in hand can verify tokens.

use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{BrowserKeySettings, Tag, Tags};
use crate::secrets::SecretsKey;
use crate::state::store::browser_keys::NewBrowserKeySettings;

/// Browser keys live at most this long (the "one hour").
pub const MAX_KEY_LIFETIME_SECS: i64 = 3600;
/// An HS256 secret shorter than this is refused (RFC 7518 §3.2: at least the hash size).
const MIN_SECRET_BYTES: usize = 32;
const MAX_TEXT: usize = 512;

/// `PUT /v1/settings/browser-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "issuer": "https://app.example.com", "audience": "tenscale",
    "keys": [{"kid": "2026-12", "alg": "HS256", "secret": "a long random secret of at least 32 bytes"}],
    "allowed_origins": ["https://app.example.com"]
}))]
pub struct BrowserKeySettingsBody {
    /// The `iss` every token must carry; names the organization, so unique across them.
    pub issuer: String,
    /// The `aud` every token must carry.
    pub audience: String,
    /// Verification keys: an HS256 `secret`, or a `pem` public key (RS256, ES256, EdDSA).
    #[serde(default)]
    pub keys: Vec<VerificationKeyBody>,
    /// An inline JWKS document (`{"keys": [...]}`); each key needs a `kid`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    /// The claim naming the namespace (default `sub`).
    #[serde(default)]
    pub namespace_claim: Option<String>,
    /// Create a namespace the first time a token names it (default false).
    #[serde(default)]
    pub create_namespaces: bool,
    /// The tags of the keys handed out (default `["tag:browser"]`).
    #[serde(default)]
    #[schema(value_type = Option<Vec<Tag>>)]
    pub tags: Option<Vec<String>>,
    /// Lifetime of the keys handed out, in seconds (default and maximum 3600).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3600)] // MAX_KEY_LIFETIME_SECS; a unit test holds them equal
    pub expires_in: Option<i64>,
    /// Exact origins (`https://app.example.com`) whose pages may ask for keys.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

/// One verification key as given.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerificationKeyBody {
    /// Required when there is more than one key: tokens name their key in the header's `kid`.
    #[serde(default)]
    pub kid: Option<String>,
    /// `HS256`, `RS256`, `ES256` or `EdDSA`.
    pub alg: String,
    /// HS256 only: the shared secret (write-only, at least 32 bytes).
    #[serde(default)]
    pub secret: Option<String>,
    /// RS256, ES256, EdDSA: the PEM public key.
    #[serde(default)]
    pub pem: Option<String>,
}

impl std::fmt::Debug for VerificationKeyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKeyBody")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("pem", &self.pem)
            .finish()
    }
}

/// `GET /v1/settings/browser-keys`: everything but secrets.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BrowserKeySettingsView {
    pub issuer: String,
    pub audience: String,
    pub keys: Vec<VerificationKeyView>,
    pub namespace_claim: String,
    pub create_namespaces: bool,
    pub tags: Vec<String>,
    pub expires_in: i64,
    pub allowed_origins: Vec<String>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VerificationKeyView {
    pub kid: Option<String>,
    pub alg: String,
    /// `secret` (never shown), `pem` or `jwk`.
    pub kind: String,
}

/// A validated configuration.
#[derive(Clone)]
pub struct BrowserKeyConfig {
    pub issuer: String,
    pub audience: String,
    pub keys: Vec<VerificationKey>,
    pub namespace_claim: String,
    pub create_namespaces: bool,
    pub tags: Tags,
    pub expires_in_secs: i64,
    pub allowed_origins: Vec<String>,
}

/// One key tokens may be checked against.
#[derive(Clone)]
pub struct VerificationKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub material: KeyMaterial,
    pub decoding: DecodingKey,
}

#[derive(Clone)]
pub enum KeyMaterial {
    Secret(Vec<u8>),
    Pem(String),
    Jwk(Box<Jwk>),
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// How a key is kept in the row's JSON.
#[derive(Serialize, Deserialize)]
struct StoredKey {
    kid: Option<String>,
    alg: Algorithm,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jwk: Option<Jwk>,
}

/// Why settings cannot be saved or read; the API answers 400 (or 500 for a stored row).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

fn refuse<T>(message: impl Into<String>) -> Result<T, SettingsError> {
    Err(SettingsError(message.into()))
}

impl BrowserKeyConfig {
    pub fn from_body(body: BrowserKeySettingsBody) -> Result<Self, SettingsError> {
        let issuer = required_text("issuer", body.issuer)?;
        let audience = required_text("audience", body.audience)?;
        let mut keys = body.keys.into_iter().map(key_from_body).collect::<Result<Vec<_>, _>>()?;
        if let Some(jwks) = body.jwks {
            keys.extend(keys_from_jwks(jwks)?);
        }
        check_key_set(&keys)?;
        let namespace_claim = match body.namespace_claim {
            None => "sub".to_string(),
            Some(claim) => required_text("namespace_claim", claim)?,
        };
        let tags = body.tags.unwrap_or_else(|| vec!["tag:browser".to_string()]);
        let tags = tags
            .iter()
            .map(|t| Tag::parse(t).map_err(|e| SettingsError(format!("tags: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let expires_in_secs = body.expires_in.unwrap_or(MAX_KEY_LIFETIME_SECS);
        if !(1..=MAX_KEY_LIFETIME_SECS).contains(&expires_in_secs) {
            return refuse(format!("expires_in must be between 1 and {MAX_KEY_LIFETIME_SECS} seconds"));
        }
        let allowed_origins = body.allowed_origins.iter().map(|o| origin(o)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            issuer,
            audience,
            keys,
            namespace_claim,
            create_namespaces: body.create_namespaces,
            tags: Tags::new(tags),
            expires_in_secs,
            allowed_origins,
        })
    }

    /// The row to store; HS256 secrets are sealed (refused when the deployment has no key).
    pub fn to_row(&self, secrets: &SecretsKey) -> Result<NewBrowserKeySettings, SettingsError> {
        let stored = self
            .keys
            .iter()
            .map(|key| {
                let mut out =
                    StoredKey { kid: key.kid.clone(), alg: key.alg, sealed_secret: None, pem: None, jwk: None };
                match &key.material {
                    KeyMaterial::Secret(secret) => {
                        out.sealed_secret = Some(secrets.seal(secret).map_err(|e| SettingsError(e.to_string()))?)
                    }
                    KeyMaterial::Pem(pem) => out.pem = Some(pem.clone()),
                    KeyMaterial::Jwk(jwk) => out.jwk = Some((**jwk).clone()),
                }
                Ok(out)
            })
            .collect::<Result<Vec<_>, SettingsError>>()?;
        Ok(NewBrowserKeySettings {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            sealed_keys: serde_json::to_string(&stored).map_err(|e| SettingsError(e.to_string()))?,
            namespace_claim: self.namespace_claim.clone(),
            create_namespaces: self.create_namespaces,
            tags: self.tags.clone(),
            expires_in_secs: self.expires_in_secs,
            allowed_origins: self.allowed_origins.clone(),
        })
    }

    pub fn from_row(row: &BrowserKeySettings, secrets: &SecretsKey) -> Result<Self, SettingsError> {
        let stored: Vec<StoredKey> = serde_json::from_str(&row.sealed_keys)
            .map_err(|e| SettingsError(format!("stored verification keys: {e}")))?;
        let keys = stored
            .into_iter()
            .map(|key| {
                let material = match (key.sealed_secret, key.pem, key.jwk) {
                    (Some(sealed), None, None) => {
                        KeyMaterial::Secret(secrets.open(&sealed).map_err(|e| SettingsError(e.to_string()))?)
                    }
                    (None, Some(pem), None) => KeyMaterial::Pem(pem),
                    (None, None, Some(jwk)) => KeyMaterial::Jwk(Box::new(jwk)),
                    _ => return refuse("a stored verification key has no single material"),
                };
                verification_key(key.kid, key.alg, material)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            issuer: row.issuer.clone(),
            audience: row.audience.clone(),
            keys,
            namespace_claim: row.namespace_claim.clone(),
            create_namespaces: row.create_namespaces,
            tags: row.tags.clone(),
            expires_in_secs: row.expires_in_secs,
            allowed_origins: row.allowed_origins.clone(),
        })
    }

    pub fn view(&self, updated_at: DateTime<Utc>) -> BrowserKeySettingsView {
        BrowserKeySettingsView {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            keys: self
                .keys
                .iter()
                .map(|k| VerificationKeyView {
                    kid: k.kid.clone(),
                    alg: format!("{:?}", k.alg),
                    kind: match k.material {
                        KeyMaterial::Secret(_) => "secret",
                        KeyMaterial::Pem(_) => "pem",
                        KeyMaterial::Jwk(_) => "jwk",
                    }
                    .to_string(),
                })
                .collect(),
            namespace_claim: self.namespace_claim.clone(),
            create_namespaces: self.create_namespaces,
            tags: self.tags.to_strings(),
            expires_in: self.expires_in_secs,
            allowed_origins: self.allowed_origins.clone(),
            updated_at,
        }
    }

    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == origin)
    }
}

fn required_text(field: &str, text: String) -> Result<String, SettingsError> {
    let text = text.trim().to_string();
    if text.is_empty() || text.len() > MAX_TEXT {
        return refuse(format!("{field} must be 1-{MAX_TEXT} characters"));
    }
    Ok(text)
}

fn algorithm(name: &str) -> Result<Algorithm, SettingsError> {
    match name {
        "HS256" => Ok(Algorithm::HS256),
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => refuse(format!("alg {other:?} is not supported; use HS256, RS256, ES256 or EdDSA")),
    }
}

fn key_from_body(body: VerificationKeyBody) -> Result<VerificationKey, SettingsError> {
    let alg = algorithm(&body.alg)?;
    let kid = body.kid.map(|k| required_text("kid", k)).transpose()?;
    let material = match (alg, body.secret, body.pem) {
        (Algorithm::HS256, Some(secret), None) if secret.len() >= MIN_SECRET_BYTES => {
            KeyMaterial::Secret(secret.into_bytes())
        }
        (Algorithm::HS256, Some(_), None) => {
            return refuse(format!("an HS256 secret needs at least {MIN_SECRET_BYTES} bytes"))
        }
        (Algorithm::HS256, _, _) => return refuse("an HS256 key takes a secret (and no pem)"),
        (_, None, Some(pem)) => KeyMaterial::Pem(pem),
        (alg, _, _) => return refuse(format!("a {alg:?} key takes a pem public key (and no secret)")),
    };
    verification_key(kid, alg, material)
}

/// Builds the decoding key, which proves the material fits the algorithm.
fn verification_key(
    kid: Option<String>,
    alg: Algorithm,
    material: KeyMaterial,
) -> Result<VerificationKey, SettingsError> {
    let name = kid.as_deref().unwrap_or("without kid");
    let bad = |e: jsonwebtoken::errors::Error| SettingsError(format!("key {name}: not a {alg:?} key: {e}"));
    let decoding = match (&material, alg) {
        (KeyMaterial::Secret(secret), _) => DecodingKey::from_secret(secret).map_err(bad)?,
        (KeyMaterial::Pem(pem), Algorithm::RS256) => DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(bad)?,
        (KeyMaterial::Pem(pem), Algorithm::ES256) => DecodingKey::from_ec_pem(pem.as_bytes()).map_err(bad)?,
        (KeyMaterial::Pem(pem), Algorithm::EdDSA) => DecodingKey::from_ed_pem(pem.as_bytes()).map_err(bad)?,
        (KeyMaterial::Jwk(jwk), _) => DecodingKey::from_jwk(jwk).map_err(bad)?,
        _ => return refuse(format!("key {name}: {alg:?} is not supported")),
    };
    Ok(VerificationKey { kid, alg, material, decoding })
}

fn keys_from_jwks(document: serde_json::Value) -> Result<Vec<VerificationKey>, SettingsError> {
    let set: JwkSet = serde_json::from_value(document).map_err(|e| SettingsError(format!("jwks: {e}")))?;
    set.keys
        .into_iter()
        .map(|jwk| {
            let Some(kid) = jwk.common.key_id.clone() else {
                return refuse("jwks: every key needs a kid");
            };
            let alg = jwk_algorithm(&jwk)
                .ok_or_else(|| SettingsError(format!("jwks: key {kid}: not an RS256, ES256 or EdDSA key")))?;
            verification_key(Some(kid), alg, KeyMaterial::Jwk(Box::new(jwk)))
        })
        .collect()
}

/// The key's `alg`, or the one its type implies.
fn jwk_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(implied),
        Some(KeyAlgorithm::RS256) if implied == Algorithm::RS256 => Some(implied),
        Some(KeyAlgorithm::ES256) if implied == Algorithm::ES256 => Some(implied),
        Some(KeyAlgorithm::EdDSA) if implied == Algorithm::EdDSA => Some(implied),
        Some(_) => None,
    }
}

fn check_key_set(keys: &[VerificationKey]) -> Result<(), SettingsError> {
    if keys.is_empty() {
        return refuse("at least one verification key is needed (keys or jwks)");
    }
    if keys.len() > 1 && keys.iter().any(|k| k.kid.is_none()) {
        return refuse("with several keys, every key needs a kid");
    }
    let mut kids: Vec<_> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
    kids.sort_unstable();
    if let Some(pair) = kids.windows(2).find(|w| w[0] == w[1]) {
        return refuse(format!("kid {} is given twice", pair[0]));
    }
    Ok(())
}

/// An exact origin, `scheme://host[:port]`, as browsers send it in `Origin`.
pub fn origin(text: &str) -> Result<String, SettingsError> {
    let bad = || {
        SettingsError(format!("{text:?} is not an origin like https://app.example.com (no path, no trailing slash)"))
    };
    let (scheme, rest) = text.split_once("://").ok_or_else(bad)?;
    if !(scheme == "https" || scheme == "http") || rest.is_empty() {
        return Err(bad());
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (host, Some(port)),
        _ => (rest, None),
    };
    let host_ok =
        !host.is_empty() && host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.[]:".contains(&b));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    if !host_ok || !port_ok {
        return Err(bad());
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// utoipa's `maximum` takes a literal; it must stay the limit `from_body` enforces.
    #[test]
    fn the_documented_lifetime_is_the_enforced_one() {
        let schema = serde_json::to_value(<BrowserKeySettingsBody as utoipa::PartialSchema>::schema()).unwrap();
        let lifetime = &schema["properties"]["expires_in"];
        assert_eq!(lifetime["maximum"], serde_json::json!(MAX_KEY_LIFETIME_SECS), "{lifetime}");
        assert_eq!(lifetime["minimum"], serde_json::json!(1), "{lifetime}");
    }

    #[test]
    fn secrets_never_print() {
        let body = hs(Some("k"), "do-not-print-me-do-not-print-me-!!");
        assert!(!format!("{body:?}").contains("do-not-print"));
        let config = BrowserKeyConfig::from_body(super::tests::body(vec![body])).unwrap();
        assert!(!format!("{:?}", config.keys).contains("do-not-print"));
    }

    #[test]
    fn origins_are_exact() {
        for ok in ["https://app.example.com", "http://127.0.0.1:8000", "https://[::1]:8443"] {
            assert_eq!(origin(ok).unwrap(), ok);
        }
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://App.example.com",
            "ftp://x",
            "https://x:0",
            "https://x:http",
            "https://",
        ] {
            assert!(origin(bad).is_err(), "{bad}");
        }
    }

    fn body(keys: Vec<VerificationKeyBody>) -> BrowserKeySettingsBody {
        BrowserKeySettingsBody {
            issuer: "https://app".into(),
            audience: "tenscale".into(),
            keys,
            jwks: None,
            namespace_claim: None,
            create_namespaces: false,
            tags: None,
            expires_in: None,
            allowed_origins: vec![],
        }
    }

    fn hs(kid: Option<&str>, secret: &str) -> VerificationKeyBody {
        VerificationKeyBody { kid: kid.map(Into::into), alg: "HS256".into(), secret: Some(secret.into()), pem: None }
    }

    #[test]
    fn defaults_and_refusals() {
        let config = BrowserKeyConfig::from_body(body(vec![hs(None, &"s".repeat(32))])).unwrap();
        assert_eq!((config.namespace_claim.as_str(), config.expires_in_secs), ("sub", 3600));
        assert_eq!(config.tags.to_strings(), ["tag:browser"]);
        let refused = |b| BrowserKeyConfig::from_body(b).err().map(|e| e.0).unwrap_or_default();
        assert!(refused(body(vec![])).contains("at least one"));
        assert!(refused(body(vec![hs(None, "short")])).contains("32 bytes"));
        assert!(refused(body(vec![hs(None, &"s".repeat(32)), hs(Some("b"), &"t".repeat(32))])).contains("kid"));
        assert!(refused(body(vec![hs(Some("a"), &"s".repeat(32)), hs(Some("a"), &"t".repeat(32))])).contains("twice"));
        let mut long = body(vec![hs(None, &"s".repeat(32))]);
        long.expires_in = Some(3601);
        assert!(refused(long).contains("expires_in"));
        let pem = VerificationKeyBody { kid: None, alg: "RS256".into(), secret: None, pem: Some("not a pem".into()) };
        assert!(refused(body(vec![pem])).contains("not a RS256 key"));
        let none = VerificationKeyBody { kid: None, alg: "none".into(), secret: None, pem: None };
        assert!(refused(body(vec![none])).contains("not supported"));
    }

    #[test]
    fn secrets_are_sealed_in_the_row_and_read_back() {
        let secrets = SecretsKey::from_hex(&"ab".repeat(32)).unwrap();
        let config =
            BrowserKeyConfig::from_body(body(vec![hs(Some("k1"), "a-secret-of-at-least-32-bytes-ok!")])).unwrap();
        let row = config.to_row(&secrets).unwrap();
        assert!(!row.sealed_keys.contains("a-secret-of-at-least"), "{}", row.sealed_keys);
        let stored = BrowserKeySettings {
            org_id: crate::domain::OrgId::new(1),
            issuer: row.issuer,
            audience: row.audience,
            sealed_keys: row.sealed_keys,
            namespace_claim: row.namespace_claim,
            create_namespaces: row.create_namespaces,
            tags: row.tags,
            expires_in_secs: row.expires_in_secs,
            allowed_origins: row.allowed_origins,
            updated_at: Utc::now(),
        };
        let back = BrowserKeyConfig::from_row(&stored, &secrets).unwrap();
        assert!(matches!(&back.keys[0].material, KeyMaterial::Secret(s) if s == b"a-secret-of-at-least-32-bytes-ok!"));
        assert!(BrowserKeyConfig::from_row(&stored, &SecretsKey::from_hex(&"cd".repeat(32)).unwrap()).is_err());
    }
}
