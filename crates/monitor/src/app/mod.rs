//! `App`: the monitor's state — what was seen, per interval and in total, and the alert.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::num::NonZeroU64;
use std::sync::Arc;

use banhammer_core::{
    Change, Effect, Engine, Event, ManualClock, MetricRule, Ruleset, Scope, Seconds, Threshold,
    Timestamp, Window,
};

use crate::stats::Stats;
use crate::{section, Hit, Observation, PerSecond};

/// The monitor's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorConfig {
    /// Seconds between reports (`--interval`, 10).
    pub interval: u64,
    /// The alert fires when hits over `window` average more than this many per second
    /// (`--threshold`, 10; fractions such as 0.5 allowed).
    pub threshold: PerSecond,
    /// The alert's window in seconds (2 minutes).
    pub window: u64,
    /// Rows in top lists.
    pub top: usize,
}

impl MonitorConfig {
    /// The alert's limit: it fires when the hits over the window are more than this. `None`
    /// when the threshold allows less than one request per window (0, or below 1/120 per
    /// second over 2 minutes), which the engine's whole-request limits cannot express.
    pub fn alert_limit(&self) -> Option<NonZeroU64> {
        self.threshold.limit(self.window.max(1))
    }
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            interval: 10,
            threshold: PerSecond::whole(10),
            window: 120,
            top: 10,
        }
    }
}

/// Whether traffic went over the threshold or back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// Average over the window went above the threshold.
    Triggered,
    /// It went back to the threshold or below.
    Recovered,
}

/// One alert or recovery, kept for the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alert {
    /// Which.
    pub kind: AlertKind,
    /// Hits in the window at that second: for an alert, the total at the end of the second it
    /// fired in (every request of that second, not only those up to the one that crossed the
    /// limit); for a recovery, the total it came back to.
    pub hits: u64,
    /// The second it happened.
    pub at: Timestamp,
}

/// One interval's report.
#[derive(Debug, Clone)]
pub struct Report {
    /// Start of the interval (inclusive).
    pub from: Timestamp,
    /// End of the interval (exclusive).
    pub to: Timestamp,
    /// What was seen in it.
    pub interval: Stats,
    /// What was seen since the start.
    pub total: Stats,
    /// Seconds since the start, for the total's rate.
    pub elapsed: u64,
    /// Packets seen by the capture so far (0 for logs).
    pub packets: u64,
    /// Packets the kernel dropped so far.
    pub drops: u64,
    /// Whether the high-traffic alert is on in the interval's last second (a recovery in that
    /// second or before it turns it off, whether or not anything was seen after it).
    pub alerting: bool,
}

/// A run of intervals in which nothing was seen, told once instead of a report each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoTraffic {
    /// Start of the first empty interval.
    pub from: Timestamp,
    /// End of the last one: the start of the interval in progress.
    pub to: Timestamp,
}

/// What [`App::advance`] produces, in time order.
#[derive(Debug, Clone)]
pub enum Output {
    /// An interval ended.
    Report(Box<Report>),
    /// The alert started or ended.
    Alert(Alert),
    /// More than a few intervals in a row saw nothing (a night without requests in a
    /// replayed log, a capture whose clock jumped): they are not reported one by one.
    NoTraffic(NoTraffic),
}

impl Output {
    fn at(&self) -> Timestamp {
        match self {
            Output::Report(r) => r.to,
            Output::Alert(a) => a.at,
            Output::NoTraffic(q) => q.from,
        }
    }
}

/// Observations waiting for the clock, ordered by time then arrival.
#[derive(Debug)]
struct Pending(Timestamp, u64, Observation);

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.0, self.1) == (other.0, other.1)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0, self.1).cmp(&(other.0, other.1))
    }
}

