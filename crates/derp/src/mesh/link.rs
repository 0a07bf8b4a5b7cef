//! This instance's links to the other instances of the deployment.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::client::{DerpClient, DerpReceiver, DerpSender};
use crate::crypto::ClientInfo;
use crate::error::DerpError;
use crate::frame::Frame;
use crate::server::{DerpServer, Forward, MeshKey, Route};

/// Packets waiting on one link, before new ones are dropped.
const LINK_QUEUE: usize = 1024;
/// How long a link waits before dialling again after a failure.
const REDIAL_AFTER: Duration = Duration::from_secs(1);
/// A link that hears nothing for this long (the peer sends KeepAlive every 60 s) is dead.
const LINK_SILENCE: Duration = Duration::from_secs(120);

impl DerpServer {
    /// Keeps one link to each of `urls` (`http://host:port` of the other instances) and none
    /// to any other; a no-op without a mesh key. Called whenever the set of live instances
    /// changes.
    pub fn set_mesh_peers(self: &Arc<Self>, urls: &[String]) {
        let Some(key) = self.mesh().key.clone() else { return };
        let mut links = self.mesh().links.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|url, stop| {
            let keep = urls.contains(url);
            if !keep {
                stop.cancel();
            }
            keep
        });
        for url in urls {
            if links.contains_key(url) {
                continue;
            }
            let stop = CancellationToken::new();
            links.insert(url.clone(), stop.clone());
            tokio::spawn(run_link(Arc::downgrade(self), url.clone(), key.clone(), stop));
        }
    }
}

/// Dials `url` and keeps the link up until `stop`.
async fn run_link(server: Weak<DerpServer>, url: String, key: MeshKey, stop: CancellationToken) {
    let link = rand::random::<u64>();
    loop {
        let Some(strong) = server.upgrade() else { return };
        let outcome = tokio::select! {
            outcome = serve_link(&strong, &url, &key, link) => outcome,
            _ = stop.cancelled() => Ok(()),
        };
        strong.mesh().forget_link(link);
        drop(strong);
        if stop.is_cancelled() {
            return;
        }
        if let Err(err) = outcome {
            tracing::debug!(%url, %err, "DERP mesh link down; dialling again");
        }
        tokio::select! {
            _ = tokio::time::sleep(REDIAL_AFTER) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Counts a link as up for as long as it lives.
struct LinkUp(prometheus::IntGauge);

impl LinkUp {
    fn new(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for LinkUp {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One connection of a link: handshake, WatchConns, then routes in, packets out.
async fn serve_link(server: &Arc<DerpServer>, url: &str, key: &MeshKey, link: u64) -> Result<(), DerpError> {
    let (addr, host) = resolve(url).await?;
    let info = ClientInfo { mesh_key: Some(key.to_hex()), ..ClientInfo::v2() };
    let client = timeout(Duration::from_secs(10), DerpClient::connect_tcp_with(addr, &host, server.secret(), &info))
        .await
        .map_err(|_| DerpError::Timeout("dialling a mesh peer"))??;
    let (mut sender, receiver) = client.into_split();
    sender.send_frame(&Frame::WatchConns).await?;
    let _up = LinkUp::new(&server.metrics().mesh_links);
    tracing::info!(%url, "DERP mesh link up");
    let (to, from) = mpsc::channel(LINK_QUEUE);
    tokio::select! {
        result = learn_routes(server, receiver, link, to) => result,
        result = forward_packets(sender, from) => result,
    }
}

/// `http://host:port` → the first address of host, and the Host header.
async fn resolve(url: &str) -> Result<(SocketAddr, String), DerpError> {
    let rest = url.strip_prefix("http://").ok_or(DerpError::Protocol("mesh URLs are http://host:port"))?;
    let host = rest.trim_end_matches('/').trim_end_matches("/derp").to_string();
    let addr = tokio::net::lookup_host(host.as_str())
        .await?
        .next()
        .ok_or(DerpError::Protocol("mesh peer host has no address"))?;
    Ok((addr, host))
}

/// Reads PeerPresent/PeerGone from the watched peer into routes.
async fn learn_routes<T: AsyncRead + AsyncWrite + Unpin>(
    server: &DerpServer,
    mut receiver: DerpReceiver<T>,
    link: u64,
    to: mpsc::Sender<Forward>,
) -> Result<(), DerpError> {
    let mesh = server.mesh();
    loop {
        let frame = timeout(LINK_SILENCE, receiver.recv())
            .await
            .map_err(|_| DerpError::Timeout("mesh peer silent"))??
            .ok_or(DerpError::Closed)?;
        match frame {
            Frame::PeerPresent(present) => {
                // A key the store does not admit (expired, deleted meanwhile) gets no route.
                match server.tenant_of(&present.key).await {
                    Some(tenant) => mesh.learn(present.key, Route { link, tenant, to: to.clone() }),
                    None => mesh.forget(&present.key, link),
                }
            }
            Frame::PeerGone { key, .. } => mesh.forget(&key, link),
            Frame::Restarting { .. } => return Err(DerpError::Closed),
            _ => {}
        }
    }
}

/// Writes queued packets to the peer as ForwardPacket frames, flushing once per batch.
async fn forward_packets<T: AsyncRead + AsyncWrite + Unpin>(
    mut sender: DerpSender<T>,
    mut from: mpsc::Receiver<Forward>,
) -> Result<(), DerpError> {
    while let Some(first) = from.recv().await {
        let mut next = Some(first);
        while let Some(Forward { src, dst, packet }) = next.take() {
            sender.write_frame(&Frame::ForwardPacket { src, dst, packet }).await?;
            next = from.try_recv().ok();
        }
        sender.flush().await?;
    }
    Ok(())
}
