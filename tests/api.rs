//! Integration tests of the REST API: the real server on a random port, every scenario once
//! against SQLite and once against PostgreSQL (a fresh database each).

mod support;

#[path = "api/api_keys.rs"]
mod api_keys;
#[path = "api/browser_keys.rs"]
mod browser_keys;
#[path = "api/docs.rs"]
mod docs;
#[path = "api/examples.rs"]
mod examples;
#[path = "api/headscale.rs"]
mod headscale;
#[path = "api/input.rs"]
mod input;
#[path = "api/isolation.rs"]
mod isolation;
#[path = "api/keys.rs"]
mod keys;
#[path = "api/limits.rs"]
mod limits;
#[path = "api/namespaces.rs"]
mod namespaces;
#[path = "api/nodes.rs"]
mod nodes;
#[path = "api/outbox.rs"]
mod outbox;
#[path = "api/policy.rs"]
mod policy;
#[path = "api/tailnet.rs"]
mod tailnet;
#[path = "api/tailscale.rs"]
mod tailscale;
