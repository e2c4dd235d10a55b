//! `Engine`: counts events into windows, checks thresholds, starts, extends and ends decisions.
//!
//! This file is the engine's API; its mechanics live apart: `windows` (one metric's windows),
//! `tokens` (the table of tracked tokens), `episodes` (active decisions and their deadlines).

mod episodes;
mod offences;
mod snapshot;
mod tokens;
mod windows;

pub use snapshot::{WindowsData, WindowsSnapshot};

use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::action::DueAction;
use crate::clock::Clock;
use crate::decision::{BanRecord, DecisionEvent, DecisionView};
use crate::error::EventError;
use crate::event::Event;
use crate::resolve::{check_token, MetricRef, ResolvedEvent};
use crate::rules::{BanPolicy, Effect, MetricId, RuleId, Ruleset, Scope};
use crate::time::{Seconds, Timestamp};
use crate::token::Token;

use episodes::{Episodes, Reach};
use offences::Offences;
use tokens::{BanCache, TokenTable};
use windows::MetricWindows;

/// The engine's answer to an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// False while a block decision is active for the token.
    pub passed: bool,
    /// The metric's 1m/10m/60m rates for the token, when asked for and kept.
    pub rates: Option<Rates>,
    /// Decisions that started or ended during the call, in time order (no allocation if none).
    pub decisions: Vec<DecisionEvent>,
    /// Actions to run now that the state is complete: the engine never runs them itself, so
    /// that no lock is held while they do ([`Ruleset::run_actions`]).
    pub actions: Vec<DueAction>,
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

/// A token's measure against each tier of one of its metrics (see [`Engine::recent_loads`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLoad {
    /// Who.
    pub token: Token,
    /// The metric (a family's member by its own name).
    pub metric: String,
    /// Each tier's `(measure now, limit)`.
    pub tiers: Vec<(u64, u64)>,
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
    /// Active bans (kept as bans start and end: reading it walks nothing).
    pub active_bans: usize,
    /// Tokens dropped because the `max_tokens` cap was reached (the least at stake among the
    /// least recently seen first).
    pub evictions: u64,
    /// Of `evictions`, tokens that had events inside some threshold's window: counts lost,
    /// which a token could use to start over. Eviction prefers tokens with none, so a rising
    /// figure means `max_tokens` is too small for the traffic (or a flood fills it).
    pub evictions_at_stake: u64,
    /// Tokens dropped because nothing about them could matter any more.
    pub expired: u64,
    /// Events older than every window they could count in, ignored.
    pub late_events: u64,
}

/// A threshold found holding during an event, before decisions are applied.
#[derive(Debug, Clone, Copy)]
struct Holding {
    rule: RuleId,
    value: u64,
    /// When the needed unit arrived; the threshold holds until `nth + window - 1`.
    nth: Timestamp,
}

/// The banhammer engine for one thread. See docs/semantics.md for the semantics it implements.
///
/// Every call first moves the engine's time forward to the clock (or the event's time, when
/// that is later), ending decisions whose `until` has come, then counts and decides. Each
/// event goes through three phases: (1) windows: count it, find the holding tiers; (2)
/// decisions: start or extend episodes; (3) the actions due, returned in the verdict.
///
/// `S` hashes the maps keyed by tokens (tracked tokens, active decisions), whose keys an
/// attacker chooses: [`TokenHasher`] unless a benchmark asks for another
/// ([`Engine::with_hasher`]; docs/security.md says why this one).
#[derive(Debug)]
pub struct Engine<C, S = TokenHasher> {
    rules: Arc<Ruleset>,
    clock: C,
    /// Everything an event changes, apart from the rules: the per-event path borrows the
    /// rules beside it instead of cloning their `Arc`. `perf` charged that atomic (a full
    /// barrier) a third of an event's time at 100k tokens, but it was waiting on the event's
    /// own cache misses: removing it measured within noise (docs/benchmarks.md).
    state: State<S>,
}

