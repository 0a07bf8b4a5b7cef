//! The plain-HTTP side of the relay: probes clients use to measure latency and detect
//! captive portals, an explicit 426 for `/derp` without an upgrade, and the HTTP/1.1 101 that
//! hands an upgraded `/derp` connection over to [`super::serve_client`].

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::keys::NodePublic;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/derp", web::route().to(not_upgraded))
        .route("/derp/probe", web::route().to(probe))
        .route("/derp/latency-check", web::route().to(probe))
        .route("/generate_204", web::route().to(generate_204));
}

/// Writes the 101 of a `/derp` upgrade the front took over, naming the protocol version we
/// speak and the relay's public key, as the Go server does.
pub async fn switch_protocols<W: AsyncWrite + Unpin>(io: &mut W, server_key: &NodePublic) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\nDerp-Version: 2\r\nDerp-Public-Key: {}\r\n\r\n",
        server_key.hex()
    );
    io.write_all(response.as_bytes()).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_upgrade_names_the_version_and_the_relay_key() {
        let mut out = Vec::new();
        switch_protocols(&mut out, &NodePublic::from_bytes([0xab; 32])).await.unwrap();
        let expected = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\nDerp-Version: 2\r\nDerp-Public-Key: {}\r\n\r\n",
            "ab".repeat(32)
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}
