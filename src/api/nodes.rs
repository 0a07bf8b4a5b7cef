//! `/v1/namespaces/{name}/nodes`: list, read, rename/retag, expire and delete nodes.
//!
//! Nodes are created by clients registering with a pre-auth key (the control plane), never
//! here. Every change is published to the tailnet so connected peers hear of it.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::auth::OrgContext;
use super::body::ApiJson;
use super::error::{ApiError, ApiResult, Problem};
use super::{audit, line, parse_id, State};
use crate::api::ApiState;
use crate::domain::{NamespaceName, NodeName, Tags};
use crate::state::nodes::NodeEdit;
use crate::state::store::{Namespace, Node};

/// A node (a machine in a namespace).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": 3, "name": "laptop", "hostname": "Laptop.local", "namespace": "alice",
    "addresses": ["100.64.0.1", "fd7a:115c:a1e0::1"], "tags": [], "ephemeral": false, "online": true,
    "last_seen": "2099-01-01T10:05:00Z", "created_at": "2099-01-01T10:00:00Z", "os": "linux",
    "client_version": "1.80.0", "key_expiry": "2099-07-01T10:00:00Z", "expired": false}))]
pub struct NodeView {
    pub id: i64,
    /// The node's name in the namespace (first label of its MagicDNS name).
    pub name: String,
    /// The hostname the client reported.
    pub hostname: String,
    pub namespace: String,
    /// Its IPv4 and IPv6 tailnet addresses.
    pub addresses: Vec<String>,
    pub tags: Vec<String>,
    pub ephemeral: bool,
    /// Whether it holds a map session with this server now.
    pub online: bool,
    #[schema(required = true)]
    pub last_seen: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// From the client's Hostinfo (`OS`).
    #[schema(required = true)]
    pub os: Option<String>,
    /// From the client's Hostinfo (`IPNVersion`).
    #[schema(required = true)]
    pub client_version: Option<String>,
    #[schema(required = true)]
    pub key_expiry: Option<DateTime<Utc>>,
    pub expired: bool,
}

/// All nodes of a namespace, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeList {
    pub nodes: Vec<NodeView>,
}

/// Changes to a node; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "build-box", "tags": ["tag:ci"]}))]
pub struct UpdateNode {
    /// New name, unique in the namespace: 1-63 lowercase letters, digits or '-'.
    #[schema(example = "build-box")]
    pub name: Option<NodeName>,
    /// The node's complete new tag set (`[]` removes all tags).
    #[schema(example = json!(["tag:ci"]))]
    pub tags: Option<Tags>,
}

fn view(state: &ApiState, node: Node, namespace: &NamespaceName) -> NodeView {
    let reported = |field: Option<&str>| field.filter(|s| !s.is_empty()).map(String::from);
    NodeView {
        id: node.id.get(),
        online: state.tailnet.is_online(node.id),
        expired: node.expired_at(state.writer.now()),
        tags: node.tags.to_strings(),
        os: reported(node.hostinfo.os()),
        client_version: reported(node.hostinfo.ipn_version()),
        name: node.given_name.to_string(),
        hostname: node.hostname,
        namespace: namespace.to_string(),
        addresses: vec![node.ipv4.to_string(), node.ipv6.to_string()],
        ephemeral: node.ephemeral,
        last_seen: node.last_seen,
        created_at: node.created_at,
        key_expiry: node.key_expiry,
    }
}

/// The caller's namespace `name` and its node `id`; 404 unless both belong to the caller.
async fn find(state: &ApiState, ctx: &OrgContext, name: &str, id: &str) -> ApiResult<(Namespace, Node)> {
    let ns = state.store.namespace_by_name(ctx.org_id, name).await?;
    let node = state.store.node_in_namespace(ns.id, parse_id(id, "node")?).await?;
    Ok((ns, node))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/namespaces/{name}/nodes").route(web::get().to(list)).default_service(super::only("GET")),
    )
    .service(
        web::resource("/namespaces/{name}/nodes/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete))
            .default_service(super::only("GET, PATCH, DELETE")),
    )
    .service(
        web::resource("/namespaces/{name}/nodes/{id}/expire")
            .route(web::post().to(expire))
            .default_service(super::only("POST")),
    );
}