/// The engine's mutable state.
#[derive(Debug)]
struct State<S> {
    /// Engine time: never goes back, whatever the clock or late events say.
    now: Timestamp,
    tokens: TokenTable<S>,
    /// Global-scope windows, by metric index.
    globals: Vec<Option<MetricWindows>>,
    episodes: Episodes<S>,
    /// Ban starts, when a tier escalates repeat offenders.
    offences: Offences,
    late_events: u64,
    /// A global-scope metric counted an event since windows were last taken out.
    globals_changed: bool,
}

/// The hasher of the engine's token-keyed maps: SipHash-1-3 with random 128-bit keys per map
/// (std's `RandomState`), so that no one can choose tokens that collide. It costs about 6%
/// per event against foldhash (docs/security.md).
pub type TokenHasher = std::hash::RandomState;

impl<C: Clock> Engine<C> {
    /// An engine running `rules`, reading time from `clock`.
    pub fn new(rules: Arc<Ruleset>, clock: C) -> Self {
        Self::with_hasher(rules, clock)
    }
}

impl<C: Clock, S: BuildHasher + Default> Engine<C, S> {
    /// An engine running `rules`, reading time from `clock`, whose token-keyed maps hash with
    /// `S` (each map seeded by its own `S::default()`).
    pub fn with_hasher(rules: Arc<Ruleset>, clock: C) -> Self {
        let globals = rules.metrics().map(|_| None).collect();
        let tokens = TokenTable::new(rules.max_tokens());
        let now = clock.now();
        Engine {
            rules,
            clock,
            state: State {
                now,
                tokens,
                globals,
                episodes: Episodes::default(),
                offences: Offences::default(),
                late_events: 0,
                globals_changed: false,
            },
        }
    }

    /// Overrides the rule set's cap on tracked tokens (a sharded engine splits it).
    pub fn set_max_tokens(&mut self, cap: NonZeroUsize) {
        self.state.tokens.set_cap(cap);
    }

    /// The rules this engine runs.
    pub fn rules(&self) -> &Arc<Ruleset> {
        &self.rules
    }

    /// The engine's time: the latest of every clock reading and event time seen.
    pub fn time(&self) -> Timestamp {
        self.state.now
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
        let clock_now = self.clock.now();
        self.state
            .observe(&self.rules, event, want_rates, clock_now)
    }

    /// Reads back a ban that started at `at` (a restart rebuilds offences from the decision
    /// log, before restoring the active bans); nothing if no tier escalates.
    pub fn restore_offence(&mut self, token: &str, at: Timestamp) {
        if self.rules.offence_memory().is_some() {
            if let Some(token) = Token::new(token) {
                self.state.offences.record(&token, at);
            }
        }
    }

    /// The seed API's `now(token, metric, threshold)`: fires tier `tier` of `metric` for `token`
    /// at once, as if its limit were reached (`until = now + action_duration`).
    pub fn fire(&mut self, token: &str, metric: &str, tier: usize) -> Result<Verdict, EventError> {
        let rules = Arc::clone(&self.rules);
        let (metric, rule) = rules.resolve_fire(token, metric, tier)?;
        let t = rules.threshold(rule);
        let mut out = Vec::new();
        let clock_now = self.clock.now();
        self.state.advance_into(&self.rules, clock_now, &mut out);
        let now = self.state.now;
        let reach = Reach::until(
            rule,
            metric.member.map(Arc::from),
            t.limit.get(),
            now.plus(self.state.ban_duration(t, token)),
        );
        let started = self
            .state
            .episodes
            .hold(&rules, token, t.effect, reach, now, now, &mut out);
        if started {
            self.state.offence(&self.rules, t.effect, token);
        }
        let rates = rules.rates().then(|| {
            self.state
                .tokens
                .windows(token, metric)
                .map_or_else(Rates::default, |w| w.rates(now))
        });
        let passed = !self.is_banned(token);
        let actions = if started {
            self.state.due(&self.rules, token, metric, &[(rule, false)])
        } else {
            Vec::new()
        };
        Ok(Verdict {
            passed,
            rates,
            decisions: out,
            actions,
        })
    }

