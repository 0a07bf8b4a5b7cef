//! The JSON of Tailscale's API v2 as its Go client (`tailscale.com/client/tailscale/v2`)
//! reads and writes it: lowerCamelCase names, RFC 3339 times, ids as text.
//!
//! The mapping: a tailnet is a namespace of the caller's organization, and its keys are the
//! namespace's pre-auth keys (`keyType` `auth`). tenscale authorizes every node that
//! registers, so `preauthorized` is accepted and always reads `true`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::Tags;
use crate::state::store::PreauthKey;

/// What nodes registered with a key become (`capabilities.devices.create`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct DeviceCreate {
    /// May register more than one node.
    pub reusable: bool,
    /// Nodes registered with it are removed soon after they go offline.
    pub ephemeral: bool,
    /// Tags given to nodes registered with it; declared in the policy's `tagOwners`.
    pub tags: Tags,
    /// Accepted for Tailscale's clients; every node tenscale registers is authorized, so it
    /// always reads `true`.
    pub preauthorized: bool,
}

/// `capabilities.devices`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct DeviceCapabilities {
    pub create: DeviceCreate,
}

/// A key's `capabilities`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct KeyCapabilities {
    pub devices: DeviceCapabilities,
}

/// `CreateKeyRequest`. Tailscale's OAuth clients and federated identities (`keyType`
/// `client`, `federated`) are not offered yet: any other `keyType` than `auth` is refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"capabilities": {"devices": {"create": {"reusable": true, "ephemeral": false,
    "preauthorized": true, "tags": ["tag:ci"]}}}, "expirySeconds": 86400, "description": "CI runners"}))]
pub struct CreateKeyRequest {
    /// `auth` (the default) is the only type tenscale makes here.
    #[serde(default)]
    pub key_type: Option<String>,
    #[serde(default)]
    pub capabilities: KeyCapabilities,
    /// Lifetime in seconds; 0 or absent: 90 days, or the server's `max_key_expiry` if that is
    /// shorter.
    #[serde(default)]
    pub expiry_seconds: i64,
    /// Free text, up to 256 characters.
    #[serde(default)]
    pub description: String,
}

/// A key (Tailscale's `Key`). `key` is the secret, present only in the answer to its creation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"id": "7", "keyType": "auth", "description": "CI runners",
    "created": "2099-01-01T10:00:00Z", "expires": "2099-01-02T10:00:00Z", "invalid": false,
    "capabilities": {"devices": {"create": {"reusable": true, "ephemeral": false, "preauthorized": true,
    "tags": ["tag:ci"]}}}}))]
pub struct TailnetKey {
    pub id: String,
    pub key_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub description: String,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    /// When it was revoked (deleted); absent while it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked: Option<DateTime<Utc>>,
    /// Whether it can no longer register a node: revoked, expired or, if single-use, spent.
    pub invalid: bool,
    pub capabilities: KeyCapabilities,
}

impl TailnetKey {
    /// The key as shown `at`.
    pub fn shown(key: &PreauthKey, at: DateTime<Utc>) -> Self {
        let create = DeviceCreate {
            reusable: key.reusable,
            ephemeral: key.ephemeral,
            tags: key.tags.clone(),
            preauthorized: true,
        };
        Self {
            id: key.id.to_string(),
            key_type: "auth",
            key: None,
            description: key.description.clone(),
            created: key.created_at,
            expires: key.expires_at,
            revoked: key.revoked_at,
            invalid: key.usable_at(at).is_err(),
            capabilities: KeyCapabilities { devices: DeviceCapabilities { create } },
        }
    }
}

/// `{"keys": […]}`: the tailnet's keys that can still register a node.
#[derive(Debug, Serialize, ToSchema)]
pub struct TailnetKeyList {
    pub keys: Vec<TailnetKey>,
}
