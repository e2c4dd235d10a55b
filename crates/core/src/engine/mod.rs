//! `Engine`: counts events into windows, checks thresholds, starts, extends and ends decisions.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use hashbrown::{Equivalent, HashMap};
use hashlink::linked_hash_map::RawEntryMut;
use hashlink::LinkedHashMap;
use smallvec::SmallVec;

use crate::action::ActionCall;
use crate::clock::Clock;
use crate::decision::{Change, DecisionEvent, DecisionView};
use crate::distinct::DistinctWindow;
use crate::event::Event;
use crate::rules::{
    BanPolicy, CompiledMetric, Effect, MeasureSlot, MetricId, RuleId, Ruleset, Scope, RATE_WINDOWS,
};
use crate::time::{Seconds, Timestamp};
use crate::token::Token;
use crate::window::SlidingWindow;

/// Why an event or a call was refused. Nothing was counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The metric is not in the rule set.
    #[error("unknown metric `{0}`")]
    UnknownMetric(String),
    /// The token is empty or longer than [`Token::MAX_LEN`] bytes.
    #[error("the token must be 1 to {} bytes", Token::MAX_LEN)]
    BadToken,
    /// A `distinct` or `sum` threshold needs an attribute the event does not carry.
    #[error("metric `{metric}` needs attribute `{attr}`")]
    MissingAttr {
        /// The metric.
        metric: String,
        /// The attribute.
        attr: String,
    },
    /// A `sum` attribute that is not a non-negative integer.
    #[error("attribute `{attr}` must be a non-negative integer, not `{value}`")]
    BadSumAttr {
        /// The attribute.
        attr: String,
        /// What it held (cut to 64 bytes).
        value: String,
    },
    /// An attribute value longer than [`Event::MAX_ATTR_LEN`] bytes.
    #[error("attribute `{0}` is longer than {max} bytes", max = Event::MAX_ATTR_LEN)]
    AttrTooLong(String),
    /// The metric has no such tier.
    #[error("metric `{metric}` has no tier {tier}")]
    UnknownTier {
        /// The metric.
        metric: String,
        /// The tier asked for.
        tier: usize,
    },
    /// A token already counts the most members of a metric family that it may.
    #[error("token counts too many members of `{0}` (at most {max})", max = MAX_MEMBERS)]
    TooManyMembers(String),
    /// Global-scope alerts follow traffic; they cannot be fired by hand.
    #[error("metric `{0}` is global-scope: its alerts cannot be fired by hand")]
    GlobalFire(String),
}

/// The engine's answer to an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// False while a block decision is active for the token.
    pub passed: bool,
    /// The metric's 1m/10m/60m rates for the token, when asked for and kept.
    pub rates: Option<Rates>,
    /// Decisions that started or ended during the call, in time order (no allocation if none).
    pub decisions: Vec<DecisionEvent>,
}

/// Events of one metric for one token in the last 1, 10 and 60 minutes, the current included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rates {
    /// `token_rate_1m`.
    pub last_1m: u64,
    /// `token_rate_10m`.
    pub last_10m: u64,
    /// `token_rate_60m`.
    pub last_60m: u64,
}

/// One tier's measure now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierMeasure {
    /// The measure over the tier's window ending now.
    pub value: u64,
    /// Whether the threshold holds now.
    pub holds: bool,
}

/// What the engine knows about a token and a metric now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricStatus {
    /// The rates, if kept.
    pub rates: Option<Rates>,
    /// Each tier's measure.
    pub tiers: Vec<TierMeasure>,
    /// The token's active ban, if any (from whichever metric).
    pub ban: Option<DecisionView>,
}

/// Counters for monitoring the engine itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineCounters {
    /// Tokens with windows in memory now.
    pub tracked_tokens: usize,
    /// Active decisions (bans, notices, alerts).
    pub active_decisions: usize,
    /// Tokens dropped because the `max_tokens` cap was reached (least recently seen first).
    pub evictions: u64,
    /// Tokens dropped because nothing about them could matter any more.
    pub expired: u64,
    /// Events older than every window they could count in, ignored.
    pub late_events: u64,
    /// Actions that panicked (caught; the engine's state was already complete).
    pub action_panics: u64,
}