    /// Ends `token`'s ban now (an operator's unban). Returns the UNBAN, if it was banned.
    pub fn unban(&mut self, token: &str) -> Option<DecisionEvent> {
        self.state.tokens.set_ban(token, BanCache::NONE);
        self.state
            .episodes
            .unban(&self.rules, token, self.state.now)
    }

    /// An operator's ban by hand (`banhammer ban`, `fail2ban-client set JAIL banip`): bans
    /// `token` now for `duration`, whatever its counts, attributed to [`RuleId::MANUAL`]
    /// (records name it [`Ruleset::MANUAL`]) with the operator's `reason`. An active ban is
    /// carried further if that reaches further, and never shortened. The ban counts as an
    /// offence for the tiers that escalate, and is not escalated itself: the operator chose
    /// how long it lasts. No action runs. Checked by [`Ruleset::resolve_manual`].
    pub fn ban_by_hand(
        &mut self,
        token: &str,
        duration: Seconds,
        reason: Option<&str>,
    ) -> Result<Verdict, EventError> {
        let rules = Arc::clone(&self.rules);
        let reason = rules.resolve_manual(token, duration, reason)?;
        let mut out = Vec::new();
        let clock_now = self.clock.now();
        self.state.advance_into(&self.rules, clock_now, &mut out);
        let now = self.state.now;
        let reach = Reach::until(RuleId::MANUAL, None, 0, now.plus(duration));
        let mut made = Vec::new();
        let started =
            self.state
                .episodes
                .hold(&rules, token, Effect::Block, reach, now, now, &mut made);
        if started {
            self.state.offence(&self.rules, Effect::Block, token);
        }
        if let Some(reason) = reason.filter(|_| !made.is_empty()) {
            // Kept only when this ban started the token's ban or carried it further.
            let reason: Arc<str> = Arc::from(reason);
            self.state.episodes.set_reason(token, Arc::clone(&reason));
            for d in &mut made {
                d.reason = Some(Arc::clone(&reason));
            }
        }
        out.extend(made);
        Ok(Verdict {
            passed: false,
            rates: None,
            decisions: out,
            actions: Vec::new(),
        })
    }

    /// Restores a ban read back from storage (a restart): active until its `until`,
    /// attributed to its rule (a ban by hand to [`RuleId::MANUAL`]), with its reason. Does
    /// nothing if the token is already banned further.
    pub fn restore_ban(&mut self, ban: &BanRecord<'_>) -> Result<(), EventError> {
        let (member, rule) = if ban.metric == Ruleset::MANUAL && ban.tier == 0 {
            check_token(ban.token)?;
            (None, RuleId::MANUAL)
        } else {
            let (metric, rule) = self.rules.resolve_ban(ban.token, ban.metric, ban.tier)?;
            (metric.member.map(Arc::from), rule)
        };
        let (from, until) = (ban.from, ban.until);
        if until <= self.state.now {
            return Ok(());
        }
        let token = Token::new(ban.token).ok_or(EventError::BadToken)?;
        let reach = Reach::until(rule, member, ban.value, until);
        let name = token.clone();
        self.state
            .episodes
            .restore_ban(token, reach, from, ban.reason.map(Arc::from));
        if self.rules.offence_memory().is_some() {
            // Offences are read back first (`restore_offence`): the ban keeps those before it.
            let earlier = self.state.offences.before(name.as_str(), from);
            self.state.episodes.set_earlier(name.as_str(), earlier);
        }
        Ok(())
    }

    /// Moves the engine's time to `now` (never back), ending every decision whose `until` has
    /// come, at exactly its `until`, and forgetting idle tokens. Returns the ends, in order.
    pub fn advance(&mut self, now: Timestamp) -> Vec<DecisionEvent> {
        let mut out = Vec::new();
        self.state.advance_into(&self.rules, now, &mut out);
        out
    }

