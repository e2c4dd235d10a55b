//! Property tests: random event scripts through the engine and through a naive reference
//! model written from DESIGN.md's text alone (sorted lists of timestamps, brute force), which
//! must agree on every decision, every `passed` and every rate.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Arc;

use banhammer_core::{
    BanPolicy, Effect, Engine, Event, ManualClock, MetricRule, Rates, Ruleset, Scope, Seconds,
    Threshold, Timestamp, Window,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Tier {
    limit: u64,
    window: i64,
    duration: i64,
    effect: Effect,
    policy: BanPolicy,
}

#[derive(Debug, Clone)]
struct Metric {
    name: String,
    scope: Scope,
    tiers: Vec<Tier>,
}

fn tier(global: bool) -> impl Strategy<Value = Tier> {
    (1u64..6, 1i64..20, 1i64..50, any::<bool>(), any::<bool>()).prop_map(
        move |(limit, window, duration, block, violation)| Tier {
            limit,
            window,
            duration,
            effect: if global {
                Effect::Alert
            } else if block {
                Effect::Block
            } else {
                Effect::Notify
            },
            policy: if violation {
                BanPolicy::AfterViolation
            } else {
                BanPolicy::AfterTrigger
            },
        },
    )
}

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

/// `(gap, token, metric index)` triples.
fn script(metric_count: usize) -> impl Strategy<Value = Vec<(i64, &'static str, usize)>> {
    proptest::collection::vec(
        (
            prop_oneof![3 => 0i64..3, 1 => 3i64..16],
            prop_oneof![Just("a"), Just("b"), Just("c")],
            0..metric_count,
        ),
        1..70,
    )
}

fn ruleset(metrics: &[Metric]) -> Arc<Ruleset> {
    let mut b = Ruleset::builder().rates(true);
    for m in metrics {
        let thresholds = m
            .tiers
            .iter()
            .map(|t| {
                let mut th = Threshold::new(
                    NonZeroU64::new(t.limit).unwrap(),
                    Window::from_secs(t.window.unsigned_abs()).unwrap(),
                    t.effect,
                    Seconds::new(t.duration.unsigned_abs()),
                );
                th.policy = t.policy;
                th
            })
            .collect();
        b = b.metric(MetricRule {
            name: m.name.as_str().into(),
            scope: m.scope,
            thresholds,
        });
    }
    Arc::new(b.build().unwrap())
}

/// One step of output: the decisions of an event, its `passed`, its rates.
type Step = (Vec<String>, bool, Rates);

/// DESIGN.md, read literally and computed by brute force.
#[derive(Default)]
struct Model {
    metrics: Vec<Metric>,
    now: i64,
    /// Every event, per (token, metric index); global metrics use the token "global".
    events: HashMap<(String, usize), Vec<i64>>,
    /// Active decisions by episode key.
    active: HashMap<Key, Active>,
    next_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Block(String),
    Notify(String, usize, usize),
    Alert(usize, usize),
}

#[derive(Debug, Clone)]
struct Active {
    id: u64,
    token: String,
    /// after_trigger reaches: ends.
    triggers: Vec<i64>,
    /// after_violation reaches: (last holding second, duration).
    holds: Vec<(i64, i64)>,
}

impl Active {
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
    fn count(&self, token: &str, metric: usize, s: i64, window: i64) -> u64 {
        self.events.get(&(token.to_owned(), metric)).map_or(0, |v| {
            v.iter().filter(|&&t| t > s - window && t <= s).count() as u64
        })
    }

    fn holds(&self, token: &str, metric: usize, tier: usize, s: i64) -> bool {
        let t = &self.metrics[metric].tiers[tier];
        let c = self.count(token, metric, s, t.window);
        if t.effect == Effect::Alert {
            c > t.limit
        } else {
            c >= t.limit
        }
    }

    /// When each active decision ends if time runs to `to` with no new event.
    fn end_time(&self, key: &Key, a: &Active, stop: Option<i64>) -> i64 {
        match key {
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
            let verb = match key {
                Key::Block(_) => "UNBAN",
                Key::Notify(..) => "NOTIFY_END",
                Key::Alert(..) => "RECOVER",
            };
            out.push(format!("{at},{verb},{}", a.token));
        }
        self.now = self.now.max(to);
    }

    fn event(&mut self, t: i64, token: &str, metric: usize) -> Step {
        let mut out = Vec::new();
        self.advance(t, &mut out);
        let now = self.now;
        let scope = self.metrics[metric].scope;
        let who = if scope == Scope::Global {
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
            let th = self.metrics[metric].tiers[tier].clone();
            let key = match th.effect {
                Effect::Block => Key::Block(who.to_owned()),
                Effect::Notify => Key::Notify(who.to_owned(), metric, tier),
                Effect::Alert => Key::Alert(metric, tier),
            };
            // Where this threshold carries the decision.
            let (trigger, hold) = match th.policy {
                _ if th.effect == Effect::Alert => (None, None),
                BanPolicy::AfterTrigger => (Some(now + th.duration), None),
                BanPolicy::AfterViolation => {
                    let mut s = now;
                    while self.holds(who, metric, tier, s + 1) {
                        s += 1;
                    }
                    (None, Some((s, th.duration)))
                }
            };
            let entry = self.active.entry(key.clone());
            let is_new = matches!(entry, std::collections::hash_map::Entry::Vacant(_));
            let id = self.next_id;
            let a = entry.or_insert_with(|| Active {
                id,
                token: who.to_owned(),
                triggers: Vec::new(),
                holds: Vec::new(),
            });
            a.triggers.extend(trigger);
            a.holds.extend(hold);
            if is_new {
                self.next_id += 1;
                let verb = match key {
                    Key::Block(_) => "BAN",
                    Key::Notify(..) => "NOTIFY",
                    Key::Alert(..) => "ALERT",
                };
                out.push(format!("{now},{verb},{who}"));
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

    fn finish(&mut self) -> Vec<String> {
        let mut ends: Vec<(i64, u64, String)> = self
            .active
            .iter()
            .map(|(k, a)| {
                let verb = match k {
                    Key::Block(_) => "UNBAN",
                    Key::Notify(..) => "NOTIFY_END",
                    Key::Alert(..) => "RECOVER",
                };
                let at = self.end_time(k, a, Some(self.now));
                (at, a.id, format!("{at},{verb},{}", a.token))
            })
            .collect();
        ends.sort_by_key(|(at, id, _)| (*at, *id));
        ends.into_iter().map(|(_, _, s)| s).collect()
    }
}

fn run_engine(metrics: &[Metric], events: &[(i64, &str, usize)]) -> (Vec<Step>, Vec<String>) {
    let mut engine = Engine::new(
        ruleset(metrics),
        ManualClock::new(Timestamp::from_unix(i64::MIN)),
    );
    let mut steps = Vec::new();
    for &(t, token, m) in events {
        let v = engine
            .observe(
                &Event::new(token, &metrics[m].name, Timestamp::from_unix(t)),
                true,
            )
            .unwrap();
        let decisions = v
            .decisions
            .iter()
            .filter(|d| d.is_record())
            .map(ToString::to_string)
            .collect();
        steps.push((decisions, v.passed, v.rates.unwrap()));
    }
    let end = engine.finish().iter().map(ToString::to_string).collect();
    (steps, end)
}

fn run_model(metrics: &[Metric], events: &[(i64, &str, usize)]) -> (Vec<Step>, Vec<String>) {
    let mut model = Model {
        metrics: metrics.to_vec(),
        now: i64::MIN,
        ..Model::default()
    };
    let steps = events
        .iter()
        .map(|&(t, token, m)| model.event(t, token, m))
        .collect();
    (steps, model.finish())
}

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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_engine_agrees_with_the_reference_model(
        (metrics, script) in metrics().prop_flat_map(|m| { let n = m.len(); (Just(m), script(n)) })
    ) {
        let events = timed(&script);
        let (engine_steps, engine_end) = run_engine(&metrics, &events);
        let (model_steps, model_end) = run_model(&metrics, &events);
        for (i, (e, m)) in engine_steps.iter().zip(&model_steps).enumerate() {
            prop_assert_eq!(e, m, "event {} {:?}", i, events[i]);
        }
        prop_assert_eq!(engine_end, model_end);
    }

    #[test]
    fn every_ban_ends_once_and_bans_never_overlap(
        (metrics, script) in metrics().prop_flat_map(|m| { let n = m.len(); (Just(m), script(n)) })
    ) {
        let events = timed(&script);
        let (steps, end) = run_engine(&metrics, &events);
        let mut open: HashMap<String, i64> = HashMap::new();
        for line in steps.iter().flat_map(|s| s.0.iter()).chain(&end) {
            let mut parts = line.split(',');
            let at: i64 = parts.next().unwrap().parse().unwrap();
            let verb = parts.next().unwrap();
            let token = parts.next().unwrap().to_owned();
            match verb {
                "BAN" => prop_assert!(open.insert(token, at).is_none(), "two overlapping bans"),
                "UNBAN" => {
                    let from = open.remove(&token);
                    prop_assert!(from.is_some_and(|f| at > f), "an UNBAN without its BAN, or not after it");
                }
                _ => {}
            }
        }
        prop_assert!(open.is_empty(), "every BAN has its UNBAN at the end of input");
    }
}
