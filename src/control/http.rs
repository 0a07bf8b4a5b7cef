//! The plain-HTTP side of the control plane: `GET /key` (the server's Noise public key),
//! explicit answers for `/ts2021` requests that did not arrive as an upgrade, and the HTTP/1.1
//! answer that hands an upgraded `/ts2021` connection over to ts2021.

use actix_web::{web, HttpResponse};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::front::RequestHead;
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

/// Answers the head of a `/ts2021` upgrade the front took over: 101 when it carries the Noise
/// initiation, whose `X-Tailscale-Handshake` value is then returned; 400 when it does not.
/// `None` means the connection is done (refused, or the answer could not be written).
pub async fn switch_protocols<W: AsyncWrite + Unpin>(head: RequestHead, io: &mut W) -> Option<String> {
    let Some(init) = head.get("X-Tailscale-Handshake").map(str::to_string) else {
        let _ = io.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
        return None;
    };
    // The connection may live for days: keep nothing of the head but the one header.
    drop(head);
    let switched = io
        .write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: tailscale-control-protocol\r\nConnection: upgrade\r\n\r\n",
        )
        .await;
    switched.is_ok().then_some(init)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)]) -> RequestHead {
        let headers = headers.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
        RequestHead { method: "POST".into(), path: "/ts2021".into(), query: None, headers }
    }

    #[tokio::test]
    async fn an_upgrade_with_the_initiation_is_switched_and_one_without_is_refused() {
        let mut out = Vec::new();
        let init = switch_protocols(head(&[("x-tailscale-handshake", "AAAA")]), &mut out).await;
        assert_eq!(init.as_deref(), Some("AAAA"));
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: tailscale-control-protocol\r\nConnection: upgrade\r\n\r\n"
        );
        let mut out = Vec::new();
        assert_eq!(switch_protocols(head(&[("Upgrade", "tailscale-control-protocol")]), &mut out).await, None);
        assert_eq!(out, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
}
