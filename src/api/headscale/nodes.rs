//! `/api/v1/node`: the organization's nodes, across its namespaces.

use actix_web::web;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{HsResult, RpcStatus};
use super::wire::{Empty, HsNode, ListNodesResponse, NodeResponse, SetTagsRequest};
use super::{parse_id, HsJson};
use crate::api::auth::OrgContext;
use crate::api::error::ApiError;
use crate::api::nodes::{delete_node, edit_node, expire_node};
use crate::api::schema::Uint64Text;
use crate::api::ApiState;
use crate::api::State;
use crate::domain::NodeName;
use crate::state::nodes::NodeEdit;
use crate::state::store::{Namespace, Node};

/// `ListNodesRequest`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NodeFilter {
    /// Only the nodes of the user (namespace) with this name.
    pub user: Option<String>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/node").route(web::get().to(list)).default_service(super::only("GET")))
        .service(
            web::resource("/node/{id}")
                .route(web::get().to(get))
                .route(web::delete().to(delete))
                .default_service(super::only("GET, DELETE")),
        )
        .service(web::resource("/node/{id}/expire").route(web::post().to(expire)).default_service(super::only("POST")))
        .service(
            web::resource("/node/{id}/rename/{new_name}")
                .route(web::post().to(rename))
                .default_service(super::only("POST")),
        )
        .service(web::resource("/node/{id}/tags").route(web::post().to(set_tags)).default_service(super::only("POST")));
}

/// The caller's node `id` with its namespace; 404 unless the node is the caller's.
async fn find(state: &ApiState, ctx: &OrgContext, id: &str) -> HsResult<(Namespace, Node)> {
    let id = parse_id(id, "node_id")?.ok_or_else(|| ApiError::NotFound("node not found".into()))?;
    Ok(state.store.node_in_org(ctx.org_id, id).await?)
}

/// `{"node": …}`, the node as Headscale shows it.
async fn respond(state: &ApiState, ns: &Namespace, node: &Node) -> HsResult<web::Json<NodeResponse>> {
    let keys = state.store.list_preauth_keys(ns.id).await?;
    Ok(web::Json(NodeResponse { node: HsNode::new(node, ns, &keys, state.tailnet.is_online(node.id)) }))
}

/// List nodes (Headscale)
///
/// Every node of the organization (or of one user), by id.
#[utoipa::path(get, path = "/api/v1/node", operation_id = "HeadscaleService_ListNodes", tag = "headscale", params(NodeFilter),
    responses(
        (status = 200, description = "The nodes", body = ListNodesResponse),
        (status = 404, description = "No user with this name in this organization", body = RpcStatus),
    ))]
pub async fn list(
    state: State,
    ctx: OrgContext,
    filter: web::Query<NodeFilter>,
) -> HsResult<web::Json<ListNodesResponse>> {
    let namespaces = match filter.user.as_deref().filter(|s| !s.is_empty()) {
        Some(name) => vec![state.store.namespace_by_name(ctx.org_id, name).await?],
        None => state.store.namespaces_of_org(ctx.org_id).await?,
    };
    let mut nodes = Vec::new();
    for ns in &namespaces {
        let keys = state.store.list_preauth_keys(ns.id).await?;
        for node in state.store.nodes_in_namespace(ns.id).await? {
            nodes.push(HsNode::new(&node, ns, &keys, state.tailnet.is_online(node.id)));
        }
    }
    nodes.sort_by_key(|n| n.id.parse::<i64>().unwrap_or_default());
    Ok(web::Json(ListNodesResponse { nodes }))
}

/// Get a node (Headscale)
#[utoipa::path(get, path = "/api/v1/node/{node_id}", operation_id = "HeadscaleService_GetNode", tag = "headscale",
    params(("node_id" = Uint64Text, Path, description = "Node id", example = "3")),
    responses(
        (status = 200, description = "The node", body = NodeResponse),
        (status = 400, description = "`node_id` is not a uint64", body = RpcStatus),
        (status = 404, description = "No such node in this organization", body = RpcStatus),
    ))]
pub async fn get(state: State, ctx: OrgContext, id: web::Path<String>) -> HsResult<web::Json<NodeResponse>> {
    let (ns, node) = find(&state, &ctx, &id).await?;
    respond(&state, &ns, &node).await
}

