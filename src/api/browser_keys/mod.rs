//! Browser keys: a page trades its app backend's short JWT for a one-hour, single-use,
//! ephemeral, tagged pre-auth key of the user's namespace, without the backend proxying
//! anything.
//!
//! - `GET`/`PUT /v1/settings/browser-keys` (API key): the organization's issuer, audience,
//!   verification keys, namespace claim, tags, lifetime and allowed origins ([`settings`]);
//! - `POST /v1/browser-keys` (`Authorization: Bearer <JWT>`, no API key): [`token::verify`],
//!   then the origin, the rate limits (per namespace and per client address), the `jti`
//!   (spent in the database: once, across instances and restarts), the namespace, and the key.
//!   Every refusal is problem+json naming the failed check, counted in
//!   `tenscale_browser_key_refusals_total{check}`;
//! - CORS on that endpoint only: an allowed origin gets exactly itself back; any other gets no
//!   CORS headers, so a browser keeps the answer from the page.

pub mod settings;
pub mod token;

use std::net::IpAddr;
use std::num::NonZeroU32;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::body::ApiJson;
use super::error::{ApiError, ApiResult, Problem};
use super::{auth, line, State};
use crate::api::ApiState;
use crate::domain::{NamespaceId, OrgId};
use crate::secrets::SecretsKey;
use crate::state::credentials::CredentialRefusal;
use crate::state::store::preauth_keys::NewPreauthKey;
use crate::state::store::PreauthKey;
use crate::state::store::{Namespace, StoreError};
use crate::state::{Actor, Audit, Describe};
use settings::{BrowserKeyConfig, BrowserKeySettingsBody, BrowserKeySettingsView};
use token::Refusal;

/// What the exchange endpoint keeps between requests.
pub struct BrowserKeys {
    secrets: SecretsKey,
    by_namespace: DefaultKeyedRateLimiter<NamespaceId>,
    by_ip: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    refusals: IntCounterVec,
    issued: IntCounter,
}

impl std::fmt::Debug for BrowserKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserKeys").field("secrets", &self.secrets).finish_non_exhaustive()
    }
}

impl BrowserKeys {
    pub fn new(secrets: SecretsKey, per_minute: u32, registry: &Registry) -> prometheus::Result<Self> {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(per_minute).allow_burst(per_minute);
        let refusals = IntCounterVec::new(
            Opts::new("tenscale_browser_key_refusals_total", "Browser-key exchanges refused, by the check that failed"),
            &["check"],
        )?;
        let issued = IntCounter::new("tenscale_browser_keys_issued_total", "Browser keys handed out")?;
        registry.register(Box::new(refusals.clone()))?;
        registry.register(Box::new(issued.clone()))?;
        Ok(Self {
            secrets,
            by_namespace: RateLimiter::keyed(quota),
            by_ip: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            refusals,
            issued,
        })
    }

    fn refuse(&self, check: &str, err: ApiError) -> ApiError {
        self.refusals.with_label_values(&[check]).inc();
        tracing::info!(check, detail = %err, "browser key refused");
        err
    }

    fn refusal(&self, refusal: Refusal) -> ApiError {
        let err = match refusal.forbidden {
            true => ApiError::Forbidden(refusal.detail),
            false => ApiError::InvalidToken(refusal.detail),
        };
        self.refuse(refusal.check, err)
    }

    fn limited(&self, check: &str, wait: governor::NotUntil<governor::clock::QuantaInstant>) -> ApiError {
        self.refuse(check, super::ratelimit::limited(wait.wait_time_from(self.clock.now())))
    }
}

/// The exchange endpoint, outside the API-key guard (its credential is the JWT).
pub fn exchange_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/browser-keys")
            .route(web::post().to(exchange))
            .route(web::method(actix_web::http::Method::OPTIONS).to(preflight))
            .default_service(super::only("POST, OPTIONS")),
    );
}

/// The settings endpoints, inside `/v1`.
pub fn settings_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/settings/browser-keys")
            .route(web::get().to(get_settings))
            .route(web::put().to(put_settings))
            .default_service(super::only("GET, PUT")),
    );
}