/// The windows of one metric for one token (or for all, in global scope).
#[derive(Debug)]
struct MetricWindows {
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
    fn new(m: &CompiledMetric) -> Self {
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

    fn add(&mut self, m: &CompiledMetric, at: Timestamp, weight: u64, values: &AttrValues<'_>) {
        self.count.add(at, weight);
        if let Some(extra) = &mut self.extra {
            for (w, v) in extra.sums.iter_mut().zip(&values.sums) {
                w.add(at, *v);
            }
            for ((w, v), spec) in extra
                .distincts
                .iter_mut()
                .zip(&values.distincts)
                .zip(&m.distincts)
            {
                w.add(at, v, spec.2);
            }
        }
    }

    fn forget(&mut self, m: &CompiledMetric, now: Timestamp) {
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

    fn nth_latest(&self, slot: MeasureSlot, n: u64) -> Option<Timestamp> {
        match (slot, &self.extra) {
            (MeasureSlot::Count, _) => self.count.nth_latest(n),
            (MeasureSlot::Sum(i), Some(e)) => e.sums[i].nth_latest(n),
            (MeasureSlot::Distinct(i), Some(e)) => e.distincts[i].nth_latest(n),
            _ => None,
        }
    }

    fn measure_after(&self, slot: MeasureSlot, boundary: Timestamp) -> u64 {
        match (slot, &self.extra) {
            (MeasureSlot::Count, _) => self.count.sum_after(boundary),
            (MeasureSlot::Sum(i), Some(e)) => e.sums[i].sum_after(boundary),
            (MeasureSlot::Distinct(i), Some(e)) => e.distincts[i].count_after(boundary),
            _ => 0,
        }
    }

    fn rates(&self, now: Timestamp) -> Rates {
        let [m1, m10, m60] = RATE_WINDOWS.map(|w| self.count.sum_after(now.minus(Seconds::new(w))));
        Rates {
            last_1m: m1,
            last_10m: m10,
            last_60m: m60,
        }
    }
}

/// An event's attribute values, in the order of the metric's sum and distinct windows.
#[derive(Debug, Default)]
struct AttrValues<'a> {
    sums: SmallVec<[u64; 2]>,
    distincts: SmallVec<[&'a str; 2]>,
}

#[derive(Debug)]
struct TokenState {
    /// The engine time at the last event: the LRU order and idle expiry go by it.
    last_seen: Timestamp,
    /// A copy of the token's ban end while it is banned (`Timestamp::MIN` otherwise): a banned
    /// token hammering away is answered, and its ban found not to move, without a lookup of
    /// the decisions. Only ever trusted when it says "banned past now".
    ban_until: Timestamp,
    /// How far the ban's `after_trigger` reaches go (they are never cut when the clock
    /// stops, so one no further than this changes nothing).
    ban_trigger_until: Timestamp,
    metrics: SmallVec<[(MetricKey, MetricWindows); 1]>,
}

/// The most members of one metric family a token counts apart (untrusted names must not grow
/// memory without bound).
pub const MAX_MEMBERS: usize = 16;

/// Which windows: a metric, and for a family (`detect:*`) the member (`detect:login`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct MetricKey {
    id: MetricId,
    member: Option<Box<str>>,
}

impl MetricKey {
    fn is(&self, id: MetricId, member: Option<&str>) -> bool {
        self.id == id && self.member.as_deref() == member
    }
}

/// Which episode a decision belongs to: one ban per token (whatever metric), one notice per
/// token and rule, one alert per global rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EpisodeKey {
    Block(Token),
    Notify(Token, RuleId),
    Alert(RuleId),
}

impl Hash for EpisodeKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        match self {
            EpisodeKey::Block(t) => BlockKey(t.as_str()).hash(h),
            EpisodeKey::Notify(t, r) => {
                1u8.hash(h);
                t.as_str().hash(h);
                r.hash(h);
            }
            EpisodeKey::Alert(r) => {
                2u8.hash(h);
                r.hash(h);
            }
        }
    }
}

/// Looks up a token's ban without building a `Token`.
struct BlockKey<'a>(&'a str);

impl Hash for BlockKey<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        0u8.hash(h);
        self.0.hash(h);
    }
}

impl Equivalent<EpisodeKey> for BlockKey<'_> {
    fn equivalent(&self, key: &EpisodeKey) -> bool {
        matches!(key, EpisodeKey::Block(t) if t.as_str() == self.0)
    }
}

/// How far one rule carries a decision.
#[derive(Debug, Clone)]
struct Reach {
    rule: RuleId,
    /// The family member that held (`detect:login`), for records; `None` for plain metrics.
    member: Option<Arc<str>>,
    value: u64,
    /// `after_trigger`: the decision's end. `after_violation`: the last second the rule holds.
    mark: Timestamp,
    /// `after_violation` only: added to `mark`.
    duration: Seconds,
    policy: BanPolicy,
}

impl Reach {
    /// Where this reach ends, with the clock stopped at `stop` (DESIGN.md: "bounded by the
    /// clock"); `None` means the clock runs on.
    fn end(&self, stop: Option<Timestamp>) -> Timestamp {
        match self.policy {
            BanPolicy::AfterTrigger => self.mark,
            BanPolicy::AfterViolation => stop
                .map_or(self.mark, |s| self.mark.min(s))
                .plus(self.duration),
        }
    }
}

#[derive(Debug)]
struct Episode {
    id: u64,
    /// The family member of the rule that started it, if any.
    member: Option<Arc<str>>,
    effect: Effect,
    token: Token,
    rule: RuleId,
    value: u64,
    from: Timestamp,
    /// One entry per rule that has held during the episode; `after_trigger` entries keep their
    /// furthest end, `after_violation` entries their latest hold end.
    reaches: SmallVec<[Reach; 1]>,
    /// The live end: when the deadline queue ends it (for alerts, the projected recovery).
    until: Timestamp,
}

