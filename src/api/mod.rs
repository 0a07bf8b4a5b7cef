//! The REST management API (`/v1`), the Headscale-compatible surface (`/api/v1`,
//! [`headscale`]), the Tailscale-compatible one (`/api/v2`, [`tailscale`]), probes and the
//! OpenAPI document.
//!
//! Shape of a request: [`ratelimit`] and [`auth`] run as middleware on `/v1` and leave an
//! [`auth::OrgContext`]; a thin handler parses its input into domain values ([`body`], serde
//! with `deny_unknown_fields`), reads [`crate::state::store`] with every query scoped by the org id,
//! changes things through [`crate::state::Writer`] (which records the events), records an
//! audit event, and maps failures to
//! `application/problem+json` through [`error::ApiError`].
//!
//! Isolation invariant: no handler reads an object by id alone. Namespaces are looked up by
//! (org id, name) and everything else through its namespace, so another organization's
//! object is indistinguishable from a missing one (404, never 403).

pub mod api_keys;
pub mod auth;
pub mod body;
pub mod browser_keys;
pub mod error;
pub mod headscale;
pub mod health;
pub mod keys;
pub mod namespaces;
pub mod nodes;
pub mod openapi;
pub mod policy;
pub mod ratelimit;
pub mod schema;
pub mod surface;
pub mod tailscale;

use actix_web::middleware::from_fn;
use actix_web::web;

use crate::state::store::audit::AuditLine;
use crate::state::{Audit, Describe};
use auth::OrgContext;
use error::{ApiError, ApiResult};
use serde_json::Value;

/// What every API handler can reach.
pub struct ApiState {
    pub settings: std::sync::Arc<crate::config::Settings>,
    /// For reading; every change goes through `writer`.
    pub store: crate::state::store::Store,
    pub writer: crate::state::Writer,
    pub tailnet: std::sync::Arc<crate::netmap::Tailnet>,
    pub metrics: prometheus::Registry,
    /// Shared by every worker, so the configured limit holds whatever the worker count.
    pub rate_limits: ratelimit::RateLimits,
    /// The browser-key exchange: secrets key, its own rate limits, refusal counters.
    pub browser_keys: browser_keys::BrowserKeys,
}

/// The API state as handlers receive it.
pub type State = web::Data<ApiState>;

/// Registers the API, the probes, `/openapi.json` and `/docs`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    health::routes(cfg);
    openapi::routes(cfg);
    // Before the `/v1` scope: its credential is a JWT, not an API key.
    browser_keys::exchange_routes(cfg);
    cfg.service(
        web::scope("/v1")
            .wrap(from_fn(auth::guard))
            .configure(error::extractor_configs)
            .configure(namespaces::routes)
            .configure(api_keys::routes)
            .configure(keys::routes)
            .configure(nodes::routes)
            .configure(policy::routes)
            .configure(policy::namespace_routes)
            .configure(browser_keys::settings_routes)
            .default_service(web::to(not_found)),
    );
    headscale::configure(cfg);
    tailscale::configure(cfg);
}

async fn not_found() -> ApiResult<()> {
    Err(ApiError::NotFound("no such endpoint".into()))
}

/// Any other method on a resource that takes `allow`: 405 with the `Allow` header.
fn only(allow: &'static str) -> actix_web::Route {
    surface::only::<ApiError>(allow)
}

/// Any path outside the API's resources: problem+json like every other refusal.
pub async fn no_such_endpoint() -> ApiResult<()> {
    Err(ApiError::NotFound("no such endpoint".into()))
}

/// A numeric id from a path. Text that is not a number names no object: 404, like any
/// other id the caller cannot see.
fn parse_id<Id: std::str::FromStr>(text: &str, what: &str) -> ApiResult<Id> {
    text.parse().map_err(|_| ApiError::NotFound(format!("{what} not found")))
}

/// The caller's change, described for the audit log by `describe` once made; the writer
/// appends the line in the change's own transaction.
fn audit<'a, T>(ctx: &OrgContext, describe: Describe<'a, T>) -> Audit<'a, T> {
    Audit { org_id: ctx.org_id, by: ctx.actor(), describe }
}

/// One audit line.
fn line(action: &'static str, object_type: &'static str, object_id: impl ToString, detail: Value) -> AuditLine {
    AuditLine { action, object_type, object_id: object_id.to_string(), detail }
}

/// The OpenAPI document as pretty JSON (what `tenscale openapi` prints).
pub fn openapi_json() -> String {
    openapi::document_json()
}
