//! The management REST API (placeholder until the API branch lands): health only.
use actix_web::{web, HttpResponse};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(|| async { HttpResponse::Ok().body("ok") }));
}

/// The OpenAPI document as pretty JSON.
pub fn openapi_json() -> String {
    "{}".to_string()
}
