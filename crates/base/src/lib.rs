//! The base every plane of tenscale stands on: the key types with their text forms
//! ([`keys`]) and the domain's values, valid by construction ([`domain`]: ids, names, tags,
//! addresses, Hostinfo, the node as every layer above the store sees it).
//!
//! **Boundary:** no I/O, no clock of its own (times are passed in), no knowledge of any
//! plane: it imports nothing of tenscale. Two optional features give the domain's types the
//! impls that must live beside them: `sea-orm` (ids as column values, for the store) and
//! `openapi` (names and tags as utoipa schemas, for the API document).
#![warn(unreachable_pub)]

pub mod domain;
pub mod keys;

#[cfg(feature = "sea-orm")]
mod columns;
#[cfg(feature = "openapi")]
mod schema;
