//! Checking an app backend's JWT before it buys a browser key.
//!
//! Order, so that each refusal names the first check that failed: the header (`alg: none` is
//! refused before anything else), the issuer (which names the organization), the key (by
//! `kid`), the algorithm against the key's own (an HS256 token is never checked against a
//! public key), then jsonwebtoken's signature, `exp`, `nbf`, `iss` and `aud` checks with 60 s
//! of leeway, and last our own: `iat` present and not in the future, a lifetime of at most ten
//! minutes, a `jti`, and a namespace claim that is a valid namespace name.

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Validation};
use serde_json::Value;

use super::settings::{BrowserKeyConfig, VerificationKey};
use crate::domain::NamespaceName;

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 60;
/// The longest `exp - iat` accepted: these tokens are meant to be minted per page load.
pub const MAX_TOKEN_LIFETIME_SECS: i64 = 600;
const MAX_JTI: usize = 256;

/// What a verified token entitles its bearer to.
#[derive(Debug, Clone)]
pub struct Grant {
    pub namespace: NamespaceName,
    pub jti: String,
    /// When the token expires (the spent `jti` may be forgotten after this).
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// A refused token: which check failed (a metrics label) and what to tell the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub check: &'static str,
    pub detail: String,
    /// 403 rather than 401: the token is genuine but names what it may not have.
    pub forbidden: bool,
}

fn refused<T>(check: &'static str, detail: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal { check, detail: detail.into(), forbidden: false })
}

/// The `iss` of a token, unverified: only used to find whose settings verify it.
pub fn unverified_issuer(token: &str) -> Result<String, Refusal> {
    check_header_alg(token)?;
    let claims = token.split('.').nth(1).and_then(decode_segment);
    match claims.as_ref().and_then(|c| c.get("iss")).and_then(Value::as_str) {
        Some(iss) => Ok(iss.to_string()),
        None => refused("iss", "the token has no iss claim"),
    }
}

/// Refuses `alg: none` (and a header that is not JSON) with its own message; jsonwebtoken
/// would only say the algorithm is unknown.
fn check_header_alg(token: &str) -> Result<(), Refusal> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return refused("malformed", "not a JWT (three base64url parts separated by dots)");
    }
    let Some(header) = decode_segment(parts[0]) else {
        return refused("malformed", "the JWT header is not base64url JSON");
    };
    match header.get("alg").and_then(Value::as_str) {
        Some(alg) if alg.eq_ignore_ascii_case("none") => {
            refused("alg", "alg none is not accepted: tokens must be signed")
        }
        Some(_) => Ok(()),
        None => refused("malformed", "the JWT header has no alg"),
    }
}

fn decode_segment(segment: &str) -> Option<Value> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Verifies `token` against `config` at `now` (Unix seconds).
pub fn verify(token: &str, config: &BrowserKeyConfig, now: i64) -> Result<Grant, Refusal> {
    check_header_alg(token)?;
    let header = decode_header(token).or_else(|e| refused("malformed", format!("the JWT header: {e}")))?;
    let key = select_key(config, header.kid.as_deref())?;
    if header.alg != key.alg {
        return refused(
            "alg",
            format!("the token is signed with {:?} but key {} is {:?}", header.alg, kid_name(key), key.alg),
        );
    }
    let mut validation = Validation::new(key.alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_issuer(&[&config.issuer]);
    validation.set_audience(&[&config.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let claims = decode::<Value>(token, &key.decoding, &validation).map_err(|e| from_jwt_error(e.kind()))?.claims;
    check_lifetime(&claims, now)?;
    let jti = match claims.get("jti").and_then(Value::as_str) {
        Some(jti) if !jti.is_empty() && jti.len() <= MAX_JTI => jti.to_string(),
        Some(_) => return refused("jti", format!("jti must be 1-{MAX_JTI} characters")),
        None => return refused("jti", "the token has no jti claim (each token is accepted once, by its jti)"),
    };
    let claim = &config.namespace_claim;
    let namespace = match claims.get(claim).and_then(Value::as_str) {
        Some(text) => NamespaceName::parse(text).map_err(|e| Refusal {
            check: "namespace",
            detail: format!("claim {claim}: {e}"),
            forbidden: true,
        })?,
        None => return refused("namespace", format!("the token has no {claim} claim naming the namespace")),
    };
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(now);
    let expires_at = chrono::DateTime::from_timestamp(exp, 0).unwrap_or_else(chrono::Utc::now);
    Ok(Grant { namespace, jti, expires_at })
}

fn select_key<'a>(config: &'a BrowserKeyConfig, kid: Option<&str>) -> Result<&'a VerificationKey, Refusal> {
    match kid {
        Some(kid) => match config.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
            Some(key) => Ok(key),
            None => refused("kid", format!("kid {kid:?} is not configured for this issuer")),
        },
        None if config.keys.len() == 1 => Ok(&config.keys[0]),
        None => refused("kid", "the token has no kid, and this issuer has several keys"),
    }
}

fn kid_name(key: &VerificationKey) -> String {
    key.kid.as_deref().map_or_else(|| "(without kid)".to_string(), |k| format!("{k:?}"))
}

fn check_lifetime(claims: &Value, now: i64) -> Result<(), Refusal> {
    let Some(iat) = claims.get("iat").and_then(Value::as_i64) else {
        return refused("iat", "the token has no numeric iat claim");
    };
    if iat > now + LEEWAY_SECS as i64 {
        return refused("iat", "the token's iat is in the future");
    }
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(i64::MAX);
    if exp.saturating_sub(iat) > MAX_TOKEN_LIFETIME_SECS {
        return refused(
            "lifetime",
            format!(
                "the token lives {} s (exp - iat); at most {MAX_TOKEN_LIFETIME_SECS} s is accepted",
                exp.saturating_sub(iat)
            ),
        );
    }
    Ok(())
}

fn from_jwt_error(kind: &ErrorKind) -> Refusal {
    let (check, detail) = match kind {
        ErrorKind::InvalidSignature => ("signature", "the signature does not verify".to_string()),
        ErrorKind::ExpiredSignature => ("exp", "the token has expired".to_string()),
        ErrorKind::ImmatureSignature => ("nbf", "the token is not valid yet (nbf)".to_string()),
        ErrorKind::InvalidIssuer => ("iss", "iss does not match the configured issuer".to_string()),
        ErrorKind::InvalidAudience => ("aud", "aud does not match the configured audience".to_string()),
        ErrorKind::MissingRequiredClaim(claim) => ("claims", format!("the token has no {claim} claim")),
        ErrorKind::InvalidClaimFormat(claim) => ("claims", format!("the {claim} claim has the wrong type")),
        ErrorKind::InvalidAlgorithm => ("alg", "the token's alg does not fit the key".to_string()),
        other => ("malformed", format!("the token cannot be read: {other:?}")),
    };
    Refusal { check, detail, forbidden: false }
}
