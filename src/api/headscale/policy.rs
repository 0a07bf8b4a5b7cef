//! `/api/v1/policy`: the organization's policy (the default of every namespace) as text.

use actix_web::web;

use super::error::{HsResult, RpcStatus};
use super::wire::{Empty, PolicyResponse, SetPolicyRequest};
use super::HsJson;
use crate::api::auth::OrgContext;
use crate::api::policy::{org_policy, set_org_policy};
use crate::api::State;
use crate::state::store::policies::PolicyScope;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/policy")
            .route(web::get().to(get))
            .route(web::put().to(put))
            .default_service(super::only("GET, PUT")),
    )
    .service(web::resource("/policy/check").route(web::post().to(check)).default_service(super::only("POST")));
}

/// Get the policy (Headscale)
///
/// The organization's HuJSON document exactly as saved. Namespace overrides are managed
/// through `/v1/namespaces/{name}/policy` only.
#[utoipa::path(get, path = "/api/v1/policy", operation_id = "HeadscaleService_GetPolicy", tag = "headscale",
    responses(
        (status = 200, description = "The policy", body = PolicyResponse),
        (status = 404, description = "No policy set", body = RpcStatus),
    ))]
pub async fn get(state: State, ctx: OrgContext) -> HsResult<web::Json<PolicyResponse>> {
    let doc = org_policy(&state, &ctx).await?;
    Ok(web::Json(PolicyResponse { policy: doc.text, updated_at: doc.updated_at }))
}

/// Set the policy (Headscale)
///
/// Same checks as `PUT /v1/policy` (HuJSON syntax with line and column, meaning, `tests`).
#[utoipa::path(put, path = "/api/v1/policy", operation_id = "HeadscaleService_SetPolicy", tag = "headscale",
    request_body(content = SetPolicyRequest, example = json!({"policy": "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}]}"})),
    responses(
        (status = 200, description = "Saved", body = PolicyResponse),
        (status = 400, description = "Not HuJSON, not a valid policy, or a failing test", body = RpcStatus),
    ))]
pub async fn put(state: State, ctx: OrgContext, body: HsJson<SetPolicyRequest>) -> HsResult<web::Json<PolicyResponse>> {
    let doc = set_org_policy(&state, &ctx, &body.0.policy).await?;
    Ok(web::Json(PolicyResponse { policy: doc.text, updated_at: doc.updated_at }))
}

/// Check a policy (Headscale)
///
/// Every check of `PUT /api/v1/policy` — HuJSON syntax with line and column, meaning, the
/// policy's `tests` against the organization's nodes — without saving anything.
#[utoipa::path(post, path = "/api/v1/policy/check", operation_id = "HeadscaleService_CheckPolicy", tag = "headscale",
    request_body(content = SetPolicyRequest, example = json!({"policy": "{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}]}"})),
    responses(
        (status = 200, description = "Valid", body = Empty),
        (status = 400, description = "Not HuJSON, not a valid policy, or a failing test", body = RpcStatus),
    ))]
pub async fn check(state: State, ctx: OrgContext, body: HsJson<SetPolicyRequest>) -> HsResult<web::Json<Empty>> {
    state
        .writer
        .check_policy(ctx.org_id, PolicyScope::Org, &body.0.policy)
        .await
        .map_err(crate::api::error::ApiError::from)?;
    Ok(web::Json(Empty {}))
}