impl Episode {
    fn extend(&mut self, reach: Reach) {
        let end = reach.end(None);
        match self
            .reaches
            .iter_mut()
            .find(|r| r.rule == reach.rule && r.policy == reach.policy && r.member == reach.member)
        {
            Some(r) => {
                // Only a reach that goes further replaces the record's value: a hold that
                // carries no further (like a banned token that keeps coming, which is not even
                // measured) leaves the value that set the mark.
                if reach.mark > r.mark {
                    r.mark = reach.mark;
                    r.value = reach.value;
                }
            }
            None => self.reaches.push(reach),
        }
        self.until = self.until.max(end);
    }

    /// The reach that ends last with the clock stopped at `stop`: its end, rule, value and
    /// family member.
    fn furthest(&self, stop: Option<Timestamp>) -> (Timestamp, RuleId, u64, Option<&Arc<str>>) {
        self.reaches
            .iter()
            .map(|r| (r.end(stop), r.rule, r.value, r.member.as_ref()))
            .max_by_key(|(end, _, _, _)| *end)
            .unwrap_or((self.until, self.rule, self.value, self.member.as_ref()))
    }
}

/// A point at which an episode may end. Stale entries (the episode was extended or replaced)
/// are skipped or pushed again when they come up, so extending costs nothing here.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Deadline {
    at: Timestamp,
    id: u64,
    key: EpisodeKey,
}

impl PartialOrd for EpisodeKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EpisodeKey {
    /// Only a tie-breaker behind `(at, id)`, which are unique; kept total for the heap.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        fn parts(k: &EpisodeKey) -> (u8, &str, Option<RuleId>) {
            match k {
                EpisodeKey::Block(t) => (0, t.as_str(), None),
                EpisodeKey::Notify(t, r) => (1, t.as_str(), Some(*r)),
                EpisodeKey::Alert(r) => (2, "", Some(*r)),
            }
        }
        parts(self).cmp(&parts(other))
    }
}

/// A threshold found holding during an event, before decisions are applied.
#[derive(Debug, Clone, Copy)]
struct Holding {
    rule: RuleId,
    value: u64,
    /// When the needed unit arrived; the threshold holds until `nth + window - 1`.
    nth: Timestamp,
}

/// The banhammer engine for one thread. See DESIGN.md for the semantics it implements.
///
/// Every call first moves the engine's time forward to the clock (or the event's time, when
/// that is later), ending decisions whose `until` has come, then counts and decides.
#[derive(Debug)]
pub struct Engine<C> {
    rules: Arc<Ruleset>,
    clock: C,
    st: State,
}

impl<C: Clock> Engine<C> {
    /// An engine running `rules`, reading time from `clock`.
    pub fn new(rules: Arc<Ruleset>, clock: C) -> Self {
        let globals = rules.metrics().map(|_| None).collect();
        let cap = rules.max_tokens();
        let now = clock.now();
        Engine {
            rules,
            clock,
            st: State {
                now,
                tokens: LinkedHashMap::new(),
                globals,
                episodes: HashMap::new(),
                deadlines: BinaryHeap::new(),
                next_id: 0,
                cap,
                counters: EngineCounters::default(),
            },
        }
    }

    /// Overrides the rule set's cap on tracked tokens (a sharded engine splits it).
    pub fn set_max_tokens(&mut self, cap: Option<NonZeroUsize>) {
        self.st.cap = cap;
    }

    /// The rules this engine runs.
    pub fn rules(&self) -> &Arc<Ruleset> {
        &self.rules
    }

    /// The engine's time: the latest of every clock reading and event time seen.
    pub fn time(&self) -> Timestamp {
        self.st.now
    }

    /// The library call: one event of `metric` for `token` now, by the clock. Returns whether
    /// the token passes, and its rates if the rule set keeps them.
    pub fn incr(&mut self, token: &str, metric: &str) -> Result<Verdict, EventError> {
        let at = self.clock.now();
        let rates = self.rules.rates();
        self.observe(&Event::new(token, metric, at), rates)
    }

