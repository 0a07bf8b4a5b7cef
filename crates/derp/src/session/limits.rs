//! The per-connection budgets: PeerGone(NotHere) answers and packet bytes.

use std::time::Duration;

use tokio::time::Instant;

/// A token bucket of 1 token/s, 3 tokens deep.
pub(super) struct TokenBucket {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    const RATE: f64 = 1.0;
    const BURST: f64 = 3.0;

    pub(super) fn new() -> Self {
        Self { tokens: Self::BURST, at: Instant::now() }
    }

    pub(super) fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * Self::RATE;
        self.tokens = (self.tokens + refill).min(Self::BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A byte budget refilled at `rate` per second, one second deep. `rate` 0: unlimited.
pub(super) struct ByteRate {
    rate: u64,
    /// Bytes that may still be taken; negative is a debt to wait off.
    tokens: f64,
    at: Instant,
}

impl ByteRate {
    pub(super) fn new(rate: u64) -> Self {
        Self { rate, tokens: rate as f64, at: Instant::now() }
    }

    /// Takes `bytes`; how long to wait before the next read when that overdrew the budget.
    pub(super) fn take(&mut self, bytes: u64) -> Option<Duration> {
        if self.rate == 0 || bytes == 0 {
            return None;
        }
        let now = Instant::now();
        let rate = self.rate as f64;
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(rate);
        self.at = now;
        self.tokens -= bytes as f64;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overdrawing_the_budget_asks_for_the_time_it_takes_to_refill() {
        let mut rate = ByteRate::new(1000);
        assert_eq!(rate.take(600), None);
        let wait = rate.take(600).expect("200 bytes over");
        assert!(wait > Duration::from_millis(150) && wait <= Duration::from_millis(200), "{wait:?}");
        assert_eq!(ByteRate::new(0).take(1 << 30), None, "0 is no limit");
    }
}
