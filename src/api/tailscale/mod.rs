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

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::web;

pub use error::{TsError, TsErrorBody, TsResult};

use super::auth::{self, OrgContext, Schemes};
use super::error::ApiError;
use super::surface::{self, SurfaceJson};
use crate::api::ApiState;
use crate::state::store::{Namespace, StoreError};

/// Registers `/api/v2` and its routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v2")
            .wrap(from_fn(guard))
            .configure(surface::extractor_configs::<TsError>)
            .configure(keys::routes)
            .default_service(surface::not_found::<TsError>("not found")),
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

/// Any other method on a resource that takes `allow`: 405 with the `Allow` header.
fn only(allow: &'static str) -> actix_web::Route {
    surface::only::<TsError>(allow)
}

/// A JSON body read like `/v1`'s, failing in this surface's shape.
pub type TsJson<T> = SurfaceJson<T, TsError>;

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
