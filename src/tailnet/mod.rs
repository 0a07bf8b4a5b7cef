//! Tailnet state: which nodes are in which namespace, who is online, and the fan-out of
//! every change to the map sessions that must hear about it.
pub mod addresses;
