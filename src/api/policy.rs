//! ACL policies, HuJSON stored verbatim (comments and formatting are the admin's, and come
//! back exactly as sent): the organization's default (`/v1/policy`), which holds in every
//! namespace, and a namespace's own override (`/v1/namespaces/{name}/policy`).
//!
//! A document is accepted only if it is HuJSON and a valid policy whose `tests` pass against
//! the nodes it would govern; the refusal names the line and column (or the failing test).
//! `POST /v1/policy/validate` runs the same checks without saving.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::auth::OrgContext;
use super::body::{media_type, read_limited};
use super::error::{ApiError, ApiResult, Problem};
use super::schema::PolicyObject;
use super::{audit, line, State};
use crate::api::ApiState;
use crate::domain::NamespaceName;
use crate::state::store::policies::PolicyScope;
use crate::state::store::PolicyDocument;

const HUJSON: &str = "application/hujson";

const EXAMPLE: &str = "{\n  // Members of the namespace reach each other; the CLI hub reaches everything.\n  \"tagOwners\": {\"tag:cli\": []},\n  \"acls\": [\n    {\"action\": \"accept\", \"src\": [\"tag:cli\"], \"dst\": [\"*:*\"]},\n  ],\n}\n";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/policy")
            .route(web::get().to(get))
            .route(web::put().to(put))
            .default_service(super::only("GET, PUT")),
    )
    .service(web::resource("/policy/validate").route(web::post().to(validate)).default_service(super::only("POST")));
}

/// `/namespaces/{name}/policy`; registered with the other namespace routes.
pub fn namespace_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/namespaces/{name}/policy")
            .route(web::get().to(get_namespace))
            .route(web::put().to(put_namespace))
            .route(web::delete().to(delete_namespace))
            .default_service(super::only("GET, PUT, DELETE")),
    );
}