    /// Counts `event` at its own time (a replay's event time; a late event counts where it
    /// belongs) and decides at the engine's time. `want_rates` asks for the metric's rates.
    pub fn observe(&mut self, event: &Event<'_>, want_rates: bool) -> Result<Verdict, EventError> {
        let rules: &Ruleset = &self.rules;
        let id = rules
            .metric_id(event.metric)
            .ok_or_else(|| EventError::UnknownMetric(cut(event.metric)))?;
        let m = rules.compiled(id);
        if event.token.is_empty() || event.token.len() > Token::MAX_LEN {
            return Err(EventError::BadToken);
        }
        let values = attr_values(m, event)?;
        let member = member_name(rules, id, event.metric);

        let mut out = Vec::new();
        let clock_now = self.clock.now();
        self.st
            .advance_into(&self.rules, clock_now.max(event.at), &mut out);
        let now = self.st.now;

        // Phase 1: windows. Count the event, then find the tiers that hold.
        let (windows, (cached_ban, cached_trigger)) = match m.rule.scope {
            Scope::Token => self.st.token_windows(event.token, id, member, m)?,
            Scope::Global => (
                self.st.globals[id.index()].get_or_insert_with(|| MetricWindows::new(m)),
                (Timestamp::MIN, Timestamp::MIN),
            ),
        };
        let banned_past_now = cached_ban > now;
        let late = event.at <= now.minus(rules.horizon());
        if !late {
            windows.add(m, event.at, event.weight, &values);
        }
        windows.forget(m, now);
        let mut holding: SmallVec<[Holding; 2]> = SmallVec::new();
        for (tier, t) in m.rule.thresholds.iter().enumerate() {
            // Already banned further than this tier could reach: whether it holds changes
            // nothing (the common case of a banned token that keeps coming).
            let unchanged = banned_past_now
                && t.effect == Effect::Block
                && t.policy == BanPolicy::AfterTrigger
                && now.plus(t.action_duration) <= cached_trigger;
            if unchanged {
                continue;
            }
            let slot = m.slots[tier];
            let Some(nth) = windows.nth_latest(slot, t.needed()) else {
                continue;
            };
            let boundary = t.window.boundary(now);
            if nth > boundary {
                let value = windows.measure_after(slot, boundary);
                holding.push(Holding {
                    rule: RuleId {
                        metric: id,
                        tier: tier as u32,
                    },
                    value,
                    nth,
                });
            }
        }
        let rates = (want_rates && rules.rates()).then(|| windows.rates(now));
        if late {
            self.st.counters.late_events += 1;
        }

        // Phase 2: decisions.
        let token = match m.rule.scope {
            Scope::Token => event.token,
            Scope::Global => Token::GLOBAL,
        };
        let mut calls: SmallVec<[(RuleId, bool); 2]> = SmallVec::new();
        let ban_moved = self
            .st
            .apply(rules, token, member, &holding, &mut out, &mut calls);
        for (tier, t) in m.rule.thresholds.iter().enumerate() {
            let rule = RuleId {
                metric: id,
                tier: tier as u32,
            };
            if t.repeat_actions
                && !calls.iter().any(|(r, _)| *r == rule)
                && self
                    .st
                    .episodes
                    .contains_key(&episode_key(t.effect, token, rule))
            {
                calls.push((rule, true));
            }
        }
        let passed = self
            .st
            .passed_after(event.token, ban_moved, banned_past_now);

        // Phase 3: actions, once the state is complete.
        self.st.run_actions(&self.rules, token, member, &calls);
        Ok(Verdict {
            passed,
            rates,
            decisions: out,
        })
    }

    /// The seed API's `now(token, metric, threshold)`: fires tier `tier` of `metric` for `token`
    /// at once, as if its limit were reached (`until = now + action_duration`).
    pub fn fire(&mut self, token: &str, metric: &str, tier: usize) -> Result<Verdict, EventError> {
        let rules: &Ruleset = &self.rules;
        let id = rules
            .metric_id(metric)
            .ok_or_else(|| EventError::UnknownMetric(cut(metric)))?;
        let m = rules.compiled(id);
        if m.rule.scope == Scope::Global {
            return Err(EventError::GlobalFire(metric.to_owned()));
        }
        if token.is_empty() || token.len() > Token::MAX_LEN {
            return Err(EventError::BadToken);
        }
        let t = m
            .rule
            .thresholds
            .get(tier)
            .ok_or_else(|| EventError::UnknownTier {
                metric: metric.to_owned(),
                tier,
            })?;
        let mut out = Vec::new();
        let clock_now = self.clock.now();
        self.st.advance_into(&self.rules, clock_now, &mut out);
        let now = self.st.now;
        let rule = RuleId {
            metric: id,
            tier: tier as u32,
        };
        let member = rules.is_family(id).then(|| Arc::from(metric));
        let reach = Reach {
            rule,
            member,
            value: t.limit.get(),
            mark: now.plus(t.action_duration),
            duration: Seconds::ZERO,
            policy: BanPolicy::AfterTrigger,
        };
        let mut calls: SmallVec<[(RuleId, bool); 2]> = SmallVec::new();
        if self
            .st
            .hold(&self.rules, token, t.effect, reach, now, &mut out)
        {
            calls.push((rule, false));
        }
        let rates = rules.rates().then(|| {
            self.st
                .tokens
                .get(token)
                .and_then(|st| {
                    st.metrics
                        .iter()
                        .find(|(k, _)| k.is(id, member_name(rules, id, metric)))
                })
                .map_or_else(Rates::default, |(_, w)| w.rates(now))
        });
        let passed = !self.is_banned(token);
        self.st.run_actions(
            &self.rules,
            token,
            member_name(&self.rules, id, metric),
            &calls,
        );
        Ok(Verdict {
            passed,
            rates,
            decisions: out,
        })
    }

    /// Ends `token`'s ban now (an operator's unban). Returns the UNBAN, if it was banned.
    pub fn unban(&mut self, token: &str) -> Option<DecisionEvent> {
        if let Some(st) = self.st.tokens.get_mut(token) {
            st.ban_until = Timestamp::MIN;
            st.ban_trigger_until = Timestamp::MIN;
        }
        let (_, ep) = self.st.episodes.remove_entry(&BlockKey(token))?;
        let mut end = State::end_event(&self.rules, &ep, self.st.now, None);
        end.until = self.st.now;
        Some(end)
    }

