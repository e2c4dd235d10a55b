//! `SlidingWindow`: an exact log of weighted events, bucketed per second, answering window sums
//! and "when did the n-th most recent unit arrive" in O(log n).

use std::collections::VecDeque;

use crate::time::Timestamp;

/// One second that saw events.
///
/// `before` is the total weight of every event added to the window before this second (also
/// those already forgotten), so the weight of any suffix of the log is `total - before`: sums
/// need no per-window running state and old buckets can be dropped without touching the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Bucket {
    at: Timestamp,
    before: u64,
}

/// The exact events of one token and metric, one bucket per second that saw any.
///
/// This is the only window implementation in banhammer: `count` thresholds add each event's
/// weight, `sum(attr)` thresholds add the attribute's value, rate statistics read it too.
/// Memory is one 16-byte bucket per distinct second inside the retained horizon.
#[derive(Debug, Clone, Default)]
pub struct SlidingWindow {
    /// Sorted by `at`, strictly increasing.
    buckets: VecDeque<Bucket>,
    /// Weight of everything ever added.
    total: u64,
    /// Copies of the oldest bucket and the newest second, kept beside the deque: the common
    /// calls (an event in the current second, nothing to forget, fewer units than a limit)
    /// then answer without touching the deque's heap memory, which is a cache miss per
    /// token when many tokens are hot.
    first: Bucket,
    last_at: Timestamp,
}

impl SlidingWindow {
    /// An empty window.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `weight` at `at`. Events may arrive out of order; zero weights are ignored.
    pub fn add(&mut self, at: Timestamp, weight: u64) {
        if weight == 0 {
            return;
        }
        if self.buckets.is_empty() || at > self.last_at {
            // A new second, in order.
            if self.buckets.capacity() == 0 {
                // Most tokens are seen once: do not let the first push reserve four buckets.
                self.buckets.reserve_exact(1);
            }
            let bucket = Bucket {
                at,
                before: self.total,
            };
            self.buckets.push_back(bucket);
            if self.buckets.len() == 1 {
                self.first = bucket;
            }
            self.last_at = at;
        } else if at < self.last_at {
            // Late: into its own second, and every later second has `weight` more before it.
            let pos = self.buckets.partition_point(|b| b.at < at);
            if self.buckets[pos].at != at {
                let before = self.buckets[pos].before;
                self.buckets.insert(pos, Bucket { at, before });
            }
            for b in self.buckets.range_mut(pos + 1..) {
                b.before += weight;
            }
            self.first = self.buckets[0];
        }
        // (The same second as the newest bucket needs nothing but the total.)
        self.total = self.total.saturating_add(weight);
    }

    /// Drops every second at or before `boundary`: they can no longer be inside any window.
    ///
    /// Lazily: old seconds are dropped in batches, when the deque would otherwise grow, so
    /// that a steady stream does not touch the deque's front (another cache line) on every
    /// event. Callers always pass a window's boundary to the queries, so retained old seconds
    /// never count; memory stays within twice what the horizon needs.
    pub fn forget_until(&mut self, boundary: Timestamp) {
        if self.buckets.is_empty() || self.first.at > boundary {
            return;
        }
        let full = self.buckets.len() == self.buckets.capacity();
        let all_old = self.last_at <= boundary;
        if !full && !all_old {
            return;
        }
        while self.buckets.front().is_some_and(|b| b.at <= boundary) {
            self.buckets.pop_front();
        }
        match self.buckets.front() {
            Some(b) => self.first = *b,
            None if self.buckets.capacity() > 8 => self.buckets.shrink_to_fit(),
            None => {}
        }
    }

    /// Total weight of events strictly after `boundary` (the window `(boundary, ∞)`).
    pub fn sum_after(&self, boundary: Timestamp) -> u64 {
        if self.buckets.is_empty() {
            return 0;
        }
        if boundary < self.first.at {
            return self.total - self.first.before;
        }
        let idx = self.buckets.partition_point(|b| b.at <= boundary);
        self.buckets.get(idx).map_or(0, |b| self.total - b.before)
    }

