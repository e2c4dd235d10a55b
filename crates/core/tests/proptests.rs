//! Property tests: random event scripts through the engine and through a naive reference
//! model written from docs/semantics.md's text alone (sorted lists of timestamps, brute force), which
//! must agree on every decision, every `passed` and every rate; plus invariants that hold
//! whatever the rules, and the windows against brute force.
//!
//! Contents: strategies · the reference model · drivers (`observe` as `banhammer eval`,
//! `observe` with a tick every second, `incr` on a manual clock, `SharedEngine`) · the model
//! on docs/semantics.md's worked examples · agreement properties · invariants · windows.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::Arc;

use banhammer_core::{
    BanPolicy, Change, DecisionEvent, DistinctWindow, Effect, Engine, EngineCounters, Escalation,
    Event, ManualClock, Rates, Ruleset, Scope, Seconds, SharedEngine, SlidingWindow, Timestamp,
};
use banhammer_testkit::rules::{ruleset_with_rates, scoped, threshold, ThresholdExt};
use banhammer_testkit::script::{parse, Step as ScriptStep, DEFAULT_METRIC};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Strategies

#[derive(Debug, Clone)]
struct Tier {
    limit: u64,
    window: i64,
    duration: i64,
    effect: Effect,
    policy: BanPolicy,
    /// `escalate`: factor, max, memory (block tiers only).
    escalate: Option<(u32, i64, i64)>,
}

#[derive(Debug, Clone)]
struct Metric {
    name: String,
    scope: Scope,
    tiers: Vec<Tier>,
}

/// Limits 1..=5, windows 1..=19 s, durations 1..=49 s; a token-scope tier blocks or notifies,
/// a global one alerts; either policy.
fn tier(global: bool) -> impl Strategy<Value = Tier> {
    let escalate = proptest::option::of((1u32..4, 1i64..300, 1i64..200));
    (
        1u64..6,
        1i64..20,
        1i64..50,
        any::<bool>(),
        any::<bool>(),
        escalate,
    )
        .prop_map(
            move |(limit, window, duration, block, violation, escalate)| {
                let effect = if global {
                    Effect::Alert
                } else if block {
                    Effect::Block
                } else {
                    Effect::Notify
                };
                Tier {
                    limit,
                    window,
                    duration,
                    effect,
                    policy: if violation {
                        BanPolicy::AfterViolation
                    } else {
                        BanPolicy::AfterTrigger
                    },
                    // Only bans escalate.
                    escalate: escalate.filter(|_| effect == Effect::Block),
                }
            },
        )
}

/// One or two token-scope metrics (`m`, `n`) of 1 to 3 tiers, maybe a global `hits` metric.
fn metrics() -> impl Strategy<Value = Vec<Metric>> {
    let token_metric = |name: &'static str| {
        proptest::collection::vec(tier(false), 1..4).prop_map(move |tiers| Metric {
            name: name.to_owned(),
            scope: Scope::Token,
            tiers,
        })
    };
    let global = proptest::option::of(proptest::collection::vec(tier(true), 1..3).prop_map(
        |tiers| Metric {
            name: "hits".to_owned(),
            scope: Scope::Global,
            tiers,
        },
    ));
    (
        token_metric("m"),
        proptest::option::of(token_metric("n")),
        global,
    )
        .prop_map(|(m, n, g)| {
            let mut v = vec![m];
            v.extend(n);
            v.extend(g);
            v
        })
}

/// `(gap, token, metric index)` triples: gaps of 0 to 15 s, mostly short so that limits are
/// reached; with `idle`, now and then an hour or more, so that tokens expire and windows forget.
fn script(
    metric_count: usize,
    idle: bool,
) -> impl Strategy<Value = Vec<(i64, &'static str, usize)>> {
    let gap = if idle {
        prop_oneof![30 => 0i64..3, 10 => 3i64..16, 1 => 16i64..700, 1 => 3_000i64..5_000].boxed()
    } else {
        prop_oneof![3 => 0i64..3, 1 => 3i64..16].boxed()
    };
    proptest::collection::vec(
        (
            gap,
            prop_oneof![Just("a"), Just("b"), Just("c")],
            0..metric_count,
        ),
        1..70,
    )
}

