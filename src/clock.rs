//! The source of "now" for every rule that depends on time; tests inject a fixed clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::{Duration, OffsetDateTime};

/// Domain code never reads the system time directly; it asks a `Clock`.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

/// The wall clock, truncated to whole seconds so that stored timestamps compare the same
/// way on every backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        truncate(OffsetDateTime::now_utc())
    }
}

/// A clock that only moves when told to. Cloning shares the same instant.
#[derive(Debug, Clone)]
pub struct MockClock {
    unix: Arc<AtomicI64>,
}

impl MockClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            unix: Arc::new(AtomicI64::new(start.unix_timestamp())),
        }
    }

    /// Starts at the current wall-clock time.
    pub fn starting_now() -> Self {
        Self::new(OffsetDateTime::now_utc())
    }

    pub fn advance(&self, by: Duration) {
        self.unix.fetch_add(by.whole_seconds(), Ordering::SeqCst);
    }
}

impl Clock for MockClock {
    fn now(&self) -> OffsetDateTime {
        let unix = self.unix.load(Ordering::SeqCst);
        OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

fn truncate(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_clock_moves_only_when_advanced() {
        let clock = MockClock::starting_now();
        let t0 = clock.now();
        clock.advance(Duration::hours(2));
        assert_eq!(clock.now() - t0, Duration::hours(2));
    }

    #[test]
    fn system_clock_has_whole_seconds() {
        assert_eq!(SystemClock.now().nanosecond(), 0);
    }
}