    /// The weight added in each second after `boundary`, oldest first: what it takes to
    /// rebuild the window (a snapshot that survives a restart).
    pub fn seconds_after(
        &self,
        boundary: Timestamp,
    ) -> impl Iterator<Item = (Timestamp, u64)> + '_ {
        let start = self.buckets.partition_point(|b| b.at <= boundary);
        let ends = self
            .buckets
            .range((start + 1).min(self.buckets.len())..)
            .map(|b| b.before)
            .chain(std::iter::once(self.total));
        self.buckets
            .range(start..)
            .zip(ends)
            .map(|(b, end)| (b.at, end - b.before))
    }

    /// The second of the `n`-th most recent unit of weight (`n >= 1`), if the log holds `n`.
    ///
    /// A threshold "limit L over window w" holds at `s` exactly when `nth_latest(L) > s - w`,
    /// and keeps holding until `nth_latest(L) + w - 1`.
    pub fn nth_latest(&self, n: u64) -> Option<Timestamp> {
        let n = n.max(1);
        let cut = self.total.checked_sub(n)?;
        if self.buckets.is_empty() || self.first.before > cut {
            // Fewer than `n` units are retained.
            return None;
        }
        // The last bucket whose suffix weight (total - before) is still >= n.
        let idx = self.buckets.partition_point(|b| b.before <= cut);
        idx.checked_sub(1).map(|i| self.buckets[i].at)
    }

    /// The most recent second with an event.
    pub fn latest(&self) -> Option<Timestamp> {
        (!self.buckets.is_empty()).then_some(self.last_at)
    }

    /// The oldest second still retained.
    pub fn oldest(&self) -> Option<Timestamp> {
        (!self.buckets.is_empty()).then_some(self.first.at)
    }

    /// Whether nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Number of retained one-second buckets (for memory accounting).
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix(s)
    }

    fn window(events: &[(i64, u64)]) -> SlidingWindow {
        let mut w = SlidingWindow::new();
        for &(at, weight) in events {
            w.add(t(at), weight);
        }
        w
    }

    #[test]
    fn sums_are_half_open_on_the_left() {
        let w = window(&[(0, 1), (1, 1), (2, 1)]);
        assert_eq!(w.sum_after(t(0)), 2, "an event at the boundary is outside");
        assert_eq!(w.sum_after(t(1)), 1);
        assert_eq!(w.sum_after(t(2)), 0);
        // Nothing special about the epoch: (−∞, …) is everything.
        let w = window(&[(5, 1)]);
        assert_eq!(w.sum_after(t(4)), 1);
    }

    #[test]
    fn same_second_events_share_a_bucket() {
        let w = window(&[(7, 1), (7, 2), (7, 1)]);
        assert_eq!(w.buckets(), 1);
        assert_eq!(w.sum_after(t(6)), 4);
    }

    #[test]
    fn nth_latest_counts_weight_from_the_newest() {
        let w = window(&[(0, 1), (1, 1), (2, 1), (5, 1)]);
        assert_eq!(w.nth_latest(1), Some(t(5)));
        assert_eq!(w.nth_latest(3), Some(t(1)));
        assert_eq!(w.nth_latest(4), Some(t(0)));
        assert_eq!(w.nth_latest(5), None);
        let w = window(&[(0, 2), (3, 5)]);
        assert_eq!(w.nth_latest(5), Some(t(3)));
        assert_eq!(w.nth_latest(6), Some(t(0)));
        assert_eq!(w.nth_latest(7), Some(t(0)));
        assert_eq!(w.nth_latest(8), None);
    }

    #[test]
    fn out_of_order_events_land_in_their_second() {
        let w = window(&[(1, 1), (5, 1), (3, 1), (5, 1), (1, 1), (0, 1)]);
        assert_eq!(w.buckets(), 4);
        assert_eq!(w.sum_after(t(2)), 3);
        assert_eq!(w.sum_after(t(0)), 5);
        assert_eq!(w.nth_latest(3), Some(t(3)));
        assert_eq!(w.nth_latest(4), Some(t(1)));
        assert_eq!(w.nth_latest(6), Some(t(0)));
    }

    #[test]
    fn forgetting_keeps_later_sums_exact() {
        let mut w = window(&[(0, 1), (1, 1), (2, 1), (9, 1)]);
        w.forget_until(t(1));
        assert_eq!(w.sum_after(t(1)), 2);
        assert_eq!(w.nth_latest(2), Some(t(2)));
        // Forgetting is lazy (in batches), but once everything is old it all goes.
        w.forget_until(t(100));
        assert!(w.is_empty());
        assert_eq!(w.nth_latest(1), None);
        w.add(t(101), 1);
        assert_eq!(w.sum_after(t(0)), 1);
        assert_eq!(w.oldest(), Some(t(101)));
    }

    #[test]
    fn forgetting_bounds_memory_to_twice_the_horizon() {
        let mut w = SlidingWindow::new();
        for s in 0..10_000 {
            w.add(t(s), 1);
            w.forget_until(t(s - 60));
            assert!(w.buckets() <= 2 * 60 + 8, "{} buckets at {s}", w.buckets());
            assert_eq!(
                w.sum_after(t(s - 60)),
                u64::try_from((s + 1).min(60)).unwrap()
            );
        }
    }

    #[test]
    fn zero_weight_is_ignored() {
        let w = window(&[(1, 0)]);
        assert!(w.is_empty());
    }

    #[test]
    fn seconds_rebuild_the_window_after_a_boundary() {
        let w = window(&[(1, 2), (3, 1), (3, 4), (7, 1), (5, 3)]);
        let seconds: Vec<(i64, u64)> = w
            .seconds_after(t(1))
            .map(|(a, n)| (a.as_unix(), n))
            .collect();
        assert_eq!(seconds, [(3, 5), (5, 3), (7, 1)]);
        assert_eq!(
            w.seconds_after(t(7)).count(),
            0,
            "nothing after the newest second"
        );
        assert_eq!(SlidingWindow::new().seconds_after(t(0)).count(), 0);
        let mut rebuilt = SlidingWindow::new();
        for (at, n) in w.seconds_after(t(0)) {
            rebuilt.add(at, n);
        }
        for b in 0..8u64 {
            let at = t(i64::try_from(b).unwrap());
            assert_eq!(rebuilt.sum_after(at), w.sum_after(at));
            assert_eq!(rebuilt.nth_latest(b + 1), w.nth_latest(b + 1));
        }
    }
}