/// Cap on distinct clients kept in the run's totals (a floor beyond it).
const TOTAL_CAP: usize = 1_000_000;
/// Cap on distinct clients, hosts and sections kept per interval.
const INTERVAL_CAP: usize = 100_000;
/// Seconds of per-second counts kept for the sparkline.
const SPARK: usize = 120;
/// Most observations waiting for the clock; past it the oldest are taken at once.
#[cfg(not(test))]
const MAX_PENDING: usize = 1_000_000;
/// Small in unit tests, so that they reach it.
#[cfg(test)]
const MAX_PENDING: usize = 1_000;
/// Empty intervals reported one by one when the clock crosses them in one step; a longer run
/// is one [`NoTraffic`], so that a gap costs the same whatever its length (a 10-year jump in a
/// corrupted pcap made one report per interval, and took all memory). A live clock crosses
/// one interval at a time, so an idle live monitor still reports every interval.
const MAX_EMPTY_REPORTS: u64 = 6;

/// The monitor's state. Pure: time only moves through [`App::advance`].
#[derive(Debug)]
pub struct App {
    config: MonitorConfig,
    /// The core engine, global scope: one metric `hits` whose alert is the high-traffic alert.
    engine: Engine<ManualClock>,
    pending: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    start: Timestamp,
    /// The clock: observations up to here are counted.
    now: Timestamp,
    interval_start: Timestamp,
    interval: Stats,
    total: Stats,
    alerts: Vec<Alert>,
    alerting: bool,
    /// An alert that fired in this second (and the count at the crossing request): it is told
    /// once the second is over, with the second's total.
    firing: Option<(Timestamp, u64)>,
    /// Alerts that came of observations counted early (too many waiting), not yet handed out.
    early: Vec<Output>,
    per_second: VecDeque<(Timestamp, u64)>,
    last_report: Option<Report>,
    /// The latest run of empty intervals not reported one by one.
    no_traffic: Option<NoTraffic>,
    packets: u64,
    drops: u64,
    late: u64,
}

impl App {
    /// A monitor starting at `start`. A threshold with no [`MonitorConfig::alert_limit`] is
    /// taken as the lowest limit (more than one request per window): callers refuse it first,
    /// as the binary does.
    ///
    /// # Panics
    ///
    /// Never: the one rule it builds is valid by construction.
    pub fn new(config: MonitorConfig, start: Timestamp) -> Self {
        let limit = config.alert_limit().unwrap_or(NonZeroU64::MIN);
        let window = Window::from_secs(config.window.max(1))
            .unwrap_or(Window::from_secs(120).expect("120 s"));
        let hits = MetricRule {
            name: "hits".into(),
            scope: Scope::Global,
            thresholds: vec![Threshold::new(limit, window, Effect::Alert, Seconds::ZERO)],
        };
        let rules = Ruleset::builder()
            .metric(hits)
            .build()
            .expect("the hits rule is valid");
        let clock = ManualClock::new(start);
        App {
            config,
            engine: Engine::new(Arc::new(rules), clock),
            pending: BinaryHeap::new(),
            seq: 0,
            start,
            now: start,
            interval_start: start,
            interval: Stats::new(INTERVAL_CAP),
            total: Stats::new(TOTAL_CAP),
            alerts: Vec::new(),
            alerting: false,
            firing: None,
            early: Vec::new(),
            per_second: VecDeque::new(),
            last_report: None,
            no_traffic: None,
            packets: 0,
            drops: 0,
            late: 0,
        }
    }

    /// Takes an observation; it is counted once the clock reaches its time.
    pub fn observe(&mut self, obs: Observation) {
        self.seq += 1;
        self.pending
            .push(Reverse(Pending(obs.time(), self.seq, obs)));
        if self.pending.len() > MAX_PENDING {
            // Far ahead of the clock: count the oldest now rather than grow without bound. An
            // alert that comes of it waits for the next `advance` to be handed out.
            let mut out = std::mem::take(&mut self.early);
            if let Some(Reverse(p)) = self.pending.pop() {
                self.count(p.2, &mut out);
            }
            self.early = out;
        }
    }

    /// The capture's counters, shown in reports.
    pub fn set_capture_counters(&mut self, packets: u64, drops: u64) {
        self.packets = packets;
        self.drops = drops;
    }

