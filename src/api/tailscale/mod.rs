//! The Tailscale-compatible REST surface, `/api/v2`, so the tools app teams already run —
//! Tailscale's Go client `tailscale.com/client/tailscale/v2` (what the Terraform provider is
//! built on), scripts written against `api.tailscale.com` — manage tenscale.
//!
//! Mapping: a tailnet is a namespace of the caller's organization, named in the path
//! (`/api/v2/tailnet/{tailnet}/…`). Tailscale's `-` ("the caller's own tailnet") names
//! nothing here, since one credential reaches every namespace of its organization: it is
//! refused with a 400 that says so. Authentication is the organization's API key, sent as
//! Tailscale's clients send it (HTTP Basic with the key as the user name) or as a Bearer
//! token; the rate limits are `/v1`'s. Errors are Tailscale's `{"message"}` ([`error`]).
//!
//! Handlers here only translate: every change goes through the same functions as the `/v1`
//! handlers, so validation, tailnet events and audit records are identical on every surface.
//! Offered today: keys ([`keys`]). Devices, the policy file, users and settings are not yet
//! (issue 26): their paths answer 404 like any unknown one.

mod error;
pub mod keys;
pub mod wire;

use std::future::Future;
use std::pin::Pin;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

pub use error::{TsError, TsErrorBody, TsResult};

use super::auth::{self, OrgContext, Schemes};
use super::body::ApiJson;
use super::error::ApiError;
use crate::api::ApiState;
use crate::state::store::{Namespace, StoreError};

/// Registers `/api/v2` and its routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v2")
            .wrap(from_fn(guard))
            .configure(extractor_configs)
            .configure(keys::routes)
            .default_service(web::to(not_found)),
    );
}

/// `/v1`'s authentication and rate limits, taking the key as Tailscale's clients send it,
/// with failures in this surface's shape.
async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    auth::refuse_nul_in_target(&req).map_err(TsError::from)?;
    auth::authenticate_with(&req, Schemes::BearerOrBasic).await.map_err(TsError::from)?;
    next.call(req).await
}

/// Tailscale's error shape for actix's own extractor failures.
fn extractor_configs(cfg: &mut web::ServiceConfig) {
    use actix_web::web::{PathConfig, QueryConfig};
    cfg.app_data(
        QueryConfig::default().error_handler(|err, _| TsError::from(ApiError::BadRequest(err.to_string())).into()),
    )
    .app_data(PathConfig::default().error_handler(|err, _| TsError::from(ApiError::NotFound(err.to_string())).into()));
}

async fn not_found() -> TsResult<()> {
    Err(ApiError::NotFound("not found".into()).into())
}

/// Any other method on a resource that takes `allow`: 405 with the `Allow` header.
fn only(allow: &'static str) -> actix_web::Route {
    web::to(move || async move { Err::<(), TsError>(ApiError::MethodNotAllowed { allow }.into()) })
}

/// A JSON body read like `/v1`'s ([`ApiJson`]: size limit, media type, serde's message),
/// failing in this surface's shape.
#[derive(Debug)]
pub struct TsJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for TsJson<T> {
    type Error = TsError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, TsError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = ApiJson::<T>::from_request(req, payload);
        Box::pin(async move { body.await.map(|ApiJson(value)| TsJson(value)).map_err(TsError::from) })
    }
}

/// The caller's namespace that the path names as its tailnet.
async fn tailnet(state: &ApiState, ctx: &OrgContext, name: &str) -> TsResult<Namespace> {
    if name == "-" {
        return Err(ApiError::Invalid(
            "name the tailnet: an API key of tenscale reaches every namespace of its organization, \
             so \"-\" (the caller's own tailnet) names none; use the namespace's name"
                .into(),
        )
        .into());
    }
    state.store.namespace_by_name(ctx.org_id, name).await.map_err(|err| match err {
        StoreError::NotFound(_) => ApiError::NotFound("tailnet not found".into()).into(),
        other => other.into(),
    })
}
