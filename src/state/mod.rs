//! State: the one writer. Every change to who is in which tailnet goes through here, and
//! each change's event is recorded with it.
//!
//! - [`store`]: sea-orm entities and every query, the same on SQLite and PostgreSQL;
//! - [`events`]: the [`events::Event`]s that describe changes, and the bus between instances.

pub mod events;
pub mod store;
