//! The ts2021 Noise handshake (`Noise_IK_25519_ChaChaPoly_BLAKE2s`) and its record cipher.
//!
//! This module owns the handshake messages and the per-direction cipher with Tailscale's
//! **big-endian** transport nonce. Framing those records on a byte stream lives in
//! [`crate::noise_stream`].
//!
//! Initiation, client -> server (101 bytes; carried base64 in `X-Tailscale-Handshake`):
//! ```text
//! 0      2      3      5                37                       85            101
//! +------+------+------+----------------+------------------------+-------------+
//! | ver  | 0x01 | 96   | ephemeral pub  | machine pub (enc + tag)| tag (empty) |
//! | u16BE|      | u16BE| 32             | 48                     | 16          |
//! ```
//! Response, server -> client (51 bytes): `0x02 | u16 BE 48 | ephemeral pub (32) | tag (16)`.
//! Error, either way, before a session exists: `0x03 | u16 BE len | UTF-8 text`.
//!
//! The prologue is `"Tailscale Control Protocol v<version>"`, version in decimal, taken from
//! the initiation header. Handshake AEADs always use nonce 0 (each MixKey resets it).

use blake2::{Blake2s256, Digest};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use hmac::{Mac, SimpleHmac};
use rand::rngs::OsRng;
use x25519_dalek::{PublicKey, StaticSecret};

use tenscale_base::keys::MachinePublic;

const PROTOCOL_NAME: &[u8] = b"Noise_IK_25519_ChaChaPoly_BLAKE2s";
const PROLOGUE_PREFIX: &str = "Tailscale Control Protocol v";

/// Message types of the ts2021 framing (first byte after the initiation's version).
pub const MSG_INITIATION: u8 = 1;
pub const MSG_RESPONSE: u8 = 2;
pub const MSG_ERROR: u8 = 3;
pub const MSG_RECORD: u8 = 4;

/// Sizes of the two handshake messages.
pub const INITIATION_LEN: usize = 101;
pub const RESPONSE_LEN: usize = 51;
const INIT_PAYLOAD_LEN: usize = INITIATION_LEN - 5;
const RESP_PAYLOAD_LEN: usize = RESPONSE_LEN - 3;

/// Poly1305 tag size.
pub const TAG_LEN: usize = 16;

