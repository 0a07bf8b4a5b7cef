//! tenscale: a multi-tenant, Tailscale-compatible coordination server.
//!
//! See ARCHITECTURE.md for the map of planes and how a request flows through them.

pub mod api;
pub mod app;
pub mod config;
pub mod control;
pub mod derp;
pub mod domain;
pub mod front;
pub mod keys;
#[cfg(feature = "testkit")]
pub mod loadgen;
pub mod netmap;
pub mod policy;
pub mod secrets;
pub mod state;
pub mod telemetry;
