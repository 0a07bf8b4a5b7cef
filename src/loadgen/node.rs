//! One simulated node: its keys, what happened to it and when ([`Slot`]), and while it is
//! connected, its ts2021 connection and the task reading its map stream ([`SimNode`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use x25519_dalek::StaticSecret;

use crate::control::client::Client;
use crate::derp::crypto::DerpSecret;
use crate::keys::{DiscoPublic, MachinePublic, NodePublic};
use crate::netmap::tailcfg::{Hostinfo, MapRequest, RegisterAuth, RegisterRequest};

/// How long a join step may take before the node counts as failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// The record of one simulated node; shared between the join, its map reader and the report.
pub struct Slot {
    pub index: usize,
    pub namespace: usize,
    /// Node private key; its public half is the node key and the DERP identity.
    pub node_secret: [u8; 32],
    pub key: NodePublic,
    pub times: Mutex<Times>,
    /// When this node first heard of each peer (full map or PeersChanged).
    pub learned: Mutex<HashMap<NodePublic, Instant>>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Times {
    pub started: Option<Instant>,
    /// The ts2021 channel is up and the register request goes out.
    pub register_sent: Option<Instant>,
    /// The register response arrived.
    pub registered: Option<Instant>,
    /// The first full map arrived on the stream.
    pub first_map: Option<Instant>,
    /// The stream was closed by us (churn) or ended.
    pub disconnected: Option<Instant>,
    /// The server ended the stream (or the connection) while we still held it.
    pub ended_by_server: bool,
}

impl Slot {
    pub fn new(index: usize, namespace: usize) -> Arc<Self> {
        let node_secret = random_bytes();
        let key = DerpSecret::from_bytes(node_secret).public();
        Arc::new(Self {
            index,
            namespace,
            node_secret,
            key,
            times: Mutex::new(Times::default()),
            learned: Mutex::new(HashMap::new()),
        })
    }

    pub fn times(&self) -> Times {
        *self.times.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Times)) {
        f(&mut self.times.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// When this node learned `peer`, if it has.
    pub fn learned_at(&self, peer: &NodePublic) -> Option<Instant> {
        self.learned.lock().unwrap_or_else(|e| e.into_inner()).get(peer).copied()
    }

    fn record(&self, msg: &PeerNames, at: Instant) {
        let peers = msg.peers.iter().flatten().chain(msg.peers_changed.iter().flatten());
        let mut learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        for peer in peers {
            learned.entry(peer.key).or_insert(at);
        }
    }
}

/// What the load generator reads of a map message: which peers it names. The JSON parser
/// skips everything else without building it, so decoding ~1,000 copies of every delta costs
/// the load generator less of the CPU it shares with the server it measures.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PeerNames {
    #[serde(default)]
    keep_alive: bool,
    peers: Option<Vec<Named>>,
    peers_changed: Option<Vec<Named>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Named {
    key: NodePublic,
}

/// A connected node. Dropping it closes its connection abruptly, like a vanished client.
pub struct SimNode {
    pub slot: Arc<Slot>,
    client: Client,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for SimNode {
    fn drop(&mut self) {
        self.slot.update(|t| t.disconnected = Some(Instant::now()));
        self.reader.abort();
        self.client.abort();
    }
}

/// What a join needs to know about the server.
#[derive(Clone)]
pub struct JoinTarget {
    pub addr: String,
    pub server_key: MachinePublic,
}

/// Connects, registers with `auth_key` and, when `stream`, opens the map stream and waits
/// for the first full map. Without `stream` the node is only registered (`Ok(None)`).
pub async fn join(
    target: &JoinTarget,
    slot: Arc<Slot>,
    auth_key: &str,
    stream: bool,
) -> anyhow::Result<Option<SimNode>> {
    slot.update(|t| t.started = Some(Instant::now()));
    let machine = StaticSecret::from(random_bytes());
    let client = tokio::time::timeout(STEP_TIMEOUT, Client::connect(&target.addr, &target.server_key, &machine))
        .await
        .context("ts2021 connect timed out")?
        .context("ts2021 connect")?;
    let hostname = format!("sim{}", slot.index);
    let request = RegisterRequest {
        version: u32::from(crate::control::client::CLIENT_VERSION),
        node_key: slot.key,
        auth: Some(RegisterAuth { auth_key: auth_key.to_string(), ..Default::default() }),
        hostinfo: Some(hostinfo(&hostname)),
        ..Default::default()
    };
    slot.update(|t| t.register_sent = Some(Instant::now()));
    let response = tokio::time::timeout(STEP_TIMEOUT, client.register(&request))
        .await
        .context("register timed out")?
        .context("register")?;
    if !response.error.is_empty() {
        bail!("register refused: {}", response.error);
    }
    slot.update(|t| t.registered = Some(Instant::now()));
    if !stream {
        client.abort();
        return Ok(None);
    }

    let map_request = MapRequest {
        version: u32::from(crate::control::client::CLIENT_VERSION),
        compress: "zstd".into(),
        keep_alive: true,
        node_key: slot.key,
        disco_key: DiscoPublic::from_bytes(random_bytes()),
        stream: true,
        hostinfo: Some(hostinfo(&hostname)),
        endpoints: Some(vec![format!("127.0.0.1:{}", 10_000 + slot.index % 50_000)]),
        ..Default::default()
    };
    let mut messages = client.map_stream_of::<PeerNames>(&map_request).await.context("map request")?;
    let first = tokio::time::timeout(STEP_TIMEOUT, async {
        while let Some(msg) = messages.next().await {
            let msg = msg?;
            if !msg.keep_alive {
                return Ok(msg);
            }
        }
        bail!("map stream ended before the first map")
    })
    .await
    .context("first map timed out")??;
    let now = Instant::now();
    if first.peers.is_none() {
        bail!("the first map message carries no peer list");
    }
    slot.record(&first, now);
    slot.update(|t| t.first_map = Some(now));

    let reader_slot = slot.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = messages.next().await {
            reader_slot.record(&msg, Instant::now());
        }
        reader_slot.update(|t| {
            t.ended_by_server = t.disconnected.is_none();
            t.disconnected = t.disconnected.or(Some(Instant::now()));
        });
    });
    Ok(Some(SimNode { slot, client, reader }))
}

fn hostinfo(hostname: &str) -> Hostinfo {
    serde_json::from_value(serde_json::json!({
        "Hostname": hostname,
        "OS": "linux",
        "GoArch": "amd64",
        "IPNVersion": "1.90.0-loadgen",
    }))
    .unwrap_or_default()
}

pub fn random_bytes() -> [u8; 32] {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}
