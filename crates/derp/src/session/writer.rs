//! The writing side of one client connection.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tenscale_base::keys::NodePublic;
use tokio::io::{AsyncWrite, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::conn::FrameWriter;
use crate::error::DerpError;
use crate::frame::Frame;
use crate::server::{ConnHandle, Control, DerpConfig};

/// Frames written between flushes at most, so a busy queue cannot starve the flush.
const MAX_BATCH: usize = 64;

/// What the writer task writes next.
enum Outgoing {
    Packet(NodePublic, Bytes),
    Control(Control),
    KeepAlive,
}

/// Drains the connection's queues into the socket until closed or a write fails.
pub(super) async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: FrameWriter<WriteHalf<W>>,
    mut packets: mpsc::Receiver<(NodePublic, Bytes)>,
    mut control: mpsc::Receiver<Control>,
    mut closed: watch::Receiver<bool>,
    handle: Arc<ConnHandle>,
    config: DerpConfig,
) {
    let result = async {
        // One timer, reset when it fires, rather than a new one per wake-up.
        let keep_alive = tokio::time::sleep(keep_alive_interval(&config));
        tokio::pin!(keep_alive);
        loop {
            let first = tokio::select! {
                biased;
                _ = closed.changed() => return Ok::<(), DerpError>(()),
                Some(c) = control.recv() => Outgoing::Control(c),
                Some((src, p)) = packets.recv() => Outgoing::Packet(src, p),
                _ = &mut keep_alive => {
                    keep_alive.as_mut().reset(Instant::now() + keep_alive_interval(&config));
                    Outgoing::KeepAlive
                }
            };
            let mut item = Some(first);
            let mut written = 0;
            // Write everything already queued, then flush once.
            while let Some(out) = item.take() {
                if write_outgoing(&mut writer, out).await? {
                    writer.flush().await?;
                    return Ok(());
                }
                written += 1;
                if written < MAX_BATCH {
                    item = control
                        .try_recv()
                        .map(Outgoing::Control)
                        .or_else(|_| packets.try_recv().map(|(s, p)| Outgoing::Packet(s, p)))
                        .ok();
                }
            }
            writer.flush().await?;
        }
    }
    .await;
    // Whatever ended the writer ends the reader too.
    handle.close();
    match result {
        Ok(()) => writer.shutdown().await,
        // A stalled or broken socket: do not wait on it a second time.
        Err(err) => tracing::debug!(error = %err, "derp write failed"),
    }
}

/// Writes one item; returns true if the connection should close after it (Restarting).
async fn write_outgoing<W: AsyncWrite + Unpin>(writer: &mut FrameWriter<W>, out: Outgoing) -> Result<bool, DerpError> {
    let frame = match out {
        Outgoing::Packet(src, packet) => {
            writer.write_recv_packet(&src, &packet).await?;
            return Ok(false);
        }
        Outgoing::KeepAlive => Frame::KeepAlive,
        Outgoing::Control(Control::Pong(data)) => Frame::Pong { data },
        Outgoing::Control(Control::PeerGone(key, reason)) => Frame::PeerGone { key, reason },
        Outgoing::Control(Control::Restarting { reconnect_in_ms, try_for_ms }) => {
            writer.write_frame(&Frame::Restarting { reconnect_in_ms, try_for_ms }).await?;
            return Ok(true);
        }
    };
    writer.write_frame(&frame).await?;
    Ok(false)
}

fn keep_alive_interval(config: &DerpConfig) -> Duration {
    let jitter_ms = u64::try_from(config.keep_alive_jitter.as_millis()).unwrap_or(0);
    let jitter = if jitter_ms == 0 { 0 } else { rand::random::<u64>() % jitter_ms };
    config.keep_alive + Duration::from_millis(jitter)
}
