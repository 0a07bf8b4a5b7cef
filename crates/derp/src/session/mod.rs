//! One client connection of the relay, from the 101 to its last PeerGone: the handshake
//! (ServerKey, ClientInfo, admission or the mesh key, ServerInfo), then two tasks. The
//! caller's task reads frames and forwards them ([`serve_client`]); a writer task drains the
//! connection's bounded queues into one batch buffer and writes it out when they are empty
//! (`writer`). Either one ending closes both. A connection that proves itself a mesh peer is
//! handed to `crate::mesh` after the handshake.

mod limits;
mod writer;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tenscale_base::keys::NodePublic;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

use self::limits::{ByteRate, TokenBucket};
use self::writer::write_loop;
use crate::conn::{FrameReader, FrameWriter};
use crate::crypto::{self, ServerInfo};
use crate::error::DerpError;
use crate::frame::{self, Frame, FrameType, PeerGoneReason, PROTOCOL_VERSION};
use crate::mesh::serve_peer;
use crate::server::{ConnHandle, Control, DerpServer, DropReason, Forwarded, TenantId};

/// Frame types a server reads; everything else from a client is skipped unread.
fn server_wants(frame_type: FrameType) -> bool {
    matches!(
        frame_type,
        FrameType::ClientInfo
            | FrameType::SendPacket
            | FrameType::NotePreferred
            | FrameType::Ping
            | FrameType::Pong
            | FrameType::ForwardPacket
            | FrameType::WatchConns
            | FrameType::ClosePeer
    )
}

/// Frames a reader handles before letting other tasks run.
const YIELD_EVERY: u32 = 32;

/// Runs one DERP connection whose HTTP 101 has already been written. Returns when the
/// connection is closed, for whatever reason; errors are logged and counted, never panicked on.
pub async fn serve_client<T>(server: Arc<DerpServer>, io: T, peer: SocketAddr)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (read_half, write_half) = tokio::io::split(io);
    let mut reader = FrameReader::new(read_half).wanting(server_wants);
    let mut writer = FrameWriter::new(write_half, server.config().write_timeout);

    let (key, tenant) = match handshake(&server, &mut reader, &mut writer).await {
        Ok(Admitted::Client(key, tenant)) => (key, tenant),
        Ok(Admitted::MeshPeer) => {
            tracing::debug!(%peer, "derp mesh peer connected");
            return serve_peer(server.clone(), reader, writer).await;
        }
        Err(err) => {
            tracing::debug!(%peer, error = %err, "derp handshake failed");
            if !matches!(err, DerpError::Refused) {
                server.metrics().handshake_failed.inc();
            }
            return;
        }
    };

    let id = server.next_connection_id();
    let (packets_tx, packets_rx) = mpsc::channel(server.config().send_queue_len.max(1));
    let (control_tx, control_rx) = mpsc::channel(server.config().control_queue_len.max(1));
    let (closer, closed) = watch::channel(false);
    let handle = Arc::new(ConnHandle { id, tenant, addr: peer, packets: packets_tx, control: control_tx, closer });
    server.register(key, handle.clone());
    tracing::debug!(%peer, %key, tenant = tenant.0, "derp client connected");

    let write_task = tokio::spawn(write_loop(
        writer,
        packets_rx,
        control_rx,
        closed.clone(),
        handle.clone(),
        server.config().clone(),
    ));
    let mut conn = ClientConn {
        server: &server,
        key,
        tenant,
        handle: &handle,
        sent_to: HashSet::new(),
        last_dst: None,
        not_here: TokenBucket::new(),
        send_rate: ByteRate::new(server.config().send_rate_bytes_per_second),
    };
    let result = conn.read_loop(&mut reader, closed).await;
    if let Err(err) = &result {
        server.metrics().protocol_errors.inc();
        tracing::debug!(%peer, %key, error = %err, "derp client closed");
    }
    let sent_to = std::mem::take(&mut conn.sent_to);

    handle.close();
    let _ = write_task.await;
    if let Some(peers) = server.deregister(&key, id, sent_to) {
        server.send_peer_gone(&key, tenant, peers.iter());
    }
}

/// Who a connection turned out to be.
enum Admitted {
    /// A node, admitted under its tenant.
    Client(NodePublic, TenantId),
    /// Another instance of the deployment (its ClientInfo carried the mesh key).
    MeshPeer,
}

