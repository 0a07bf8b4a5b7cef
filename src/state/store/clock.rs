//! The one clock of tailnet state. Every time the writer and the store record (a key's
//! expiry, a node's last sighting, when a row was made) and every "is it past yet?" of their
//! rules is read from here, so a test can stand at a chosen instant and move it on, instead of
//! sleeping until the real clock has passed a deadline.
//!
//! Times are truncated to microseconds: PostgreSQL keeps no more, and a value read back must
//! compare equal to the one written.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, SubsecRound, Utc};

/// Where time comes from: the system's clock, or a hand a test moves.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<Mutex<DateTime<Utc>>>>,
}

/// The hand of a manual [`Clock`]: only its holder moves the time.
#[derive(Clone, Debug)]
pub struct ClockHand(Arc<Mutex<DateTime<Utc>>>);

impl Clock {
    /// The system's clock (what a running server uses).
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock standing at `start` until its hand moves it.
    pub fn manual(start: DateTime<Utc>) -> (Self, ClockHand) {
        let time = Arc::new(Mutex::new(start.trunc_subsecs(6)));
        (Self { manual: Some(time.clone()) }, ClockHand(time))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.manual {
            None => Utc::now().trunc_subsecs(6),
            Some(time) => *time.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
        }
    }
}

impl ClockHand {
    /// Moves the clock on by `by` (backwards when negative).
    pub fn advance(&self, by: Duration) {
        let mut time = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *time = (*time + by).trunc_subsecs(6);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_its_hand_moves_it() {
        let start = DateTime::from_timestamp(1_800_000_000, 123_456_789).unwrap();
        let (clock, hand) = Clock::manual(start);
        let at = clock.now();
        assert_eq!(at.timestamp_subsec_nanos(), 123_456_000, "truncated to microseconds");
        assert_eq!(clock.now(), at);
        hand.advance(Duration::seconds(90));
        assert_eq!(clock.now() - at, Duration::seconds(90));
        assert_eq!(clock.clone().now(), clock.now(), "clones share the hand");
    }

    #[test]
    fn the_system_clock_keeps_microseconds() {
        assert_eq!(Clock::system().now().timestamp_subsec_nanos() % 1_000, 0);
    }
}