    /// Restores a ban read back from storage (a restart): active until `until`, attributed to
    /// tier `tier` of `metric`. Does nothing if the token is already banned further.
    pub fn restore_ban(
        &mut self,
        token: &str,
        metric: &str,
        tier: usize,
        value: u64,
        from: Timestamp,
        until: Timestamp,
    ) -> Result<(), EventError> {
        let id = self
            .rules
            .metric_id(metric)
            .ok_or_else(|| EventError::UnknownMetric(cut(metric)))?;
        let token = Token::new(token).ok_or(EventError::BadToken)?;
        if tier >= self.rules.metric(id).thresholds.len() {
            return Err(EventError::UnknownTier {
                metric: metric.to_owned(),
                tier,
            });
        }
        if until <= self.st.now {
            return Ok(());
        }
        let rule = RuleId {
            metric: id,
            tier: tier as u32,
        };
        let reach = Reach {
            rule,
            member: self.rules.is_family(id).then(|| Arc::from(metric)),
            value,
            mark: until,
            duration: Seconds::ZERO,
            policy: BanPolicy::AfterTrigger,
        };
        let key = EpisodeKey::Block(token.clone());
        if let Some(ep) = self.st.episodes.get_mut(&key) {
            ep.extend(reach);
            return Ok(());
        }
        let ep = self
            .st
            .new_episode(Effect::Block, token, reach, from, until);
        self.st.episodes.insert(key, ep);
        Ok(())
    }

    /// Moves the engine's time to `now` (never back), ending every decision whose `until` has
    /// come, at exactly its `until`, and forgetting idle tokens. Returns the ends, in order.
    pub fn advance(&mut self, now: Timestamp) -> Vec<DecisionEvent> {
        let mut out = Vec::new();
        self.st.advance_into(&self.rules, now, &mut out);
        out
    }

    /// [`Engine::advance`] to the clock's time.
    pub fn tick(&mut self) -> Vec<DecisionEvent> {
        let now = self.clock.now();
        self.advance(now)
    }

    /// When the next decision may end (for a front end's timer), if any is active.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.st.deadlines.peek().map(|Reverse(d)| d.at)
    }

    /// The input is over and the clock stops here: ends every active decision where it would
    /// end with no further time passing for its thresholds (DESIGN.md: an `after_violation`
    /// hold is bounded by the clock), and returns those ends in time order.
    pub fn finish(&mut self) -> Vec<DecisionEvent> {
        let stop = self.st.now;
        let mut ends: Vec<(Timestamp, u64, DecisionEvent)> = Vec::new();
        let episodes = std::mem::take(&mut self.st.episodes);
        for (key, ep) in &episodes {
            let end = match key {
                EpisodeKey::Alert(rule) => self.st.end_of_alert(&self.rules, *rule, ep),
                EpisodeKey::Block(_) | EpisodeKey::Notify(..) => {
                    State::end_event(&self.rules, ep, ep.furthest(Some(stop)).0, Some(stop))
                }
            };
            ends.push((end.at, ep.id, end));
        }
        self.st.deadlines.clear();
        ends.sort_by_key(|(at, id, _)| (*at, *id));
        ends.into_iter().map(|(_, _, e)| e).collect()
    }

    /// Whether `token` is banned now.
    pub fn is_banned(&self, token: &str) -> bool {
        self.st.episodes.contains_key(&BlockKey(token))
    }

    /// `token`'s active ban, if any.
    pub fn ban(&self, token: &str) -> Option<DecisionView> {
        self.st
            .episodes
            .get(&BlockKey(token))
            .map(|ep| State::view(&self.rules, ep))
    }

    /// Every active decision (bans, notices, alerts) with its token.
    pub fn decisions(&self) -> impl Iterator<Item = (&Token, DecisionView)> + '_ {
        self.st
            .episodes
            .values()
            .map(|ep| (&ep.token, State::view(&self.rules, ep)))
    }

    /// The seed API's `status(token, metric)`: rates, each tier's measure, and the ban.
    pub fn status(&self, token: &str, metric: &str) -> Result<MetricStatus, EventError> {
        let id = self
            .rules
            .metric_id(metric)
            .ok_or_else(|| EventError::UnknownMetric(cut(metric)))?;
        let m = self.rules.compiled(id);
        let windows = match m.rule.scope {
            Scope::Token => self
                .st
                .tokens
                .get(token)
                .and_then(|st| {
                    let member = member_name(&self.rules, id, metric);
                    st.metrics.iter().find(|(k, _)| k.is(id, member))
                })
                .map(|(_, w)| w),
            Scope::Global => self.st.globals[id.index()].as_ref(),
        };
        let now = self.st.now;
        let tiers = m
            .rule
            .thresholds
            .iter()
            .zip(&m.slots)
            .map(|(t, slot)| {
                let boundary = t.window.boundary(now);
                let value = windows.map_or(0, |w| w.measure_after(*slot, boundary));
                let holds = windows
                    .and_then(|w| w.nth_latest(*slot, t.needed()))
                    .is_some_and(|nth| nth > boundary);
                TierMeasure { value, holds }
            })
            .collect();
        let rates = self
            .rules
            .rates()
            .then(|| windows.map_or_else(Rates::default, |w| w.rates(now)));
        Ok(MetricStatus {
            rates,
            tiers,
            ban: self.ban(token),
        })
    }

    /// The seed API's `status_all()`: every tracked token and metric with its rates (zero when
    /// rates are not kept), least recently seen first, then global-scope metrics.
    pub fn status_all(&self) -> impl Iterator<Item = (&str, &str, Rates)> + '_ {
        let now = self.st.now;
        let rules = &self.rules;
        let per_token = self.st.tokens.iter().flat_map(move |(token, st)| {
            st.metrics.iter().map(move |(k, w)| {
                let name = k.member.as_deref().unwrap_or(&rules.metric(k.id).name);
                (token.as_str(), name, w.rates(now))
            })
        });
        let globals = self
            .st
            .globals
            .iter()
            .enumerate()
            .filter_map(move |(i, w)| {
                let w = w.as_ref()?;
                let name = &*rules.metric(MetricId(i as u32)).name;
                Some((Token::GLOBAL, name, w.rates(now)))
            });
        per_token.chain(globals)
    }

    /// The engine's counters.
    pub fn counters(&self) -> EngineCounters {
        EngineCounters {
            tracked_tokens: self.st.tokens.len(),
            active_decisions: self.st.episodes.len(),
            ..self.st.counters
        }
    }
}