/// List nodes
#[utoipa::path(get, path = "/v1/namespaces/{name}/nodes", operation_id = "listNodes", tag = "nodes",
    params(("name" = NamespaceName, Path, description = "Namespace name", example = "alice")),
    responses(
        (status = 200, description = "The namespace's nodes", body = NodeList),
        (status = 404, description = "No such namespace in this organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(state: State, ctx: OrgContext, name: web::Path<String>) -> ApiResult<web::Json<NodeList>> {
    let ns = state.store.namespace_by_name(ctx.org_id, &name).await?;
    let nodes = state.store.nodes_in_namespace(ns.id).await?;
    Ok(web::Json(NodeList { nodes: nodes.into_iter().map(|n| view(&state, n, &ns.name)).collect() }))
}

/// Get a node
#[utoipa::path(get, path = "/v1/namespaces/{name}/nodes/{id}", operation_id = "getNode", tag = "nodes",
    params(
        ("name" = NamespaceName, Path, description = "Namespace name", example = "alice"),
        ("id" = i64, Path, description = "Node id", example = 3),
    ),
    responses(
        (status = 200, description = "The node", body = NodeView),
        (status = 404, description = "No such namespace or node in this organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(state: State, ctx: OrgContext, path: web::Path<(String, String)>) -> ApiResult<web::Json<NodeView>> {
    let (ns, node) = find(&state, &ctx, &path.0, &path.1).await?;
    Ok(web::Json(view(&state, node, &ns.name)))
}

/// Rename or retag a node
#[utoipa::path(patch, path = "/v1/namespaces/{name}/nodes/{id}", operation_id = "updateNode", tag = "nodes",
    params(
        ("name" = NamespaceName, Path, description = "Namespace name", example = "alice"),
        ("id" = i64, Path, description = "Node id", example = 3),
    ),
    request_body(content = UpdateNode, example = json!({"name": "build-box", "tags": ["tag:ci"]})),
    responses(
        (status = 200, description = "The updated node", body = NodeView),
        (status = 400, description = "Malformed body, bad name or tag", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such namespace or node in this organization", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another node has this name", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    state: State,
    ctx: OrgContext,
    path: web::Path<(String, String)>,
    body: ApiJson<UpdateNode>,
) -> ApiResult<web::Json<NodeView>> {
    let (ns, node) = find(&state, &ctx, &path.0, &path.1).await?;
    let UpdateNode { name, tags } = body.0;
    let node = edit_node(&state, &ctx, &ns, &node, NodeEdit { name, tags }).await?;
    Ok(web::Json(view(&state, node, &ns.name)))
}

/// Renames and/or retags a node through the writer (which checks the name and the tags),
/// recorded as `node.update` in the audit log.
pub(crate) async fn edit_node(
    state: &ApiState,
    ctx: &OrgContext,
    ns: &Namespace,
    node: &Node,
    edit: NodeEdit,
) -> ApiResult<Node> {
    let detail = json!({"namespace": ns.name, "name": edit.name, "tags": edit.tags});
    let describe = move |n: &Node| line("node.update", "node", n.id, detail.clone());
    Ok(state.writer.edit_node(ns, node, edit, Some(&audit(ctx, &describe))).await?)
}

/// Expire a node's key
///
/// The node must log in again (with a new pre-auth key) before it can reach its peers.
#[utoipa::path(post, path = "/v1/namespaces/{name}/nodes/{id}/expire", operation_id = "expireNode", tag = "nodes",
    params(
        ("name" = NamespaceName, Path, description = "Namespace name", example = "alice"),
        ("id" = i64, Path, description = "Node id", example = 3),
    ),
    responses(
        (status = 200, description = "The node, now expired", body = NodeView),
        (status = 404, description = "No such namespace or node in this organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn expire(
    state: State,
    ctx: OrgContext,
    path: web::Path<(String, String)>,
) -> ApiResult<web::Json<NodeView>> {
    let (ns, node) = find(&state, &ctx, &path.0, &path.1).await?;
    let node = expire_node(&state, &ctx, &ns, &node).await?;
    Ok(web::Json(view(&state, node, &ns.name)))
}

/// Expires a node's key now through the writer, recorded as `node.expire`.
pub(crate) async fn expire_node(state: &ApiState, ctx: &OrgContext, ns: &Namespace, node: &Node) -> ApiResult<Node> {
    let describe = |n: &Node| line("node.expire", "node", n.id, json!({"namespace": ns.name}));
    Ok(state.writer.expire_node(node, Some(&audit(ctx, &describe))).await?)
}

/// Delete a node
#[utoipa::path(delete, path = "/v1/namespaces/{name}/nodes/{id}", operation_id = "deleteNode", tag = "nodes",
    params(
        ("name" = NamespaceName, Path, description = "Namespace name", example = "alice"),
        ("id" = i64, Path, description = "Node id", example = 3),
    ),
    responses(
        (status = 204, description = "Deleted; a connected client is told it is logged out"),
        (status = 404, description = "No such namespace or node in this organization", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(state: State, ctx: OrgContext, path: web::Path<(String, String)>) -> ApiResult<HttpResponse> {
    let (ns, node) = find(&state, &ctx, &path.0, &path.1).await?;
    delete_node(&state, &ctx, &ns, &node).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Deletes a node, disconnects it and records it.
pub(crate) async fn delete_node(state: &ApiState, ctx: &OrgContext, ns: &Namespace, node: &Node) -> ApiResult<()> {
    let describe = |n: &Node| line("node.delete", "node", n.id, json!({"namespace": ns.name, "name": n.given_name}));
    if !state.writer.delete_node(node, Some(&audit(ctx, &describe))).await? {
        // Deleted concurrently by someone else: same answer as if it never existed.
        return Err(ApiError::NotFound("node not found".into()));
    }
    Ok(())
}
