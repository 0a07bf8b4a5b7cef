//! `/api/v2/tailnet/{tailnet}/keys`: a tailnet's auth keys, in Tailscale's shape. They are
//! the namespace's pre-auth keys, made, listed and revoked through the same functions as
//! `/v1`'s (`api::keys`), so the rules (lifetime, tags owned by the policy) and the audit
//! records are the same.

use actix_web::{web, HttpResponse};
use utoipa::IntoParams;

use super::error::{TsErrorBody, TsResult};
use super::wire::{CreateKeyRequest, TailnetKey, TailnetKeyList};
use super::{tailnet, TsJson};
use crate::api::auth::OrgContext;
use crate::api::error::ApiError;
use crate::api::keys::{create_key, revoke_key, Expiry, KeyRequest};
use crate::api::{ApiState, State};
use crate::domain::PreauthKeyId;
use crate::state::store::{Namespace, PreauthKey};

/// A key's lifetime when the request names none: Tailscale's default, 90 days.
const DEFAULT_EXPIRY_SECS: i64 = 90 * 24 * 3600;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/tailnet/{tailnet}/keys")
            .route(web::get().to(list))
            .route(web::post().to(create))
            .default_service(super::only("GET, POST")),
    )
    .service(
        web::resource("/tailnet/{tailnet}/keys/{keyId}")
            .route(web::get().to(get))
            .route(web::delete().to(delete))
            .default_service(super::only("GET, DELETE")),
    );
}

/// `all`: Tailscale's clients ask for the caller's API keys too; a tailnet here holds only
/// auth keys, so it changes nothing.
#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub all: Option<bool>,
}

/// List a tailnet's keys (Tailscale)
///
/// The auth keys of the tailnet (a namespace) that can still register a node: not revoked,
/// not expired and, if single-use, not spent. No secrets.
#[utoipa::path(get, path = "/api/v2/tailnet/{tailnet}/keys", operation_id = "tailscaleListKeys", tag = "tailscale",
    params(("tailnet" = String, Path, description = "The namespace's name", example = "alice"), ListQuery),
    responses(
        (status = 200, description = "The tailnet's usable keys, oldest first", body = TailnetKeyList),
        (status = 400, description = "`-` instead of a tailnet's name", body = TsErrorBody),
        (status = 404, description = "No such tailnet in this organization", body = TsErrorBody),
    ))]
pub async fn list(
    state: State,
    ctx: OrgContext,
    path: web::Path<String>,
    _query: web::Query<ListQuery>,
) -> TsResult<web::Json<TailnetKeyList>> {
    let ns = tailnet(&state, &ctx, &path).await?;
    let now = state.writer.now();
    let keys = state.store.list_preauth_keys(ns.id).await?;
    let usable = keys.iter().filter(|key| key.usable_at(now).is_ok());
    Ok(web::Json(TailnetKeyList { keys: usable.map(|key| TailnetKey::shown(key, now)).collect() }))
}

/// Create an auth key (Tailscale)
///
/// A new pre-auth key of the tailnet, as `POST /v1/namespaces/{name}/keys`: `expirySeconds`
/// within the server's `max_key_expiry` (0 or absent: 90 days, or that maximum if shorter),
/// tags declared in the policy's `tagOwners`. The answer is the only place `key`, the
/// secret, appears.
#[utoipa::path(post, path = "/api/v2/tailnet/{tailnet}/keys", operation_id = "tailscaleCreateKey", tag = "tailscale",
    params(("tailnet" = String, Path, description = "The namespace's name", example = "alice")),
    request_body(content = CreateKeyRequest, example = json!({"capabilities": {"devices": {"create": {"reusable": true,
        "ephemeral": false, "preauthorized": true, "tags": ["tag:ci"]}}}, "expirySeconds": 86400, "description": "CI runners"})),
    responses(
        (status = 200, description = "Created; `key` is the secret", body = TailnetKey),
        (status = 400, description = "`-` for the tailnet, another keyType, a bad tag or lifetime", body = TsErrorBody),
        (status = 404, description = "No such tailnet in this organization", body = TsErrorBody),
    ))]
