//! Who is calling: `Authorization: Bearer tskey-api-…` → the organization it belongs to.
//!
//! [`guard`] runs as middleware on `/v1`, before any handler extractor reads the body, so an
//! unauthenticated request is answered 401 (or 429) whatever it carries. It leaves an
//! [`OrgContext`] in the request extensions; handlers take it as an extractor and scope every
//! query by its `org_id`. The Headscale surface runs the same checks through [`authenticate`].

use std::future::{ready, Ready};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};

use super::error::ApiError;
use crate::api::ApiState;
use crate::domain::{ApiKeyId, OrgId};
use crate::state::Actor;

/// The authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrgContext {
    pub org_id: OrgId,
    pub api_key_id: ApiKeyId,
}

impl OrgContext {
    /// How the caller appears in audit events.
    pub fn actor(&self) -> Actor {
        Actor::ApiKey(self.api_key_id)
    }
}

impl FromRequest for OrgContext {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Absent only if a route was registered outside the guarded scope: a bug, not a client error.
        ready(req.extensions().get::<OrgContext>().copied().ok_or(ApiError::Unauthorized("authentication required")))
    }
}

/// Rate limit by address, authenticate, rate limit by key, then run the handler.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    refuse_nul_in_target(&req)?;
    authenticate(&req).await?;
    next.call(req).await
}

/// PostgreSQL cannot store the NUL character and SQLite can: a path or query that holds one
/// (`%00`; a raw NUL cannot reach us in an HTTP/1 head) is refused before it reaches either,
/// so both databases answer alike.
pub fn refuse_nul_in_target(req: &ServiceRequest) -> Result<(), ApiError> {
    let has_nul = |text: &str| text.as_bytes().windows(3).any(|w| w == b"%00");
    let uri = req.uri();
    if has_nul(uri.path()) || uri.query().is_some_and(has_nul) {
        return Err(ApiError::BadRequest("the request path and query cannot contain the NUL character (%00)".into()));
    }
    Ok(())
}

/// How a surface takes its API key from the `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schemes {
    /// `Bearer <key>` only (`/v1`, `/api/v1`).
    Bearer,
    /// `Bearer <key>`, or `Basic` with the key as the user name and an empty password, as
    /// Tailscale's API clients send it (`/api/v2`).
    BearerOrBasic,
}

/// The checks of [`guard`] without running the handler: on success the [`OrgContext`] is in
/// the request extensions. Surfaces with another error shape call this and render the error.
pub async fn authenticate(req: &ServiceRequest) -> Result<OrgContext, ApiError> {
    authenticate_with(req, Schemes::Bearer).await
}

/// [`authenticate`], taking the key as `schemes` allows.
pub async fn authenticate_with(req: &ServiceRequest, schemes: Schemes) -> Result<OrgContext, ApiError> {
    let state = req
        .app_data::<web::Data<ApiState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("application state missing".into()))?;
    if let Some(peer) = req.peer_addr() {
        state.rate_limits.check_ip(peer.ip())?;
    }
    let header = req.headers().get(header::AUTHORIZATION);
    let basic = match schemes {
        Schemes::BearerOrBasic => basic_user(header),
        Schemes::Bearer => None,
    };
    let token = match basic {
        Some(user) => std::borrow::Cow::Owned(user),
        // Basic, but not the key as user name with an empty password: say what is expected
        // rather than that Bearer is.
        None if schemes == Schemes::BearerOrBasic && has_scheme(header, "basic") => {
            return Err(ApiError::Unauthorized(
                "Basic credentials must be the API key as user name and an empty password",
            ));
        }
        None => std::borrow::Cow::Borrowed(bearer_token(header)?),
    };
    let key =
        state.store.authenticate_api_key(&token).await?.ok_or(ApiError::Unauthorized("invalid or revoked API key"))?;
    state.rate_limits.check_key(key.id)?;
    let ctx = OrgContext { org_id: key.org_id, api_key_id: key.id };
    req.extensions_mut().insert(ctx);
    Ok(ctx)
}

/// The token of a `Bearer` credential; the scheme name is case-insensitive (RFC 9110).
fn bearer_token(value: Option<&header::HeaderValue>) -> Result<&str, ApiError> {
    let value = value.ok_or(ApiError::Unauthorized("missing Authorization: Bearer <API key> header"))?;
    let text = value.to_str().map_err(|_| ApiError::Unauthorized("malformed Authorization header"))?;
    let (scheme, token) = text.trim().split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthorized("Authorization must be: Bearer <API key>"));
    }
    Ok(token.trim())
}

/// Whether the header's credential is of `scheme` (case-insensitive, RFC 9110).
fn has_scheme(value: Option<&header::HeaderValue>, scheme: &str) -> bool {
    let text = value.and_then(|v| v.to_str().ok()).unwrap_or_default();
    text.trim().split(' ').next().is_some_and(|s| s.eq_ignore_ascii_case(scheme))
}

/// The user name of a `Basic` credential whose password is empty (an API key, as Tailscale's
/// clients send it); `None` for anything else, which then must be a `Bearer` credential.
fn basic_user(value: Option<&header::HeaderValue>) -> Option<String> {
    use base64::Engine;
    let text = value?.to_str().ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    (password.is_empty() && !user.is_empty()).then(|| user.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_tokens() {
        let ok = header::HeaderValue::from_static("bearer tskey-api-abc");
        assert_eq!(bearer_token(Some(&ok)).unwrap(), "tskey-api-abc");
        for bad in ["Basic x", "Bearer", "Bearer   ", "tskey-api-abc"] {
            let value = header::HeaderValue::from_static(bad);
            assert!(bearer_token(Some(&value)).is_err(), "{bad}");
        }
        assert!(bearer_token(None).is_err());
    }

    #[test]
    fn parses_basic_credentials_with_the_key_as_user_name() {
        // "tskey-api-abc:" and "tskey-api-abc:secret" in base64.
        let ok = header::HeaderValue::from_static("Basic dHNrZXktYXBpLWFiYzo=");
        assert_eq!(basic_user(Some(&ok)).as_deref(), Some("tskey-api-abc"));
        for bad in ["Basic dHNrZXktYXBpLWFiYzpzZWNyZXQ=", "Basic !!!", "Basic Og==", "Bearer dHNrZXktYXBpLWFiYzo="] {
            assert_eq!(basic_user(Some(&header::HeaderValue::from_static(bad))), None, "{bad}");
        }
    }
}
