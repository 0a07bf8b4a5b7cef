//! The DERP mesh: every instance of a deployment serves one DERP region, and a packet for a
//! node connected to another instance is forwarded there, with Tailscale's own mesh protocol.
//!
//! ```text
//!  node a ──SendPacket(b)──▶ instance A ──ForwardPacket(a, b)──▶ instance B ──RecvPacket(a)──▶ node b
//!                            (link A→B: WatchConns; B answers PeerPresent(b) / PeerGone(b))
//! ```
//!
//! Each instance keeps one **link** to every other live instance (the set comes from the
//! instance leases; [`DerpServer::set_mesh_peers`](crate::server::DerpServer::set_mesh_peers)): an ordinary DERP client
//! connection with the shared mesh key in its ClientInfo, which sends `WatchConns` and then
//! hears of every client that connects to or leaves that instance. Each key it hears of
//! becomes a [`Route`] through that link, under the key's tenant as this instance's
//! [`Admission`](crate::server::Admission) names it. Packets from local clients to a routed key go out
//! on the link as `ForwardPacket`.
//!
//! On the other side, a connection whose ClientInfo carries the right mesh key is a **peer**
//! (`peer`): it may watch, forward and close, and is not a client itself.
//!
//! **Invariants:** tenancy holds across the mesh twice over: a route carries its key's tenant,
//! so a sender of another tenant is dropped here exactly like for an unknown key, and a
//! forwarded packet is delivered only after the receiving instance names the source's tenant
//! itself and finds it the destination's. Mesh frames from a connection without the mesh key
//! close it. Keys are compared in constant time.
//!
//! - `link`: this instance's side: one link per other instance, learning routes and sending
//!   packets out;
//! - `peer`: the other side: a connection that proved itself a peer, watching this instance's
//!   clients and forwarding packets to them.
//!
//! What the links learn is kept by the relay (`server::routes`), which forwards along it.

mod link;
mod peer;

pub(crate) use self::peer::serve_peer;
