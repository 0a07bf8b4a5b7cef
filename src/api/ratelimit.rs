//! Request rate limits: one token bucket per client IP and one per API key (governor's GCRA).
//!
//! The IP bucket is checked before authentication, so guessing keys is throttled too; the
//! key bucket after, so one tenant behind many addresses is still held to its share. The
//! limiters live in `ApiState` (not per actix worker), so the limit is the same whatever the
//! worker count.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use crate::config::RateLimitSettings;
use crate::domain::ApiKeyId;

/// Forget idle buckets every this many checks, so the maps do not grow without bound.
const SWEEP_EVERY: u64 = 4096;

pub struct RateLimits {
    by_ip: DefaultKeyedRateLimiter<IpAddr>,
    by_key: DefaultKeyedRateLimiter<ApiKeyId>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").field("ips", &self.by_ip.len()).field("keys", &self.by_key.len()).finish()
    }
}

impl RateLimits {
    pub fn new(settings: RateLimitSettings) -> Self {
        // Settings refuse zero; clamping keeps this constructor total anyway.
        let per_second = NonZeroU32::new(settings.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(settings.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Self {
            by_ip: RateLimiter::keyed(quota),
            by_key: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one request from the client address's bucket.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.sweep();
        self.by_ip.check_key(&ip).map_err(|not_until| limited(not_until.wait_time_from(self.clock.now())))
    }

    /// Takes one request from the API key's bucket.
    pub fn check_key(&self, api_key_id: ApiKeyId) -> Result<(), ApiError> {
        self.by_key.check_key(&api_key_id).map_err(|not_until| limited(not_until.wait_time_from(self.clock.now())))
    }

    fn sweep(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.by_ip.retain_recent();
            self.by_key.retain_recent();
        }
    }
}

pub(crate) fn limited(wait: Duration) -> ApiError {
    ApiError::RateLimited { retry_after_secs: retry_after_secs(wait) }
}

/// Retry-After is whole seconds (RFC 9110); round up so a client that obeys it succeeds.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_with_retry_after() {
        let limits = RateLimits::new(RateLimitSettings { per_second: 1, burst: 2 });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(limits.check_ip(ip).is_ok());
        assert!(limits.check_ip(ip).is_ok());
        match limits.check_ip(ip) {
            Err(ApiError::RateLimited { retry_after_secs }) => assert_eq!(retry_after_secs, 1),
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Other clients and keys have their own buckets.
        assert!(limits.check_ip("192.0.2.2".parse().unwrap()).is_ok());
        assert!(limits.check_key(ApiKeyId::new(7)).is_ok());
    }
}
