//! `/v1/namespaces`: create, list (paginated), read and delete an org's namespaces.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::auth::OrgContext;
use super::body::ApiJson;
use super::error::{ApiError, ApiResult, Problem};
use super::{audit, line, State};
use crate::api::ApiState;
use crate::domain::NamespaceName;
use crate::state::store::Namespace;

const DEFAULT_PAGE: u64 = 100;
const MAX_PAGE: u64 = 1000;

/// A new namespace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "alice"}))]
pub struct CreateNamespace {
    /// 1-63 lowercase letters, digits or '-', unique within the organization.
    #[schema(example = "alice")]
    pub name: NamespaceName,
}

/// One namespace: an isolated tailnet.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"name": "alice", "created_at": "2099-01-01T10:00:00Z"}))]
pub struct NamespaceView {
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl From<Namespace> for NamespaceView {
    fn from(ns: Namespace) -> Self {
        Self { name: ns.name.to_string(), created_at: ns.created_at }
    }
}

/// A page of namespaces, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"namespaces": [{"name": "alice", "created_at": "2099-01-01T10:00:00Z"}], "next_cursor": null}))]
pub struct NamespacePage {
    pub namespaces: Vec<NamespaceView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Paging of a list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000, example = 100)]
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/namespaces")
            .route(web::post().to(create))
            .route(web::get().to(list))
            .default_service(super::only("GET, POST")),
    )
    .service(
        web::resource("/namespaces/{name}")
            .route(web::get().to(get))
            .route(web::delete().to(delete))
            .default_service(super::only("GET, DELETE")),
    );
}

/// Create a namespace
#[utoipa::path(post, path = "/v1/namespaces", operation_id = "createNamespace", tag = "namespaces",
    request_body(content = CreateNamespace, example = json!({"name": "alice"})),
    responses(
        (status = 201, description = "Created", body = NamespaceView,
            example = json!({"name": "alice", "created_at": "2099-01-01T10:00:00Z"})),
        (status = 400, description = "Malformed body or invalid name", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A namespace with this name exists", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(state: State, ctx: OrgContext, body: ApiJson<CreateNamespace>) -> ApiResult<HttpResponse> {
    let ns = create_namespace(&state, &ctx, &body.0.name).await?;
    Ok(HttpResponse::Created().json(NamespaceView::from(ns)))
}

/// Creates a namespace and records it; shared by `/v1` and the Headscale surface.
pub(crate) async fn create_namespace(state: &ApiState, ctx: &OrgContext, name: &NamespaceName) -> ApiResult<Namespace> {
    let describe = |ns: &Namespace| line("namespace.create", "namespace", &ns.name, json!({"id": ns.id}));
    Ok(state.writer.create_namespace(ctx.org_id, name, Some(&audit(ctx, &describe))).await?)
}

/// List namespaces
#[utoipa::path(get, path = "/v1/namespaces", operation_id = "listNamespaces", tag = "namespaces", params(PageQuery),
    responses(
        (status = 200, description = "One page", body = NamespacePage,
            example = json!({"namespaces": [{"name": "alice", "created_at": "2099-01-01T10:00:00Z"}], "next_cursor": "1"})),
        (status = 400, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(state: State, ctx: OrgContext, query: web::Query<PageQuery>) -> ApiResult<web::Json<NamespacePage>> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::Invalid(format!("limit must be between 1 and {MAX_PAGE}")));
    }
    let after = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(text) => Some(text.parse::<i64>().map_err(|_| ApiError::Invalid("invalid cursor".into()))?),
    };
    // One extra row tells whether another page exists, so the last page has no cursor.
    let mut rows = state.store.list_namespaces(ctx.org_id, after, limit + 1).await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more { rows.last().map(|ns| ns.id.to_string()) } else { None };
    Ok(web::Json(NamespacePage { namespaces: rows.into_iter().map(NamespaceView::from).collect(), next_cursor }))
}

/// Get a namespace
#[utoipa::path(get, path = "/v1/namespaces/{name}", operation_id = "getNamespace", tag = "namespaces",
    params(("name" = NamespaceName, Path, description = "Namespace name", example = "alice")),
    responses(
        (status = 200, description = "The namespace", body = NamespaceView,
            example = json!({"name": "alice", "created_at": "2099-01-01T10:00:00Z"})),
        (status = 404, description = "No such namespace in this organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(state: State, ctx: OrgContext, name: web::Path<String>) -> ApiResult<web::Json<NamespaceView>> {
    Ok(web::Json(state.store.namespace_by_name(ctx.org_id, &name).await?.into()))
}

/// Delete a namespace
///
/// Removes the namespace with all its nodes, pre-auth keys and policy, also while nodes are
/// online: each connected client is told it is logged out (its key expired, every peer gone,
/// a health message saying why) and cut off DERP; it waits for a new auth key.
#[utoipa::path(delete, path = "/v1/namespaces/{name}", operation_id = "deleteNamespace", tag = "namespaces",
    params(("name" = NamespaceName, Path, description = "Namespace name", example = "alice")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such namespace in this organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(state: State, ctx: OrgContext, name: web::Path<String>) -> ApiResult<HttpResponse> {
    let ns = state.store.namespace_by_name(ctx.org_id, &name).await?;
    delete_namespace(&state, &ctx, &ns).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes a namespace with everything in it, disconnects its nodes and records it.
pub(crate) async fn delete_namespace(state: &ApiState, ctx: &OrgContext, ns: &Namespace) -> ApiResult<()> {
    let describe =
        |nodes: &usize| line("namespace.delete", "namespace", &ns.name, json!({"id": ns.id, "nodes": nodes}));
    state.writer.delete_namespace(ns, Some(&audit(ctx, &describe))).await?;
    Ok(())
}
