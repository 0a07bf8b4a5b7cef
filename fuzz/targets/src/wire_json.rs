//! The JSON bodies the control handlers decode (`parse_json` in `control/routes.rs`):
//! `RegisterRequest` and `MapRequest` with the `Hostinfo` inside them, and the DERP
//! `ClientInfo` a client seals. The first byte picks the type (mod 4), the rest is the body.
//! Whatever decodes must survive a round trip: encoding it cannot fail, decoding what we
//! encoded gives the same value back, and encoding that again gives the same bytes (Hostinfo
//! is echoed to every peer, so it must not drift from one hop to the next). The accessors the
//! server reads from a decoded body must not panic either.

use std::fmt::Debug;
use std::net::SocketAddr;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::harness::split_selector;
use tenscale::derp::crypto::ClientInfo;
use tenscale::netmap::tailcfg::{Hostinfo, MapRequest, RegisterRequest};

/// One input: what the module doc says must hold for it.
pub fn check(data: &[u8]) {
    let (selector, body) = split_selector(data);
    match selector % 4 {
        0 => {
            if let Some(hostinfo) = round_trip::<RegisterRequest>(body).and_then(|r| r.hostinfo) {
                read_hostinfo(&hostinfo);
            }
        }
        1 => {
            if let Some(request) = round_trip::<MapRequest>(body) {
                if let Some(hostinfo) = &request.hostinfo {
                    read_hostinfo(hostinfo);
                }
                // What `client_report` does with the endpoints.
                for text in request.endpoints.iter().flatten() {
                    let _ = text.parse::<SocketAddr>();
                }
            }
        }
        2 => {
            if let Some(hostinfo) = round_trip::<Hostinfo>(body) {
                read_hostinfo(&hostinfo);
                let mut next = Hostinfo::default();
                next.keep_net_info_from(&hostinfo);
            }
        }
        _ => {
            if let Some(info) = round_trip::<ClientInfo>(body) {
                let _ = info.mesh_key_bytes();
            }
        }
    }
}

/// Decodes `body` as `T`; if it decodes, checks the round trip and returns the value.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(body: &[u8]) -> Option<T> {
    let first: T = serde_json::from_slice(body).ok()?;
    let encoded = serde_json::to_vec(&first).expect("a decoded value encodes");
    let second: T = serde_json::from_slice(&encoded)
        .unwrap_or_else(|err| panic!("what we encoded does not decode: {err}\n{}", String::from_utf8_lossy(&encoded)));
    assert_eq!(first, second, "decode(encode(x)) != x for {}", String::from_utf8_lossy(&encoded));
    let again = serde_json::to_vec(&second).expect("a decoded value encodes");
    assert_eq!(encoded, again, "encoding is not stable");
    Some(first)
}

/// Everything the server reads from a Hostinfo.
fn read_hostinfo(hostinfo: &Hostinfo) {
    let _ = (hostinfo.hostname(), hostinfo.os(), hostinfo.ipn_version(), hostinfo.backend_log_id());
    let _ = (hostinfo.request_tags(), hostinfo.routable_ips(), hostinfo.services());
    let _ = (hostinfo.net_info(), hostinfo.preferred_derp());
}