/// Get the browser-key settings
///
/// Secrets are never shown: a key appears with its `kid`, `alg` and kind.
#[utoipa::path(get, path = "/v1/settings/browser-keys", operation_id = "getBrowserKeySettings", tag = "browser keys",
    responses(
        (status = 200, description = "The settings", body = BrowserKeySettingsView),
        (status = 404, description = "Not configured yet", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_settings(state: State, ctx: auth::OrgContext) -> ApiResult<web::Json<BrowserKeySettingsView>> {
    let row = state
        .store
        .browser_key_settings(ctx.org_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("browser keys are not configured for this organization".into()))?;
    let config = BrowserKeyConfig::from_row(&row, &state.browser_keys.secrets).map_err(|e| ApiError::Internal(e.0))?;
    Ok(web::Json(config.view(row.updated_at)))
}

/// Set the browser-key settings
///
/// Replaces the whole configuration. HS256 secrets are write-only and stored sealed.
#[utoipa::path(put, path = "/v1/settings/browser-keys", operation_id = "putBrowserKeySettings", tag = "browser keys",
    request_body(content = BrowserKeySettingsBody, example = json!({
        "issuer": "https://app.example.com", "audience": "tenscale",
        "keys": [{"kid": "2026-12", "alg": "HS256", "secret": "a long random secret of at least 32 bytes"}],
        "namespace_claim": "sub", "tags": ["tag:browser"], "expires_in": 3600,
        "allowed_origins": ["https://app.example.com"]
    })),
    responses(
        (status = 200, description = "Saved", body = BrowserKeySettingsView),
        (status = 400, description = "A key, origin, tag or lifetime is refused", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another organization uses this issuer", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_settings(
    state: State,
    ctx: auth::OrgContext,
    body: ApiJson<BrowserKeySettingsBody>,
) -> ApiResult<web::Json<BrowserKeySettingsView>> {
    let config = BrowserKeyConfig::from_body(body.0).map_err(|e| ApiError::Invalid(e.0))?;
    let row = config.to_row(&state.browser_keys.secrets).map_err(|e| ApiError::Invalid(e.0))?;
    let detail = json!({"issuer": config.issuer, "keys": config.keys.len(), "origins": config.allowed_origins});
    let describe = |_: &crate::domain::BrowserKeySettings| {
        line("browser_keys.settings", "organization", ctx.org_id, detail.clone())
    };
    let saved = state.writer.put_browser_key_settings(ctx.org_id, row, Some(&super::audit(&ctx, &describe))).await?;
    Ok(web::Json(config.view(saved.updated_at)))
}

/// A key handed to a browser.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BrowserKey {
    /// Single use, ephemeral, tagged; shown only here.
    pub key: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub namespace: String,
    /// What to pass to the Tailscale client as its control URL.
    pub control_url: String,
}

/// Exchange an app JWT for a browser key
///
/// `Authorization: Bearer <JWT>` signed by the organization's app backend (see the settings):
/// `iss`, `aud`, `exp`, `iat`, `jti` and the namespace claim are required; a token lives at
/// most 10 minutes and is accepted once. Answers a single-use ephemeral key of the namespace.
#[utoipa::path(post, path = "/v1/browser-keys", operation_id = "exchangeBrowserKey", tag = "browser keys", security(()),
    responses(
        (status = 201, description = "A key for the browser", body = BrowserKey),
        (status = 401, description = "The token failed a check (detail names it), or was used before", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Origin not allowed, or the namespace is not available", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many keys for this namespace or address", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn exchange(state: State, req: HttpRequest) -> HttpResponse {
    let origin = request_origin(&req);
    match issue(&state, &req, origin.as_deref()).await {
        Ok(key) => {
            let mut response = HttpResponse::Created();
            if let Some(origin) = &origin {
                allow_origin(&mut response, origin);
            }
            response.json(key)
        }
        // A page of an allowed origin may read why it was refused; others learn nothing.
        Err(err) => {
            let mut response = actix_web::ResponseError::error_response(&err);
            if let Some(origin) = origin.as_deref() {
                if origin_allowed_anywhere(&state, origin).await.unwrap_or(false) {
                    if let Ok(value) = HeaderValue::from_str(origin) {
                        response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
                    }
                }
                response.headers_mut().insert(header::VARY, HeaderValue::from_static("Origin"));
            }
            response
        }
    }
}

async fn issue(state: &ApiState, req: &HttpRequest, origin: Option<&str>) -> ApiResult<BrowserKey> {
    let keys = &state.browser_keys;
    if let Some(ip) = req.peer_addr().map(|a| a.ip()) {
        keys.by_ip.check_key(&ip).map_err(|wait| keys.limited("rate_ip", wait))?;
    }
    let token = bearer(req).map_err(|e| keys.refuse("malformed", e))?;
    let issuer = token::unverified_issuer(token).map_err(|r| keys.refusal(r))?;
    let (org_id, config) = config_for_issuer(state, &issuer).await.map_err(|e| keys.refuse("iss", e))?;
    let grant = token::verify(token, &config, state.writer.now().timestamp()).map_err(|r| keys.refusal(r))?;
    if let Some(origin) = origin {
        if !config.allows_origin(origin) {
            return Err(keys.refuse("origin", ApiError::Forbidden(format!("origin {origin} is not allowed"))));
        }
    }
    let namespace = namespace_for(state, org_id, &config, &grant).await.map_err(|e| keys.refuse("namespace", e))?;
    keys.by_namespace.check_key(&namespace.id).map_err(|wait| keys.limited("rate_namespace", wait))?;
    if !state.writer.spend_token_id(org_id, &grant.jti, grant.expires_at).await? {
        return Err(keys.refuse("replay", ApiError::InvalidToken(format!("jti {:?} was used before", grant.jti))));
    }
    let issued = issue_key(state, org_id, &config, &namespace, &grant).await?;
    keys.issued.inc();
    Ok(issued)
}

async fn config_for_issuer(state: &ApiState, issuer: &str) -> ApiResult<(OrgId, BrowserKeyConfig)> {
    let row = state
        .store
        .browser_key_settings_by_issuer(issuer)
        .await?
        .ok_or_else(|| ApiError::InvalidToken(format!("issuer {issuer:?} is not configured")))?;
    let config = BrowserKeyConfig::from_row(&row, &state.browser_keys.secrets).map_err(|e| ApiError::Internal(e.0))?;
    Ok((row.org_id, config))
}

async fn namespace_for(
    state: &ApiState,
    org_id: OrgId,
    config: &BrowserKeyConfig,
    grant: &token::Grant,
) -> ApiResult<Namespace> {
    match state.store.namespace_by_name(org_id, grant.namespace.as_str()).await {
        Ok(ns) => Ok(ns),
        Err(StoreError::NotFound(_)) if config.create_namespaces => {
            let describe = |ns: &Namespace| line("namespace.create", "namespace", &ns.name, json!({"id": ns.id}));
            match state
                .writer
                .create_namespace(org_id, &grant.namespace, Some(&by_token(org_id, grant, &describe)))
                .await
            {
                Ok(ns) => Ok(ns),
                // Created by a concurrent exchange for the same user.
                Err(StoreError::Conflict(_)) => {
                    Ok(state.store.namespace_by_name(org_id, grant.namespace.as_str()).await?)
                }
                Err(err) => Err(err.into()),
            }
        }
        Err(StoreError::NotFound(_)) => {
            Err(ApiError::Forbidden(format!("namespace {} does not exist", grant.namespace)))
        }
        Err(err) => Err(err.into()),
    }
}

async fn issue_key(
    state: &ApiState,
    org_id: OrgId,
    config: &BrowserKeyConfig,
    namespace: &Namespace,
    grant: &token::Grant,
) -> ApiResult<BrowserKey> {
    let expires_at = state.writer.now() + chrono::Duration::seconds(config.expires_in_secs);
    let spec = NewPreauthKey {
        reusable: false,
        ephemeral: true,
        tags: config.tags.clone(),
        expires_at,
        description: format!("browser key (jti {})", grant.jti),
    };
    let detail = json!({"namespace": namespace.name, "jti": grant.jti, "tags": config.tags.to_strings()});
    let describe = |key: &PreauthKey| line("browser_key.issue", "preauth_key", key.id, detail.clone());
    let audit = by_token(org_id, grant, &describe);
    // The policy may have changed since the settings were saved: the writer checks the key's
    // tags against the policy in force now, and a refusal is the settings' fault, not the page's.
    let (key, secret) =
        state.writer.create_preauth_key(namespace, &spec, Some(&audit)).await.map_err(|refusal| match refusal {
            CredentialRefusal::TagNotAllowed(e) => {
                ApiError::Forbidden(format!("the browser keys' tags are not allowed here: {e}"))
            }
            refusal => refusal.into(),
        })?;
    Ok(BrowserKey {
        key: secret,
        expires_at: key.expires_at,
        namespace: namespace.name.to_string(),
        control_url: state.settings.server_url.clone(),
    })
}

/// A change made for the token's holder: the token is the actor.
fn by_token<'a, T>(org_id: OrgId, grant: &token::Grant, describe: Describe<'a, T>) -> Audit<'a, T> {
    Audit { org_id, by: Actor::BrowserToken(grant.jti.clone()), describe }
}

/// The preflight of a page's `fetch`: allowed when some organization allows the origin.
async fn preflight(state: State, req: HttpRequest) -> ApiResult<HttpResponse> {
    let mut response = HttpResponse::NoContent();
    let Some(origin) = request_origin(&req) else {
        return Ok(response.finish());
    };
    if origin_allowed_anywhere(&state, &origin).await? {
        allow_origin(&mut response, &origin);
        response
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST")))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type"),
            ))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600")));
    }
    Ok(response.finish())
}

async fn origin_allowed_anywhere(state: &ApiState, origin: &str) -> ApiResult<bool> {
    if settings::origin(origin).is_err() {
        return Ok(false);
    }
    let rows = state.store.browser_key_settings_mentioning(origin).await?;
    Ok(rows.iter().any(|row| row.allowed_origins.iter().any(|o| o == origin)))
}

fn allow_origin(response: &mut actix_web::HttpResponseBuilder, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        response.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, value));
    }
    response.insert_header((header::VARY, HeaderValue::from_static("Origin")));
}

fn request_origin(req: &HttpRequest) -> Option<String> {
    req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::InvalidToken("missing Authorization: Bearer <JWT> header".into()))?;
    let text = value.to_str().map_err(|_| ApiError::InvalidToken("malformed Authorization header".into()))?;
    match text.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Ok(token.trim()),
        _ => Err(ApiError::InvalidToken("Authorization must be: Bearer <JWT>".into())),
    }
}
