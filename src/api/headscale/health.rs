//! `/api/v1/health`: Headscale's health check, behind the API key like the rest of the surface.

use actix_web::web;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{HsResult, RpcStatus};
use crate::api::error::ApiError;
use crate::api::State;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/health").route(web::get().to(get)).default_service(super::only("GET")));
}

/// `HealthResponse`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"databaseConnectivity": true}))]
pub struct HealthResponse {
    /// True: the database answered a ping (without it the answer is a 503).
    pub database_connectivity: bool,
}

/// Health check (Headscale)
///
/// The database's connectivity, as Headscale reports it; a database that does not answer is a
/// 503 (gRPC `UNAVAILABLE`), which clients retry.
#[utoipa::path(get, path = "/api/v1/health", operation_id = "HeadscaleService_Health", tag = "headscale",
    responses(
        (status = 200, description = "The database answers", body = HealthResponse),
        (status = 503, description = "The database does not answer", body = RpcStatus),
    ))]
pub async fn get(state: State) -> HsResult<web::Json<HealthResponse>> {
    state.store.ping().await.map_err(|err| {
        tracing::warn!(%err, "health: database ping failed");
        ApiError::Unavailable("database unreachable".into())
    })?;
    Ok(web::Json(HealthResponse { database_connectivity: true }))
}
