//! The relay's tunables, and the deployment's mesh key.

use std::time::Duration;

use subtle::ConstantTimeEq;

/// Tunables. `Default` gives the values the Go server uses.
#[derive(Debug, Clone)]
pub struct DerpConfig {
    /// KeepAlive period; each connection adds a random `0..keep_alive_jitter`.
    pub keep_alive: Duration,
    pub keep_alive_jitter: Duration,
    /// How long a client has to send ClientInfo after ServerKey.
    pub client_info_timeout: Duration,
    /// How long the admission check may take before the client is refused.
    pub admission_timeout: Duration,
    /// Deadline for writing one frame (and for each flush).
    pub write_timeout: Duration,
    /// Packets queued per connection before new ones are dropped.
    pub send_queue_len: usize,
    /// Pongs, PeerGones and the like queued per connection before new ones are dropped.
    pub control_queue_len: usize,
    /// Packet bytes per second one client connection may send; the relay stops reading it
    /// while it is over (its socket then pushes back on the sender). 0: no limit.
    pub send_rate_bytes_per_second: u64,
    /// Sent in the Restarting frame on shutdown.
    pub restart_reconnect_in: Duration,
    pub restart_try_for: Duration,
    /// The deployment's shared mesh key; without one this relay takes part in no mesh.
    pub mesh_key: Option<MeshKey>,
}

impl Default for DerpConfig {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(60),
            keep_alive_jitter: Duration::from_secs(5),
            client_info_timeout: Duration::from_secs(10),
            admission_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(2),
            send_queue_len: 32,
            control_queue_len: 16,
            send_rate_bytes_per_second: 0,
            restart_reconnect_in: Duration::from_millis(500),
            restart_try_for: Duration::from_secs(30),
            mesh_key: None,
        }
    }
}

/// The shared secret of a deployment's relays (64 hex digits in the configuration).
#[derive(Clone)]
pub struct MeshKey([u8; 32]);

impl MeshKey {
    /// Parses 64 hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// Whether a ClientInfo's key is this one, in constant time.
    pub(crate) fn matches(&self, offered: &[u8; 32]) -> bool {
        self.0.ct_eq(offered).into()
    }

    pub(crate) fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for MeshKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeshKey(<redacted>)")
    }
}
