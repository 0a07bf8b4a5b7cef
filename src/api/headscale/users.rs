//! `/api/v1/user`: Headscale users, which are the organization's namespaces.

use actix_web::web;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{HsError, HsResult, RpcStatus};
use super::wire::{CreateUserRequest, Empty, ListUsersResponse, User, UserResponse};
use super::{parse_id, user_by_id, HsJson};
use crate::api::auth::OrgContext;
use crate::api::namespaces::{create_namespace, delete_namespace};
use crate::api::schema::Uint64Text;
use crate::api::State;
use crate::domain::NamespaceName;

/// Filters of `ListUsersRequest`; `email` is accepted and matches nothing but the unfiltered list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserFilter {
    /// Only the user with this name.
    pub name: Option<String>,
    /// Only the user with this id.
    #[param(value_type = Option<Uint64Text>)]
    pub id: Option<String>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/user")
            .route(web::get().to(list))
            .route(web::post().to(create))
            .default_service(super::only("GET, POST")),
    )
    .service(web::resource("/user/{id}").route(web::delete().to(delete)).default_service(super::only("DELETE")))
    .service(
        web::resource("/user/{old_id}/rename/{new_name}")
            .route(web::post().to(rename))
            .default_service(super::only("POST")),
    );
}

/// List users (Headscale)
///
/// The organization's namespaces as Headscale users, by id.
#[utoipa::path(get, path = "/api/v1/user", operation_id = "HeadscaleService_ListUsers", tag = "headscale", params(UserFilter),
    responses(
        (status = 200, description = "The users", body = ListUsersResponse),
        (status = 400, description = "`id` is not a uint64", body = RpcStatus),
    ))]
pub async fn list(
    state: State,
    ctx: OrgContext,
    filter: web::Query<UserFilter>,
) -> HsResult<web::Json<ListUsersResponse>> {
    let id = filter.id.as_deref().filter(|s| !s.is_empty()).map(|s| parse_id(s, "id")).transpose()?;
    let name = filter.name.as_deref().filter(|s| !s.is_empty());
    let users = state
        .store
        .namespaces_of_org(ctx.org_id)
        .await?
        .iter()
        .filter(|ns| id.is_none_or(|id| id == Some(ns.id)) && name.is_none_or(|name| ns.name.as_str() == name))
        .map(User::from)
        .collect();
    Ok(web::Json(ListUsersResponse { users }))
}

/// Create a user (Headscale)
///
/// Creates a namespace, exactly as `POST /v1/namespaces`.
#[utoipa::path(post, path = "/api/v1/user", operation_id = "HeadscaleService_CreateUser", tag = "headscale",
    request_body(content = CreateUserRequest, example = json!({"name": "alice"})),
    responses(
        (status = 200, description = "Created", body = UserResponse),
        (status = 400, description = "Invalid name", body = RpcStatus),
        (status = 409, description = "A user with this name exists", body = RpcStatus),
    ))]
pub async fn create(
    state: State,
    ctx: OrgContext,
    body: HsJson<CreateUserRequest>,
) -> HsResult<web::Json<UserResponse>> {
    let name = NamespaceName::parse(&body.0.name)?;
    let ns = create_namespace(&state, &ctx, &name).await?;
    Ok(web::Json(UserResponse { user: User::from(&ns) }))
}

/// Delete a user (Headscale)
///
/// Deletes the namespace with its nodes, keys and policy, as `DELETE /v1/namespaces/{name}`.
#[utoipa::path(delete, path = "/api/v1/user/{id}", operation_id = "HeadscaleService_DeleteUser", tag = "headscale",
    params(("id" = Uint64Text, Path, description = "User (namespace) id", example = "1")),
    responses(
        (status = 200, description = "Deleted", body = Empty),
        (status = 400, description = "`id` is not a uint64", body = RpcStatus),
        (status = 404, description = "No such user in this organization", body = RpcStatus),
    ))]
pub async fn delete(state: State, ctx: OrgContext, id: web::Path<String>) -> HsResult<web::Json<Empty>> {
    let ns = user_by_id(&state, &ctx, parse_id(&id, "id")?).await?;
    delete_namespace(&state, &ctx, &ns).await?;
    Ok(web::Json(Empty {}))
}

/// Rename a user (Headscale; not supported)
///
/// Namespace names are fixed in tenscale (they are part of node logins and policy
/// documents), so this answers 501 for an existing user and 404 otherwise.
#[utoipa::path(post, path = "/api/v1/user/{old_id}/rename/{new_name}", operation_id = "HeadscaleService_RenameUser", tag = "headscale",
    params(
        ("old_id" = Uint64Text, Path, description = "User (namespace) id", example = "1"),
        ("new_name" = String, Path, description = "The new name", example = "bob"),
    ),
    responses(
        (status = 200, description = "Headscale's success shape; tenscale never answers it", body = UserResponse),
        (status = 501, description = "Namespaces cannot be renamed", body = RpcStatus,
            example = json!({"code": 12, "message": "users (tenscale namespaces) cannot be renamed", "details": []})),
        (status = 404, description = "No such user in this organization", body = RpcStatus),
    ))]
pub async fn rename(
    state: State,
    ctx: OrgContext,
    path: web::Path<(String, String)>,
) -> HsResult<web::Json<UserResponse>> {
    user_by_id(&state, &ctx, parse_id(&path.0, "old_id")?).await?;
    Err(HsError::Unimplemented("users (tenscale namespaces) cannot be renamed".into()))
}