/// ServerKey → ClientInfo → admission (or the mesh key) → ServerInfo.
async fn handshake<R, W>(
    server: &DerpServer,
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
) -> Result<Admitted, DerpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    writer.write_frame(&Frame::ServerKey { key: server.public_key() }).await?;
    writer.flush().await?;

    let first = timeout(server.config().client_info_timeout, reader.read_frame())
        .await
        .map_err(|_| DerpError::Timeout("waiting for ClientInfo"))??;
    let Some(Frame::ClientInfo { key, sealed }) = first else {
        return Err(DerpError::Protocol("first frame is not ClientInfo"));
    };
    let info = crypto::open_client_info(server.secret(), &key, &sealed)?;
    tracing::trace!(%key, version = info.version, prober = info.is_prober, "derp client info");

    // A wrong mesh key grants nothing: the connection is then an ordinary client, and its key
    // (a relay's, not a node's) fails admission.
    let admitted = if server.mesh().admits_peer(&info) {
        Admitted::MeshPeer
    } else {
        match server.tenant_of(&key).await {
            Some(tenant) => Admitted::Client(key, tenant),
            None => {
                server.metrics().admission_refused.inc();
                return Err(DerpError::Refused);
            }
        }
    };
    if server.is_shutting_down() {
        return Err(DerpError::Closed);
    }
    let reply = crypto::seal_server_info(
        server.secret(),
        &key,
        &ServerInfo { version: PROTOCOL_VERSION, ..Default::default() },
    )?;
    writer.write_frame(&Frame::ServerInfo { sealed: reply.into() }).await?;
    writer.flush().await?;
    Ok(admitted)
}

/// The reading side of one admitted connection.
struct ClientConn<'a> {
    server: &'a DerpServer,
    key: NodePublic,
    tenant: TenantId,
    handle: &'a ConnHandle,
    /// Keys this connection delivered packets to (they get PeerGone when it leaves).
    sent_to: HashSet<NodePublic>,
    /// Avoids a set insert per packet for the common "same destination again" case.
    last_dst: Option<NodePublic>,
    /// Rate limit for PeerGone(NotHere) answers: 1/s, burst 3.
    not_here: TokenBucket,
    /// The connection's packet-byte budget (`send_rate_bytes_per_second`).
    send_rate: ByteRate,
}

impl ClientConn<'_> {
    async fn read_loop<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut FrameReader<R>,
        mut closed: watch::Receiver<bool>,
    ) -> Result<(), DerpError> {
        let mut since_yield = 0u32;
        loop {
            let frame = tokio::select! {
                frame = reader.read_frame() => frame?,
                _ = closed.changed() => return Ok(()),
            };
            // A flooding sender always has frames ready and would otherwise keep its worker
            // for a whole coop budget (~128 reads), starving the writers that drain the queues
            // it fills. Yielding every queue's worth of frames keeps relaying fair under load.
            since_yield += 1;
            if since_yield >= YIELD_EVERY {
                since_yield = 0;
                tokio::task::yield_now().await;
            }
            match frame {
                None => return Ok(()),
                Some(frame) => {
                    let bytes = match &frame {
                        Frame::SendPacket { packet, .. } => packet.len() as u64,
                        _ => 0,
                    };
                    self.handle_frame(frame)?;
                    // Over budget: read nothing more until it refills; the peer's writes back up.
                    if let Some(wait) = self.send_rate.take(bytes) {
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = closed.changed() => return Ok(()),
                        }
                    }
                }
            }
        }
    }

    fn handle_frame(&mut self, frame: Frame) -> Result<(), DerpError> {
        match frame {
            Frame::SendPacket { dst, packet } => self.send_packet(dst, packet),
            // Recorded for nothing yet: one home per key is not tracked across regions.
            Frame::NotePreferred { .. } => {}
            Frame::Ping { data } => {
                // A full control queue means the client is not reading: dropping the Pong is fine.
                let _ = self.handle.control.try_send(Control::Pong(data));
            }
            Frame::Pong { .. } => {}
            Frame::ForwardPacket { .. } | Frame::WatchConns | Frame::ClosePeer { .. } => {
                return Err(DerpError::Protocol("mesh frame without a mesh key"));
            }
            Frame::ClientInfo { .. } => return Err(DerpError::Protocol("second ClientInfo")),
            // server_wants() keeps every other type out.
            _ => {}
        }
        Ok(())
    }

    fn send_packet(&mut self, dst: NodePublic, packet: Bytes) {
        let disco = frame::looks_like_disco(&packet);
        match self.server.forward(&self.key, self.tenant, &dst, packet) {
            Forwarded::Delivered => {
                if self.last_dst != Some(dst) {
                    self.sent_to.insert(dst);
                    self.last_dst = Some(dst);
                }
            }
            // Unknown and other-tenant destinations must look the same to the sender.
            Forwarded::Dropped(DropReason::UnknownPeer | DropReason::OtherNamespace) => {
                if disco && self.not_here.take() {
                    let _ = self.handle.control.try_send(Control::PeerGone(dst, PeerGoneReason::NotHere));
                }
            }
            Forwarded::Dropped(DropReason::QueueFull) => {}
        }
    }
}
