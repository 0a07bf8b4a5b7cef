//! Probes and metrics, outside `/v1` and without authentication: `/healthz` (the process
//! answers), `/readyz` (the database answers too), `/metrics` (Prometheus text format).

use actix_web::{web, HttpResponse};
use prometheus::{Encoder, TextEncoder};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, Problem};
use super::State;

/// A probe's answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Status {
    pub status: String,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// Liveness probe
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "The process is serving", body = Status, example = json!({"status": "ok"}))))]
pub async fn healthz() -> web::Json<Status> {
    web::Json(Status { status: "ok".into() })
}

/// Readiness probe
///
/// Ready when the database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "Ready", body = Status, example = json!({"status": "ready"})),
        (status = 503, description = "The database does not answer", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(state: State) -> ApiResult<web::Json<Status>> {
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readyz: database ping failed");
        ApiError::Unavailable("database unreachable".into())
    })?;
    Ok(web::Json(Status { status: "ready".into() }))
}

/// Prometheus metrics
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus text exposition format", body = String,
        content_type = "text/plain; version=0.0.4", example = json!("# TYPE tenscale_nodes_online gauge\ntenscale_nodes_online 3\n"))))]
pub async fn metrics(state: State) -> ApiResult<HttpResponse> {
    let encoder = TextEncoder::new();
    let mut out = Vec::new();
    encoder.encode(&state.metrics.gather(), &mut out).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok().content_type(encoder.format_type()).body(out))
}
