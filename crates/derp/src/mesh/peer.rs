//! The other instances' links, as this instance serves them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tenscale_base::keys::NodePublic;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::conn::{FrameReader, FrameWriter};
use crate::error::DerpError;
use crate::frame::{peer_present_flags, Frame, PeerGoneReason, PeerPresent};
use crate::server::{DerpServer, Note, TenantId, WatchNote};

/// Mesh peers get a longer write deadline than clients (as in the Go server).
const PEER_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a peer connection that has nothing to say sends KeepAlive.
const PEER_KEEP_ALIVE: Duration = Duration::from_secs(60);
/// Source tenants a peer connection remembers before starting over.
const TENANT_CACHE: usize = 65_536;

/// Serves a connection from another instance's link, once its mesh key matched: it may
/// watch this instance's clients, forward packets to them and close them.
pub(crate) async fn serve_peer<R, W>(server: Arc<DerpServer>, mut reader: FrameReader<R>, writer: FrameWriter<W>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (notes_tx, notes_rx) = mpsc::unbounded_channel();
    let watcher = rand::random::<u64>();
    let writer_task = tokio::spawn(write_notes(writer.with_write_timeout(PEER_WRITE_TIMEOUT), notes_rx));
    let mut tenants: HashMap<NodePublic, TenantId> = HashMap::new();
    let result: Result<(), DerpError> = async {
        while let Some(frame) = reader.read_frame().await? {
            match frame {
                Frame::WatchConns => server.add_watcher(watcher, notes_tx.clone()),
                Frame::ForwardPacket { src, dst, packet } => {
                    if let Some(tenant) = source_tenant(&server, &mut tenants, &src).await {
                        server.deliver_forwarded(&src, tenant, &dst, packet);
                    }
                }
                Frame::ClosePeer { key } => {
                    server.close_node(&key);
                }
                Frame::Ping { data } => {
                    let _ = notes_tx.send(Note::Pong(data));
                }
                _ => {}
            }
        }
        Ok(())
    }
    .await;
    server.remove_watcher(watcher);
    drop(notes_tx);
    writer_task.abort();
    if let Err(err) = result {
        tracing::debug!(%err, "DERP mesh peer connection ended");
    }
}

/// The tenant of a forwarded packet's source, as this instance's admission names it.
async fn source_tenant(
    server: &DerpServer,
    known: &mut HashMap<NodePublic, TenantId>,
    src: &NodePublic,
) -> Option<TenantId> {
    if let Some(tenant) = known.get(src) {
        return Some(*tenant);
    }
    let tenant = server.tenant_of(src).await?;
    if known.len() >= TENANT_CACHE {
        known.clear();
    }
    known.insert(*src, tenant);
    Some(tenant)
}

/// Writes what the peer is told, flushing once per batch, with a KeepAlive in each silence.
async fn write_notes<W: AsyncWrite + Unpin>(mut writer: FrameWriter<W>, mut notes: mpsc::UnboundedReceiver<Note>) {
    let result: Result<(), DerpError> = async {
        loop {
            let first = match timeout(PEER_KEEP_ALIVE, notes.recv()).await {
                Ok(Some(note)) => note,
                Ok(None) => return Ok(()),
                Err(_) => {
                    writer.write_frame(&Frame::KeepAlive).await?;
                    writer.flush().await?;
                    continue;
                }
            };
            let mut next = Some(first);
            while let Some(note) = next.take() {
                writer.write_frame(&note_frame(note)).await?;
                next = notes.try_recv().ok();
            }
            writer.flush().await?;
        }
    }
    .await;
    if let Err(err) = result {
        tracing::debug!(%err, "writing to a DERP mesh peer failed");
    }
}

/// The frame for one note.
fn note_frame(note: Note) -> Frame {
    match note {
        Note::Watch(WatchNote::Present(key, addr)) => {
            let ip = match addr.ip() {
                std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                std::net::IpAddr::V6(v6) => v6,
            };
            Frame::PeerPresent(PeerPresent { key, ip, port: addr.port(), flags: peer_present_flags::REGULAR })
        }
        Note::Watch(WatchNote::Gone(key)) => Frame::PeerGone { key, reason: PeerGoneReason::Disconnected },
        Note::Pong(data) => Frame::Pong { data },
    }
}
