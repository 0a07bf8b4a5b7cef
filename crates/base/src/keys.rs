//! Curve25519 public keys as Tailscale writes them: `<prefix><64 lowercase hex>`.
//!
//! Each kind of key is its own type, so a disco key can never be stored where a node key
//! belongs. Parsing is the only constructor from text; hex input is case-insensitive, output is
//! always lowercase. The all-zero key means "unknown" on the wire and is representable (clients
//! send it as `OldNodeKey`), but `is_zero` lets callers refuse it where it makes no sense.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a key string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    #[error("key must start with {expected:?}")]
    WrongPrefix { expected: &'static str },
    #[error("key must have 64 hex digits after its prefix")]
    BadHex,
}

/// Longest key prefix (`discokey:`) plus 64 hex digits.
const KEY_TEXT_MAX: usize = 16 + 64;

/// Hands `<prefix><64 hex>` to `f` from a stack buffer: every map names each peer's keys, so
/// a full map of 1,000 peers would otherwise build thousands of short-lived Strings.
fn with_key_text<R>(prefix: &str, key: &[u8; 32], f: impl FnOnce(&str) -> R) -> R {
    let mut buf = [0u8; KEY_TEXT_MAX];
    let end = prefix.len() + 64;
    buf[..prefix.len()].copy_from_slice(prefix.as_bytes());
    hex::encode_to_slice(key, &mut buf[prefix.len()..end]).expect("64 hex digits fill 64 bytes");
    f(std::str::from_utf8(&buf[..end]).expect("a prefix and hex digits are ASCII"))
}

macro_rules! public_key {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The text prefix, e.g. `nodekey:`.
            pub const PREFIX: &'static str = $prefix;
            /// The all-zero key ("unknown").
            pub const ZERO: Self = Self([0u8; 32]);

            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            pub fn is_zero(&self) -> bool {
                self.0 == [0u8; 32]
            }

            /// Parses `<prefix><64 hex>`.
            pub fn parse(text: &str) -> Result<Self, KeyParseError> {
                let hex_part = text
                    .strip_prefix($prefix)
                    .ok_or(KeyParseError::WrongPrefix { expected: $prefix })?;
                parse_hex32(hex_part).map(Self)
            }

            /// The lowercase hex digits without prefix.
            pub fn hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        // The prefix must fit the stack buffer of `with_key_text`.
        const _: () = assert!($prefix.len() <= KEY_TEXT_MAX - 64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                with_key_text($prefix, &self.0, |text| f.write_str(text))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = KeyParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                with_key_text($prefix, &self.0, |text| serializer.serialize_str(text))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                // Go clients write an empty string for some unset keys; treat it as zero.
                if text.is_empty() {
                    return Ok(Self::ZERO);
                }
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

public_key!(
    /// A machine's long-term key: the Noise static key of the ts2021 channel.
    MachinePublic,
    "mkey:"
);
public_key!(
    /// A node's WireGuard key; also its identity on DERP.
    NodePublic,
    "nodekey:"
);
public_key!(
    /// A node's per-process path-discovery key.
    DiscoPublic,
    "discokey:"
);
public_key!(
    /// The key challenge sent in the ts2021 early payload.
    ChallengePublic,
    "chalpub:"
);

fn parse_hex32(text: &str) -> Result<[u8; 32], KeyParseError> {
    if text.len() != 64 {
        return Err(KeyParseError::BadHex);
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|_| KeyParseError::BadHex)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_from_a_real_register_request() {
        let body = include_str!("../../../tests/fixtures/register_rotation.json");
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        let new: NodePublic = serde_json::from_value(value["NodeKey"].clone()).unwrap();
        let old: NodePublic = serde_json::from_value(value["OldNodeKey"].clone()).unwrap();
        assert_eq!(new.to_string(), "nodekey:932ea131d528602f10d30253404705e16bac41947b1a9676e1f969179f72577f");
        assert!(!old.is_zero());
        // Serializing writes back exactly the client's text.
        assert_eq!(serde_json::to_value(new).unwrap(), value["NodeKey"]);
        assert_eq!(serde_json::to_value(old).unwrap(), value["OldNodeKey"]);
    }

    #[test]
    fn zero_key_round_trips_as_64_zeros() {
        let text = serde_json::to_string(&NodePublic::ZERO).unwrap();
        assert_eq!(text, format!("\"nodekey:{}\"", "0".repeat(64)));
        assert_eq!(serde_json::from_str::<NodePublic>(&text).unwrap(), NodePublic::ZERO);
    }

    #[test]
    fn refuses_wrong_prefix_and_bad_hex() {
        let disco = format!("discokey:{}", "ab".repeat(32));
        assert_eq!(NodePublic::parse(&disco), Err(KeyParseError::WrongPrefix { expected: "nodekey:" }));
        assert_eq!(NodePublic::parse("nodekey:abc"), Err(KeyParseError::BadHex));
        assert_eq!(NodePublic::parse(&format!("nodekey:{}", "zz".repeat(32))), Err(KeyParseError::BadHex));
        assert!(NodePublic::parse(&format!("nodekey:{}", "AB".repeat(32))).is_ok());
    }
}
