//! How many connections the front holds at once, in all and per client address, and the
//! metrics that show what it refused and why connections ended before their first head.
//!
//! A connection over either limit is closed at once, before a byte is read or a buffer
//! allocated, and counted in `tenscale_front_connections_refused_total{reason}`. An admitted
//! connection holds a [`Slot`] for its whole life, taken-over ones (control, DERP) included;
//! dropping the slot gives it back.
//!
//! [`HandshakeRate`] bounds how fast one address may start handshakes (control and DERP,
//! raw or WebSocket): each costs the server Diffie-Hellman work before the client has proven
//! anything. Over it the upgrade is answered 429, counted in
//! `tenscale_front_handshakes_refused_total`.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// The front's metrics. `Default` gives unregistered ones (for tests and tools).
#[derive(Clone)]
pub struct FrontMetrics {
    /// Connections open now (admitted, not yet closed).
    pub open: IntGauge,
    refused: IntCounterVec,
    refused_per_ip: IntCounter,
    refused_total: IntCounter,
    head_failed: IntCounterVec,
    head_timeout: IntCounter,
    head_too_large: IntCounter,
    head_closed: IntCounter,
    /// Upgrades answered 429 by [`HandshakeRate`].
    pub handshakes_refused: IntCounter,
}

/// Why a connection ended before its first request head was complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadFailure {
    /// `header_timeout` passed (idle client, slow-loris, stalled TLS handshake).
    Timeout,
    /// The head outgrew `max_head_bytes`.
    TooLarge,
    /// The client closed, reset, or failed the TLS handshake.
    Closed,
}

impl FrontMetrics {
    pub fn new() -> prometheus::Result<Self> {
        let open = IntGauge::new("tenscale_front_connections", "Connections open on the listener")?;
        let refused = IntCounterVec::new(
            Opts::new(
                "tenscale_front_connections_refused_total",
                "Connections closed on accept: over the per-address (per_ip) or global (total) cap",
            ),
            &["reason"],
        )?;
        let head_failed = IntCounterVec::new(
            Opts::new(
                "tenscale_front_head_failures_total",
                "Connections closed before a complete first request head, by reason",
            ),
            &["reason"],
        )?;
        let handshakes_refused = IntCounter::new(
            "tenscale_front_handshakes_refused_total",
            "Control and DERP upgrades answered 429: over the per-address handshake rate",
        )?;
        Ok(Self {
            open,
            handshakes_refused,
            refused_per_ip: refused.with_label_values(&["per_ip"]),
            refused_total: refused.with_label_values(&["total"]),
            refused,
            head_timeout: head_failed.with_label_values(&["timeout"]),
            head_too_large: head_failed.with_label_values(&["too_large"]),
            head_closed: head_failed.with_label_values(&["closed"]),
            head_failed,
        })
    }

    /// New metrics, registered in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self::new()?;
        registry.register(Box::new(metrics.open.clone()))?;
        registry.register(Box::new(metrics.refused.clone()))?;
        registry.register(Box::new(metrics.head_failed.clone()))?;
        registry.register(Box::new(metrics.handshakes_refused.clone()))?;
        Ok(metrics)
    }

    pub fn refused(&self, refusal: Refusal) -> &IntCounter {
        match refusal {
            Refusal::PerIp => &self.refused_per_ip,
            Refusal::Total => &self.refused_total,
        }
    }

    pub fn head_failed(&self, failure: HeadFailure) -> &IntCounter {
        match failure {
            HeadFailure::Timeout => &self.head_timeout,
            HeadFailure::TooLarge => &self.head_too_large,
            HeadFailure::Closed => &self.head_closed,
        }
    }
}

impl Default for FrontMetrics {
    fn default() -> Self {
        Self::new().expect("static metric descriptions are valid")
    }
}

impl fmt::Debug for FrontMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrontMetrics").field("open", &self.open.get()).finish_non_exhaustive()
    }
}

/// Why a connection was refused on accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    PerIp,
    Total,
}

