//! `DistinctWindow`: the most recent distinct values of an attribute, for `distinct(attr)`.

use std::collections::VecDeque;

use compact_str::CompactString;

use crate::time::Timestamp;

/// The `keep` most recently seen distinct values of one attribute, with when each was last seen.
///
/// A `distinct(attr)` threshold of limit L holds at `s` exactly when the L-th most recently seen
/// value was seen after `s - window`; values older than the L-th can never matter again unless
/// they are seen anew. So keeping the latest `keep = max L` values is exact and bounded.
/// The measure it reports saturates at `keep`.
#[derive(Debug, Clone, Default)]
pub struct DistinctWindow {
    /// Sorted by last-seen time, oldest first; each value at most once.
    recent: VecDeque<(Timestamp, CompactString)>,
}

impl DistinctWindow {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `value` as seen at `at`, keeping at most `keep` values.
    pub fn add(&mut self, at: Timestamp, value: &str, keep: usize) {
        if let Some(i) = self.recent.iter().position(|(_, v)| v == value) {
            if self.recent[i].0 >= at {
                return;
            }
            self.recent.remove(i);
        }
        let pos = self.recent.partition_point(|(seen, _)| *seen <= at);
        self.recent.insert(pos, (at, CompactString::from(value)));
        while self.recent.len() > keep {
            self.recent.pop_front();
        }
    }

    /// Drops values last seen at or before `boundary`.
    pub fn forget_until(&mut self, boundary: Timestamp) {
        while self.recent.front().is_some_and(|(at, _)| *at <= boundary) {
            self.recent.pop_front();
        }
    }

    /// How many kept values were last seen after `boundary`.
    pub fn count_after(&self, boundary: Timestamp) -> u64 {
        let idx = self.recent.partition_point(|(at, _)| *at <= boundary);
        (self.recent.len() - idx) as u64
    }

    /// When the `n`-th most recently seen distinct value was last seen (`n >= 1`).
    pub fn nth_latest(&self, n: u64) -> Option<Timestamp> {
        let n = usize::try_from(n.max(1)).ok()?;
        let idx = self.recent.len().checked_sub(n)?;
        Some(self.recent[idx].0)
    }

    /// The kept values last seen after `boundary`, oldest first, with when.
    pub fn values_after(
        &self,
        boundary: Timestamp,
    ) -> impl Iterator<Item = (Timestamp, &str)> + '_ {
        let start = self.recent.partition_point(|(at, _)| *at <= boundary);
        self.recent.range(start..).map(|(at, v)| (*at, v.as_str()))
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix(s)
    }

    #[test]
    fn repeats_move_a_value_forward_without_counting_twice() {
        let mut d = DistinctWindow::new();
        d.add(t(0), "a", 10);
        d.add(t(1), "b", 10);
        d.add(t(2), "a", 10);
        assert_eq!(d.count_after(t(0)), 2);
        assert_eq!(d.nth_latest(1), Some(t(2)));
        assert_eq!(d.nth_latest(2), Some(t(1)));
        assert_eq!(d.nth_latest(3), None);
    }

    #[test]
    fn keeps_only_the_latest_values() {
        let mut d = DistinctWindow::new();
        for (i, v) in [(0, "a"), (1, "b"), (2, "c"), (3, "d")] {
            d.add(t(i), v, 2);
        }
        assert_eq!(d.count_after(t(0)), 2);
        assert_eq!(d.nth_latest(2), Some(t(2)));
        // An older sighting of a kept value does not move it back.
        d.add(t(1), "d", 2);
        assert_eq!(d.nth_latest(1), Some(t(3)));
    }

    #[test]
    fn out_of_order_sightings_are_sorted() {
        let mut d = DistinctWindow::new();
        d.add(t(5), "a", 3);
        d.add(t(3), "b", 3);
        d.add(t(4), "c", 3);
        assert_eq!(d.nth_latest(3), Some(t(3)));
        d.forget_until(t(3));
        assert_eq!(d.count_after(t(0)), 2);
    }
}
