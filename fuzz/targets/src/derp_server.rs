//! DERP frames as the server reads them. The first byte's bit 0 picks the phase:
//! - 0: before the handshake — the bytes are what the client sends after the HTTP 101, where
//!   the server expects ClientInfo (a sealed box) and nothing else;
//! - 1: after a valid handshake — the bytes follow an admitted client's ClientInfo, with a
//!   second admitted client of the same namespace and one of another namespace connected, so
//!   that SendPacket, ForwardPacket, pings, WatchConns and ClosePeer reach real peers.
//!
//! Every connection must end once its client has gone; nothing may panic.

use std::sync::Arc;

use prometheus::Registry;
use tokio::io::{duplex, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;

use crate::harness::{drain, must_end, run, split_selector, ClientEnd};
use tenscale::derp::client::DerpClient;
use tenscale::derp::crypto::{ClientInfo, DerpSecret};
use tenscale::derp::serve_client;
use tenscale::derp::server::{DerpConfig, DerpMetrics, DerpServer, TenantId};
use tenscale::derp::testkit::StaticAdmission;

/// One input: what the module doc says must hold for it.
pub fn check(data: &[u8]) {
    let (selector, rest) = split_selector(data);
    let bytes = rest.to_vec();
    run(async move {
        let admission = StaticAdmission::default();
        let metrics = DerpMetrics::register(&Registry::new()).expect("metrics");
        let server = DerpServer::new(
            DerpSecret::from_bytes([1; 32]),
            DerpConfig::default(),
            Arc::new(admission.clone()),
            metrics,
        );
        if selector & 1 == 0 {
            before_handshake(&server, bytes).await;
        } else {
            after_handshake(&server, &admission, bytes).await;
        }
    });
}

fn connect(server: &Arc<DerpServer>) -> (DuplexStream, JoinHandle<()>) {
    let (ours, theirs) = duplex(1 << 16);
    let served = tokio::spawn(serve_client(server.clone(), ours, "127.0.0.1:1".parse().unwrap()));
    (theirs, served)
}

async fn before_handshake(server: &Arc<DerpServer>, bytes: Vec<u8>) {
    let (io, served) = connect(server);
    let (read, mut write) = tokio::io::split(io);
    let reader = tokio::spawn(drain(read));
    let _ = write.write_all(&bytes).await;
    let _ = write.shutdown().await;
    must_end(served, "the DERP connection").await;
    must_end(reader, "the client's reader").await;
}

/// An admitted, handshaken client whose incoming frames are read and dropped.
async fn peer(server: &Arc<DerpServer>, admission: &StaticAdmission, seed: u8, tenant: i64) -> JoinHandle<()> {
    let secret = DerpSecret::from_bytes([seed; 32]);
    admission.allow(secret.public(), TenantId(tenant));
    let (io, served) = connect(server);
    let client = DerpClient::handshake(io, &secret, &ClientInfo::v2()).await.expect("an admitted peer connects");
    let (_sender, mut receiver) = client.into_split();
    tokio::spawn(async move {
        while let Ok(Some(_)) = receiver.recv().await {}
        let _ = served.await;
    })
}

async fn after_handshake(server: &Arc<DerpServer>, admission: &StaticAdmission, bytes: Vec<u8>) {
    let neighbour = peer(server, admission, 2, 1).await;
    let stranger = peer(server, admission, 3, 2).await;
    let secret = DerpSecret::from_bytes([4; 32]);
    admission.allow(secret.public(), TenantId(1));
    let (io, served) = connect(server);
    let (io, closer) = ClientEnd::new(io);
    let client = DerpClient::handshake(io, &secret, &ClientInfo::v2()).await.expect("an admitted client connects");
    let (mut sender, mut receiver) = client.into_split();
    let reader = tokio::spawn(async move { while let Ok(Some(_)) = receiver.recv().await {} });
    let _ = sender.send_raw(&bytes).await;
    drop(sender);
    closer.close().await;
    must_end(served, "the DERP connection").await;
    must_end(reader, "the client's reader").await;
    server.shutdown().await;
    must_end(neighbour, "a neighbour's connection").await;
    must_end(stranger, "a stranger's connection").await;
}
