//! `TokioClock`: wall time that tokio's paused test time also freezes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use banhammer_core::{Clock, Timestamp};

/// Wall time read as a wall-clock anchor plus `tokio::time::Instant` elapsed since, so that
/// `tokio::time::pause()` in a test freezes the engine too (std's clock would not stop).
#[derive(Debug, Clone)]
pub struct TokioClock {
    anchor: Duration,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock anchored at the current wall time.
    #[allow(clippy::disallowed_methods)] // the one place the runtime reads the system clock
    pub fn new() -> Self {
        let anchor = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        TokioClock {
            anchor,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let secs = (self.anchor + self.start.elapsed()).as_secs();
        Timestamp::from_unix(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paused_tokio_time_moves_the_clock_only_when_advanced() {
        let clock = TokioClock::new();
        let t0 = clock.now();
        tokio::time::sleep(Duration::from_secs(90)).await; // auto-advanced, not waited
        assert_eq!(clock.now().since(t0).get(), 90);
    }
}