fn rules_and_script(
    idle: bool,
) -> impl Strategy<Value = (Vec<Metric>, Vec<(i64, &'static str, usize)>)> {
    metrics().prop_flat_map(move |m| {
        let n = m.len();
        (Just(m), script(n, idle))
    })
}

fn ruleset(metrics: &[Metric]) -> Arc<Ruleset> {
    ruleset_with_rates(metrics.iter().map(|m| {
        let tiers = m.tiers.iter().map(|t| {
            let mut th = threshold(
                t.limit,
                t.window.unsigned_abs(),
                t.effect,
                t.duration.unsigned_abs(),
            )
            .with_policy(t.policy);
            th.escalate = t.escalate.map(|(factor, max, memory)| Escalation {
                factor,
                max: Seconds::new(max.unsigned_abs()),
                memory: Seconds::new(memory.unsigned_abs()),
            });
            th
        });
        scoped(&m.name, m.scope, tiers)
    }))
}

/// Event times from gaps, starting at 1000.
fn timed(script: &[(i64, &'static str, usize)]) -> Vec<(i64, &'static str, usize)> {
    let mut t = 1_000;
    script
        .iter()
        .map(|&(gap, token, m)| {
            t += gap;
            (t, token, m)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The reference model

/// One step of output: the decision records of an event (`at,VERB,token`), its `passed`, its
/// rates.
type Step = (Vec<String>, bool, Rates);

/// docs/semantics.md, read literally and computed by brute force: every event kept, every count a scan.
#[derive(Default)]
struct Model {
    metrics: Vec<Metric>,
    now: i64,
    /// Every event time, per (token, metric index); global metrics use the token "global".
    events: HashMap<(String, usize), Vec<i64>>,
    /// Active decisions by episode: one ban per token, one notice per token and tier, one
    /// alert per global tier.
    active: HashMap<Key, Active>,
    /// Start order, the tie-break between decisions ending in the same second.
    next_id: u64,
    /// When each token's bans started (for tiers that escalate).
    ban_starts: HashMap<String, Vec<i64>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Block(String),
    Notify(String, usize, usize),
    Alert(usize, usize),
}

impl Key {
    fn verbs(&self) -> (&'static str, &'static str) {
        match self {
            Key::Block(_) => ("BAN", "UNBAN"),
            Key::Notify(..) => ("NOTIFY", "NOTIFY_END"),
            Key::Alert(..) => ("ALERT", "RECOVER"),
        }
    }
}

#[derive(Debug, Clone)]
struct Active {
    id: u64,
    token: String,
    /// When the decision started.
    from: i64,
    /// `after_trigger` reaches: t + duration for each event t at which a tier held.
    triggers: Vec<i64>,
    /// `after_violation` reaches: (last second the tier holds, duration).
    holds: Vec<(i64, i64)>,
}

impl Active {
    /// The furthest reach; with the clock stopped at `stop`, a hold runs no further than it.
    fn until(&self, stop: Option<i64>) -> i64 {
        let t = self.triggers.iter().copied().max().unwrap_or(i64::MIN);
        let h = self
            .holds
            .iter()
            .map(|&(end, d)| stop.map_or(end, |s| end.min(s)) + d)
            .max()
            .unwrap_or(i64::MIN);
        t.max(h)
    }
}

impl Model {
    fn new(metrics: &[Metric]) -> Self {
        Model {
            metrics: metrics.to_vec(),
            now: i64::MIN,
            ..Model::default()
        }
    }

    /// Events in the window `(s - window, s]`.
    fn count(&self, token: &str, metric: usize, s: i64, window: i64) -> u64 {
        self.events.get(&(token.to_owned(), metric)).map_or(0, |v| {
            v.iter().filter(|&&t| t > s - window && t <= s).count() as u64
        })
    }

    /// Token tiers hold when the count reaches the limit, global alerts when it exceeds it.
    fn holds(&self, token: &str, metric: usize, tier: usize, s: i64) -> bool {
        let t = &self.metrics[metric].tiers[tier];
        let c = self.count(token, metric, s, t.window);
        if t.effect == Effect::Alert {
            c > t.limit
        } else {
            c >= t.limit
        }
    }

    /// When an active decision ends if no further event comes (the clock stopped at `stop`).
    fn end_time(&self, key: &Key, a: &Active, stop: Option<i64>) -> i64 {
        match key {
            // The first second at which the alert's window no longer exceeds the limit.
            Key::Alert(m, tier) => {
                let mut s = self.now;
                while self.holds("global", *m, *tier, s) {
                    s += 1;
                }
                s
            }
            _ => a.until(stop),
        }
    }

    /// Moves time to `to`, ending (at exactly their end) the decisions that end by then.
    fn advance(&mut self, to: i64, out: &mut Vec<String>) {
        let mut ends: Vec<(i64, u64, Key)> = self
            .active
            .iter()
            .map(|(k, a)| (self.end_time(k, a, None), a.id, k.clone()))
            .filter(|(at, _, _)| *at <= to)
            .collect();
        ends.sort_by_key(|(at, id, _)| (*at, *id));
        for (at, _, key) in ends {
            let a = self.active.remove(&key).unwrap();
            out.push(format!("{at},{},{}", key.verbs().1, a.token));
        }
        self.now = self.now.max(to);
    }

    fn event(&mut self, t: i64, token: &str, metric: usize) -> Step {
        let mut out = Vec::new();
        // Ends at t come before the event at t is counted.
        self.advance(t, &mut out);
        let now = self.now;
        let who = if self.metrics[metric].scope == Scope::Global {
            "global"
        } else {
            token
        };
        self.events
            .entry((who.to_owned(), metric))
            .or_default()
            .push(t);
        for tier in 0..self.metrics[metric].tiers.len() {
            if !self.holds(who, metric, tier, now) {
                continue;
            }
            let mut th = self.metrics[metric].tiers[tier].clone();
            let key = match th.effect {
                Effect::Block => Key::Block(who.to_owned()),
                Effect::Notify => Key::Notify(who.to_owned(), metric, tier),
                Effect::Alert => Key::Alert(metric, tier),
            };
            // A repeat offender's ban: the n-th started within `memory` before this one's
            // start lasts duration * factor^(n-1), at most max, never less than duration.
            if let Some((factor, max, memory)) = th.escalate {
                let from = self.active.get(&key).map_or(now, |a| a.from);
                let earlier = self.ban_starts.get(who).map_or(0, |v| {
                    v.iter().filter(|&&s| s > from - memory && s < from).count()
                });
                let mut d = th.duration;
                for _ in 0..earlier {
                    d = d
                        .saturating_mul(i64::from(factor))
                        .min(max.max(th.duration));
                }
                th.duration = d.min(max).max(th.duration);
            }
            let (trigger, hold) = match th.policy {
                _ if th.effect == Effect::Alert => (None, None),
                BanPolicy::AfterTrigger => (Some(now + th.duration), None),
                // The last second at which the tier still holds with no further event.
                BanPolicy::AfterViolation => {
                    let mut s = now;
                    while self.holds(who, metric, tier, s + 1) {
                        s += 1;
                    }
                    (None, Some((s, th.duration)))
                }
            };
            let id = self.next_id;
            let is_new = !self.active.contains_key(&key);
            let a = self.active.entry(key.clone()).or_insert_with(|| Active {
                id,
                token: who.to_owned(),
                from: now,
                triggers: Vec::new(),
                holds: Vec::new(),
            });
            a.triggers.extend(trigger);
            a.holds.extend(hold);
            if is_new {
                self.next_id += 1;
                out.push(format!("{now},{},{who}", key.verbs().0));
                if matches!(key, Key::Block(_)) {
                    self.ban_starts.entry(who.to_owned()).or_default().push(now);
                }
            }
        }
        let passed = !self.active.contains_key(&Key::Block(token.to_owned()));
        let rates = Rates {
            last_1m: self.count(who, metric, now, 60),
            last_10m: self.count(who, metric, now, 600),
            last_60m: self.count(who, metric, now, 3600),
        };
        (out, passed, rates)
    }

    /// The input is over: every active decision ends where it would with the clock stopped.
    fn finish(&mut self) -> Vec<String> {
        let mut ends: Vec<(i64, u64, String)> = self
            .active
            .iter()
            .map(|(k, a)| {
                let at = self.end_time(k, a, Some(self.now));
                (at, a.id, format!("{at},{},{}", k.verbs().1, a.token))
            })
            .collect();
        ends.sort_by_key(|(at, id, _)| (*at, *id));
        ends.into_iter().map(|(_, _, s)| s).collect()
    }
}

fn run_model(metrics: &[Metric], events: &[(i64, &str, usize)]) -> (Vec<Step>, Vec<String>) {
    let mut model = Model::new(metrics);
    let steps = events
        .iter()
        .map(|&(t, token, m)| model.event(t, token, m))
        .collect();
    (steps, model.finish())
}

// ---------------------------------------------------------------------------------------------
// Drivers

/// How the engine is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drive {
    /// As `banhammer eval`: `observe` at each event's time, then `finish`.
    Eval,
    /// The same, with `advance` called at every second between events.
    Ticking,
    /// The library call: the clock set to each event's time, then `incr`.
    Incr,
}

/// What the engine said: per event, and at the end.
struct Run {
    steps: Vec<Step>,
    /// Every start and end (no extensions), per event.
    records: Vec<Vec<DecisionEvent>>,
    end: Vec<DecisionEvent>,
}

impl Run {
    fn end_strings(&self) -> Vec<String> {
        self.end.iter().map(ToString::to_string).collect()
    }
}

fn records(decisions: &[DecisionEvent]) -> Vec<DecisionEvent> {
    decisions
        .iter()
        .filter(|d| d.is_record())
        .cloned()
        .collect()
}

fn run_engine(metrics: &[Metric], events: &[(i64, &str, usize)], drive: Drive) -> Run {
    run_capped(metrics, events, drive, None).0
}

/// [`run_engine`] with the token cap set to `cap` (the default otherwise); also the engine's
/// counters at the end.
fn run_capped(
    metrics: &[Metric],
    events: &[(i64, &str, usize)],
    drive: Drive,
    cap: Option<usize>,
) -> (Run, EngineCounters) {
    let clock = ManualClock::new(Timestamp::from_unix(i64::MIN));
    let mut engine = Engine::new(ruleset(metrics), clock.clone());
    if let Some(cap) = cap.and_then(NonZeroUsize::new) {
        engine.set_max_tokens(cap);
    }
    let mut run = Run {
        steps: Vec::new(),
        records: Vec::new(),
        end: Vec::new(),
    };
    let mut prev: Option<i64> = None;
    for &(t, token, m) in events {
        let at = Timestamp::from_unix(t);
        let mut got = Vec::new();
        if drive == Drive::Ticking {
            for s in prev.map_or(t, |p| p + 1)..t {
                got.extend(records(&engine.advance(Timestamp::from_unix(s))));
            }
        }
        let v = if drive == Drive::Incr {
            clock.set(at);
            engine.incr(token, &metrics[m].name).unwrap()
        } else {
            engine
                .observe(&Event::new(token, &metrics[m].name, at), true)
                .unwrap()
        };
        got.extend(records(&v.decisions));
        let strings = got.iter().map(ToString::to_string).collect();
        run.steps.push((strings, v.passed, v.rates.unwrap()));
        run.records.push(got);
        prev = Some(t);
    }
    run.end = engine.finish();
    (run, engine.counters())
}

/// Through a `SharedEngine` of four shards: the `passed` and rates of each event, and every
/// record (sorted: shards end their decisions only when touched or advanced).
fn run_shared(
    metrics: &[Metric],
    events: &[(i64, &str, usize)],
) -> (Vec<(bool, Rates)>, Vec<String>) {
    let clock = ManualClock::new(Timestamp::from_unix(i64::MIN));
    let shared = SharedEngine::new(ruleset(metrics), &clock, NonZeroUsize::new(4).unwrap());
    let mut verdicts = Vec::new();
    let mut all = Vec::new();
    for &(t, token, m) in events {
        let v = shared
            .observe(
                &Event::new(token, &metrics[m].name, Timestamp::from_unix(t)),
                true,
            )
            .unwrap();
        verdicts.push((v.passed, v.rates.unwrap()));
        all.extend(records(&v.decisions));
    }
    // Stop every shard's clock at the last event, as `finish` on one engine does.
    let last = Timestamp::from_unix(events.last().map_or(0, |e| e.0));
    all.extend(records(&shared.advance(last)));
    shared.for_each_shard(|e| all.extend(e.finish()));
    let mut all: Vec<String> = all.iter().map(ToString::to_string).collect();
    all.sort();
    (verdicts, all)
}

// ---------------------------------------------------------------------------------------------
// The model on docs/semantics.md's worked examples (limit 3, window 10 s, 100 s)

/// An event script (`"0 a, 1 a, 2 a"`, testkit's notation) through the model and the engine,
/// which must agree; returns the model's records.
fn design_example(policy: BanPolicy, script: &str) -> Vec<String> {
    let metrics = [Metric {
        name: DEFAULT_METRIC.to_owned(),
        scope: Scope::Token,
        tiers: vec![Tier {
            limit: 3,
            window: 10,
            duration: 100,
            effect: Effect::Block,
            policy,
            escalate: None,
        }],
    }];
    let steps = parse(script);
    let events: Vec<(i64, &str, usize)> = steps
        .iter()
        .map(|s| match s {
            ScriptStep::Event {
                at, token, metric, ..
            } if metric == DEFAULT_METRIC => (*at, token.as_str(), 0),
            other => panic!("not an event of `m`: {other}"),
        })
        .collect();
    let (steps, end) = run_model(&metrics, &events);
    let model: Vec<String> = steps.into_iter().flat_map(|s| s.0).chain(end).collect();
    let run = run_engine(&metrics, &events, Drive::Eval);
    let engine: Vec<String> = run
        .steps
        .into_iter()
        .flat_map(|s| s.0)
        .chain(run.end.iter().map(ToString::to_string))
        .collect();
    assert_eq!(model, engine, "{policy:?} {script}");
    model
}

#[test]
fn the_model_reproduces_the_worked_examples() {
    use BanPolicy::{AfterTrigger as T, AfterViolation as V};
    let ex = design_example;
    assert_eq!(ex(T, "0 a, 1 a, 2 a, 50 a"), ["2,BAN,a", "102,UNBAN,a"]);
    assert_eq!(ex(T, "0 a, 1 a, 2 a, 5 a"), ["2,BAN,a", "105,UNBAN,a"]);
    assert_eq!(
        ex(T, "0 a, 1 a, 2 a, 102 a, 103 a, 104 a, 300 b"),
        ["2,BAN,a", "102,UNBAN,a", "104,BAN,a", "204,UNBAN,a"]
    );
    assert_eq!(ex(V, "0 a, 1 a, 2 a"), ["2,BAN,a", "102,UNBAN,a"]);
    assert_eq!(ex(V, "0 a, 1 a, 2 a, 20 b"), ["2,BAN,a", "109,UNBAN,a"]);
    assert_eq!(
        ex(V, "0 a, 1 a, 2 a, 5 a, 200 b"),
        ["2,BAN,a", "110,UNBAN,a"]
    );
}

// ---------------------------------------------------------------------------------------------
// Agreement

fn assert_agrees(
    metrics: &[Metric],
    events: &[(i64, &str, usize)],
    drive: Drive,
) -> Result<(), TestCaseError> {
    assert_run_agrees(metrics, events, drive, &run_engine(metrics, events, drive))
}

fn assert_run_agrees(
    metrics: &[Metric],
    events: &[(i64, &str, usize)],
    drive: Drive,
    run: &Run,
) -> Result<(), TestCaseError> {
    let (model_steps, model_end) = run_model(metrics, events);
    for (i, (e, m)) in run.steps.iter().zip(&model_steps).enumerate() {
        prop_assert_eq!(e, m, "{:?}: event {} {:?}", drive, i, events[i]);
    }
    prop_assert_eq!(run.end_strings(), model_end, "{:?}: at the end", drive);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every decision record, `passed` and rate, as `banhammer eval` drives the engine.
    #[test]
    fn the_engine_agrees_with_the_reference_model((metrics, script) in rules_and_script(false)) {
        assert_agrees(&metrics, &timed(&script), Drive::Eval)?;
    }

    /// Ending decisions on a tick instead of at the next event changes nothing; neither does
    /// the library call on a clock.
    #[test]
    fn ticks_and_the_library_call_change_nothing((metrics, script) in rules_and_script(false)) {
        let events = timed(&script);
        assert_agrees(&metrics, &events, Drive::Ticking)?;
        assert_agrees(&metrics, &events, Drive::Incr)?;
    }

    /// Long idle stretches: tokens expire, windows forget, rates fall back.
    #[test]
    fn the_engine_agrees_across_idle_stretches((metrics, script) in rules_and_script(true)) {
        assert_agrees(&metrics, &timed(&script), Drive::Eval)?;
    }

    /// A cap as large as the number of tokens (three) never evicts, so changes nothing.
    #[test]
    fn a_cap_that_never_overflows_changes_nothing((metrics, script) in rules_and_script(true)) {
        let events = timed(&script);
        let (run, counters) = run_capped(&metrics, &events, Drive::Eval, Some(3));
        prop_assert_eq!(counters.evictions, 0);
        assert_run_agrees(&metrics, &events, Drive::Eval, &run)?;
    }

    /// Sharding by token changes no verdict and no decision.
    #[test]
    fn a_shared_engine_agrees_with_one_engine((metrics, script) in rules_and_script(false)) {
        let events = timed(&script);
        let run = run_engine(&metrics, &events, Drive::Eval);
        let (verdicts, mut shared) = run_shared(&metrics, &events);
        for (i, (step, v)) in run.steps.iter().zip(&verdicts).enumerate() {
            prop_assert_eq!((step.1, step.2), *v, "event {} {:?}", i, events[i]);
        }
        let mut one: Vec<String> = run.steps.iter().flat_map(|s| s.0.iter().cloned()).chain(run.end_strings()).collect();
        one.sort();
        shared.sort();
        prop_assert_eq!(one, shared);
    }
}

// ---------------------------------------------------------------------------------------------
// Invariants (whatever the rules)

/// Records come in time order; every start is followed by exactly one end of its episode, at
/// least a second later, whose `from` is the start; no episode overlaps itself.
fn episodes_are_whole(run: &Run) -> Result<(), TestCaseError> {
    let mut open: HashMap<(Effect, String, String, usize), i64> = HashMap::new();
    let mut last = i64::MIN;
    for d in run.records.iter().flatten().chain(&run.end) {
        let at = d.at.as_unix();
        prop_assert!(at >= last, "{} after a record at {}", d, last);
        last = at;
        match d.change {
            Change::Start => {
                prop_assert_eq!(d.from, d.at);
                prop_assert!(
                    open.insert(episode(d), at).is_none(),
                    "{} overlaps an open episode",
                    d
                );
            }
            Change::End => {
                let from = open.remove(&episode(d));
                prop_assert_eq!(from, Some(d.from.as_unix()), "{} ends no open episode", d);
                prop_assert!(at > d.from.as_unix(), "{} not after its start", d);
            }
            Change::Extend => prop_assert!(false, "extensions are not records"),
        }
    }
    prop_assert!(open.is_empty(), "left open at the end: {:?}", open);
    Ok(())
}

/// `passed` is false exactly when the records so far leave a BAN of the token open; a BAN is
/// issued at the time of the event that causes it.
fn passed_follows_bans(events: &[(i64, &str, usize)], run: &Run) -> Result<(), TestCaseError> {
    let mut banned: HashSet<String> = HashSet::new();
    for (i, (&(t, token, _), records)) in events.iter().zip(&run.records).enumerate() {
        for d in records.iter().filter(|d| d.effect == Effect::Block) {
            if d.change == Change::Start {
                prop_assert_eq!(d.at.as_unix(), t);
                banned.insert(d.token.to_string());
            } else {
                prop_assert!(d.at.as_unix() <= t);
                banned.remove(d.token.as_str());
            }
        }
        prop_assert_eq!(
            run.steps[i].1,
            !banned.contains(token),
            "event {} {:?}",
            i,
            events[i]
        );
    }
    Ok(())
}

/// Which episode a record belongs to: one ban per token, one notice per token and tier, one
/// alert per global tier.
fn episode(d: &DecisionEvent) -> (Effect, String, String, usize) {
    match d.effect {
        Effect::Block => (d.effect, d.token.to_string(), String::new(), 0),
        Effect::Notify | Effect::Alert => {
            (d.effect, d.token.to_string(), d.metric.to_string(), d.tier)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A token never has two overlapping bans (nor a notice or alert two overlapping
    /// episodes); every start is followed by exactly one end, at least a second later, whose
    /// `from` is the start; records come in time order.
    #[test]
    fn every_decision_ends_once_and_never_overlaps((metrics, script) in rules_and_script(false)) {
        let events = timed(&script);
        episodes_are_whole(&run_engine(&metrics, &events, Drive::Eval))?;
    }

    /// `passed` is false exactly when the records so far leave a BAN of the token open; a
    /// BAN is always issued at the time of the event that causes it.
    #[test]
    fn passed_matches_the_records((metrics, script) in rules_and_script(false)) {
        let events = timed(&script);
        passed_follows_bans(&events, &run_engine(&metrics, &events, Drive::Eval))?;
    }

    /// A cap that evicts (one token tracked of three) loses counts, never decisions: episodes
    /// stay whole, `passed` still follows the bans, and the counters add up.
    #[test]
    fn a_cap_that_evicts_keeps_decisions_whole((metrics, script) in rules_and_script(true)) {
        let events = timed(&script);
        let (run, counters) = run_capped(&metrics, &events, Drive::Eval, Some(1));
        prop_assert!(counters.tracked_tokens <= 1);
        prop_assert!(counters.evictions_at_stake <= counters.evictions);
        episodes_are_whole(&run)?;
        passed_follows_bans(&events, &run)?;
    }

    /// Whatever the policies and the other tiers: for every block tier (limit L, window w),
    /// a token never gets L events of that metric passed within any w seconds.
    #[test]
    fn passed_events_never_reach_a_block_limit((metrics, script) in rules_and_script(false)) {
        let events = timed(&script);
        let run = run_engine(&metrics, &events, Drive::Eval);
        let mut passed: HashMap<(&str, usize), Vec<i64>> = HashMap::new();
        for (&(t, token, m), step) in events.iter().zip(&run.steps) {
            if !step.1 || metrics[m].scope == Scope::Global {
                continue;
            }
            let times = passed.entry((token, m)).or_default();
            times.push(t);
            for tier in metrics[m].tiers.iter().filter(|t| t.effect == Effect::Block) {
                // The last passed event of any window is this one or an earlier one.
                let inside = times.iter().filter(|&&p| p > t - tier.window).count() as u64;
                prop_assert!(
                    inside < tier.limit,
                    "{} passed events of {} for {} in ({}, {}] with limit {}",
                    inside, metrics[m].name, token, t - tier.window, t, tier.limit
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Windows against brute force

/// Window operations: add (second, weight), forget up to a second, or query a boundary.
#[derive(Debug, Clone)]
enum Op {
    Add(i64, u64),
    Forget(i64),
    Query(i64),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![
            6 => (0i64..60, 0u64..4).prop_map(|(at, w)| Op::Add(at, w)),
            1 => (0i64..60).prop_map(Op::Forget),
            3 => (-1i64..61).prop_map(Op::Query),
        ],
        1..80,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `SlidingWindow` (out-of-order adds, lazy forgetting) answers every window sum and
    /// every "does the n-th most recent unit lie inside" exactly, for boundaries at or after
    /// what was forgotten.
    #[test]
    fn sliding_window_is_exact(ops in ops()) {
        let mut w = SlidingWindow::new();
        let mut log: Vec<(i64, u64)> = Vec::new();
        let mut forgotten = i64::MIN;
        for op in ops {
            match op {
                // What has been forgotten cannot come back: the engine ignores events that old.
                Op::Add(at, weight) if at > forgotten => {
                    w.add(Timestamp::from_unix(at), weight);
                    log.push((at, weight));
                }
                Op::Add(..) => {}
                Op::Forget(b) => {
                    forgotten = forgotten.max(b);
                    w.forget_until(Timestamp::from_unix(b));
                }
                Op::Query(b) => {
                    let b = b.max(forgotten);
                    let boundary = Timestamp::from_unix(b);
                    let sum: u64 = log.iter().filter(|e| e.0 > b).map(|e| e.1).sum();
                    prop_assert_eq!(w.sum_after(boundary), sum, "sum after {}", b);
                    let mut units: Vec<i64> = log.iter().flat_map(|&(at, wt)| (0..wt).map(move |_| at)).collect();
                    units.sort_unstable_by(|a, b| b.cmp(a));
                    for n in 1..=units.len() as u64 + 1 {
                        let inside = units.get(n as usize - 1).is_some_and(|&at| at > b);
                        prop_assert_eq!(
                            w.nth_latest(n).is_some_and(|at| at > boundary), inside,
                            "unit {} after {}", n, b
                        );
                    }
                }
            }
        }
    }

    /// `DistinctWindow` keeps the `keep` most recently seen values: it counts distinct values
    /// after a boundary exactly up to `keep`, and knows whether the n-th most recent (n ≤ keep)
    /// was seen after it.
    #[test]
    fn distinct_window_is_exact_up_to_keep(
        adds in proptest::collection::vec((0i64..40, 0u8..6), 1..60),
        keep in 1usize..5,
        forget in proptest::option::of(0i64..40),
    ) {
        let mut w = DistinctWindow::new();
        let mut last_seen: HashMap<u8, i64> = HashMap::new();
        let mut forgotten = i64::MIN;
        for (i, &(at, v)) in adds.iter().enumerate() {
            if at <= forgotten {
                continue;
            }
            w.add(Timestamp::from_unix(at), &v.to_string(), keep);
            let seen = last_seen.entry(v).or_insert(at);
            *seen = (*seen).max(at);
            if i == adds.len() / 2 {
                if let Some(b) = forget {
                    forgotten = b;
                    w.forget_until(Timestamp::from_unix(b));
                }
            }
            let mut times: Vec<i64> = last_seen.values().copied().collect();
            times.sort_unstable_by(|a, b| b.cmp(a));
            for b in forgotten.max(-1)..41 {
                let boundary = Timestamp::from_unix(b);
                let after = times.iter().filter(|&&t| t > b).count();
                prop_assert_eq!(w.count_after(boundary), after.min(keep) as u64, "after {}", b);
                for n in 1..=keep {
                    let inside = times.get(n - 1).is_some_and(|&t| t > b);
                    prop_assert_eq!(
                        w.nth_latest(n as u64).is_some_and(|t| t > boundary), inside,
                        "value {} after {}", n, b
                    );
                }
            }
        }
    }
}
