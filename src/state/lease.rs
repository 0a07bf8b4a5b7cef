//! This instance's lease: proof to the others that it is alive, and where its relay takes
//! mesh connections.
//!
//! Each instance renews its row in `instances` every fifth of the lease time and looks at the
//! table twice a second. A lease that lapsed belongs to an instance that crashed or lost the
//! database; the first instance to remove its row (one conditional `DELETE`, so only one
//! wins) appends [`Event::InstanceGone`] naming itself as successor, and every instance then
//! marks the nodes that streamed from the gone one offline: within the lease time plus half a
//! second of its last renewal, plus the outbox's delivery. A stopping instance releases its
//! lease at once, naming another live instance as successor.
//!
//! After the store was unreachable (every lease may have lapsed meanwhile), an instance reaps
//! nothing until it has renewed its own and waited one renewal period, in which every live
//! instance renews too: an outage of the database alone takes nobody for dead.
//!
//! Instance clocks are compared through the timestamps they write, so they must agree to well
//! under the lease time (NTP does that).

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::events::{self, Event};
use super::store::instances::InstanceLease;
use super::store::StoreResult;
use super::Writer;
use crate::domain::InstanceId;

/// How often the table is looked at for lapsed leases (and for the mesh's peers).
pub const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// What this instance's lease says about it.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    /// How long a renewal keeps the lease alive.
    pub ttl: Duration,
    /// Where the other instances reach this one's relay for the DERP mesh.
    pub mesh_url: Option<String>,
}

impl Writer {
    /// Extends this instance's lease by `ttl`. False when the row had to be made anew.
    pub async fn renew_lease(&self, options: &LeaseOptions) -> StoreResult<bool> {
        let ttl = chrono::Duration::from_std(options.ttl).unwrap_or(chrono::Duration::seconds(15));
        self.store.renew_lease(self.instance, options.mesh_url.as_deref(), self.now() + ttl).await
    }

    /// Removes the lease of `gone` if it lapsed, taking over its clean-up. False when it was
    /// renewed meanwhile or another instance was first.
    pub async fn reap_instance(&self, gone: InstanceId) -> StoreResult<bool> {
        let event = Event::InstanceGone { instance: gone, successor: Some(self.instance) };
        let reaped = self.store.reap_lease(gone, self.now(), &events::records(&[event])).await?;
        if reaped {
            self.bus.wake().await;
        }
        Ok(reaped)
    }

    /// Gives up this instance's lease at once (it is stopping): its nodes are offline to
    /// every other instance now, and `successor` runs their ephemeral clean-up.
    pub async fn release_lease(&self, successor: Option<InstanceId>) -> StoreResult<()> {
        let event = Event::InstanceGone { instance: self.instance, successor };
        self.store.release_lease(self.instance, &events::records(&[event])).await?;
        self.bus.wake().await;
        Ok(())
    }
}

/// The running lease: renewed until [`Lease::release`], with the live instances as last seen.
pub struct Lease {
    writer: Writer,
    live: watch::Receiver<Vec<InstanceLease>>,
    stop: CancellationToken,
}

impl Lease {
    /// Takes the lease (failing when the store cannot record it) and keeps it renewed.
    pub async fn start(writer: Writer, options: LeaseOptions) -> StoreResult<Self> {
        writer.renew_lease(&options).await?;
        let (tx, live) = watch::channel(Vec::new());
        let stop = CancellationToken::new();
        tokio::spawn(keep_renewed(writer.clone(), options, tx, stop.clone()));
        Ok(Self { writer, live, stop })
    }

    /// The other live instances, as of the last look (every [`CHECK_INTERVAL`]); changes
    /// whenever that set changes.
    pub fn others(&self) -> watch::Receiver<Vec<InstanceLease>> {
        self.live.clone()
    }

    /// Stops renewing and removes the lease, naming one of the other live instances as the
    /// successor for the clean-up.
    pub async fn release(&self) -> StoreResult<()> {
        self.stop.cancel();
        let successor = self.live.borrow().first().map(|l| l.id);
        self.writer.release_lease(successor).await
    }
}

async fn keep_renewed(
    writer: Writer,
    options: LeaseOptions,
    live: watch::Sender<Vec<InstanceLease>>,
    stop: CancellationToken,
) {
    let renew_every = (options.ttl / 5).max(CHECK_INTERVAL);
    // After the store was unreachable, every lease may have lapsed meanwhile; the live
    // instances renew theirs within `renew_every` of its return, so reaping waits that long.
    let reap_after = renew_every + CHECK_INTERVAL;
    let mut store_ok_since = Some(Instant::now());
    let mut renewed_at = Instant::now();
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let mut ok = true;
        if renewed_at.elapsed() >= renew_every || store_ok_since.is_none() {
            match writer.renew_lease(&options).await {
                Ok(held) => {
                    if !held {
                        // Applying our own InstanceGone makes the netmap announce our nodes again.
                        tracing::warn!(instance = %writer.instance(), "this instance's lease had lapsed and was taken over");
                    }
                    renewed_at = Instant::now();
                }
                Err(err) => {
                    tracing::warn!(%err, "renewing the instance lease failed; retrying");
                    ok = false;
                }
            }
        }
        let may_reap = store_ok_since.is_some_and(|since| since.elapsed() >= reap_after);
        if ok {
            if let Err(err) = look_at_the_others(&writer, &live, may_reap).await {
                tracing::debug!(%err, "reading instance leases failed; retrying");
                ok = false;
            }
        }
        store_ok_since = match (ok, store_ok_since) {
            (false, _) => None,
            (true, None) => Some(Instant::now()),
            (true, since) => since,
        };
    }
}

/// Removes every lapsed lease but ours (when `may_reap`), and publishes the live ones.
async fn look_at_the_others(
    writer: &Writer,
    live: &watch::Sender<Vec<InstanceLease>>,
    may_reap: bool,
) -> StoreResult<()> {
    let now = writer.now();
    let lapsed = if may_reap { writer.store.lapsed_instances(now).await? } else { Vec::new() };
    for gone in lapsed {
        if gone != writer.instance() && writer.reap_instance(gone).await? {
            tracing::info!(instance = %gone, "an instance's lease lapsed; its nodes are offline now");
        }
    }
    let mut others: Vec<InstanceLease> =
        writer.store.live_instances(now).await?.into_iter().filter(|l| l.id != writer.instance()).collect();
    others.sort_by_key(|l| l.id);
    live.send_if_modified(|current| {
        let changed = current.iter().map(|l| (l.id, &l.mesh_url)).ne(others.iter().map(|l| (l.id, &l.mesh_url)));
        if changed {
            *current = others;
        }
        changed
    });
    Ok(())
}