    /// Moves the clock to `now` (never back): counts what is due, in time order, and returns
    /// the reports of intervals that ended and the alerts and recoveries, in time order.
    pub fn advance(&mut self, now: Timestamp) -> Vec<Output> {
        let mut out = std::mem::take(&mut self.early);
        let now = now.max(self.now);
        while let Some(Reverse(p)) = self.pending.peek() {
            if p.0 > now {
                break;
            }
            let Some(Reverse(p)) = self.pending.pop() else {
                break;
            };
            self.report_until(p.0, &mut out);
            self.count(p.2, &mut out);
        }
        self.now = now;
        self.report_until(now, &mut out);
        self.end_alerts(now, &mut out);
        // Everything up to `now` is counted: the second an alert fired in is over.
        self.tell_firing(&mut out);
        out.sort_by_key(Output::at);
        out
    }

    /// Before the engine moves on to `t`: an alert that fired in an earlier second is told
    /// now, while the engine's window still ends at that second.
    fn leaving_second(&mut self, t: Timestamp, out: &mut Vec<Output>) {
        if self.firing.is_some_and(|(at, _)| t > at) {
            self.tell_firing(out);
        }
    }

    /// Tells the alert that fired, with the hits in the window at the engine's second.
    fn tell_firing(&mut self, out: &mut Vec<Output>) {
        let Some((at, crossing)) = self.firing.take() else {
            return;
        };
        let hits = self
            .engine
            .status("", "hits")
            .ok()
            .and_then(|s| s.tiers.first().map(|t| t.value))
            .unwrap_or(crossing);
        let a = Alert {
            kind: AlertKind::Triggered,
            hits,
            at,
        };
        self.alerts.push(a);
        out.push(Output::Alert(a));
    }

    /// Moves the engine to `t`: an alert whose window has emptied by then recovers, at the
    /// second the engine computes. Called before an interval whose last second is `t` is
    /// reported, so that its `alerting` is the state in that second, whether or not an
    /// observation came after the recovery.
    fn end_alerts(&mut self, t: Timestamp, out: &mut Vec<Output>) {
        self.leaving_second(t, out);
        for end in self.engine.advance(t) {
            self.alert(end.change, end.value, end.at, out);
        }
    }

    /// Ends the run: counts every observation still waiting, moves the clock to the newest,
    /// and reports the interval in progress (cut short at the second after the clock) if
    /// anything was seen in it, so a replay or a stopped capture counts every request.
    pub fn finish(&mut self) -> Vec<Output> {
        let newest = self
            .pending
            .iter()
            .map(|Reverse(p)| p.0)
            .max()
            .unwrap_or(self.now);
        let mut out = self.advance(newest);
        if !self.interval_is_empty() {
            let to = self.now.plus(Seconds::new(1)).max(self.interval_start);
            self.close_interval(to, &mut out);
        }
        out
    }

    /// Counts `obs` now (its time may be earlier than the clock, if it came late).
    fn count(&mut self, obs: Observation, out: &mut Vec<Output>) {
        let at = obs.time();
        if at < self.interval_start {
            self.late += 1;
        }
        match obs {
            Observation::Request(hit) => {
                let section = section(hit.host.as_deref(), hit.path.as_deref().unwrap_or("/"));
                self.interval.add_hit(&hit, &section);
                self.total.add_hit(&hit, &section);
                self.spark(at);
                self.hit(&hit, out);
            }
            Observation::Response(reply) => {
                self.interval.add_reply(&reply);
                self.total.add_reply(&reply);
            }
        }
    }

    fn hit(&mut self, hit: &Hit, out: &mut Vec<Output>) {
        self.leaving_second(hit.time, out);
        let client = hit.client.to_string();
        if let Ok(v) = self
            .engine
            .observe(&Event::new(&client, "hits", hit.time), false)
        {
            for d in v.decisions {
                self.alert(d.change, d.value, d.at, out);
            }
        }
    }

    fn alert(&mut self, change: Change, hits: u64, at: Timestamp, out: &mut Vec<Output>) {
        let kind = match change {
            Change::Start => AlertKind::Triggered,
            Change::End => AlertKind::Recovered,
            Change::Extend => return,
        };
        self.alerting = kind == AlertKind::Triggered;
        if kind == AlertKind::Triggered {
            // Told when its second is over (`tell_firing`), with that second's total.
            self.firing = Some((at, hits));
            return;
        }
        let a = Alert { kind, hits, at };
        self.alerts.push(a);
        out.push(Output::Alert(a));
    }