pub async fn create(
    state: State,
    ctx: OrgContext,
    path: web::Path<String>,
    body: TsJson<CreateKeyRequest>,
) -> TsResult<web::Json<TailnetKey>> {
    let ns = tailnet(&state, &ctx, &path).await?;
    let spec = body.0;
    if let Some(other) = spec.key_type.as_deref().filter(|t| *t != "auth") {
        return Err(
            ApiError::Invalid(format!("keyType {other:?} is not offered: only \"auth\" keys are made here")).into()
        );
    }
    let max = i64::try_from(state.settings.max_key_expiry.as_secs()).unwrap_or(i64::MAX);
    let lifetime = if spec.expiry_seconds == 0 { DEFAULT_EXPIRY_SECS.min(max) } else { spec.expiry_seconds };
    let create = spec.capabilities.devices.create;
    let request = KeyRequest {
        reusable: create.reusable,
        ephemeral: create.ephemeral,
        tags: create.tags,
        expiry: Expiry::In(lifetime),
        lifetime_field: "expirySeconds",
        description: spec.description,
    };
    let (key, secret) = create_key(&state, &ctx, &ns, request).await?;
    let mut shown = TailnetKey::shown(&key, state.writer.now());
    shown.key = Some(secret);
    Ok(web::Json(shown))
}

/// Get a key (Tailscale)
///
/// Any key of the tailnet, revoked, expired and spent ones too (`invalid` says so). No secret.
#[utoipa::path(get, path = "/api/v2/tailnet/{tailnet}/keys/{keyId}", operation_id = "tailscaleGetKey", tag = "tailscale",
    params(("tailnet" = String, Path, description = "The namespace's name", example = "alice"),
        ("keyId" = String, Path, description = "The key's id", example = "7")),
    responses(
        (status = 200, description = "The key", body = TailnetKey),
        (status = 400, description = "`-` instead of a tailnet's name", body = TsErrorBody),
        (status = 404, description = "No such tailnet, or no such key in it", body = TsErrorBody),
    ))]
pub async fn get(state: State, ctx: OrgContext, path: web::Path<(String, String)>) -> TsResult<web::Json<TailnetKey>> {
    let (name, id) = path.into_inner();
    let ns = tailnet(&state, &ctx, &name).await?;
    let key = key_of(&state, &ns, &id).await?;
    Ok(web::Json(TailnetKey::shown(&key, state.writer.now())))
}

/// Delete a key (Tailscale)
///
/// Revokes the key, as `DELETE /v1/namespaces/{name}/keys/{id}`: it registers nothing more,
/// and the nodes it registered stay. Answers 200 with an empty body, as Tailscale does.
#[utoipa::path(delete, path = "/api/v2/tailnet/{tailnet}/keys/{keyId}", operation_id = "tailscaleDeleteKey", tag = "tailscale",
    params(("tailnet" = String, Path, description = "The namespace's name", example = "alice"),
        ("keyId" = String, Path, description = "The key's id", example = "7")),
    responses(
        (status = 200, description = "Revoked"),
        (status = 400, description = "`-` instead of a tailnet's name", body = TsErrorBody),
        (status = 404, description = "No such tailnet, or no such key in it", body = TsErrorBody),
    ))]
pub async fn delete(state: State, ctx: OrgContext, path: web::Path<(String, String)>) -> TsResult<HttpResponse> {
    let (name, id) = path.into_inner();
    let ns = tailnet(&state, &ctx, &name).await?;
    let key = key_of(&state, &ns, &id).await?;
    revoke_key(&state, &ctx, &ns, key.id).await?;
    Ok(HttpResponse::Ok().finish())
}

/// The tailnet's key with the id `text`; any other text names no key.
async fn key_of(state: &ApiState, ns: &Namespace, text: &str) -> TsResult<PreauthKey> {
    let missing = || ApiError::NotFound("key not found".into());
    let id: PreauthKeyId = text.parse().map_err(|_| missing())?;
    let keys = state.store.list_preauth_keys(ns.id).await?;
    Ok(keys.into_iter().find(|key| key.id == id).ok_or_else(missing)?)
}
