//! `/v1/policy`: the organization's ACL policy, HuJSON stored verbatim (comments and
//! formatting are the admin's, and come back exactly as sent).
//!
//! A document is accepted only if it is HuJSON and a valid policy; the refusal names the
//! line and column, counted in the text as sent.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::auth::OrgContext;
use super::body::{media_type, read_limited};
use super::error::{ApiError, ApiResult, Problem};
use super::{record, State};
use crate::app::AppState;
use crate::policy::{hujson, Policy};
use crate::store::policies::PolicyScope;
use crate::tailnet::Event;

const HUJSON: &str = "application/hujson";

const EXAMPLE: &str = "{\n  // Members of the namespace reach each other; the CLI hub reaches everything.\n  \"tagOwners\": {\"tag:cli\": []},\n  \"acls\": [\n    {\"action\": \"accept\", \"src\": [\"tag:cli\"], \"dst\": [\"*:*\"]},\n  ],\n}\n";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/policy")
            .route(web::get().to(get))
            .route(web::put().to(put))
            .default_service(web::to(super::method_not_allowed)),
    );
}

/// The org's parsed policy, `None` when it has none. A stored document was valid when saved;
/// should a newer parser refuse it, it is treated as absent rather than failing every request.
pub async fn org_policy(state: &AppState, org_id: i64) -> ApiResult<Option<Policy>> {
    let doc = state.store.policy(org_id, PolicyScope::Org).await?;
    Ok(doc.and_then(|doc| Policy::parse(&doc.document).ok()))
}

/// Get the policy
///
/// Returns the document exactly as it was saved.
#[utoipa::path(get, path = "/v1/policy", tag = "policy",
    responses(
        (status = 200, description = "The stored HuJSON document", body = String, content_type = "application/hujson", example = json!(EXAMPLE)),
        (status = 404, description = "No policy set (every node of a namespace may reach every other)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(state: State, ctx: OrgContext) -> ApiResult<HttpResponse> {
    let doc = state
        .store
        .policy(ctx.org_id, PolicyScope::Org)
        .await?
        .ok_or_else(|| ApiError::NotFound("no policy set for this organization".into()))?;
    Ok(HttpResponse::Ok().content_type(HUJSON).body(doc.document))
}

/// Replace the policy
///
/// Send HuJSON (JSON with comments and trailing commas) as `application/hujson` or
/// `application/json`. The answer echoes the stored document.
#[utoipa::path(put, path = "/v1/policy", tag = "policy",
    request_body(content(
        (String = "application/hujson", example = json!(EXAMPLE)),
        (String = "application/json", example = json!("{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}]}")),
    )),
    responses(
        (status = 200, description = "Saved", body = String, content_type = "application/hujson", example = json!(EXAMPLE)),
        (status = 400, description = "Not HuJSON or not a valid policy; `detail` names line and column", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is neither application/hujson nor application/json", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put(state: State, ctx: OrgContext, req: HttpRequest, payload: web::Payload) -> ApiResult<HttpResponse> {
    if let Some(media) = media_type(&req) {
        if media != HUJSON && media != "application/json" {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type {media} is not accepted; send {HUJSON} or application/json"
            )));
        }
    }
    let body = read_limited(&req, payload.into_inner()).await?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::Invalid("policy is not valid UTF-8".into()))?;
    check(text)?;
    state.store.put_policy(ctx.org_id, PolicyScope::Org, text).await?;
    state.tailnet.publish(Event::PolicyChanged { org_id: ctx.org_id, namespace_id: None }).await;
    record(&state, &ctx, "policy.update", "policy", "org", json!({"bytes": text.len()})).await;
    Ok(HttpResponse::Ok().content_type(HUJSON).body(text.to_string()))
}

/// Syntax first (is it HuJSON at all?), then meaning (is it a policy tenscale can enforce?).
fn check(text: &str) -> ApiResult<()> {
    let json = hujson::to_json(text).map_err(|e| ApiError::Invalid(format!("invalid HuJSON: {e}")))?;
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&json) {
        let message = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = message.strip_suffix(&suffix).unwrap_or(&message);
        return Err(ApiError::Invalid(format!("invalid HuJSON: line {}, column {}: {message}", e.line(), e.column())));
    }
    Policy::parse(text).map_err(|e| ApiError::Invalid(format!("invalid policy: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_name_line_and_column() {
        let err = check("{\n  // fine\n  \"acls\": [,]\n}").unwrap_err().to_string();
        assert!(err.starts_with("invalid HuJSON: line 3, column 12:"), "{err}");
        assert!(check(EXAMPLE).is_ok(), "{:?}", check(EXAMPLE));
        let err = check("{\"bogus\": 1}").unwrap_err().to_string();
        assert!(err.starts_with("invalid policy: line 1"), "{err}");
    }
}