    /// [`Engine::advance`] to the clock's time.
    pub fn tick(&mut self) -> Vec<DecisionEvent> {
        let now = self.clock.now();
        self.advance(now)
    }

    /// When the next decision may end (for a front end's timer), if any is active.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.state.episodes.next_deadline()
    }

    /// The input is over and the clock stops here: ends every active decision where it would
    /// end with no further time passing for its thresholds (docs/semantics.md: an
    /// `after_violation` hold is bounded by the clock), and returns those ends in time order.
    pub fn finish(&mut self) -> Vec<DecisionEvent> {
        self.state
            .episodes
            .finish(&self.rules, &self.state.globals, self.state.now)
    }

    /// Whether `token` is banned now.
    pub fn is_banned(&self, token: &str) -> bool {
        self.state.episodes.is_banned(token)
    }

    /// `token`'s active ban, if any.
    pub fn ban(&self, token: &str) -> Option<DecisionView> {
        self.state.episodes.ban(&self.rules, token)
    }

    /// Every active decision (bans, notices, alerts) with its token.
    pub fn decisions(&self) -> impl Iterator<Item = (&Token, DecisionView)> + '_ {
        self.state.episodes.views(&self.rules)
    }

    /// The seed API's `status(token, metric)`: rates, each tier's measure, and the ban.
    pub fn status(&self, token: &str, metric: &str) -> Result<MetricStatus, EventError> {
        let metric = self.rules.resolve_metric(metric)?;
        let m = self.rules.compiled(metric.id);
        let windows = match m.rule.scope {
            Scope::Token => self.state.tokens.windows(token, metric),
            Scope::Global => self.state.globals[metric.id.index()].as_ref(),
        };
        let now = self.state.now;
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

    /// Each tier's measure and limit for the `recent` most recently seen tokens, every metric
    /// they have windows for: bounded work (a live console's "busiest tokens" looks where
    /// traffic is now, never over every tracked token).
    pub fn recent_loads(&self, recent: usize) -> Vec<TokenLoad> {
        let now = self.state.now;
        self.state
            .tokens
            .recent(recent)
            .map(|(token, id, member, w)| {
                let m = self.rules.compiled(id);
                let tiers = m
                    .rule
                    .thresholds
                    .iter()
                    .zip(&m.slots)
                    .map(|(t, slot)| {
                        (
                            w.measure_after(*slot, t.window.boundary(now)),
                            t.limit.get(),
                        )
                    })
                    .collect();
                TokenLoad {
                    token: token.clone(),
                    metric: member.unwrap_or(&m.rule.name).to_owned(),
                    tiers,
                }
            })
            .collect()
    }

    /// The seed API's `status_all()`: every tracked token and metric with its rates (zero when
    /// rates are not kept), least recently seen first, then global-scope metrics.
    pub fn status_all(&self) -> impl Iterator<Item = (&str, &str, Rates)> + '_ {
        let now = self.state.now;
        let rules = &self.rules;
        let per_token = self.state.tokens.iter().map(move |(token, id, member, w)| {
            let name = member.unwrap_or(&rules.metric(id).name);
            (token.as_str(), name, w.rates(now))
        });
        let globals = self
            .state
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
            tracked_tokens: self.state.tokens.len(),
            active_decisions: self.state.episodes.len(),
            active_bans: self.state.episodes.bans(),
            evictions: self.state.tokens.evictions,
            evictions_at_stake: self.state.tokens.evictions_at_stake,
            expired: self.state.tokens.expired,
            late_events: self.state.late_events,
        }
    }
}

#[cfg(test)]
mod tests;

