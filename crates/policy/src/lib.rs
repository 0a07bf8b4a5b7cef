//! The ACL policy plane: HuJSON text in, per-node packet filters, SSH policies and peer sets out.
//!
//! Pure logic, no I/O. The flow is one-way:
//! `hujson` (comments and trailing commas out, positions kept) → `model` (typed, validated
//! [`Policy`]) → `compile` (one namespace's nodes → [`CompiledNamespace`]) → `wire` (the JSON the
//! Tailscale client parses). A namespace is an isolated tailnet: the compiler only ever sees one
//! namespace's nodes, so nothing it emits can name another namespace's node.
//!
//! **Boundary:** a leaf crate, like quinn-proto a deterministic piece of logic: no networking,
//! no store, no clock (times are never read here), no logging. It imports only
//! `tenscale-base` (node ids and tags); the server compiles policies in its namespace tasks
//! and checks them in `state::policy` before it stores one.
#![warn(unreachable_pub)]

pub mod compile;
pub mod hujson;
pub mod model;
pub mod wire;

#[cfg(test)]
mod tests;

use std::fmt;

pub use compile::{
    compile_namespace, diff, validate_namespace, validate_tags_for_key, CompiledNamespace, CompiledNode, PolicyNode,
};
pub use model::Policy;

/// A 1-based line and column in the policy text. Columns count bytes, as serde_json does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text`.
    pub fn of_offset(text: &str, offset: usize) -> Self {
        let before = &text.as_bytes()[..offset.min(text.len())];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        Self { line, column: before.len() - line_start + 1 }
    }
}

/// Why a policy was refused. Displays as `line L, column C: message` when the place is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub position: Option<Position>,
    pub message: String,
}

impl PolicyError {
    pub fn new(message: impl Into<String>) -> Self {
        Self { position: None, message: message.into() }
    }

    pub fn at(position: Option<Position>, message: impl Into<String>) -> Self {
        Self { position, message: message.into() }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(f, "line {}, column {}: {}", p.line, p.column, self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for PolicyError {}
