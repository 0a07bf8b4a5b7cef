//! Load generator: joins N simulated nodes across M namespaces through the real protocol
//! ([`crate::control::client::Client`]: ts2021 Noise, HTTP/2, register, zstd map stream) and
//! measures what a tenscale server does with them.
//!
//! ```text
//! seed (store: org, M namespaces, one reusable pre-auth key each)
//!   └─ start the server (in-process | child process | already running)
//!        └─ ramp: N joins, `concurrency` at a time, namespace after namespace (members of
//!             a small namespace one after another, so each finds the earlier ones online)
//!             connect ─ register ─ map stream ─ first full map ─ reader records PeersChanged
//!        └─ probes: P more joins, one at a time, into namespaces whose nodes are connected
//!        └─ DERP (optional): one idle relay connection per registered node
//! ```
//!
//! Figures (see [`Report`]): registrations per second over the ramp; time to the first
//! netmap; join→peer-update fan-out — for a node X, the time from X's register response
//! until *every* node of X's namespace that already had its first map has received a
//! message (full map or PeersChanged) naming X; server memory per connected node (RSS delta
//! from the idle server to the loaded one, divided by connected nodes).
//!
//! The load generator and the server share the machine's cores, so client-side decoding
//! delays count in the latencies; in-process, the memory delta also contains the clients.
//! `max_connected` caps the map streams held at once (file-descriptor limits): when a new
//! namespace would pass the cap, the oldest fully joined namespace disconnects first.

// The machine line and process samples, shared with the other benchmarks.
pub use tenscale_machine as machine;
pub mod node;
pub mod target;

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;

use crate::domain::{NamespaceName, OrgName, Tags};
use crate::state::store::preauth_keys::NewPreauthKey;
use crate::state::{Bus, Writer};
use machine::{Machine, ProcSample};
use node::{JoinTarget, SimNode, Slot};
use target::Target;
pub use target::TargetSpec;

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub nodes: usize,
    pub namespaces: usize,
    pub target: TargetSpec,
    /// Joins in flight at once during the ramp.
    pub concurrency: usize,
    /// Joins started per second at most during the ramp; `None`: as fast as `concurrency`
    /// allows (a closed loop that saturates the machine, so its latencies are queueing).
    pub rate: Option<f64>,
    /// Sequential joins after the ramp, each measured alone.
    pub probes: usize,
    /// Most map streams held at once; `None` = all nodes stay connected.
    pub max_connected: Option<usize>,
    /// Open map streams (otherwise nodes only register).
    pub stream: bool,
    /// After the joins, open one idle DERP connection per registered node.
    pub derp: bool,
    /// Quiet time before each memory sample.
    pub settle: Duration,
    /// How long to wait for a fan-out to complete before counting it missing.
    pub fanout_timeout: Duration,
}

/// Spaces join starts evenly at a fixed rate (an open loop): the server sees a load that does
/// not depend on how fast it answers, so latencies measure the server, not a queue.
struct Pacer {
    period: Duration,
    next: std::sync::Mutex<tokio::time::Instant>,
}