/// The connection caps, shared by every worker. A cap of 0 is no cap.
pub struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    /// Open connections per address; an address leaves the map with its last connection,
    /// so the map holds at most one entry per open connection.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    metrics: FrontMetrics,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_ip: usize, metrics: FrontMetrics) -> Arc<Self> {
        Arc::new(Self { max_total, max_per_ip, total: AtomicUsize::new(0), per_ip: Mutex::default(), metrics })
    }

    pub fn metrics(&self) -> &FrontMetrics {
        &self.metrics
    }

    /// A slot for a new connection from `ip`, or why there is none (counted).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let refusal = self.try_admit(ip);
        match refusal {
            Ok(()) => {
                self.metrics.open.inc();
                Ok(Slot { limits: self.clone(), ip })
            }
            Err(refusal) => {
                self.metrics.refused(refusal).inc();
                Err(refusal)
            }
        }
    }

    fn try_admit(&self, ip: IpAddr) -> Result<(), Refusal> {
        let total = self.total.fetch_add(1, Ordering::AcqRel) + 1;
        if self.max_total != 0 && total > self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Total);
        }
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let count = per_ip.entry(ip).or_insert(0);
        if self.max_per_ip != 0 && *count >= self.max_per_ip {
            drop(per_ip);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::PerIp);
        }
        *count += 1;
        Ok(())
    }

    /// Open connections from `ip` now.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.per_ip.lock().unwrap_or_else(|e| e.into_inner()).get(&ip).copied().unwrap_or(0)
    }

    fn release(&self, ip: IpAddr) {
        self.total.fetch_sub(1, Ordering::AcqRel);
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
        drop(per_ip);
        self.metrics.open.dec();
    }
}

/// One admitted connection's place under the caps; given back on drop.
pub struct Slot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limits.release(self.ip);
    }
}

/// Forget idle addresses every this many handshakes, so the map does not grow without bound.
const SWEEP_EVERY: u64 = 4096;

/// How many handshakes one client address may start: a token bucket per address
/// (governor's GCRA), or no limit.
pub struct HandshakeRate {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
    checks: AtomicU64,
    refused: IntCounter,
}

impl HandshakeRate {
    /// `per_second` handshakes per address, up to `burst` at once; `per_second` 0 is no limit.
    pub fn new(per_second: u32, burst: u32, metrics: &FrontMetrics) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            limiter,
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
            refused: metrics.handshakes_refused.clone(),
        }
    }

    /// Takes one handshake from `ip`'s bucket; when it is empty, how long until the next one
    /// is allowed (the refusal is counted).
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        limiter.check_key(&ip).map_err(|not_until| {
            self.refused.inc();
            not_until.wait_time_from(self.clock.now())
        })
    }
}

impl fmt::Debug for HandshakeRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeRate").field("addresses", &self.limiter.as_ref().map(|l| l.len())).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn per_address_cap_refuses_the_next_and_frees_on_drop() {
        let limits = ConnectionLimits::new(0, 2, FrontMetrics::default());
        let a = limits.admit(ip(1)).unwrap();
        let _b = limits.admit(ip(1)).unwrap();
        assert_eq!(limits.admit(ip(1)).err(), Some(Refusal::PerIp));
        // Another address has its own count.
        let _c = limits.admit(ip(2)).unwrap();
        drop(a);
        let _d = limits.admit(ip(1)).unwrap();
        assert_eq!(limits.metrics().refused(Refusal::PerIp).get(), 1);
        assert_eq!(limits.metrics().open.get(), 3);
    }

    #[test]
    fn global_cap_counts_every_address() {
        let limits = ConnectionLimits::new(2, 0, FrontMetrics::default());
        let _a = limits.admit(ip(1)).unwrap();
        let b = limits.admit(ip(2)).unwrap();
        assert_eq!(limits.admit(ip(3)).err(), Some(Refusal::Total));
        drop(b);
        assert!(limits.admit(ip(3)).is_ok());
        assert_eq!(limits.metrics().refused(Refusal::Total).get(), 1);
    }

    #[test]
    fn handshake_rate_refuses_past_the_burst_per_address() {
        let metrics = FrontMetrics::default();
        let rate = HandshakeRate::new(1, 3, &metrics);
        for _ in 0..3 {
            rate.check(ip(1)).unwrap();
        }
        let wait = rate.check(ip(1)).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        // Another address has its own bucket.
        rate.check(ip(2)).unwrap();
        assert_eq!(metrics.handshakes_refused.get(), 1);
    }

    #[test]
    fn handshake_rate_zero_is_no_limit() {
        let metrics = FrontMetrics::default();
        let rate = HandshakeRate::new(0, 0, &metrics);
        for _ in 0..10_000 {
            rate.check(ip(1)).unwrap();
        }
        assert_eq!(metrics.handshakes_refused.get(), 0);
    }

    #[test]
    fn addresses_leave_the_map_with_their_last_connection() {
        let limits = ConnectionLimits::new(0, 0, FrontMetrics::default());
        let slots: Vec<Slot> = (0..100).map(|n| limits.admit(ip(n)).unwrap()).collect();
        assert_eq!(limits.per_ip.lock().unwrap().len(), 100);
        drop(slots);
        assert!(limits.per_ip.lock().unwrap().is_empty());
        assert_eq!(limits.total.load(Ordering::Relaxed), 0);
        assert_eq!(limits.metrics().open.get(), 0);
        assert_eq!(limits.open_from(ip(1)), 0);
    }
}
