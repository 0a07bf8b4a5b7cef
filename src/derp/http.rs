//! The plain-HTTP side of the relay: probes clients use to measure latency and detect
//! captive portals, and an explicit 426 for `/derp` without an upgrade.

use actix_web::{http::header, web, HttpRequest, HttpResponse};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/derp", web::route().to(not_upgraded))
        .route("/derp/probe", web::route().to(probe))
        .route("/derp/latency-check", web::route().to(probe))
        .route("/generate_204", web::route().to(generate_204));
}

async fn not_upgraded() -> HttpResponse {
    HttpResponse::UpgradeRequired().content_type("text/plain").body("DERP requires connection upgrade\n")
}

async fn probe(req: HttpRequest) -> HttpResponse {
    match *req.method() {
        actix_web::http::Method::GET | actix_web::http::Method::HEAD => {
            HttpResponse::Ok().insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")).finish()
        }
        _ => HttpResponse::MethodNotAllowed().finish(),
    }
}

/// Captive-portal check: 204, echoing a well-formed challenge.
async fn generate_204(req: HttpRequest) -> HttpResponse {
    let mut response = HttpResponse::NoContent();
    response.insert_header((header::CACHE_CONTROL, "no-cache, no-store, must-revalidate, no-transform, max-age=0"));
    let challenge = req.headers().get("X-Tailscale-Challenge").and_then(|v| v.to_str().ok());
    if let Some(c) = challenge.filter(|c| valid_challenge(c)) {
        response.insert_header(("X-Tailscale-Response", format!("response {c}")));
    }
    response.finish()
}

fn valid_challenge(c: &str) -> bool {
    !c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b))
}
