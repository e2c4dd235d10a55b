//! `MetricWindows`: the windows of one metric for one token (or for all, in global scope).

use crate::distinct::DistinctWindow;
use crate::event::Event;
use crate::resolve::ResolvedEvent;
use crate::rules::{CompiledMetric, MeasureSlot, RATE_WINDOWS};
use crate::time::{Seconds, Timestamp};
use crate::window::SlidingWindow;

use super::snapshot::WindowsData;
use super::Rates;

/// A metric's count window, and the `sum`/`distinct` windows its tiers measure.
#[derive(Debug)]
pub(super) struct MetricWindows {
    count: SlidingWindow,
    /// Only metrics with `sum`/`distinct` tiers pay for these.
    extra: Option<Box<ExtraWindows>>,
}

#[derive(Debug)]
struct ExtraWindows {
    sums: Vec<SlidingWindow>,
    distincts: Vec<DistinctWindow>,
}

impl MetricWindows {
    pub(super) fn new(m: &CompiledMetric) -> Self {
        let extra = (!m.sums.is_empty() || !m.distincts.is_empty()).then(|| {
            Box::new(ExtraWindows {
                sums: vec![SlidingWindow::new(); m.sums.len()],
                distincts: vec![DistinctWindow::new(); m.distincts.len()],
            })
        });
        MetricWindows {
            count: SlidingWindow::new(),
            extra,
        }
    }

    /// Counts `event` in every window of the metric, at the event's own time.
    pub(super) fn add(&mut self, m: &CompiledMetric, event: &ResolvedEvent<'_>) {
        let at = event.at;
        self.count.add(at, event.weight);
        if let Some(extra) = &mut self.extra {
            for (w, v) in extra.sums.iter_mut().zip(&event.sums) {
                w.add(at, *v);
            }
            for ((w, v), spec) in extra
                .distincts
                .iter_mut()
                .zip(&event.distincts)
                .zip(&m.distincts)
            {
                w.add(at, v, spec.2);
            }
        }
    }

    /// Drops what no window of the metric can still see at `now`.
    pub(super) fn forget(&mut self, m: &CompiledMetric, now: Timestamp) {
        self.count.forget_until(now.minus(m.count_horizon));
        if let Some(extra) = &mut self.extra {
            for (w, spec) in extra.sums.iter_mut().zip(&m.sums) {
                w.forget_until(now.minus(spec.1));
            }
            for (w, spec) in extra.distincts.iter_mut().zip(&m.distincts) {
                w.forget_until(now.minus(spec.1));
            }
        }
    }

    /// Whether the count window still holds an event that some window can see at `now` (the
    /// rates, or a tier).
    pub(super) fn retains(&self, m: &CompiledMetric, now: Timestamp) -> bool {
        self.count
            .latest()
            .is_some_and(|at| at > now.minus(m.count_horizon))
    }

    /// When the `n`-th most recent unit of `slot`'s measure arrived.
    pub(super) fn nth_latest(&self, slot: MeasureSlot, n: u64) -> Option<Timestamp> {
        match (slot, &self.extra) {
            (MeasureSlot::Count, _) => self.count.nth_latest(n),
            (MeasureSlot::Sum(i), Some(e)) => e.sums[i].nth_latest(n),
            (MeasureSlot::Distinct(i), Some(e)) => e.distincts[i].nth_latest(n),
            _ => None,
        }
    }

    /// `slot`'s measure over everything after `boundary`.
    pub(super) fn measure_after(&self, slot: MeasureSlot, boundary: Timestamp) -> u64 {
        match (slot, &self.extra) {
            (MeasureSlot::Count, _) => self.count.sum_after(boundary),
            (MeasureSlot::Sum(i), Some(e)) => e.sums[i].sum_after(boundary),
            (MeasureSlot::Distinct(i), Some(e)) => e.distincts[i].count_after(boundary),
            _ => 0,
        }
    }

    /// What the windows hold that can still matter at `now`, as data (see [`WindowsData`]).
    pub(super) fn data(&self, m: &CompiledMetric, now: Timestamp) -> WindowsData {
        let count = self
            .count
            .seconds_after(now.minus(m.count_horizon))
            .collect();
        let (sums, distincts) = match &self.extra {
            None => (Vec::new(), Vec::new()),
            Some(e) => (
                e.sums
                    .iter()
                    .zip(&m.sums)
                    .map(|(w, spec)| w.seconds_after(now.minus(spec.1)).collect())
                    .collect(),
                e.distincts
                    .iter()
                    .zip(&m.distincts)
                    .map(|(w, spec)| {
                        w.values_after(now.minus(spec.1))
                            .map(|(at, v)| (at, Box::from(v)))
                            .collect()
                    })
                    .collect(),
            ),
        };
        WindowsData {
            count,
            sums,
            distincts,
        }
    }

    /// Adds what `data` holds (windows read back after a restart). Anything that does not
    /// fit the metric's layout (its rules changed meanwhile) is left out.
    pub(super) fn restore(&mut self, m: &CompiledMetric, data: &WindowsData) {
        for &(at, n) in &data.count {
            self.count.add(at, n);
        }
        if let Some(extra) = &mut self.extra {
            for (w, seconds) in extra.sums.iter_mut().zip(&data.sums) {
                for &(at, n) in seconds {
                    w.add(at, n);
                }
            }
            for ((w, values), spec) in extra
                .distincts
                .iter_mut()
                .zip(&data.distincts)
                .zip(&m.distincts)
            {
                for (at, v) in values
                    .iter()
                    .filter(|(_, v)| v.len() <= Event::MAX_ATTR_LEN)
                {
                    w.add(*at, v, spec.2);
                }
            }
        }
    }

    /// The 1m/10m/60m counts ending at `now`.
    pub(super) fn rates(&self, now: Timestamp) -> Rates {
        let [m1, m10, m60] = RATE_WINDOWS.map(|w| self.count.sum_after(now.minus(Seconds::new(w))));
        Rates {
            last_1m: m1,
            last_10m: m10,
            last_60m: m60,
        }
    }
}
