//! The relay's Prometheus metrics.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Why a packet was not delivered (the `reason` label of the drop counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No connection for the destination key.
    UnknownPeer,
    /// The destination is connected, but under another tenant.
    OtherNamespace,
    /// The destination's send queue was full.
    QueueFull,
}

impl DropReason {
    const ALL: [DropReason; 3] = [Self::UnknownPeer, Self::OtherNamespace, Self::QueueFull];

    pub fn label(self) -> &'static str {
        match self {
            Self::UnknownPeer => "unknown_peer",
            Self::OtherNamespace => "other_namespace",
            Self::QueueFull => "queue_full",
        }
    }
}

/// The relay's Prometheus metrics. Counter children are resolved once, not per packet.
#[derive(Clone)]
pub struct DerpMetrics {
    pub connections: IntGauge,
    pub accepted: IntCounter,
    pub handshake_failed: IntCounter,
    pub admission_refused: IntCounter,
    pub protocol_errors: IntCounter,
    pub packets_relayed: IntCounter,
    pub bytes_relayed: IntCounter,
    /// Packets sent on to another instance through the mesh.
    pub packets_forwarded: IntCounter,
    /// Packets another instance forwarded here, delivered or not.
    pub packets_from_mesh: IntCounter,
    /// Mesh links to other instances that are up.
    pub mesh_links: IntGauge,
    pub dropped: IntCounterVec,
    drop_children: [IntCounter; 3],
}

impl DerpMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let connections = IntGauge::new("tenscale_derp_connections", "Open DERP client connections (after admission)")?;
        let accepted = IntCounter::new("tenscale_derp_accepted_total", "DERP connections admitted")?;
        let handshake_failed = IntCounter::new(
            "tenscale_derp_handshake_failed_total",
            "DERP connections closed before admission (timeout, bad frame, bad box)",
        )?;
        let admission_refused =
            IntCounter::new("tenscale_derp_admission_refused_total", "DERP clients refused by the admission check")?;
        let protocol_errors = IntCounter::new(
            "tenscale_derp_protocol_errors_total",
            "Admitted DERP connections closed for a protocol error",
        )?;
        let packets_relayed = IntCounter::new("tenscale_derp_packets_relayed_total", "Packets queued to a recipient")?;
        let bytes_relayed = IntCounter::new("tenscale_derp_bytes_relayed_total", "Packet bytes queued to a recipient")?;
        let packets_forwarded = IntCounter::new(
            "tenscale_derp_packets_forwarded_total",
            "Packets sent on to another instance through the DERP mesh",
        )?;
        let packets_from_mesh = IntCounter::new(
            "tenscale_derp_packets_from_mesh_total",
            "Packets other instances forwarded here through the DERP mesh",
        )?;
        let mesh_links = IntGauge::new("tenscale_derp_mesh_links", "DERP mesh links to other instances that are up")?;
        let dropped = IntCounterVec::new(
            Opts::new("tenscale_derp_packets_dropped_total", "Packets not delivered, by reason"),
            &["reason"],
        )?;
        for collector in [
            Box::new(connections.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(accepted.clone()),
            Box::new(handshake_failed.clone()),
            Box::new(admission_refused.clone()),
            Box::new(protocol_errors.clone()),
            Box::new(packets_relayed.clone()),
            Box::new(bytes_relayed.clone()),
            Box::new(packets_forwarded.clone()),
            Box::new(packets_from_mesh.clone()),
            Box::new(mesh_links.clone()),
            Box::new(dropped.clone()),
        ] {
            registry.register(collector)?;
        }
        let drop_children = DropReason::ALL.map(|r| dropped.with_label_values(&[r.label()]));
        Ok(Self {
            connections,
            accepted,
            handshake_failed,
            admission_refused,
            protocol_errors,
            packets_relayed,
            bytes_relayed,
            packets_forwarded,
            packets_from_mesh,
            mesh_links,
            dropped,
            drop_children,
        })
    }

    pub fn dropped(&self, reason: DropReason) -> &IntCounter {
        &self.drop_children[reason as usize]
    }
}