/// Delete a node (Headscale)
///
/// As `DELETE /v1/namespaces/{name}/nodes/{id}`: a connected client is told it is logged out.
#[utoipa::path(delete, path = "/api/v1/node/{node_id}", operation_id = "HeadscaleService_DeleteNode", tag = "headscale",
    params(("node_id" = Uint64Text, Path, description = "Node id", example = "3")),
    responses(
        (status = 200, description = "Deleted", body = Empty),
        (status = 400, description = "`node_id` is not a uint64", body = RpcStatus),
        (status = 404, description = "No such node in this organization", body = RpcStatus),
    ))]
pub async fn delete(state: State, ctx: OrgContext, id: web::Path<String>) -> HsResult<web::Json<Empty>> {
    let (ns, node) = find(&state, &ctx, &id).await?;
    delete_node(&state, &ctx, &ns, &node).await?;
    Ok(web::Json(Empty {}))
}

/// Expire a node (Headscale)
///
/// As `POST /v1/namespaces/{name}/nodes/{id}/expire`: its key expires now.
#[utoipa::path(post, path = "/api/v1/node/{node_id}/expire", operation_id = "HeadscaleService_ExpireNode", tag = "headscale",
    params(("node_id" = Uint64Text, Path, description = "Node id", example = "3")),
    responses(
        (status = 200, description = "The node, now expired", body = NodeResponse),
        (status = 400, description = "`node_id` is not a uint64", body = RpcStatus),
        (status = 404, description = "No such node in this organization", body = RpcStatus),
    ))]
pub async fn expire(state: State, ctx: OrgContext, id: web::Path<String>) -> HsResult<web::Json<NodeResponse>> {
    let (ns, node) = find(&state, &ctx, &id).await?;
    let node = expire_node(&state, &ctx, &ns, &node).await?;
    respond(&state, &ns, &node).await
}

/// Rename a node (Headscale)
///
/// Sets its name in the namespace (`givenName`), as `PATCH /v1/namespaces/{name}/nodes/{id}`.
#[utoipa::path(post, path = "/api/v1/node/{node_id}/rename/{new_name}", operation_id = "HeadscaleService_RenameNode", tag = "headscale",
    params(
        ("node_id" = Uint64Text, Path, description = "Node id", example = "3"),
        ("new_name" = NodeName, Path, description = "1-63 lowercase letters, digits or '-'", example = "build-box"),
    ),
    responses(
        (status = 200, description = "The renamed node", body = NodeResponse),
        (status = 400, description = "Invalid name or id", body = RpcStatus),
        (status = 404, description = "No such node in this organization", body = RpcStatus),
        (status = 409, description = "Another node of the user has this name", body = RpcStatus),
    ))]
pub async fn rename(
    state: State,
    ctx: OrgContext,
    path: web::Path<(String, String)>,
) -> HsResult<web::Json<NodeResponse>> {
    let (ns, node) = find(&state, &ctx, &path.0).await?;
    let edit = NodeEdit { name: Some(NodeName::parse(&path.1)?), tags: None };
    let node = edit_node(&state, &ctx, &ns, &node, edit).await?;
    respond(&state, &ns, &node).await
}

/// Set a node's tags (Headscale)
///
/// Replaces its tag set, as `PATCH /v1/namespaces/{name}/nodes/{id}` with `tags`: each
/// `tag:` + `[a-z0-9-]+`, declared in the policy's `tagOwners` when a policy is set.
#[utoipa::path(post, path = "/api/v1/node/{node_id}/tags", operation_id = "HeadscaleService_SetTags", tag = "headscale",
    params(("node_id" = Uint64Text, Path, description = "Node id", example = "3")),
    request_body(content = SetTagsRequest, example = json!({"tags": ["tag:ci"]})),
    responses(
        (status = 200, description = "The retagged node", body = NodeResponse),
        (status = 400, description = "Bad tag, or a tag not in tagOwners", body = RpcStatus),
        (status = 404, description = "No such node in this organization", body = RpcStatus),
    ))]
pub async fn set_tags(
    state: State,
    ctx: OrgContext,
    id: web::Path<String>,
    body: HsJson<SetTagsRequest>,
) -> HsResult<web::Json<NodeResponse>> {
    let (ns, node) = find(&state, &ctx, &id).await?;
    let edit = NodeEdit { name: None, tags: Some(body.0.tags) };
    let node = edit_node(&state, &ctx, &ns, &node, edit).await?;
    respond(&state, &ns, &node).await
}
