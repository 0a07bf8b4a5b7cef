//! The Headscale-compatible REST surface, `/api/v1`, so tools written for Headscale's API
//! (headscale-ui, the Terraform providers, scripts) manage tenscale.
//!
//! Mapping: a Headscale *user* is a namespace of the caller's organization. Authentication
//! is the same org API key as `/v1` (`Authorization: Bearer tskey-api-…`, same rate
//! limits), every query is scoped to that organization, and another organization's users,
//! keys and nodes answer 404 exactly like missing ones. Request and response bodies follow
//! Headscale v0.26–v0.28 ([`wire`]); errors are gRPC-gateway statuses ([`error`]).
//!
//! Handlers here only translate: every change goes through the same functions as the `/v1`
//! handlers ([`super::namespaces::create_namespace`], [`super::keys::create_key`],
//! [`super::nodes::edit_node`], [`super::policy::set_org_policy`], …), so validation,
//! tailnet events and audit records are identical on both surfaces.
//!
//! Bodies are read leniently (unknown fields are ignored, as gRPC-gateway does with the
//! fields it binds from the path): clients send `nodeId` or `user` in bodies whose values
//! are also in the path. Not offered: renaming a user (namespaces keep their names; 501),
//! routes, node registration and moving nodes between users. API keys (`apikey`) are the
//! caller organization's own.

pub mod apikeys;
mod error;
pub mod health;
pub mod nodes;
pub mod policy;
pub mod preauthkeys;
pub mod users;
pub mod wire;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::web;

pub use error::{HsError, HsResult, RpcStatus};

use super::auth::{self, OrgContext};
use super::error::ApiError;
use super::surface::{self, SurfaceJson};
use crate::api::ApiState;
use crate::domain::NamespaceId;
use crate::state::store::{Namespace, StoreError};

/// Registers `/api/v1` and its routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .wrap(from_fn(guard))
            .configure(surface::extractor_configs::<HsError>)
            .configure(users::routes)
            .configure(preauthkeys::routes)
            .configure(nodes::routes)
            .configure(policy::routes)
            .configure(health::routes)
            .configure(apikeys::routes)
            .default_service(surface::not_found::<HsError>("Not Found")),
    );
}

/// `/v1`'s authentication and rate limits, with failures in this surface's shape.
async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    auth::refuse_nul_in_target(&req).map_err(HsError::from)?;
    auth::authenticate(&req).await.map_err(HsError::from)?;
    next.call(req).await
}

/// Any other method on a resource that takes `allow`: 405 with the `Allow` header.
fn only(allow: &'static str) -> actix_web::Route {
    surface::only::<HsError>(allow)
}

/// A JSON body read like `/v1`'s, failing in this surface's shape.
pub type HsJson<T> = SurfaceJson<T, HsError>;

/// A uint64 id from a path, a query or a body's text, as Headscale writes it: decimal digits
/// ([`super::schema::UINT64_TEXT_PATTERN`], the document's pattern), else 400 invalid argument, as
/// gRPC-gateway refuses it. Our ids are i64 row ids, so a well-formed id above `i64::MAX`
/// names nothing: `None`, which the caller answers like any missing object.
fn parse_id<Id: From<i64>>(text: &str, what: &str) -> HsResult<Option<Id>> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::Invalid(format!("{what}: {text:?} is not a uint64 id")).into());
    }
    Ok(text.parse::<i64>().ok().map(Id::from))
}

/// A uint64 field of a body: protobuf JSON allows both `"7"` and `7` (and `7.0`, which JSON
/// Schema's `integer` admits too).
fn id_field<Id: From<i64>>(value: Option<&serde_json::Value>, what: &str) -> HsResult<Option<Id>> {
    let not_an_id = |shown: &dyn std::fmt::Display| ApiError::Invalid(format!("{what}: {shown} is not a uint64 id"));
    match value {
        None | Some(serde_json::Value::Null) => Err(ApiError::Invalid(format!("{what} is required")).into()),
        Some(serde_json::Value::String(text)) => parse_id(text, what),
        Some(serde_json::Value::Number(n)) => {
            let whole = n.as_u64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|f| f as u64));
            let id = whole.ok_or_else(|| not_an_id(n))?;
            Ok(i64::try_from(id).ok().map(Id::from))
        }
        Some(other) => Err(not_an_id(other).into()),
    }
}

/// The caller's namespace with this id, as the Headscale user it stands for; `None` (an id
/// no row can have) is missing like any other.
async fn user_by_id(state: &ApiState, ctx: &OrgContext, id: Option<NamespaceId>) -> HsResult<Namespace> {
    let id = id.ok_or_else(|| ApiError::NotFound("user not found".into()))?;
    state.store.namespace_in_org(ctx.org_id, id).await.map_err(|err| match err {
        StoreError::NotFound(_) => ApiError::NotFound(format!("user {id} not found")).into(),
        other => other.into(),
    })
}