/// The engine's mutable state, apart from its rules so that a call can read the rules
/// while it updates the state (no reference count is touched per event).
#[derive(Debug)]
struct State {
    /// Engine time: never goes back, whatever the clock or late events say.
    now: Timestamp,
    /// Per-token windows, least recently seen first.
    tokens: LinkedHashMap<Token, TokenState>,
    /// Global-scope windows, by metric index.
    globals: Vec<Option<MetricWindows>>,
    episodes: HashMap<EpisodeKey, Episode>,
    deadlines: BinaryHeap<Reverse<Deadline>>,
    next_id: u64,
    cap: Option<NonZeroUsize>,
    counters: EngineCounters,
}

impl State {
    /// Whether `token` passes after an event, refreshing its cached ban end if the event
    /// touched its ban.
    fn passed_after(&mut self, token: &str, ban_moved: bool, banned_past_now: bool) -> bool {
        if !ban_moved {
            return !banned_past_now && !self.episodes.contains_key(&BlockKey(token));
        }
        let ends = self.episodes.get(&BlockKey(token)).map(|ep| {
            let trigger = ep
                .reaches
                .iter()
                .filter(|r| r.policy == BanPolicy::AfterTrigger)
                .map(|r| r.mark)
                .max()
                .unwrap_or(Timestamp::MIN);
            (ep.until, trigger)
        });
        if let Some(st) = self.tokens.get_mut(token) {
            (st.ban_until, st.ban_trigger_until) = ends.unwrap_or((Timestamp::MIN, Timestamp::MIN));
        }
        ends.is_none()
    }

    /// Phase 2 of an event: starts or extends the decisions of the holding thresholds. Returns
    /// whether a ban was touched; `calls` gets the rules whose actions must run.
    fn apply(
        &mut self,
        rules: &Ruleset,
        token: &str,
        member: Option<&str>,
        holding: &[Holding],
        out: &mut Vec<DecisionEvent>,
        calls: &mut SmallVec<[(RuleId, bool); 2]>,
    ) -> bool {
        let now = self.now;
        let mut ban_moved = false;
        let member: Option<Arc<str>> = member.filter(|_| !holding.is_empty()).map(Arc::from);
        for h in holding {
            let t = rules.threshold(h.rule);
            ban_moved |= t.effect == Effect::Block;
            let reach = match t.policy {
                BanPolicy::AfterTrigger => Reach {
                    rule: h.rule,
                    member: member.clone(),
                    value: h.value,
                    mark: now.plus(t.action_duration),
                    duration: Seconds::ZERO,
                    policy: BanPolicy::AfterTrigger,
                },
                BanPolicy::AfterViolation => Reach {
                    rule: h.rule,
                    member: member.clone(),
                    value: h.value,
                    // The last second at which the needed unit is still inside the window.
                    mark: h.nth.plus(t.window.length()).minus(Seconds::new(1)),
                    duration: t.action_duration,
                    policy: BanPolicy::AfterViolation,
                },
            };
            let recovery = h.nth.plus(t.window.length());
            if self.hold(rules, token, t.effect, reach, recovery, out) {
                calls.push((h.rule, false));
            }
        }
        ban_moved
    }