impl<S: BuildHasher + Default> State<S> {
    /// [`Engine::observe`], the clock read as `clock_now`.
    fn observe(
        &mut self,
        rules: &Ruleset,
        event: &Event<'_>,
        want_rates: bool,
        clock_now: Timestamp,
    ) -> Result<Verdict, EventError> {
        let event = rules.resolve(event)?;
        let id = event.metric.id;
        let m = rules.compiled(id);
        let to = clock_now.max(event.at);
        // Refused before time moves: a refused event changes nothing, as Redis refuses it.
        if event.scope == Scope::Token
            && !self
                .tokens
                .admits(event.token, event.metric, to.max(self.now), rules.horizon())
        {
            return Err(EventError::TooManyMembers(m.rule.name.to_string()));
        }
        let mut out = Vec::new();
        self.advance_into(rules, to, &mut out);
        let now = self.now;

        // How far each tier would carry a ban now: its duration, or more for a repeat
        // offender (only computed when some tier escalates).
        let durations = self.tier_durations(rules, &m.rule.thresholds, event.counted_as());
        // Phase 1: windows. Count the event, then find the tiers that hold.
        let (windows, cached) = match event.scope {
            Scope::Token => self
                .tokens
                .windows_mut(event.token, event.metric, rules, now),
            Scope::Global => {
                self.globals_changed |= self.tokens.tracks_changes();
                (
                    self.globals[id.index()].get_or_insert_with(|| MetricWindows::new(m)),
                    BanCache::NONE,
                )
            }
        };
        let banned_past_now = cached.until > now;
        let late = event.at <= now.minus(rules.horizon());
        if !late {
            windows.add(m, &event);
        }
        windows.forget(m, now);
        let mut holding: SmallVec<[Holding; 2]> = SmallVec::new();
        for (tier, t) in m.rule.thresholds.iter().enumerate() {
            // Already banned further than this tier could reach: whether it holds changes
            // nothing (the common case of a banned token that keeps coming).
            let duration = durations.get(tier).copied().unwrap_or(t.action_duration);
            let unchanged = banned_past_now
                && t.effect == Effect::Block
                && t.policy == BanPolicy::AfterTrigger
                && now.plus(duration) <= cached.trigger_until;
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
            self.late_events += 1;
        }

        // Phase 2: decisions.
        let token = event.counted_as();
        let mut started: SmallVec<[(RuleId, bool); 2]> = SmallVec::new();
        let ban_moved = self.apply(rules, &event, &holding, &mut out, &mut started);
        for (tier, t) in m.rule.thresholds.iter().enumerate() {
            let rule = RuleId {
                metric: id,
                tier: tier as u32,
            };
            if t.repeat_actions
                && !started.iter().any(|(r, _)| *r == rule)
                && self.episodes.is_active(t.effect, token, rule)
            {
                started.push((rule, true));
            }
        }
        let passed = if ban_moved {
            // The event touched the token's ban: refresh its cached copy.
            let ban = self.episodes.ban_cache(event.token);
            self.tokens.set_ban(event.token, ban);
            ban == BanCache::NONE
        } else {
            !banned_past_now && !self.episodes.is_banned(event.token)
        };

        // Phase 3: the actions due, for the caller to run.
        let actions = self.due(rules, token, event.metric, &started);
        Ok(Verdict {
            passed,
            rates,
            decisions: out,
            actions,
        })
    }

