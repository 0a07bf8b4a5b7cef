//! The plain-HTTP side of the control plane: `GET /key` (the server's Noise public key) and
//! explicit answers for `/ts2021` requests that did not arrive as an upgrade.

use actix_web::{web, HttpResponse};

use crate::keys::MachinePublic;
use crate::netmap::tailcfg::OverTLSPublicKeyResponse;

/// The server's Noise public key, shared by the `/key` handler.
#[derive(Clone, Copy)]
pub struct ServerKey(pub MachinePublic);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/key", web::get().to(key)).route("/ts2021", web::route().to(not_upgraded));
}

/// `GET /key?v=N`: always JSON (a bare key would be read as the legacy key and fail). Any
/// origin may read it: the browser client fetches it with `fetch()` from the app's page, and
/// the key is public.
async fn key(server_key: web::Data<ServerKey>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Access-Control-Allow-Origin", "*"))
        .json(OverTLSPublicKeyResponse { legacy_public_key: MachinePublic::ZERO, public_key: server_key.0 })
}

async fn not_upgraded() -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("text/plain")
        .body("/ts2021 needs `Upgrade: tailscale-control-protocol` and an X-Tailscale-Handshake header\n")
}
