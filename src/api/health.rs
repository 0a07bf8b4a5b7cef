//! Probes and metrics, outside `/v1` and without API keys: `/healthz` (the process
//! answers), `/readyz` (the database answers too), `/metrics` (Prometheus text format; open,
//! or behind a bearer token of its own when `TENSCALE_METRICS_TOKEN` is set).

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use prometheus::{Encoder, TextEncoder};
use serde::Serialize;
use subtle::ConstantTimeEq;
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
///
/// Open unless the server sets `TENSCALE_METRICS_TOKEN`; then only with
/// `Authorization: Bearer <that token>` (not an API key).
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String,
            content_type = "text/plain; version=0.0.4", example = json!("# TYPE tenscale_nodes_online gauge\ntenscale_nodes_online 3\n")),
        (status = 401, description = "The server requires its metrics token, and the request did not carry it", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn metrics(req: HttpRequest, state: State) -> ApiResult<HttpResponse> {
    if let Some(token) = &state.settings.metrics_token {
        if !bearer_matches(&req, token.expose()) {
            return Err(ApiError::Unauthorized("this server's metrics need its metrics token as a bearer token"));
        }
    }
    let encoder = TextEncoder::new();
    let mut out = Vec::new();
    encoder.encode(&state.metrics.gather(), &mut out).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok().content_type(encoder.format_type()).body(out))
}

/// Whether the request carries `Authorization: Bearer <token>`, compared in constant time.
fn bearer_matches(req: &HttpRequest, token: &str) -> bool {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
}
