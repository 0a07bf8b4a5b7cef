//! The NaCl boxes of the DERP handshake and the JSON they carry.
//!
//! Both ClientInfo and ServerInfo carry `nonce(24) ‖ box`, where `box` is NaCl `crypto_box`
//! (X25519 + XSalsa20-Poly1305, 16-byte tag in front of the ciphertext). The client seals with
//! its node private key to the server's public key; the server answers the other way round.
//!
//! ClientInfo JSON (what a real 1.90 client sends, see `captures/derp_clientinfo.json`):
//! `{"version":2,"CanAckPings":true}` plus optional `"meshKey":"<64 hex>"` and `"IsProber":true`.
//! ServerInfo JSON: `{"version":2}` plus optional token-bucket fields.

use crypto_box::aead::{Aead, AeadCore, OsRng};
use crypto_box::{Nonce, PublicKey, SalsaBox, SecretKey};
use serde::{Deserialize, Serialize};
use tenscale_base::keys::NodePublic;

use crate::frame::NONCE_LEN;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("sealed message shorter than a nonce and a tag")]
    TooShort,
    #[error("box did not open (wrong key or tampered)")]
    Open,
    #[error("box could not be sealed")]
    Seal,
    #[error("info JSON: {0}")]
    Json(String),
}

/// A DERP private key: the server's identity key, or a client's node private key.
#[derive(Clone)]
pub struct DerpSecret(SecretKey);

impl DerpSecret {
    pub fn generate() -> Self {
        Self(SecretKey::generate(&mut OsRng))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(SecretKey::from(bytes))
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half, in the node-key type DERP uses as addresses.
    pub fn public(&self) -> NodePublic {
        NodePublic(*self.0.public_key().as_bytes())
    }

    /// `nonce(24) ‖ crypto_box(msg)` from this key to `to`, with a fresh random nonce.
    pub fn seal(&self, to: &NodePublic, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let sealer = SalsaBox::new(&PublicKey::from(*to.as_bytes()), &self.0);
        let nonce = SalsaBox::generate_nonce(&mut OsRng);
        let boxed = sealer.encrypt(&nonce, msg).map_err(|_| CryptoError::Seal)?;
        let mut out = Vec::with_capacity(NONCE_LEN + boxed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&boxed);
        Ok(out)
    }

    /// Opens `nonce(24) ‖ box` sealed by `from` to this key.
    pub fn open(&self, from: &NodePublic, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(CryptoError::TooShort);
        }
        let (nonce, boxed) = sealed.split_at(NONCE_LEN);
        let opener = SalsaBox::new(&PublicKey::from(*from.as_bytes()), &self.0);
        opener.decrypt(Nonce::from_slice(nonce), boxed).map_err(|_| CryptoError::Open)
    }
}

impl std::fmt::Debug for DerpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DerpSecret({})", self.public())
    }
}

/// The JSON a client seals into ClientInfo. Unknown fields are ignored, missing ones default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    #[serde(rename = "meshKey", default, skip_serializing_if = "Option::is_none")]
    pub mesh_key: Option<String>,
    #[serde(rename = "version", default)]
    pub version: u32,
    #[serde(rename = "CanAckPings", default)]
    pub can_ack_pings: bool,
    #[serde(rename = "IsProber", default, skip_serializing_if = "std::ops::Not::not")]
    pub is_prober: bool,
}

impl ClientInfo {
    /// What a current Go client sends.
    pub fn v2() -> Self {
        Self { version: 2, can_ack_pings: true, ..Self::default() }
    }

    /// The mesh key as 32 bytes, if one was sent and is well-formed hex.
    pub fn mesh_key_bytes(&self) -> Option<[u8; 32]> {
        let text = self.mesh_key.as_deref()?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(out)
    }
}

/// The JSON the server seals into ServerInfo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    #[serde(rename = "version", default)]
    pub version: u32,
    #[serde(rename = "TokenBucketBytesPerSecond", default, skip_serializing_if = "is_zero")]
    pub token_bucket_bytes_per_second: u64,
    #[serde(rename = "TokenBucketBytesBurst", default, skip_serializing_if = "is_zero")]
    pub token_bucket_bytes_burst: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Opens and parses a ClientInfo box.
