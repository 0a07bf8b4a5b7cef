//! The fuzz targets' checks, one module per parser that reads what a client sends. Each
//! module's `check(data)` takes one input and panics when a property its doc states fails.
//!
//! Two drivers call the same functions: libFuzzer (`fuzz/fuzz_targets/*.rs`, nightly, with
//! AddressSanitizer; the search for new inputs, run before and after every change to a
//! parser: `fuzz/README.md`), and `tests/corpora.rs` here, which replays every committed input
//! of `fuzz/corpus/<target>/` on stable as part of `cargo test`, so a regression of any input
//! the fuzzer ever kept fails CI.
//!
//! This crate never ships: the server does not depend on it.

pub mod harness;

pub mod derp_server;
pub mod front_sniff;
pub mod h2_connection;
pub mod hpack;
pub mod noise;
pub mod policy;
pub mod stun;
pub mod wire_json;
