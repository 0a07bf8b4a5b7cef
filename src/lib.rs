//! tenscale: a multi-tenant, Tailscale-compatible coordination server.
//!
//! See ARCHITECTURE.md for the map of planes and how a request flows through them.

pub mod api;
pub mod app;
pub mod config;
pub mod control;
pub mod derp;
#[cfg(feature = "testkit")]
pub mod loadgen;
pub mod netmap;
pub mod secrets;
pub mod state;
pub mod telemetry;

// The leaf crates, under the names the planes have always used for them.
pub use tenscale_base::{domain, keys};
pub use tenscale_front as front;
pub use tenscale_policy as policy;