pub fn open_client_info(server: &DerpSecret, client: &NodePublic, sealed: &[u8]) -> Result<ClientInfo, CryptoError> {
    let json = server.open(client, sealed)?;
    serde_json::from_slice(&json).map_err(|e| CryptoError::Json(e.to_string()))
}

/// Seals a ServerInfo for `client`.
pub fn seal_server_info(server: &DerpSecret, client: &NodePublic, info: &ServerInfo) -> Result<Vec<u8>, CryptoError> {
    let json = serde_json::to_vec(info).map_err(|e| CryptoError::Json(e.to_string()))?;
    server.seal(client, &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_real_client_info_json() {
        let json = include_str!("../../../tests/fixtures/derp_clientinfo.json");
        let info: ClientInfo = serde_json::from_str(json).unwrap();
        assert_eq!(info, ClientInfo::v2());
        // And we write it back byte for byte.
        assert_eq!(serde_json::to_string(&ClientInfo::v2()).unwrap(), json.trim());
    }

    #[test]
    fn optional_fields_and_unknown_fields() {
        let mesh = "ab".repeat(32);
        let json = format!(r#"{{"version":2,"meshKey":"{mesh}","IsProber":true,"Future":1}}"#);
        let info: ClientInfo = serde_json::from_str(&json).unwrap();
        assert!(info.is_prober && !info.can_ack_pings);
        assert_eq!(info.mesh_key_bytes(), Some([0xab; 32]));
        let info: ClientInfo = serde_json::from_str(r#"{"meshKey":"zz"}"#).unwrap();
        assert_eq!(info.mesh_key_bytes(), None);
        assert_eq!(
            serde_json::to_string(&ServerInfo { version: 2, ..Default::default() }).unwrap(),
            r#"{"version":2}"#
        );
    }

    #[test]
    fn nacl_box_known_answer() {
        // The crypto_box test vector from NaCl's own tests (tests/box.c): Alice's secret key,
        // Bob's public key, nonce, 131-byte message. NaCl's output begins with the Poly1305 tag
        // f3ffc770...; seeing it at offset 24 proves the `nonce ‖ tag ‖ ciphertext` layout.
        let alice = DerpSecret::from_bytes(hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
        let bob = NodePublic(hex32("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"));
        let nonce: [u8; 24] =
            hex::decode("69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37").unwrap().try_into().unwrap();
        let msg = hex::decode(concat!(
            "be075fc53c81f2d5cf141316ebeb0c7b5228c52a4c62cbd44b66849b64244ffce5ecbaaf33bd751a1ac728d45e6c6129",
            "6cdc3c01233561f41db66cce314adb310e3be8250c46f06dceea3a7fa1348057e2f6556ad6b1318a024a838f21af1fde",
            "048977eb48f59ffd4924ca1c60902e52f0a089bc76897040e082f937763848645e0705"
        ))
        .unwrap();
        let sealer = SalsaBox::new(&PublicKey::from(*bob.as_bytes()), &alice.0);
        let boxed = sealer.encrypt(Nonce::from_slice(&nonce), &msg[..]).unwrap();
        assert_eq!(hex::encode(&boxed[..16]), "f3ffc7703f9400e52a7dfb4b3d3305d9");
        assert_eq!(boxed.len(), 16 + msg.len());
    }

    fn hex32(text: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).unwrap();
        out
    }

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let server = DerpSecret::generate();
        let client = DerpSecret::generate();
        let sealed = client.seal(&server.public(), br#"{"version":2,"CanAckPings":true}"#).unwrap();
        assert_eq!(sealed.len(), 24 + 16 + 32);
        let info = open_client_info(&server, &client.public(), &sealed).unwrap();
        assert_eq!(info, ClientInfo::v2());

        let mut tampered = sealed.clone();
        tampered[30] ^= 1;
        assert_eq!(server.open(&client.public(), &tampered), Err(CryptoError::Open));
        // A box that claims another sender does not open.
        let other = DerpSecret::generate();
        assert_eq!(server.open(&other.public(), &sealed), Err(CryptoError::Open));
        assert_eq!(server.open(&client.public(), &sealed[..39]), Err(CryptoError::TooShort));

        let reply =
            seal_server_info(&server, &client.public(), &ServerInfo { version: 2, ..Default::default() }).unwrap();
        assert_eq!(client.open(&server.public(), &reply).unwrap(), br#"{"version":2}"#);
    }
}
