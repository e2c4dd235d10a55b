//! `SlidingWindow`: an exact log of weighted events, bucketed per second, answering window sums
//! and "when did the n-th most recent unit arrive" in O(log n).

use std::collections::VecDeque;

use crate::time::Timestamp;

/// One second that saw events.
///
/// `before` is the total weight of every event added to the window before this second (also
/// those already forgotten), so the weight of any suffix of the log is `total - before`: sums
/// need no per-window running state and old buckets can be dropped without touching the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        match self.buckets.back() {
            // The common case: in order, same second or a later one.
            Some(last) if last.at == at => {}
            None => self.push_back(at),
            Some(last) if last.at < at => self.push_back(at),
            Some(_) => {
                let pos = self.buckets.partition_point(|b| b.at < at);
                if self.buckets[pos].at != at {
                    let before = self.buckets[pos].before;
                    self.buckets.insert(pos, Bucket { at, before });
                }
                // Every later second now has `weight` more before it.
                for b in self.buckets.range_mut(pos + 1..) {
                    b.before += weight;
                }
            }
        }
        self.total = self.total.saturating_add(weight);
    }

    fn push_back(&mut self, at: Timestamp) {
        if self.buckets.capacity() == self.buckets.len() && self.buckets.is_empty() {
            // Most tokens are seen once: do not let the first push reserve four buckets.
            self.buckets.reserve_exact(1);
        }
        self.buckets.push_back(Bucket {
            at,
            before: self.total,
        });
    }

    /// Drops every second at or before `boundary`: they can no longer be inside any window.
    pub fn forget_until(&mut self, boundary: Timestamp) {
        while self.buckets.front().is_some_and(|b| b.at <= boundary) {
            self.buckets.pop_front();
        }
        if self.buckets.is_empty() && self.buckets.capacity() > 8 {
            self.buckets.shrink_to_fit();
        }
    }

    /// Total weight of events strictly after `boundary` (the window `(boundary, ∞)`).
    pub fn sum_after(&self, boundary: Timestamp) -> u64 {
        let idx = self.buckets.partition_point(|b| b.at <= boundary);
        self.buckets.get(idx).map_or(0, |b| self.total - b.before)
    }

    /// The second of the `n`-th most recent unit of weight (`n >= 1`), if the log holds `n`.
    ///
    /// A threshold "limit L over window w" holds at `s` exactly when `nth_latest(L) > s - w`,
    /// and keeps holding until `nth_latest(L) + w - 1`.
    pub fn nth_latest(&self, n: u64) -> Option<Timestamp> {
        let n = n.max(1);
        let cut = self.total.checked_sub(n)?;
        // The last bucket whose suffix weight (total - before) is still >= n.
        let idx = self.buckets.partition_point(|b| b.before <= cut);
        idx.checked_sub(1).map(|i| self.buckets[i].at)
    }

    /// The most recent second with an event.
    pub fn latest(&self) -> Option<Timestamp> {
        self.buckets.back().map(|b| b.at)
    }

    /// The oldest second still retained.
    pub fn oldest(&self) -> Option<Timestamp> {
        self.buckets.front().map(|b| b.at)
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
        assert_eq!(w.oldest(), Some(t(2)));
        assert_eq!(w.sum_after(t(0)), 2);
        assert_eq!(w.nth_latest(2), Some(t(2)));
        assert_eq!(w.nth_latest(3), None, "forgotten weight is not counted");
        w.forget_until(t(100));
        assert!(w.is_empty());
        assert_eq!(w.nth_latest(1), None);
        w.add(t(101), 1);
        assert_eq!(w.sum_after(t(0)), 1);
    }

    #[test]
    fn zero_weight_is_ignored() {
        let w = window(&[(1, 0)]);
        assert!(w.is_empty());
    }
}