    /// Phase 2 of an event: starts or extends the decisions of the holding thresholds. Returns
    /// whether a ban was touched; `started` gets the rules whose actions must run.
    fn apply(
        &mut self,
        rules: &Ruleset,
        event: &ResolvedEvent<'_>,
        holding: &[Holding],
        out: &mut Vec<DecisionEvent>,
        started: &mut SmallVec<[(RuleId, bool); 2]>,
    ) -> bool {
        if holding.is_empty() {
            return false;
        }
        let now = self.now;
        let token = event.counted_as();
        let mut ban_moved = false;
        let member: Option<Arc<str>> = event
            .metric
            .member
            .filter(|_| !holding.is_empty())
            .map(Arc::from);
        for h in holding {
            let t = rules.threshold(h.rule);
            ban_moved |= t.effect == Effect::Block;
            let duration = self.ban_duration(t, token);
            let reach = match t.policy {
                BanPolicy::AfterTrigger => {
                    Reach::until(h.rule, member.clone(), h.value, now.plus(duration))
                }
                BanPolicy::AfterViolation => Reach {
                    rule: h.rule,
                    member: member.clone(),
                    value: h.value,
                    // The last second at which the needed unit is still inside the window.
                    mark: h.nth.plus(t.window.length()).minus(Seconds::new(1)),
                    duration,
                    policy: BanPolicy::AfterViolation,
                },
            };
            let recovery = h.nth.plus(t.window.length());
            if self
                .episodes
                .hold(rules, token, t.effect, reach, recovery, now, out)
            {
                self.offence(rules, t.effect, token);
                started.push((h.rule, false));
            }
        }
        ban_moved
    }

    /// How long a hold of `t` carries `token`'s decision: the tier's duration, escalated for
    /// a repeat offender (by the bans that started within its memory before this one).
    /// Each tier's ban duration for `token` now, when some tier escalates (none otherwise:
    /// every tier then lasts its `action_duration`).
    fn tier_durations(
        &self,
        rules: &Ruleset,
        tiers: &[crate::rules::Threshold],
        token: &str,
    ) -> SmallVec<[Seconds; 2]> {
        if rules.offence_memory().is_none() {
            return SmallVec::new();
        }
        tiers.iter().map(|t| self.ban_duration(t, token)).collect()
    }

    fn ban_duration(&self, t: &crate::rules::Threshold, token: &str) -> Seconds {
        match (t.effect, t.escalate) {
            (Effect::Block, Some(e)) => {
                // An active ban counts the offences noted when it started (the table forgets
                // them once they are older than every memory, however long the ban lasts).
                let earlier = match self.episodes.ban_offences(token) {
                    Some((from, Some(earlier))) => offences::within(earlier, from, e.memory),
                    Some((from, None)) => {
                        offences::within(&self.offences.before(token, from), from, e.memory)
                    }
                    None => {
                        offences::within(&self.offences.before(token, self.now), self.now, e.memory)
                    }
                };
                e.duration(t.action_duration, earlier.saturating_add(1))
            }
            _ => t.action_duration,
        }
    }

    /// Notes a ban that just started, if any tier escalates: the ban keeps its earlier
    /// offences, and its start becomes one for later bans.
    fn offence(&mut self, rules: &Ruleset, effect: Effect, token: &str) {
        if effect == Effect::Block && rules.offence_memory().is_some() {
            let earlier = self.offences.before(token, self.now);
            self.episodes.set_earlier(token, earlier);
            let token = Token::new(token).unwrap_or_else(Token::global);
            self.offences.record(&token, self.now);
        }
    }

    /// The actions of `started` rules, as data.
    fn due(
        &self,
        rules: &Ruleset,
        token: &str,
        metric: MetricRef<'_>,
        started: &[(RuleId, bool)],
    ) -> Vec<DueAction> {
        if started.is_empty() {
            return Vec::new();
        }
        let token = Token::new(token).unwrap_or_else(Token::global);
        let name: Arc<str> = match metric.member {
            Some(member) => Arc::from(member),
            None => Arc::clone(&rules.metric(metric.id).name),
        };
        started
            .iter()
            .map(|&(rule, repeat)| DueAction {
                rule,
                token: token.clone(),
                metric: Arc::clone(&name),
                at: self.now,
                repeat,
            })
            .collect()
    }

    fn advance_into(&mut self, rules: &Ruleset, to: Timestamp, out: &mut Vec<DecisionEvent>) {
        if to > self.now {
            self.now = to;
        }
        self.episodes.end_due(rules, &self.globals, self.now, out);
        self.tokens.expire(self.now, rules.horizon());
        if let Some(memory) = rules.offence_memory() {
            self.offences.forget_until(self.now.minus(memory));
        }
    }
}