impl Pacer {
    fn new(per_second: f64) -> Self {
        Self {
            period: Duration::from_secs_f64(1.0 / per_second),
            next: std::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Waits for this caller's start slot.
    async fn wait_turn(&self) {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let at = (*next).max(tokio::time::Instant::now());
            *next = at + self.period;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// Everything measured in one run.
pub struct Report {
    pub options: Options,
    pub machine: Machine,
    pub target: String,
    /// Whether the server's own process was read (its memory and CPU figures exist).
    pub server_measured: bool,
    pub seed_time: Duration,
    pub ramp: Ramp,
    pub probes: Option<Probes>,
    pub memory: Option<Memory>,
    pub derp: Option<DerpIdle>,
    /// Map streams the server ended while the node was still there (e.g. a stuck session).
    pub closed_by_server: usize,
    pub loadgen_end: ProcSample,
}

pub struct Ramp {
    pub joined: usize,
    pub failed: usize,
    pub errors: Vec<String>,
    /// Ramp wall time minus the pauses taken to sample memory.
    pub elapsed: Duration,
    pub register: Percentiles,
    pub first_map: Percentiles,
    pub fanout: FanOut,
    /// `None` for a running server whose process is not known (no `--server-pid`).
    pub server_cpu_secs: Option<f64>,
    pub loadgen_cpu_secs: f64,
    /// Server and clients are one process: one CPU figure covers both.
    pub shares_process: bool,
}

pub struct Probes {
    pub count: usize,
    pub register: Percentiles,
    pub first_map: Percentiles,
    pub fanout: FanOut,
    /// Connected nodes in the probed namespaces, on average.
    pub mean_audience: f64,
}

pub struct FanOut {
    /// From the register response to the last connected peer hearing of the node.
    pub latency: Percentiles,
    /// The same, from the moment the register request was sent (the server announces a node
    /// before it answers its register, so this bounds the figure from above).
    pub from_request: Percentiles,
    /// Joins whose fan-out had not reached every connected peer within the timeout.
    pub incomplete: usize,
    /// Joins with no connected peer to tell (first node of a namespace, ...).
    pub alone: usize,
}

pub struct Memory {
    pub when: String,
    pub connected: usize,
    pub namespaces_connected: usize,
    pub idle: ProcSample,
    pub loaded: ProcSample,
    pub shares_process: bool,
    pub loadgen_rss_kib: u64,
}

pub struct DerpIdle {
    pub connected: usize,
    pub failed: usize,
    pub before: ProcSample,
    pub after: ProcSample,
    pub shares_process: bool,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Percentiles {
    pub count: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort();
        let at = |p: f64| samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
        Self { count: samples.len(), p50: at(0.50), p90: at(0.90), p99: at(0.99), max: samples[samples.len() - 1] }
    }
}

/// Runs the whole benchmark.
pub async fn run(options: Options) -> anyhow::Result<Report> {
    anyhow::ensure!(options.nodes > 0 && options.namespaces > 0, "need at least one node and one namespace");
    anyhow::ensure!(options.namespaces <= options.nodes, "more namespaces than nodes");
    let machine = Machine::probe();
    let (dir, database_url, store) = Target::prepare(&options.target).await?;
    let seed_start = Instant::now();
    let keys = seed(&Writer::new(store.clone(), Bus::local()), options.namespaces)
        .await
        .context("seeding namespaces and keys")?;
    let seed_time = seed_start.elapsed();
    drop(store);
    let target = Target::start(&options.target, dir, database_url).await?;
    let result = drive(&options, &target, keys).await;
    let (description, server_measured) = (target.description.clone(), target.measurable);
    target.stop().await;
    let (ramp, probes, memory, derp, closed_by_server) = result?;
    Ok(Report {
        options,
        machine,
        target: description,
        server_measured,
        seed_time,
        ramp,
        probes,
        memory,
        derp,
        closed_by_server,
        loadgen_end: machine::sample(None),
    })
}

/// One org, `count` namespaces `ns<i>`, one reusable pre-auth key each (valid for a day).
async fn seed(writer: &Writer, count: usize) -> anyhow::Result<Vec<String>> {
    let org_name = format!("loadgen-{}", hex::encode(&node::random_bytes()[..4]));
    let org = writer.create_org(&OrgName::parse(&org_name)?, None).await?;
    let spec = NewPreauthKey {
        reusable: true,
        ephemeral: false,
        tags: Tags::default(),
        expires_at: writer.now() + chrono::Duration::days(1),
        description: "tenscale-loadgen".into(),
    };
    let mut keys = Vec::with_capacity(count);
    for i in 0..count {
        let ns = writer.create_namespace(org.id, &NamespaceName::parse(&format!("ns{i}"))?, None).await?;
        keys.push(writer.create_preauth_key(&ns, &spec, None).await?.1);
    }
    Ok(keys)
}

type Phases = (Ramp, Option<Probes>, Option<Memory>, Option<DerpIdle>, usize);

/// Everything after the server is up.
async fn drive(options: &Options, target: &Target, keys: Vec<String>) -> anyhow::Result<Phases> {
    let server_key = crate::control::client::fetch_server_key(&target.base_url()).await?.public_key;
    let join_target = JoinTarget { addr: target.addr.to_string(), server_key };
    tokio::time::sleep(options.settle).await;
    let idle = target.sample();
    let mut run = Run::new(options, join_target, keys, target, idle);
    let ramp = run.ramp().await?;
    let probes = if options.stream && options.probes > 0 { Some(run.probes().await) } else { None };
    if run.memory.is_none() && options.stream {
        run.sample_memory("after the ramp and probes").await;
    }
    let closed_by_server = run.slots.iter().filter(|s| s.times().ended_by_server).count();
    let derp = if options.derp { Some(run.derp_idle().await) } else { None };
    Ok((ramp, probes, run.memory.take(), derp, closed_by_server))
}

/// The state of one run: every node's slot, and the nodes connected now, by namespace.
struct Run<'a> {
    options: &'a Options,
    join: JoinTarget,
    keys: Arc<Vec<String>>,
    target: &'a Target,
    idle: ProcSample,
    slots: Vec<Arc<Slot>>,
    /// Slot indexes of each namespace, in join order.
    members: Vec<Vec<usize>>,
    live: Arc<Mutex<Vec<Option<SimNode>>>>,
    connected: Arc<AtomicUsize>,
    errors: Arc<Mutex<Vec<String>>>,
    failed: Arc<AtomicUsize>,
    memory: Option<Memory>,
    paused: Duration,
}

impl<'a> Run<'a> {
    fn new(options: &'a Options, join: JoinTarget, keys: Vec<String>, target: &'a Target, idle: ProcSample) -> Self {
        let (n, m) = (options.nodes, options.namespaces);
        let mut members = vec![Vec::new(); m];
        // Contiguous blocks: node i belongs to namespace i*m/n, so namespaces fill one by one.
        let slots: Vec<Arc<Slot>> = (0..n)
            .map(|i| {
                let ns = i * m / n;
                members[ns].push(i);
                Slot::new(i, ns)
            })
            .collect();
        Self {
            options,
            join,
            keys: Arc::new(keys),
            target,
            idle,
            live: Arc::new(Mutex::new((0..n).map(|_| None).collect())),
            slots,
            members,
            connected: Arc::new(AtomicUsize::new(0)),
            errors: Arc::new(Mutex::new(Vec::new())),
            failed: Arc::new(AtomicUsize::new(0)),
            memory: None,
            paused: Duration::ZERO,
        }
    }

    fn spawn_join(&self, index: usize) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.join_task(index))
    }

    /// Joins node `index` when polled and files the result.
    fn join_task(&self, index: usize) -> impl std::future::Future<Output = ()> + Send + 'static {
        let slot = self.slots[index].clone();
        let (join, keys, live) = (self.join.clone(), self.keys.clone(), self.live.clone());
        let (connected, errors, failed) = (self.connected.clone(), self.errors.clone(), self.failed.clone());
        let stream = self.options.stream;
        async move {
            match node::join(&join, slot.clone(), &keys[slot.namespace], stream).await {
                Ok(Some(sim)) => {
                    connected.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut live) = live.lock() {
                        live[slot.index] = Some(sim);
                    }
                }
                Ok(None) => {}
                Err(err) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut errors) = errors.lock() {
                        if errors.len() < 5 {
                            errors.push(format!("node {}: {err:#}", slot.index));
                        }
                    }
                }
            }
        }
    }

    async fn ramp(&mut self) -> anyhow::Result<Ramp> {
        let start = Instant::now();
        let (server_before, self_before) = (self.target.sample(), machine::sample(None));
        let concurrency = self.options.concurrency.max(1);
        // A namespace's members join at most `lanes` at a time, in order, so that in small
        // namespaces each member finds the earlier ones connected (its fan-out has an
        // audience); `window` namespaces join side by side. 1 namespace: 16 lanes, window 1;
        // 10,000 namespaces: 1 lane each, 16 namespaces at once.
        let lanes = concurrency.div_ceil(self.options.namespaces).max(1);
        let window = Arc::new(tokio::sync::Semaphore::new(concurrency.div_ceil(lanes)));
        let cap = self.options.max_connected.filter(|_| self.options.stream);
        let mut joined_namespaces: VecDeque<(usize, Option<tokio::task::JoinHandle<()>>)> = VecDeque::new();
        let mut reserved = 0usize;
        let pacer = self.options.rate.map(|rate| Arc::new(Pacer::new(rate)));
        for ns in 0..self.options.namespaces {
            let size = self.members[ns].len();
            if let Some(cap) = cap {
                while reserved + size > cap && !joined_namespaces.is_empty() {
                    if self.memory.is_none() {
                        // The cap is reached for the first time: the cleanest moment to weigh it.
                        let pause = Instant::now();
                        for (_, handle) in joined_namespaces.iter_mut() {
                            if let Some(handle) = handle.take() {
                                let _ = handle.await;
                            }
                        }
                        self.wait_fanout(joined_namespaces.iter().map(|(ns, _)| *ns).collect()).await;
                        self.sample_memory("at the connection cap, before any disconnect").await;
                        self.paused += pause.elapsed();
                    }
                    let Some((old, handle)) = joined_namespaces.pop_front() else { break };
                    if let Some(handle) = handle {
                        let _ = handle.await;
                    }
                    self.wait_fanout(vec![old]).await;
                    reserved -= self.disconnect(old);
                }
            }
            let permit = window.clone().acquire_owned().await?;
            let joins: Vec<_> = self.members[ns].iter().map(|&index| self.join_task(index)).collect();
            let pacer = pacer.clone();
            let handle = tokio::spawn(async move {
                futures::stream::iter(joins)
                    .for_each_concurrent(lanes, |join| {
                        let pacer = pacer.clone();
                        async move {
                            if let Some(pacer) = pacer {
                                pacer.wait_turn().await;
                            }
                            let _ = tokio::spawn(join).await;
                        }
                    })
                    .await;
                drop(permit);
            });
            reserved += size;
            joined_namespaces.push_back((ns, Some(handle)));
        }
        for (_, handle) in joined_namespaces.iter_mut() {
            if let Some(handle) = handle.take() {
                let _ = handle.await;
            }
        }
        let ramp_end = Instant::now();
        let (server_after, self_after) = (self.target.sample(), machine::sample(None));
        let live_namespaces: Vec<usize> = joined_namespaces.iter().map(|(ns, _)| *ns).collect();
        self.wait_fanout(live_namespaces).await;

        let registered: Vec<&Arc<Slot>> = self.slots.iter().filter(|s| s.times().registered.is_some()).collect();
        let register = registered
            .iter()
            .filter_map(|s| {
                let t = s.times();
                Some(t.registered? - t.started?)
            })
            .collect();
        let first_map = registered
            .iter()
            .filter_map(|s| {
                let t = s.times();
                Some(t.first_map? - t.registered?)
            })
            .collect();
        let all: Vec<usize> = (0..self.slots.len()).collect();
        let fanout = self.fanout(&all);
        let elapsed = (ramp_end - start).saturating_sub(self.paused);
        Ok(Ramp {
            joined: registered.len(),
            failed: self.failed.load(Ordering::Relaxed),
            errors: self.errors.lock().map(|e| e.clone()).unwrap_or_default(),
            elapsed,
            register: Percentiles::of(register),
            first_map: Percentiles::of(first_map),
            fanout,
            server_cpu_secs: self.target.measurable.then_some(server_after.cpu_secs - server_before.cpu_secs),
            loadgen_cpu_secs: self_after.cpu_secs - self_before.cpu_secs,
            shares_process: self.target.shares_process,
        })
    }

    /// Drops every connected node of `ns`; returns how many were reserved for it.
    fn disconnect(&self, ns: usize) -> usize {
        let mut dropped = Vec::new();
        if let Ok(mut live) = self.live.lock() {
            for &index in &self.members[ns] {
                if let Some(sim) = live[index].take() {
                    dropped.push(sim);
                }
            }
        }
        self.connected.fetch_sub(dropped.len(), Ordering::Relaxed);
        drop(dropped);
        self.members[ns].len()
    }

    /// The nodes of `ns` that were connected (first map received, not gone) at `at`.
    fn audience(&self, ns: usize, except: usize, at: Instant) -> Vec<&Arc<Slot>> {
        self.members[ns]
            .iter()
            .filter(|&&i| i != except)
            .map(|&i| &self.slots[i])
            .filter(|s| {
                let t = s.times();
                // Connected when `at` came: had its map, had not gone yet.
                t.first_map.is_some_and(|f| f < at) && t.disconnected.is_none_or(|d| d > at)
            })
            .collect()
    }

    /// For each node: `Some(latency)` once its whole audience knows it, `None` while not;
    /// latency from the register response and from the register request.
    fn fanout_of(&self, index: usize) -> Option<Option<(Duration, Duration)>> {
        let slot = &self.slots[index];
        let times = slot.times();
        let (registered, sent) = (times.registered?, times.register_sent?);
        let audience = self.audience(slot.namespace, index, registered);
        if audience.is_empty() {
            return None;
        }
        let mut latest = registered;
        for peer in audience {
            match peer.learned_at(&slot.key) {
                Some(at) => latest = latest.max(at),
                None => return Some(None),
            }
        }
        Some(Some((latest - registered, latest - sent)))
    }

    fn fanout(&self, indexes: &[usize]) -> FanOut {
        let (mut latencies, mut from_request, mut incomplete, mut alone) = (Vec::new(), Vec::new(), 0, 0);
        for &i in indexes {
            if self.slots[i].times().registered.is_none() {
                continue;
            }
            match self.fanout_of(i) {
                None => alone += 1,
                Some(None) => incomplete += 1,
                Some(Some((latency, from_sent))) => {
                    latencies.push(latency);
                    from_request.push(from_sent);
                }
            }
        }
        FanOut { latency: Percentiles::of(latencies), from_request: Percentiles::of(from_request), incomplete, alone }
    }

    /// Waits until every join into `namespaces` has reached its audience, or the timeout.
    async fn wait_fanout(&self, namespaces: Vec<usize>) {
        let deadline = Instant::now() + self.options.fanout_timeout;
        let indexes: Vec<usize> = namespaces.iter().flat_map(|&ns| self.members[ns].iter().copied()).collect();
        loop {
            let pending = indexes.iter().filter(|&&i| matches!(self.fanout_of(i), Some(None))).count();
            if pending == 0 || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn sample_memory(&mut self, when: &str) {
        if !self.target.measurable {
            return; // whose memory? Not this process's: the report says it was not measured.
        }
        tokio::time::sleep(self.options.settle).await;
        let loaded = self.target.sample();
        let live = self.live.lock().map(|l| l.iter().flatten().map(|s| s.slot.namespace).collect::<Vec<_>>());
        let live = live.unwrap_or_default();
        let mut namespaces = live.clone();
        namespaces.sort_unstable();
        namespaces.dedup();
        self.memory = Some(Memory {
            when: when.to_string(),
            connected: live.len(),
            namespaces_connected: namespaces.len(),
            idle: self.idle,
            loaded,
            shares_process: self.target.shares_process,
            loadgen_rss_kib: machine::sample(None).rss_kib,
        });
    }

    /// Joins one node at a time into namespaces whose nodes are connected, each measured
    /// on an otherwise quiet server.
    async fn probes(&mut self) -> Probes {
        let live_namespaces: Vec<usize> = {
            let live = self.live.lock().map(|l| l.iter().flatten().map(|s| s.slot.namespace).collect::<Vec<_>>());
            let mut ns = live.unwrap_or_default();
            ns.sort_unstable();
            ns.dedup();
            ns
        };
        let mut indexes = Vec::new();
        let mut audience_total = 0usize;
        for p in 0..self.options.probes {
            let Some(&ns) = live_namespaces.get(p * live_namespaces.len().max(1) / self.options.probes) else { break };
            let index = self.slots.len();
            self.slots.push(Slot::new(index, ns));
            self.members[ns].push(index);
            if let Ok(mut live) = self.live.lock() {
                live.push(None);
            }
            let _ = self.spawn_join(index).await;
            if let Some(registered) = self.slots[index].times().registered {
                audience_total += self.audience(ns, index, registered).len();
            }
            self.wait_fanout(vec![ns]).await;
            indexes.push(index);
            // Let the join's follow-up updates (endpoints, online) pass before the next one.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let times: Vec<_> = indexes.iter().map(|&i| self.slots[i].times()).collect();
        Probes {
            count: indexes.len(),
            register: Percentiles::of(times.iter().filter_map(|t| Some(t.registered? - t.started?)).collect()),
            first_map: Percentiles::of(times.iter().filter_map(|t| Some(t.first_map? - t.registered?)).collect()),
            fanout: self.fanout(&indexes),
            mean_audience: audience_total as f64 / indexes.len().max(1) as f64,
        }
    }

    /// One idle DERP connection per registered node, held while the server is weighed.
    async fn derp_idle(&mut self) -> DerpIdle {
        tokio::time::sleep(self.options.settle).await;
        let before = self.target.sample();
        let addr = self.target.addr;
        let limit = Arc::new(tokio::sync::Semaphore::new(self.options.concurrency.max(1)));
        let mut handles = Vec::new();
        for slot in self.slots.iter().filter(|s| s.times().registered.is_some()) {
            let secret = crate::derp::crypto::DerpSecret::from_bytes(slot.node_secret);
            let limit = limit.clone();
            handles.push(tokio::spawn(async move {
                let _permit = limit.acquire_owned().await.ok()?;
                crate::derp::client::DerpClient::connect_tcp(addr, &addr.ip().to_string(), &secret).await.ok()
            }));
        }
        let mut clients = Vec::with_capacity(handles.len());
        let mut failed = 0;
        for handle in handles {
            match handle.await.ok().flatten() {
                Some(client) => clients.push(client),
                None => failed += 1,
            }
        }
        tokio::time::sleep(self.options.settle).await;
        let after = self.target.sample();
        let connected = clients.len();
        drop(clients);
        DerpIdle { connected, failed, before, after, shares_process: self.target.shares_process }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

impl fmt::Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return write!(f, "no samples");
        }
        write!(
            f,
            "p50 {}  p90 {}  p99 {}  max {}  (n={})",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            self.count
        )
    }
}

impl fmt::Display for FanOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; {} incomplete, {} with no connected peer\n    from the register request: {}",
            self.latency, self.incomplete, self.alone, self.from_request
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        writeln!(f, "machine: {}", self.machine)?;
        writeln!(f, "server:  {}", self.target)?;
        writeln!(
            f,
            "load:    {} nodes in {} namespaces, {} joins in flight{}, {}{}",
            o.nodes,
            o.namespaces,
            o.concurrency,
            o.rate.map_or(String::new(), |r| format!(", started at most {r} per second")),
            if o.stream { "map streams held" } else { "register only" },
            o.max_connected.map_or(String::new(), |c| format!(", at most {c} connected at once"))
        )?;
        writeln!(f, "seed:    {} namespaces + keys in {:.1} s", o.namespaces, self.seed_time.as_secs_f64())?;
        let r = &self.ramp;
        let cpu = match r.server_cpu_secs {
            Some(server) if r.shares_process => format!("server + clients CPU {server:.1} s"),
            Some(server) => format!("server CPU {server:.1} s, loadgen CPU {:.1} s", r.loadgen_cpu_secs),
            None => format!("server CPU not measured, loadgen CPU {:.1} s", r.loadgen_cpu_secs),
        };
        writeln!(
            f,
            "ramp:    {} registered, {} failed in {:.1} s = {:.0} registrations/s ({cpu})",
            r.joined,
            r.failed,
            r.elapsed.as_secs_f64(),
            r.joined as f64 / r.elapsed.as_secs_f64().max(1e-9),
        )?;
        for err in &r.errors {
            writeln!(f, "  error: {err}")?;
        }
        writeln!(f, "  connect+register:     {}", r.register)?;
        if o.stream {
            writeln!(f, "  register->first map:  {}", r.first_map)?;
            writeln!(f, "  join->peers fan-out:  {}", r.fanout)?;
        }
        if let Some(p) = &self.probes {
            writeln!(
                f,
                "probes:  {} sequential joins, {:.0} connected peers each on average",
                p.count, p.mean_audience
            )?;
            writeln!(f, "  connect+register:     {}", p.register)?;
            writeln!(f, "  register->first map:  {}", p.first_map)?;
            writeln!(f, "  join->peers fan-out:  {}", p.fanout)?;
        }
        if let Some(m) = &self.memory {
            let delta = m.loaded.rss_kib.saturating_sub(m.idle.rss_kib);
            writeln!(
                f,
                "memory:  {} connected nodes in {} namespaces ({}): RSS {} KiB idle -> {} KiB = {:.1} KiB per connected node{}",
                m.connected,
                m.namespaces_connected,
                m.when,
                m.idle.rss_kib,
                m.loaded.rss_kib,
                delta as f64 / m.connected.max(1) as f64,
                if m.shares_process {
                    " (server AND clients: one process)"
                } else {
                    " (server process alone)"
                }
            )?;
            if !m.shares_process {
                writeln!(f, "  loadgen (client side) RSS {} KiB", m.loadgen_rss_kib)?;
            }
        } else if !self.options.stream {
            writeln!(f, "memory:  (no map streams held)")?;
        } else if !self.server_measured {
            writeln!(f, "memory:  not measured (a running server without --server-pid)")?;
        }
        if let Some(d) = self.derp.as_ref().filter(|_| !self.server_measured) {
            writeln!(f, "derp:    {} idle connections ({} failed); server memory not measured", d.connected, d.failed)?;
        } else if let Some(d) = &self.derp {
            let delta = d.after.rss_kib.saturating_sub(d.before.rss_kib);
            writeln!(
                f,
                "derp:    {} idle connections ({} failed): RSS {} KiB -> {} KiB = {:.1} KiB per connection{}",
                d.connected,
                d.failed,
                d.before.rss_kib,
                d.after.rss_kib,
                delta as f64 / d.connected.max(1) as f64,
                if d.shares_process { " (server AND clients: one process)" } else { " (server process alone)" }
            )?;
        }
        if self.closed_by_server > 0 {
            writeln!(
                f,
                "WARNING: the server ended {} map streams while their nodes were connected",
                self.closed_by_server
            )?;
        }
        write!(f, "loadgen: RSS {} KiB, CPU {:.1} s in total", self.loadgen_end.rss_kib, self.loadgen_end.cpu_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_pacer_spaces_starts_by_its_period() {
        // 50 per second: the fifth start is due 80 ms after the first, however fast they ask.
        let start = tokio::time::Instant::now();
        let pacer = Arc::new(Pacer::new(50.0));
        let turns: Vec<_> = (0..5)
            .map(|_| {
                let pacer = pacer.clone();
                tokio::spawn(async move {
                    pacer.wait_turn().await;
                    tokio::time::Instant::now()
                })
            })
            .collect();
        let mut ends = Vec::new();
        for turn in turns {
            ends.push(turn.await.unwrap());
        }
        ends.sort();
        for (turn, end) in ends.iter().enumerate() {
            let due = Duration::from_millis(20) * turn as u32;
            assert!(*end - start >= due, "start {turn} after {:?}, due at {due:?}", *end - start);
        }
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(samples);
        assert_eq!(
            (p.p50, p.p90, p.p99, p.max),
            (
                Duration::from_millis(50),
                Duration::from_millis(90),
                Duration::from_millis(99),
                Duration::from_millis(100)
            )
        );
        assert_eq!(Percentiles::of(vec![Duration::from_millis(7)]).p99, Duration::from_millis(7));
        assert_eq!(Percentiles::of(vec![]).count, 0);
    }
}