    fn token_windows(
        &mut self,
        token: &str,
        id: MetricId,
        member: Option<&str>,
        m: &CompiledMetric,
    ) -> Result<(&mut MetricWindows, (Timestamp, Timestamp)), EventError> {
        let now = self.now;
        if let Some(cap) = self.cap {
            if self.tokens.len() >= cap.get() && !self.tokens.contains_key(token) {
                self.tokens.pop_front();
                self.counters.evictions += 1;
            }
        }
        let st = match self.tokens.raw_entry_mut().from_key(token) {
            RawEntryMut::Occupied(mut o) => {
                o.to_back();
                o.into_mut()
            }
            RawEntryMut::Vacant(v) => {
                // Checked by the caller: the token is 1..=MAX_LEN bytes.
                let key = Token::new(token).unwrap_or_else(Token::global);
                let state = TokenState {
                    last_seen: now,
                    ban_until: Timestamp::MIN,
                    ban_trigger_until: Timestamp::MIN,
                    metrics: SmallVec::new(),
                };
                v.insert(key, state).1
            }
        };
        st.last_seen = now;
        let pos = if let Some(pos) = st.metrics.iter().position(|(k, _)| k.is(id, member)) {
            pos
        } else {
            if member.is_some()
                && st.metrics.iter().filter(|(k, _)| k.id == id).count() >= MAX_MEMBERS
            {
                return Err(EventError::TooManyMembers(m.rule.name.to_string()));
            }
            st.metrics.push((
                MetricKey {
                    id,
                    member: member.map(Box::from),
                },
                MetricWindows::new(m),
            ));
            st.metrics.len() - 1
        };
        Ok((&mut st.metrics[pos].1, (st.ban_until, st.ban_trigger_until)))
    }

    /// Applies one holding threshold; returns true if it started a decision (run its actions).
    fn hold(
        &mut self,
        rules: &Ruleset,
        token: &str,
        effect: Effect,
        reach: Reach,
        recovery: Timestamp,
        out: &mut Vec<DecisionEvent>,
    ) -> bool {
        let now = self.now;
        let key = episode_key(effect, token, reach.rule);
        if let Some(ep) = self.episodes.get_mut(&key) {
            // An alert's end is recomputed from its window when its deadline comes up.
            if effect != Effect::Alert {
                let before = ep.until;
                ep.extend(reach);
                if ep.until > before {
                    // Stores must learn how far a ban now reaches (a restart restores it).
                    let (_, rule, value, member) = ep.furthest(None);
                    let metric = member
                        .cloned()
                        .unwrap_or_else(|| rules.metric(rule.metric).name.clone());
                    out.push(DecisionEvent {
                        at: now,
                        change: Change::Extend,
                        effect,
                        token: ep.token.clone(),
                        metric,
                        tier: rule.tier as usize,
                        value,
                        from: ep.from,
                        until: ep.until,
                    });
                }
            }
            return false;
        }
        let Some(token) = Token::new(token) else {
            return false;
        };
        let until = match effect {
            Effect::Alert => recovery,
            Effect::Block | Effect::Notify => reach.end(None),
        };
        let (rule, value) = (reach.rule, reach.value);
        let metric = reach
            .member
            .clone()
            .unwrap_or_else(|| rules.metric(rule.metric).name.clone());
        let ep = self.new_episode(effect, token, reach, now, until);
        out.push(DecisionEvent {
            at: now,
            change: Change::Start,
            effect,
            token: ep.token.clone(),
            metric,
            tier: rule.tier as usize,
            value,
            from: now,
            until: ep.until,
        });
        self.episodes.insert(key, ep);
        true
    }

    fn new_episode(
        &mut self,
        effect: Effect,
        token: Token,
        reach: Reach,
        from: Timestamp,
        until: Timestamp,
    ) -> Episode {
        let id = self.next_id;
        self.next_id += 1;
        let rule = reach.rule;
        let mut ep = Episode {
            id,
            member: reach.member.clone(),
            effect,
            token,
            rule,
            value: reach.value,
            from,
            reaches: SmallVec::new(),
            until,
        };
        if effect != Effect::Alert {
            ep.extend(reach);
        }
        let key = episode_key(effect, ep.token.as_str(), rule);
        self.deadlines.push(Reverse(Deadline {
            at: ep.until,
            id,
            key,
        }));
        ep
    }

    fn advance_into(&mut self, rules: &Ruleset, to: Timestamp, out: &mut Vec<DecisionEvent>) {
        if to > self.now {
            self.now = to;
        }
        let now = self.now;
        while let Some(Reverse(top)) = self.deadlines.peek() {
            if top.at > now {
                break;
            }
            let Some(Reverse(d)) = self.deadlines.pop() else {
                break;
            };
            let Some(ep) = self.episodes.get(&d.key) else {
                continue;
            };
            if ep.id != d.id {
                continue;
            }
            let end_at = match d.key {
                EpisodeKey::Alert(rule) => {
                    self.alert_recovery(rules, rule).unwrap_or(d.at).max(d.at)
                }
                EpisodeKey::Block(_) | EpisodeKey::Notify(..) => ep.until,
            };
            if end_at > d.at {
                // Extended since this deadline was queued: queue the new end.
                if let Some(ep) = self.episodes.get_mut(&d.key) {
                    ep.until = end_at;
                }
                self.deadlines.push(Reverse(Deadline { at: end_at, ..d }));
                continue;
            }
            if let Some(ep) = self.episodes.remove(&d.key) {
                let end = match d.key {
                    EpisodeKey::Alert(rule) => self.end_of_alert(rules, rule, &ep),
                    _ => Self::end_event(rules, &ep, d.at, None),
                };
                out.push(end);
            }
        }
        let horizon = rules.horizon();
        while let Some((_, st)) = self.tokens.front() {
            if st.last_seen.plus(horizon) > now {
                break;
            }
            self.tokens.pop_front();
            self.counters.expired += 1;
        }
    }

