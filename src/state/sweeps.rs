//! The changes time makes: keys that expire, ephemeral nodes left idle. Their rules live
//! here, as `Writer` methods, like every other change; when they run is the business of
//! whoever knows (the expiry sweep's own timer, netmap's presence for idle ephemeral nodes).
//!
//! **Invariant:** each key expiry is announced once per deployment, however many instances
//! run: the sweep of `(since, until]` is claimed by moving the stored mark `expiry_swept_until`
//! from `since` to `until` in the same transaction as the announcements, and an instance whose
//! claim finds the mark moved appends nothing and starts from the new mark next time.

use std::sync::Weak;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::store::{StoreError, StoreResult};
use super::{events, Event, Writer};
use crate::domain::NodeId;

/// The stored mark: the end of the last claimed sweep (RFC 3339).
const SWEPT_UNTIL: &str = "expiry_swept_until";

/// An ephemeral node idle for a little less than its timeout (the timer that fired may be a
/// few milliseconds early relative to the stored `last_seen`) is still reaped.
const IDLE_SLACK: Duration = Duration::from_millis(50);

impl Writer {
    /// Sweeps for keys that expired since the deployment's last sweep and republishes their
    /// nodes, so peers drop them, each is told it expired, and DERP cuts it off. Returns how
    /// many this call announced (0 when another instance claimed the interval first).
    pub async fn sweep_expired(&self) -> StoreResult<usize> {
        let until = self.now();
        let mark = self.store.state_value_or_insert(SWEPT_UNTIL, || until.to_rfc3339()).await?;
        let since = DateTime::parse_from_rfc3339(&mark).map(|t| t.with_timezone(&Utc)).unwrap_or(until);
        if since >= until {
            return Ok(0);
        }
        let nodes = self.store.nodes_expired_between(since, until).await?;
        let announced: Vec<Event> = nodes.iter().map(|node| Event::node_changed(node, until)).collect();
        let records = events::records(&announced);
        if !self.store.advance_state_value(SWEPT_UNTIL, &mark, &until.to_rfc3339(), &records).await? {
            return Ok(0);
        }
        if !nodes.is_empty() {
            self.bus.wake().await;
        }
        Ok(nodes.len())
    }

    /// Sweeps every `every`, for as long as `owner` (what the sweeps serve: the server's
    /// tailnet) lives, so that a server dropped inside a process stops sweeping too.
    pub fn spawn_expiry_sweep<T: Send + Sync + 'static>(&self, every: Duration, owner: Weak<T>) {
        let writer = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if owner.strong_count() == 0 {
                    return;
                }
                if let Err(err) = writer.sweep_expired().await {
                    tracing::warn!(%err, "key expiry sweep failed; retrying");
                }
            }
        });
    }

    /// Deletes ephemeral node `node_id` if nothing has been heard of it for `idle_for`; false
    /// when it is not ephemeral, was seen since, or is gone. The caller knows it has no stream
    /// anywhere (presence is netmap's knowledge).
    pub async fn reap_ephemeral(&self, node_id: NodeId, idle_for: Duration) -> StoreResult<bool> {
        let node = match self.store.node_by_id(node_id).await {
            Ok(node) => node,
            Err(StoreError::NotFound(_)) => return Ok(false),
            Err(err) => return Err(err),
        };
        let idle_since = node.last_seen.unwrap_or(node.created_at);
        let idle = self.now().signed_duration_since(idle_since).to_std().unwrap_or_default();
        if !node.ephemeral || idle + IDLE_SLACK < idle_for {
            return Ok(false);
        }
        self.delete_node(&node, None).await
    }
}