    fn spark(&mut self, at: Timestamp) {
        if let Some((_, n)) = self.per_second.iter_mut().rev().find(|(s, _)| *s == at) {
            *n += 1;
        } else {
            let pos = self.per_second.partition_point(|(s, _)| *s < at);
            self.per_second.insert(pos, (at, 1));
        }
        while self.per_second.len() > SPARK {
            self.per_second.pop_front();
        }
    }

    /// Reports the intervals that end by `t`; a run of more than [`MAX_EMPTY_REPORTS`] empty
    /// ones is one [`NoTraffic`]. Nothing is waiting before `t` when this is called, so the
    /// intervals after an empty one in progress are empty too.
    fn report_until(&mut self, t: Timestamp, out: &mut Vec<Output>) {
        let len = self.config.interval.max(1);
        while self.interval_start.plus(Seconds::new(len)) <= t {
            let ended = t.since(self.interval_start).get() / len;
            if ended > MAX_EMPTY_REPORTS && self.interval_is_empty() {
                let quiet = NoTraffic {
                    from: self.interval_start,
                    to: self.interval_start.plus(Seconds::new(ended * len)),
                };
                self.end_alerts(quiet.to.minus(Seconds::new(1)), out);
                self.no_traffic = Some(quiet);
                self.interval_start = quiet.to;
                out.push(Output::NoTraffic(quiet));
            } else {
                self.close_interval(self.interval_start.plus(Seconds::new(len)), out);
            }
        }
    }

    fn interval_is_empty(&self) -> bool {
        self.interval.requests == 0 && self.interval.responses == 0
    }

    /// Reports the interval from its start to `to` and starts the next one there.
    fn close_interval(&mut self, to: Timestamp, out: &mut Vec<Output>) {
        self.end_alerts(to.minus(Seconds::new(1)), out);
        let interval = std::mem::replace(&mut self.interval, Stats::new(INTERVAL_CAP));
        let report = Report {
            from: self.interval_start,
            to,
            interval,
            total: self.total.clone(),
            elapsed: to.since(self.start).get(),
            packets: self.packets,
            drops: self.drops,
            alerting: self.alerting,
        };
        self.last_report = Some(report.clone());
        out.push(Output::Report(Box::new(report)));
        self.interval_start = to;
    }

    /// The settings.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// The clock.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// When the monitor started.
    pub fn start(&self) -> Timestamp {
        self.start
    }

    /// The interval in progress.
    pub fn current(&self) -> (Timestamp, &Stats) {
        (self.interval_start, &self.interval)
    }

    /// Totals since the start.
    pub fn total(&self) -> &Stats {
        &self.total
    }

    /// The last completed interval's report.
    pub fn last_report(&self) -> Option<&Report> {
        self.last_report.as_ref()
    }

    /// The latest run of empty intervals told as one [`NoTraffic`] rather than reported.
    pub fn no_traffic(&self) -> Option<NoTraffic> {
        self.no_traffic
    }

    /// Every alert and recovery so far.
    pub fn alerts(&self) -> &[Alert] {
        &self.alerts
    }

    /// Whether the alert is on.
    pub fn alerting(&self) -> bool {
        self.alerting
    }

    /// Requests per second for the last seconds up to the clock, oldest first (zeros filled).
    pub fn per_second(&self, seconds: usize) -> Vec<u64> {
        let mut v = vec![0; seconds];
        for &(s, n) in &self.per_second {
            let age = self.now.since(s).get();
            if let Ok(age) = usize::try_from(age) {
                if age < seconds && s <= self.now {
                    v[seconds - 1 - age] = n;
                }
            }
        }
        v
    }

    /// Capture counters (packets, kernel drops).
    pub fn capture_counters(&self) -> (u64, u64) {
        (self.packets, self.drops)
    }

    /// Observations counted after their interval had been reported.
    pub fn late(&self) -> u64 {
        self.late
    }
}

#[cfg(test)]
mod tests;