/// Get the policy
///
/// Returns the document exactly as it was saved.
#[utoipa::path(get, path = "/v1/policy", operation_id = "getPolicy", tag = "policy",
    responses(
        (status = 200, description = "The stored HuJSON document", body = String, content_type = "application/hujson", example = json!(EXAMPLE)),
        (status = 404, description = "No policy set (every node of a namespace may reach every other)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(state: State, ctx: OrgContext) -> ApiResult<HttpResponse> {
    let doc = org_policy(&state, &ctx).await?;
    Ok(HttpResponse::Ok().content_type(HUJSON).body(doc.text))
}

/// Replace the policy
///
/// Send HuJSON (JSON with comments and trailing commas) as `application/hujson` or
/// `application/json`. The answer echoes the stored document.
#[utoipa::path(put, path = "/v1/policy", operation_id = "putPolicy", tag = "policy",
    request_body(content(
        (String = "application/hujson", example = json!(EXAMPLE)),
        (PolicyObject = "application/json", example = json!({"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]})),
    )),
    responses(
        (status = 200, description = "Saved", body = String, content_type = "application/hujson", example = json!(EXAMPLE)),
        (status = 400, description = "Not HuJSON or not a valid policy; `detail` names line and column", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is neither application/hujson nor application/json", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put(state: State, ctx: OrgContext, req: HttpRequest, payload: web::Payload) -> ApiResult<HttpResponse> {
    let text = read_document(&req, payload).await?;
    set_org_policy(&state, &ctx, &text).await?;
    Ok(HttpResponse::Ok().content_type(HUJSON).body(text))
}

/// Sets the organization's policy through the writer (which checks it), recorded as
/// `policy.update`.
pub(crate) async fn set_org_policy(state: &ApiState, ctx: &OrgContext, text: &str) -> ApiResult<PolicyDocument> {
    let describe = |_: &()| line("policy.update", "policy", "org", json!({"bytes": text.len()}));
    Ok(state.writer.set_policy(ctx.org_id, PolicyScope::Org, text, Some(&audit(ctx, &describe))).await?)
}

/// The organization's stored policy; 404 when none is set.
pub(crate) async fn org_policy(state: &ApiState, ctx: &OrgContext) -> ApiResult<PolicyDocument> {
    state
        .store
        .policy(ctx.org_id, PolicyScope::Org)
        .await?
        .ok_or_else(|| ApiError::NotFound("no policy set for this organization".into()))
}

/// Validate a policy
///
/// Runs every check of `PUT /v1/policy` (syntax, meaning, and the policy's `tests` against
/// the organization's nodes) without saving anything.
#[utoipa::path(post, path = "/v1/policy/validate", operation_id = "validatePolicy", tag = "policy",
    request_body(content(
        (String = "application/hujson", example = json!(EXAMPLE)),
        (PolicyObject = "application/json", example = json!({"acls": []})),
    )),
    responses(
        (status = 200, description = "Valid", body = Validation, example = json!({"valid": true})),
        (status = 400, description = "Invalid; `detail` names line and column or the failing test", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn validate(
    state: State,
    ctx: OrgContext,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let text = read_document(&req, payload).await?;
    state.writer.check_policy(ctx.org_id, PolicyScope::Org, &text).await?;
    Ok(HttpResponse::Ok().json(Validation { valid: true }))
}

/// The answer of a successful validation.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Validation {
    pub valid: bool,
}

/// Get a namespace's own policy
///
/// 404 when the namespace has no override (the organization's policy then applies).
#[utoipa::path(get, path = "/v1/namespaces/{name}/policy", operation_id = "getNamespacePolicy", tag = "policy",
    params(("name" = NamespaceName, Path, description = "Namespace name", example = "alice")),
    responses(
        (status = 200, description = "The stored HuJSON document", body = String, content_type = "application/hujson", example = json!(EXAMPLE)),
        (status = 404, description = "No such namespace, or no override", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_namespace(state: State, ctx: OrgContext, name: web::Path<String>) -> ApiResult<HttpResponse> {
    let ns = state.store.namespace_by_name(ctx.org_id, &name).await?;
    let doc = state
        .store
        .policy(ctx.org_id, PolicyScope::Namespace(ns.id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("namespace {} has no policy of its own", ns.name)))?;
    Ok(HttpResponse::Ok().content_type(HUJSON).body(doc.text))
}

/// Override the policy of one namespace
///
/// Replaces the organization's policy inside this namespace only. Same rules as `PUT /v1/policy`;
/// the policy's `tests` run against this namespace's nodes.
#[utoipa::path(put, path = "/v1/namespaces/{name}/policy", operation_id = "putNamespacePolicy", tag = "policy",
    params(("name" = NamespaceName, Path, description = "Namespace name", example = "alice")),
    request_body(content(
        (String = "application/hujson", example = json!(EXAMPLE)),
        (PolicyObject = "application/json", example = json!({"acls": []})),
    )),
    responses(
        (status = 200, description = "Saved", body = String, content_type = "application/hujson", example = json!(EXAMPLE)),
        (status = 400, description = "Not HuJSON, not a valid policy, or a failing test", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such namespace in this organization", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is neither application/hujson nor application/json", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_namespace(
    state: State,
    ctx: OrgContext,
    name: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let ns = state.store.namespace_by_name(ctx.org_id, &name).await?;
    let text = read_document(&req, payload).await?;
    let describe =
        |_: &()| line("policy.update", "policy", format!("namespace:{}", ns.name), json!({"bytes": text.len()}));
    state.writer.set_policy(ctx.org_id, PolicyScope::Namespace(ns.id), &text, Some(&audit(&ctx, &describe))).await?;
    Ok(HttpResponse::Ok().content_type(HUJSON).body(text))
}

/// Drop a namespace's own policy
///
/// The organization's policy applies inside the namespace again.
#[utoipa::path(delete, path = "/v1/namespaces/{name}/policy", operation_id = "deleteNamespacePolicy", tag = "policy",
    params(("name" = NamespaceName, Path, description = "Namespace name", example = "alice")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such namespace, or no override", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_namespace(state: State, ctx: OrgContext, name: web::Path<String>) -> ApiResult<HttpResponse> {
    let ns = state.store.namespace_by_name(ctx.org_id, &name).await?;
    let describe = |_: &()| line("policy.delete", "policy", format!("namespace:{}", ns.name), json!({}));
    if !state.writer.delete_policy(ctx.org_id, PolicyScope::Namespace(ns.id), Some(&audit(&ctx, &describe))).await? {
        return Err(ApiError::NotFound(format!("namespace {} has no policy of its own", ns.name)));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// The request body as policy text: HuJSON or JSON media type, within the body limit, UTF-8.
async fn read_document(req: &HttpRequest, payload: web::Payload) -> ApiResult<String> {
    if let Some(media) = media_type(req) {
        if media != HUJSON && media != "application/json" {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type {media} is not accepted; send {HUJSON} or application/json"
            )));
        }
    }
    let body = read_limited(req, payload.into_inner()).await?;
    if body.contains(&0) {
        return Err(ApiError::Invalid("the policy cannot contain the NUL character".into()));
    }
    String::from_utf8(body.to_vec()).map_err(|_| ApiError::Invalid("policy is not valid UTF-8".into()))
}

#[cfg(test)]
mod tests {
    /// The document's example is what a reader copies first: it must be a valid policy.
    #[test]
    fn the_documented_example_is_a_valid_policy() {
        crate::state::policy::parse_policy(super::EXAMPLE).expect("the example parses");
    }
}