/// Everything that can go wrong in the handshake or the record layer.
#[derive(Debug, thiserror::Error)]
pub enum NoiseError {
    #[error("handshake message has {0} bytes, want {1}")]
    BadLength(usize, usize),
    #[error("unexpected message type {0}")]
    BadType(u8),
    #[error("handshake header length field {0} does not match")]
    BadLengthField(usize),
    #[error("peer sent error message: {0}")]
    PeerError(String),
    #[error("decryption failed")]
    Decrypt,
    #[error("peer key is a low-order point")]
    WeakKey,
    #[error("nonce counter exhausted")]
    NonceExhausted,
    #[error("frame of {0} bytes exceeds the 4096-byte limit")]
    FrameTooLarge(usize),
    #[error("bad base64 in handshake header")]
    BadBase64,
    #[error("early payload: {0}")]
    EarlyPayload(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl From<NoiseError> for std::io::Error {
    fn from(err: NoiseError) -> Self {
        match err {
            NoiseError::Io(io) => io,
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        }
    }
}

/// The split keys of a finished handshake, one per direction.
pub struct TransportKeys {
    pub send: CipherState,
    pub recv: CipherState,
    /// The final handshake hash (channel binding); not used on the wire.
    pub handshake_hash: [u8; 32],
}

/// One direction's transport cipher: ChaCha20-Poly1305, empty AD, nonce = 4 zero bytes +
/// u64 **big-endian** counter (standard Noise is little-endian; Tailscale is not).
pub struct CipherState {
    aead: ChaCha20Poly1305,
    counter: u64,
}

impl CipherState {
    pub fn new(key: [u8; 32]) -> Self {
        Self { aead: ChaCha20Poly1305::new(Key::from_slice(&key)), counter: 0 }
    }

    fn next_nonce(&mut self) -> Result<Nonce, NoiseError> {
        // 2^64-1 is reserved by Noise; refuse it rather than wrap.
        if self.counter == u64::MAX {
            return Err(NoiseError::NonceExhausted);
        }
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter += 1;
        Ok(*Nonce::from_slice(&nonce))
    }

    /// Encrypts `buf` in place and appends the tag.
    pub fn encrypt(&mut self, buf: &mut Vec<u8>) -> Result<(), NoiseError> {
        let nonce = self.next_nonce()?;
        let tag = self.aead.encrypt_in_place_detached(&nonce, &[], buf).map_err(|_| NoiseError::Decrypt)?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    /// Decrypts `ciphertext ‖ tag` in place; on success `buf` holds the plaintext.
    pub fn decrypt(&mut self, buf: &mut Vec<u8>) -> Result<(), NoiseError> {
        if buf.len() < TAG_LEN {
            return Err(NoiseError::Decrypt);
        }
        let nonce = self.next_nonce()?;
        let split = buf.len() - TAG_LEN;
        let tag = *Tag::from_slice(&buf[split..]);
        buf.truncate(split);
        self.aead.decrypt_in_place_detached(&nonce, &[], buf, &tag).map_err(|_| NoiseError::Decrypt)
    }

    #[cfg(test)]
    pub(crate) fn counter(&self) -> u64 {
        self.counter
    }
}

/// The symmetric half of a Noise handshake: chaining key, hash and current key.
struct SymmetricState {
    ck: [u8; 32],
    h: [u8; 32],
    k: Option<[u8; 32]>,
}

impl SymmetricState {
    /// InitializeSymmetric + the prologue + the responder's pre-message static key.
    fn new(version: u16, responder_static: &[u8; 32]) -> Self {
        // The name is 33 bytes (> HASHLEN), so Noise says hash it.
        let h: [u8; 32] = Blake2s256::digest(PROTOCOL_NAME).into();
        let mut state = Self { ck: h, h, k: None };
        state.mix_hash(format!("{PROLOGUE_PREFIX}{version}").as_bytes());
        state.mix_hash(responder_static);
        state
    }

    fn mix_hash(&mut self, data: &[u8]) {
        let mut hasher = Blake2s256::new();
        hasher.update(self.h);
        hasher.update(data);
        self.h = hasher.finalize().into();
    }

    fn mix_key(&mut self, shared: &[u8; 32]) {
        let (ck, k) = hkdf(&self.ck, shared);
        self.ck = ck;
        self.k = Some(k);
    }

    /// Mixes an X25519 result, refusing the all-zero output of a low-order point.
    fn mix_dh(&mut self, secret: &StaticSecret, public: &[u8; 32]) -> Result<(), NoiseError> {
        let shared = secret.diffie_hellman(&PublicKey::from(*public));
        if !shared.was_contributory() {
            return Err(NoiseError::WeakKey);
        }
        self.mix_key(shared.as_bytes());
        Ok(())
    }

    /// EncryptAndHash with nonce 0 (every handshake encryption follows a fresh MixKey).
    fn encrypt_and_hash(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let key = self.k.ok_or(NoiseError::Decrypt)?;
        let aead = ChaCha20Poly1305::new(Key::from_slice(&key));
        let mut buf = plaintext.to_vec();
        let tag =
            aead.encrypt_in_place_detached(&Nonce::default(), &self.h, &mut buf).map_err(|_| NoiseError::Decrypt)?;
        buf.extend_from_slice(&tag);
        self.mix_hash(&buf);
        Ok(buf)
    }

    fn decrypt_and_hash(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let key = self.k.ok_or(NoiseError::Decrypt)?;
        if ciphertext.len() < TAG_LEN {
            return Err(NoiseError::Decrypt);
        }
        let aead = ChaCha20Poly1305::new(Key::from_slice(&key));
        let split = ciphertext.len() - TAG_LEN;
        let mut buf = ciphertext[..split].to_vec();
        aead.decrypt_in_place_detached(&Nonce::default(), &self.h, &mut buf, Tag::from_slice(&ciphertext[split..]))
            .map_err(|_| NoiseError::Decrypt)?;
        self.mix_hash(ciphertext);
        Ok(buf)
    }

    /// Split: (initiator->responder key, responder->initiator key).
    fn split(&self) -> ([u8; 32], [u8; 32]) {
        hkdf(&self.ck, &[])
    }
}

/// RFC 5869 HKDF with HMAC-BLAKE2s, salt = `ck`, empty info, two 32-byte outputs.
fn hkdf(ck: &[u8; 32], ikm: &[u8]) -> ([u8; 32], [u8; 32]) {
    let prk = hmac(ck, &[ikm]);
    let out1 = hmac(&prk, &[&[1u8]]);
    let out2 = hmac(&prk, &[&out1, &[2u8]]);
    (out1, out2)
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <SimpleHmac<Blake2s256> as Mac>::new_from_slice(key).expect("hmac takes any key size");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn public_bytes(secret: &StaticSecret) -> [u8; 32] {
    PublicKey::from(secret).to_bytes()
}

fn array32(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&bytes[..32]);
    out
}

/// Builds a type-3 error message (`0x03 | u16 BE len | text`), truncating the text if needed.
pub fn error_message(text: &str) -> Vec<u8> {
    let bytes = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
    let mut msg = Vec::with_capacity(3 + bytes.len());
    msg.push(MSG_ERROR);
    msg.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    msg.extend_from_slice(bytes);
    msg
}

/// Decodes the `X-Tailscale-Handshake` header (standard base64 with padding) and checks its
/// size, so a front end can answer 400 before it writes the 101.
pub fn decode_handshake_header(value: &str) -> Result<Vec<u8>, NoiseError> {
    use base64::Engine as _;
    let init = base64::engine::general_purpose::STANDARD.decode(value.trim()).map_err(|_| NoiseError::BadBase64)?;
    if init.len() != INITIATION_LEN {
        return Err(NoiseError::BadLength(init.len(), INITIATION_LEN));
    }
    Ok(init)
}

/// Responder: checks and consumes the 101-byte initiation, returning the 51-byte response,
/// the client's machine key, the protocol version it announced, and the transport keys
/// (send = k2, recv = k1).
pub fn accept(
    server_static: &StaticSecret,
    init_msg: &[u8],
) -> Result<(Vec<u8>, MachinePublic, u16, TransportKeys), NoiseError> {
    if init_msg.len() != INITIATION_LEN {
        return Err(NoiseError::BadLength(init_msg.len(), INITIATION_LEN));
    }
    let version = u16::from_be_bytes([init_msg[0], init_msg[1]]);
    if init_msg[2] != MSG_INITIATION {
        return Err(NoiseError::BadType(init_msg[2]));
    }
    let declared = u16::from_be_bytes([init_msg[3], init_msg[4]]) as usize;
    if declared != INIT_PAYLOAD_LEN {
        return Err(NoiseError::BadLengthField(declared));
    }
    let client_ephemeral = array32(&init_msg[5..37]);

    let mut sym = SymmetricState::new(version, &public_bytes(server_static));
    sym.mix_hash(&client_ephemeral); // e
    sym.mix_dh(server_static, &client_ephemeral)?; // es
    let client_static = array32(&sym.decrypt_and_hash(&init_msg[37..85])?); // s
    sym.mix_dh(server_static, &client_static)?; // ss
    sym.decrypt_and_hash(&init_msg[85..101])?; // empty payload

    let ephemeral = StaticSecret::random_from_rng(OsRng);
    let ephemeral_pub = public_bytes(&ephemeral);
    sym.mix_hash(&ephemeral_pub); // e
    sym.mix_dh(&ephemeral, &client_ephemeral)?; // ee
    sym.mix_dh(&ephemeral, &client_static)?; // se
    let tag = sym.encrypt_and_hash(&[])?;

    let mut response = Vec::with_capacity(RESPONSE_LEN);
    response.push(MSG_RESPONSE);
    response.extend_from_slice(&(RESP_PAYLOAD_LEN as u16).to_be_bytes());
    response.extend_from_slice(&ephemeral_pub);
    response.extend_from_slice(&tag);

    let (k1, k2) = sym.split();
    let keys = TransportKeys { send: CipherState::new(k2), recv: CipherState::new(k1), handshake_hash: sym.h };
    Ok((response, MachinePublic::from_bytes(client_static), version, keys))
}

/// Initiator state between sending the initiation and reading the response.
pub struct Initiator {
    sym: SymmetricState,
    machine: StaticSecret,
    ephemeral: StaticSecret,
}

impl Initiator {
    /// Builds the 101-byte initiation for `server` (its Noise static public key) at `version`.
    pub fn start(machine: &StaticSecret, server: &MachinePublic, version: u16) -> Result<(Self, Vec<u8>), NoiseError> {
        let server_pub = *server.as_bytes();
        let mut sym = SymmetricState::new(version, &server_pub);
        let ephemeral = StaticSecret::random_from_rng(OsRng);
        let ephemeral_pub = public_bytes(&ephemeral);
        sym.mix_hash(&ephemeral_pub); // e
        sym.mix_dh(&ephemeral, &server_pub)?; // es
        let enc_static = sym.encrypt_and_hash(&public_bytes(machine))?; // s
        sym.mix_dh(machine, &server_pub)?; // ss
        let tag = sym.encrypt_and_hash(&[])?;

        let mut msg = Vec::with_capacity(INITIATION_LEN);
        msg.extend_from_slice(&version.to_be_bytes());
        msg.push(MSG_INITIATION);
        msg.extend_from_slice(&(INIT_PAYLOAD_LEN as u16).to_be_bytes());
        msg.extend_from_slice(&ephemeral_pub);
        msg.extend_from_slice(&enc_static);
        msg.extend_from_slice(&tag);
        Ok((Self { sym, machine: machine.clone(), ephemeral }, msg))
    }

    /// Consumes the server's 51-byte response (or surfaces its type-3 error message).
    pub fn finish(mut self, response: &[u8]) -> Result<TransportKeys, NoiseError> {
        if let Some(text) = parse_error_message(response) {
            return Err(NoiseError::PeerError(text));
        }
        if response.len() != RESPONSE_LEN {
            return Err(NoiseError::BadLength(response.len(), RESPONSE_LEN));
        }
        if response[0] != MSG_RESPONSE {
            return Err(NoiseError::BadType(response[0]));
        }
        let declared = u16::from_be_bytes([response[1], response[2]]) as usize;
        if declared != RESP_PAYLOAD_LEN {
            return Err(NoiseError::BadLengthField(declared));
        }
        let server_ephemeral = array32(&response[3..35]);
        self.sym.mix_hash(&server_ephemeral); // e
        self.sym.mix_dh(&self.ephemeral, &server_ephemeral)?; // ee
        self.sym.mix_dh(&self.machine, &server_ephemeral)?; // se
        self.sym.decrypt_and_hash(&response[35..51])?;
        let (k1, k2) = self.sym.split();
        Ok(TransportKeys { send: CipherState::new(k1), recv: CipherState::new(k2), handshake_hash: self.sym.h })
    }
}

/// Returns the text of a complete type-3 error message, if `msg` is one.
pub fn parse_error_message(msg: &[u8]) -> Option<String> {
    if msg.len() < 3 || msg[0] != MSG_ERROR {
        return None;
    }
    let len = u16::from_be_bytes([msg[1], msg[2]]) as usize;
    let text = msg.get(3..3 + len)?;
    Some(String::from_utf8_lossy(text).into_owned())
}

#[cfg(test)]
#[path = "noise_tests.rs"]
mod tests;
