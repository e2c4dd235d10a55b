//! Time sources: the system clock for live use and a manual clock for tests and replay.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::time::{Seconds, Timestamp};

/// Where the engine reads "now" from. Injected, so tests and replays control time.
pub trait Clock: Send + Sync {
    /// The current time, in whole seconds.
    fn now(&self) -> Timestamp;
}

/// Wall-clock time from the operating system.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // this is the one place that reads the system clock
    fn now(&self) -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Timestamp::from_unix(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A manual clock showing `at`.
    pub fn new(at: Timestamp) -> Self {
        ManualClock(Arc::new(AtomicI64::new(at.as_unix())))
    }

    /// Sets the time to `at` (it may go backwards; the engine never does).
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.as_unix(), Ordering::SeqCst);
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Seconds) {
        self.0.fetch_add(
            i64::try_from(by.get()).unwrap_or(i64::MAX),
            Ordering::SeqCst,
        );
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix(self.0.load(Ordering::SeqCst))
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_time() {
        let a = ManualClock::new(Timestamp::from_unix(10));
        let b = a.clone();
        a.advance(Seconds::new(5));
        assert_eq!(b.now(), Timestamp::from_unix(15));
        b.set(Timestamp::from_unix(3));
        assert_eq!(a.now(), Timestamp::from_unix(3));
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now() > Timestamp::from_unix(1_577_836_800));
    }
}
