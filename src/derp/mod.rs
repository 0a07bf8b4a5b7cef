//! The DERP plane as the server mounts it. The relay itself — frames, the tenant-aware
//! registry, sessions, the mesh, STUN — is the `tenscale-derp` crate, re-exported here under
//! the name the planes have always used; this folder adds only its HTTP face ([`http`]: the
//! plain-HTTP probes, and the 101 that answers a `/derp` upgrade).
//!
//! The connection front takes an upgraded `/derp` connection over; the app writes
//! [`http::switch_protocols`] on it and hands the stream to [`serve_client`]. Who may connect
//! is asked through [`server::Admission`] (answered from the store by
//! `netmap::derp_admission`): this plane reads no store.

pub use tenscale_derp::*;

pub mod http;