    /// When a global alert's measure drops back to its limit, if no further event comes.
    fn alert_recovery(&self, rules: &Ruleset, rule: RuleId) -> Option<Timestamp> {
        let m = rules.compiled(rule.metric);
        let t = &m.rule.thresholds[rule.tier as usize];
        let w = self.globals[rule.metric.index()].as_ref()?;
        let nth = w.nth_latest(m.slots[rule.tier as usize], t.needed())?;
        Some(nth.plus(t.window.length()))
    }

    fn end_of_alert(&self, rules: &Ruleset, rule: RuleId, ep: &Episode) -> DecisionEvent {
        let at = self
            .alert_recovery(rules, rule)
            .unwrap_or(ep.until)
            .max(ep.until);
        let m = rules.compiled(rule.metric);
        let t = &m.rule.thresholds[rule.tier as usize];
        let value = self.globals[rule.metric.index()].as_ref().map_or(0, |w| {
            w.measure_after(m.slots[rule.tier as usize], t.window.boundary(at))
        });
        DecisionEvent {
            at,
            change: Change::End,
            effect: Effect::Alert,
            token: ep.token.clone(),
            metric: m.rule.name.clone(),
            tier: rule.tier as usize,
            value,
            from: ep.from,
            until: at,
        }
    }

    fn end_event(
        rules: &Ruleset,
        ep: &Episode,
        at: Timestamp,
        stop: Option<Timestamp>,
    ) -> DecisionEvent {
        let (_, rule, value, member) = ep.furthest(stop);
        DecisionEvent {
            at,
            change: Change::End,
            effect: ep.effect,
            token: ep.token.clone(),
            metric: member
                .cloned()
                .unwrap_or_else(|| rules.metric(rule.metric).name.clone()),
            tier: rule.tier as usize,
            value,
            from: ep.from,
            until: at,
        }
    }

    fn view(rules: &Ruleset, ep: &Episode) -> DecisionView {
        DecisionView {
            effect: ep.effect,
            metric: ep
                .member
                .clone()
                .unwrap_or_else(|| rules.metric(ep.rule.metric).name.clone()),
            tier: ep.rule.tier as usize,
            value: ep.value,
            from: ep.from,
            until: ep.until,
        }
    }

    fn run_actions(
        &mut self,
        rules: &Ruleset,
        token: &str,
        member: Option<&str>,
        calls: &[(RuleId, bool)],
    ) {
        for &(rule, repeat) in calls {
            let m = rules.metric(rule.metric);
            let t = &m.thresholds[rule.tier as usize];
            let call = ActionCall {
                token,
                duration: t.action_duration,
                metric: member.unwrap_or(&m.name),
                window: t.window,
                limit: t.limit.get(),
                tier: rule.tier as usize,
                at: self.now,
                effect: t.effect,
                repeat,
            };
            for action in &t.actions {
                if catch_unwind(AssertUnwindSafe(|| action.call(&call))).is_err() {
                    self.counters.action_panics += 1;
                }
            }
        }
    }
}

/// The member name to look windows up by: the metric's own name for a family member.
fn member_name<'a>(rules: &Ruleset, id: MetricId, metric: &'a str) -> Option<&'a str> {
    rules.is_family(id).then_some(metric)
}

fn episode_key(effect: Effect, token: &str, rule: RuleId) -> EpisodeKey {
    let token = || Token::new(token).unwrap_or_else(Token::global);
    match effect {
        Effect::Block => EpisodeKey::Block(token()),
        Effect::Notify => EpisodeKey::Notify(token(), rule),
        Effect::Alert => EpisodeKey::Alert(rule),
    }
}

fn attr_values<'a>(m: &CompiledMetric, event: &Event<'a>) -> Result<AttrValues<'a>, EventError> {
    let mut values = AttrValues::default();
    let missing = |attr: &str| EventError::MissingAttr {
        metric: m.rule.name.to_string(),
        attr: attr.to_owned(),
    };
    for (attr, _) in &m.sums {
        let raw = event.attr(attr).ok_or_else(|| missing(attr))?;
        let v = raw.parse::<u64>().map_err(|_| EventError::BadSumAttr {
            attr: attr.to_string(),
            value: cut(raw),
        })?;
        values.sums.push(v);
    }
    for (attr, _, _) in &m.distincts {
        let raw = event.attr(attr).ok_or_else(|| missing(attr))?;
        if raw.len() > Event::MAX_ATTR_LEN {
            return Err(EventError::AttrTooLong(attr.to_string()));
        }
        values.distincts.push(raw);
    }
    Ok(values)
}

/// Untrusted text quoted in an error, cut to 64 bytes at a character boundary.
fn cut(s: &str) -> String {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests;
