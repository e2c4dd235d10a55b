//! What a live console reads from the runtime: events per metric and second over the last
//! hour (one relaxed atomic add per event, sampled once a second), and the decisions as they
//! are stored (a bounded broadcast that costs nothing while nobody subscribes).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use banhammer_core::{MetricId, Ruleset, Timestamp};

/// How many seconds of per-metric counts are kept: an hour.
pub const RATE_HISTORY_SECS: usize = 3600;

/// How many stored decisions a slow subscriber may fall behind by before it is told it
/// missed some (it then reads the current state again).
pub const DECISION_FEED_CAPACITY: usize = 1024;

/// Events counted per metric (a family counts as one), with the last hour per second.
#[derive(Debug)]
pub struct MetricCounts {
    names: Vec<String>,
    totals: Vec<AtomicU64>,
    history: Mutex<History>,
}

#[derive(Debug, Default)]
struct History {
    /// The totals at the last sample.
    seen: Vec<u64>,
    /// `(second, events of each metric in it)`, oldest first, at most an hour.
    seconds: VecDeque<(Timestamp, Vec<u64>)>,
}

/// One metric's events per second now and per minute over the last hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricRate {
    /// The metric's name.
    pub metric: String,
    /// Events in each of the last 60 sampled seconds, oldest first (fewer after a start).
    pub per_second: Vec<u64>,
    /// Events in each of the last 60 minutes, oldest first, the current one last.
    pub per_minute: Vec<u64>,
    /// Every event counted since start.
    pub total: u64,
}

impl MetricCounts {
    /// Counters for `rules`' metrics, all zero.
    pub fn new(rules: &Ruleset) -> Self {
        let names: Vec<String> = rules.metrics().map(|(_, m)| m.name.to_string()).collect();
        MetricCounts {
            totals: names.iter().map(|_| AtomicU64::new(0)).collect(),
            history: Mutex::new(History {
                seen: vec![0; names.len()],
                seconds: VecDeque::new(),
            }),
            names,
        }
    }

    /// Counts one event of metric `id`.
    pub fn count(&self, id: MetricId) {
        if let Some(t) = self.totals.get(id.index()) {
            t.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes the events counted since the last sample as second `now`'s (added to it when
    /// the clock has not moved on).
    pub fn sample(&self, now: Timestamp) {
        let mut h = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        let deltas: Vec<u64> = self
            .totals
            .iter()
            .zip(&mut h.seen)
            .map(|(t, seen)| {
                let total = t.load(Ordering::Relaxed);
                let d = total.saturating_sub(*seen);
                *seen = total;
                d
            })
            .collect();
        match h.seconds.back_mut() {
            Some((at, counts)) if *at >= now => {
                for (c, d) in counts.iter_mut().zip(deltas) {
                    *c += d;
                }
            }
            _ => {
                h.seconds.push_back((now, deltas));
                while h.seconds.len() > RATE_HISTORY_SECS {
                    h.seconds.pop_front();
                }
            }
        }
    }

    /// Each metric's rates as sampled up to `now`.
    pub fn rates(&self, now: Timestamp) -> Vec<MetricRate> {
        let h = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        let minute_of = |t: Timestamp| t.as_unix().div_euclid(60);
        let this_minute = minute_of(now);
        self.names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let per_second = h
                    .seconds
                    .iter()
                    .rev()
                    .take(60)
                    .rev()
                    .map(|(_, c)| c[i])
                    .collect();
                let mut per_minute = vec![0u64; 60];
                for (at, c) in &h.seconds {
                    let ago = this_minute - minute_of(*at);
                    if let Ok(ago) = usize::try_from(ago) {
                        if ago < 60 {
                            per_minute[59 - ago] += c[i];
                        }
                    }
                }
                MetricRate {
                    metric: name.clone(),
                    per_second,
                    per_minute,
                    total: self.totals[i].load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use banhammer_testkit::rules::{block, metric, ruleset};

    fn rules() -> std::sync::Arc<Ruleset> {
        ruleset([
            metric("a", [block(5, 60, 60)]),
            metric("b", [block(5, 60, 60)]),
        ])
    }

    #[test]
    fn seconds_and_minutes_add_up_per_metric() {
        let rules = rules();
        let c = MetricCounts::new(&rules);
        let a = rules.metric_id("a").unwrap();
        let t0 = Timestamp::from_unix(1_700_000_080); // 40 s into a minute
        for s in 0..30 {
            for _ in 0..s % 3 {
                c.count(a);
            }
            c.sample(t0.plus(banhammer_core::Seconds::new(s)));
        }
        // The clock standing still adds to the same second.
        c.count(a);
        c.sample(t0.plus(banhammer_core::Seconds::new(29)));
        let r = c.rates(t0.plus(banhammer_core::Seconds::new(29)));
        assert_eq!(r[0].metric, "a");
        let want: u64 = (0..30).map(|s| s % 3).sum::<u64>() + 1;
        assert_eq!(r[0].total, want);
        assert_eq!(r[0].per_second.len(), 30);
        assert_eq!(r[0].per_second.iter().sum::<u64>(), want);
        assert_eq!(r[0].per_minute.iter().sum::<u64>(), want);
        // Seconds 40..59 fell in the previous minute, 0..9 of the next in the current one.
        let first: u64 = (0..20).map(|s| s % 3).sum();
        assert_eq!(r[0].per_minute[58], first);
        assert_eq!(r[0].per_minute[59], want - first);
        assert_eq!(r[1].total, 0);
    }
}
