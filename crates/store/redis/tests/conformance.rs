//! Conformance: the same scripts of events, fires and unbans through the in-memory engine
//! (`banhammer_core::Engine`) and through the Redis store, on one server and on a
//! three-master cluster, give the same records field by field (EXTEND records included), the
//! same answers (`passed`, rates, actions) and the same refusals — so the script's copy of the
//! engine cannot drift from it.
//!
//! Both sides are driven as `banhammer eval` drives them: before each step every decision due
//! by then ends (`Engine::advance`, `RedisStore::sweep`), then the step runs; at the end of
//! the script the clock stops (`finish`).
//!
//! Contents: the harness · fixed cases (docs/semantics.md's worked examples, tiers, late events,
//! distinct values, families, global alerts, fire, unban, escapes, refusals) · random scripts
//! (proptest) · the same on a cluster · a few store-only behaviours.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use banhammer_core::{
    BanPolicy, DecisionEvent, DueAction, Effect, Engine, Event, EventError, Kind, ManualClock,
    MetricRule, Rates, Ruleset, Scope, Seconds, Threshold, Timestamp, Verdict, Window,
};
use banhammer_store_redis::{RedisStore, StoreError, StoreUrl};
use banhammer_testkit::{RedisCluster, RedisServer};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// The harness.

/// One step of a script. Each moves the clock to the latest time seen (a late event does not
/// move it back).
#[derive(Debug, Clone)]
enum Step {
    /// An event of `metric` for `token` at `at`, asking for rates or not.
    Event {
        at: i64,
        token: String,
        metric: String,
        attrs: Vec<(String, String)>,
        rates: bool,
    },
    /// Fires `tier` of `metric` for `token` (the seed API's `now`).
    Fire {
        at: i64,
        token: String,
        metric: String,
        tier: usize,
    },
    /// An operator's unban.
    Unban { at: i64, token: String },
}

impl Step {
    fn at(&self) -> i64 {
        match self {
            Step::Event { at, .. } | Step::Fire { at, .. } | Step::Unban { at, .. } => *at,
        }
    }
}

/// What a step answered, beyond its records.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    passed: bool,
    rates: Option<Rates>,
    actions: Vec<DueAction>,
}

impl From<Verdict> for Answer {
    fn from(v: Verdict) -> Self {
        Answer {
            passed: v.passed,
            rates: v.rates,
            actions: v.actions,
        }
    }
}

/// Everything one step gave: the ends due before it, then its own records, in order; and its
/// answer (`None` for an unban), or the refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    records: Vec<DecisionEvent>,
    answer: Result<Option<Answer>, EventError>,
}

/// A script's run: each step's outcome, then the ends when the clock stops.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    steps: Vec<Outcome>,
    finish: Vec<DecisionEvent>,
}

fn event<'a>(
    at: i64,
    token: &'a str,
    metric: &'a str,
    attrs: &'a [(&'a str, &'a str)],
) -> Event<'a> {
    Event::new(token, metric, Timestamp::from_unix(at)).with_attrs(attrs)
}

fn borrowed(attrs: &[(String, String)]) -> Vec<(&str, &str)> {
    attrs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// The script through the in-memory engine, on a clock that follows the script's time.
fn in_memory(rules: &Arc<Ruleset>, script: &[Step]) -> Run {
    let clock = ManualClock::new(Timestamp::MIN);
    let mut engine = Engine::new(Arc::clone(rules), clock.clone());
    let mut now = Timestamp::MIN;
    let mut steps = Vec::new();
    for step in script {
        now = now.max(Timestamp::from_unix(step.at()));
        clock.set(now);
        let mut records = engine.advance(now);
        let answer = match step {
            Step::Event {
                at,
                token,
                metric,
                attrs,
                rates,
            } => {
                let attrs = borrowed(attrs);
                engine
                    .observe(&event(*at, token, metric, &attrs), *rates)
                    .map(|v| {
                        records.extend(v.decisions.iter().cloned());
                        Some(v.into())
                    })
            }
            Step::Fire {
                token,
                metric,
                tier,
                ..
            } => engine.fire(token, metric, *tier).map(|v| {
                records.extend(v.decisions.iter().cloned());
                Some(v.into())
            }),
            Step::Unban { token, .. } => {
                records.extend(engine.unban(token));
                Ok(None)
            }
        };
        steps.push(Outcome { records, answer });
    }
    Run {
        steps,
        finish: engine.finish(),
    }
}

/// A refusal of the event itself, or a test failure for anything else.
fn refusal(e: StoreError) -> EventError {
    match e {
        StoreError::Event(e) => e,
        other => panic!("the store failed: {other}"),
    }
}

/// The script through the Redis store (emptied first), driven as `eval --scratch-store` does.
async fn on_redis(store: &RedisStore, script: &[Step]) -> Run {
    store.flush().await.unwrap();
    let mut now = Timestamp::MIN;
    let mut steps = Vec::new();
    for step in script {
        now = now.max(Timestamp::from_unix(step.at()));
        let mut records = store.sweep(now).await.unwrap();
        let answer = match step {
            Step::Event {
                at,
                token,
                metric,
                attrs,
                rates,
            } => {
                let attrs = borrowed(attrs);
                store
                    .observe(&event(*at, token, metric, &attrs), now, *rates)
                    .await
                    .map_err(refusal)
                    .map(|v| {
                        records.extend(v.decisions.iter().cloned());
                        Some(v.into())
                    })
            }
            Step::Fire {
                token,
                metric,
                tier,
                ..
            } => store
                .fire(token, metric, *tier, now)
                .await
                .map_err(refusal)
                .map(|v| {
                    records.extend(v.decisions.iter().cloned());
                    Some(v.into())
                }),
            Step::Unban { token, .. } => {
                records.extend(store.unban(token, now).await.unwrap());
                Ok(None)
            }
        };
        steps.push(Outcome { records, answer });
    }
    Run {
        steps,
        finish: store.finish(now).await.unwrap(),
    }
}

/// Where the two runs first differ, if they do: the step, with both outcomes.
fn difference(script: &[Step], memory: &Run, redis: &Run) -> Option<String> {
    for (i, (m, r)) in memory.steps.iter().zip(&redis.steps).enumerate() {
        if m != r {
            return Some(format!(
                "step {i} ({:?}):\n  memory: {m:?}\n  redis:  {r:?}",
                script[i]
            ));
        }
    }
    (memory.finish != redis.finish).then(|| {
        format!(
            "at the end:\n  memory: {:?}\n  redis:  {:?}",
            memory.finish, redis.finish
        )
    })
}

/// A node on `url` for `rules` (2 s timeout: tests wait for real servers, not for speed).
async fn connect(url: &str, rules: &Arc<Ruleset>) -> RedisStore {
    RedisStore::connect(
        &url.parse::<StoreUrl>().unwrap(),
        Arc::clone(rules),
        Duration::from_secs(2),
    )
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Rules and scripts.

fn t(limit: u64, window: u64, effect: Effect, duration: u64, policy: BanPolicy) -> Threshold {
    let mut th = Threshold::new(
        NonZeroU64::new(limit).unwrap(),
        Window::from_secs(window).unwrap(),
        effect,
        Seconds::new(duration),
    );
    th.policy = policy;
    th
}

/// The same threshold measuring the distinct values of `attr`.
fn distinct(mut th: Threshold, attr: &str) -> Threshold {
    th.kind = Kind::Distinct(attr.into());
    th
}

/// Rules that keep rates (so every answer's rates are compared too).
fn ruleset(metrics: Vec<MetricRule>) -> Arc<Ruleset> {
    ruleset_with(true, metrics)
}

/// Rules with rates or without: without, a token's windows are forgotten after the rules'
/// longest window instead of an hour.
fn ruleset_with(rates: bool, metrics: Vec<MetricRule>) -> Arc<Ruleset> {
    let mut b = Ruleset::builder().rates(rates);
    for m in metrics {
        b = b.metric(m);
    }
    Arc::new(b.build().unwrap())
}

fn metric(name: &str, scope: Scope, thresholds: Vec<Threshold>) -> MetricRule {
    MetricRule {
        name: name.into(),
        scope,
        thresholds,
    }
}

/// One token-scope metric `m` that bans for 600 s at `limit` events in 60 s.
fn one_ban_rule(limit: u64) -> Arc<Ruleset> {
    ruleset(vec![metric(
        "m",
        Scope::Token,
        vec![t(limit, 60, Effect::Block, 600, BanPolicy::AfterTrigger)],
    )])
}

/// Steps separated by commas: `T TOKEN METRIC [ATTR=VALUE…]` (an event), `T fire TOKEN
/// METRIC TIER`, `T unban TOKEN`. Events ask for rates.
fn parse(script: &str) -> Vec<Step> {
    script
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let p: Vec<&str> = item.split_whitespace().collect();
            let at = p[0].parse().unwrap();
            match p[1] {
                "fire" => Step::Fire {
                    at,
                    token: p[2].to_owned(),
                    metric: p[3].to_owned(),
                    tier: p[4].parse().unwrap(),
                },
                "unban" => Step::Unban {
                    at,
                    token: p[2].to_owned(),
                },
                token => Step::Event {
                    at,
                    token: token.to_owned(),
                    metric: p[2].to_owned(),
                    attrs: p[3..]
                        .iter()
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').unwrap();
                            (k.to_owned(), v.to_owned())
                        })
                        .collect(),
                    rates: true,
                },
            }
        })
        .collect()
}

/// The fixed cases: each a name, a rule set and its script.
#[allow(clippy::too_many_lines)] // a table of cases
fn cases() -> Vec<(&'static str, Arc<Ruleset>, Vec<Step>)> {
    use BanPolicy::{AfterTrigger as Tr, AfterViolation as Vi};
    use Effect::{Alert, Block, Notify};
    let design = |p| {
        ruleset(vec![metric(
            "m",
            Scope::Token,
            vec![t(3, 10, Block, 100, p)],
        )])
    };
    let tiers = || {
        ruleset(vec![
            metric(
                "login",
                Scope::Token,
                vec![t(2, 10, Block, 50, Tr), t(4, 30, Notify, 500, Vi)],
            ),
            metric("request", Scope::Token, vec![t(3, 10, Block, 200, Vi)]),
        ])
    };
    let detector = || {
        ruleset(vec![metric(
            "detect:*",
            Scope::Token,
            vec![
                t(11, 5, Block, 30, Tr),
                distinct(t(3, 5, Block, 30, Tr), "email"),
            ],
        )])
    };
    let family_notices = || {
        ruleset(vec![metric(
            "detect:*",
            Scope::Token,
            vec![t(2, 10, Notify, 20, Tr), t(4, 10, Block, 30, Vi)],
        )])
    };
    let alerts = || {
        ruleset(vec![
            metric("hits", Scope::Global, vec![t(4, 10, Alert, 0, Tr)]),
            metric(
                "agents",
                Scope::Global,
                vec![distinct(t(2, 10, Alert, 0, Tr), "ua")],
            ),
            metric("m", Scope::Token, vec![t(2, 10, Block, 30, Tr)]),
        ])
    };
    let fire_rules = || {
        ruleset(vec![
            metric(
                "m",
                Scope::Token,
                vec![
                    t(3, 10, Block, 100, Tr),
                    t(5, 60, Notify, 300, Vi),
                    t(8, 60, Block, 1000, Vi),
                ],
            ),
            metric("n", Scope::Token, vec![t(2, 10, Block, 50, Tr)]),
            metric("detect:*", Scope::Token, vec![t(2, 10, Block, 40, Tr)]),
            metric("hits", Scope::Global, vec![t(4, 10, Alert, 0, Tr)]),
        ])
    };
    let two_bans = || {
        ruleset(vec![
            metric("m", Scope::Token, vec![t(2, 10, Block, 10, Tr)]),
            metric("n", Scope::Token, vec![t(1, 10, Block, 10, Tr)]),
        ])
    };
    // Without rates the rules' longest window is `window`: a token idle that long is forgotten.
    let idle_bans = |window| {
        ruleset_with(
            false,
            vec![
                metric("m", Scope::Token, vec![t(1, window, Block, 100, Tr)]),
                metric("n", Scope::Token, vec![t(1, window, Block, 50, Tr)]),
            ],
        )
    };
    let distinct_rules = |p| {
        ruleset(vec![metric(
            "form",
            Scope::Token,
            vec![
                distinct(t(3, 10, Block, 50, p), "email"),
                distinct(t(2, 4, Notify, 20, Tr), "email"),
                distinct(t(2, 10, Notify, 20, Tr), "ip"),
            ],
        )])
    };
    // A family and a plain metric, no rates: a token idle for 10 s is forgotten.
    let members = || {
        ruleset_with(
            false,
            vec![
                metric("d:*", Scope::Token, vec![t(2, 10, Block, 30, Tr)]),
                metric("m", Scope::Token, vec![t(5, 10, Notify, 20, Tr)]),
            ],
        )
    };
    // Sixteen members for `a` (the most a token counts), then one too many, a known one, the
    // same new one for another token; an event of `m` keeps `a` (and its members) alive, a
    // refused event does not; once idle for the window, `a` starts a new list.
    let sixteen: String = (0..16).map(|i| format!("{} a d:{i}, ", i / 5)).collect();
    let too_many = format!(
        "{sixteen}4 a d:16, 4 a d:0, 5 b d:16, 12 a m, 20 a d:17, 21 a d:18, 22 a d:19, \
         22 a d:20, 23 a d:0"
    );
    let long_member = format!("d:{}", "x".repeat(127));
    let long = "x".repeat(300);
    let huge = "v".repeat(1025);
    let case = |name, rules, script: &str| (name, rules, parse(script));
    vec![
        // docs/semantics.md's worked examples.
        case("trigger 1", design(Tr), "0 a m, 1 a m, 2 a m, 50 a m"),
        case("trigger 2", design(Tr), "0 a m, 1 a m, 2 a m, 5 a m"),
        case(
            "trigger 3",
            design(Tr),
            "0 a m, 1 a m, 2 a m, 102 a m, 103 a m, 104 a m, 300 b m",
        ),
        case("violation 1", design(Vi), "0 a m, 1 a m, 2 a m"),
        case("violation 2", design(Vi), "0 a m, 1 a m, 2 a m, 20 b m"),
        case(
            "violation 3",
            design(Vi),
            "0 a m, 1 a m, 2 a m, 5 a m, 200 b m",
        ),
        case(
            "tiers and metrics",
            tiers(),
            "0 a login, 1 a login, 5 a request, 6 a request, 7 a request, 8 b login, 9 a login, \
             20 a login, 400 b request",
        ),
        // Late events count in their own second and are decided at the store's time.
        case(
            "late events reach the limit",
            design(Tr),
            "10 a m, 4 a m, 9 a m, 12 a m, 1 a m, 30 a m, 25 a m, 22 a m, 24 a m",
        ),
        case(
            "late events move a violation's hold",
            design(Vi),
            "10 a m, 11 a m, 5 a m, 12 a m, 3 a m, 19 a m, 15 a m, 16 a m",
        ),
        case(
            "events older than every window are ignored",
            tiers(),
            "100 a login, 20 a login, 89 a login, 91 a login, 95 a request, 1 a request, \
             96 a request, 97 a request, 50 a login",
        ),
        // Distinct values: repeats, late sightings, more values than are kept.
        case(
            "distinct values",
            distinct_rules(Tr),
            "0 a form email=x ip=1, 1 a form email=x ip=1, 2 a form email=y ip=1, \
             3 a form email=x ip=2, 1 a form email=z ip=3, 4 a form email=w ip=1, \
             12 a form email=v ip=4, 11 a form email=u ip=4, 9 a form email=v ip=5, \
             13 a form email=t ip=6, 13 a form email=s ip=6, 40 a form email=x ip=1",
        ),
        case(
            "distinct values, violation",
            distinct_rules(Vi),
            "0 a form email=a ip=1, 0 a form email=b ip=1, 0 a form email=c ip=1, \
             0 a form email=d ip=1, 5 a form email=a ip=1, 6 a form email=e ip=2, \
             2 a form email=f ip=3, 7 a form email=b ip=1, 30 b form email=a ip=1",
        ),
        case(
            "distinct emails in a family",
            detector(),
            "0 1.1.1.1 detect:login email=x@a, 1 1.1.1.1 detect:login email=y@a, \
             2 1.1.1.1 detect:login email=x@a, 3 1.1.1.1 detect:signup email=z@a, \
             3 1.1.1.1 detect:login email=z@a, 40 1.1.1.1 detect:login email=w@a",
        ),
        case(
            "eleven requests with one email",
            detector(),
            "100 2.2.2.2 detect:login email=v@a, 100 2.2.2.2 detect:login email=v@a, \
             100 2.2.2.2 detect:login email=v@a, 100 2.2.2.2 detect:login email=v@a, \
             100 2.2.2.2 detect:login email=v@a, 100 2.2.2.2 detect:login email=v@a, \
             101 2.2.2.2 detect:login email=v@a, 101 2.2.2.2 detect:login email=v@a, \
             101 2.2.2.2 detect:login email=v@a, 101 2.2.2.2 detect:login email=v@a, \
             101 2.2.2.2 detect:login email=v@a, 101 2.2.2.2 detect:login email=v@a",
        ),
        // Family members count apart; a notice and a ban are per token and rule, whatever
        // member holds.
        case(
            "family members count apart",
            family_notices(),
            "0 a detect:login, 1 a detect:signup, 2 a detect:login, 3 a detect:signup, \
             4 a detect:reset, 5 a detect:login, 6 a detect:login, 6 a detect:signup, \
             7 a detect:signup, 8 a detect:signup, 9 b detect:login, 60 a detect:reset",
        ),
        // The most members of a family a token counts, and how long it remembers them.
        case("too many members", members(), &too_many),
        case(
            "a member name too long",
            members(),
            &format!("0 a d:x, 1 a {long_member}, 2 a d:x"),
        ),
        // A ban keeps one reach per rule, named by the member that first reached furthest:
        // members held in the same second, and new members once the token is forgotten.
        case(
            "members reaching equally far",
            ruleset_with(
                false,
                vec![metric("d:*", Scope::Token, vec![t(1, 3, Block, 30, Vi)])],
            ),
            "0 a d:x, 0 a d:y, 0 c d:x, 2 c d:y, 2 c d:x, 6 c d:z, 6 c d:x, 20 b d:x",
        ),
        // Global alerts, by count and by distinct values, with late events.
        case(
            "global alerts",
            alerts(),
            "0 a hits, 0 b hits, 1 c hits, 1 a hits, 2 b hits, 3 c hits, 15 a hits, 40 b hits",
        ),
        case(
            "global alerts with late events and distinct values",
            alerts(),
            "0 a hits ua=x, 5 b agents ua=x, 6 c agents ua=x, 6 a agents ua=y, 7 a hits, \
             3 b hits, 4 c hits, 1 a hits, 8 c agents ua=x, 2 a agents ua=z, 8 a m, 8 a m, \
             9 a hits, 12 c agents ua=q, 13 b agents ua=q, 14 a agents ua=r, 30 a hits",
        ),
        // Fire: start, extend, notify tiers, family members, after an end, while banned.
        case(
            "fire",
            fire_rules(),
            "0 fire a m 0, 5 fire a m 0, 5 a m, 6 a m, 7 a m, 8 fire a m 0, 9 fire a m 1, \
             10 fire b m 2, 20 fire b m 0, 30 fire c detect:login 0, 31 c detect:login, \
             32 c detect:signup, 33 c detect:signup, 40 fire c detect:signup 0, \
             200 fire a m 0, 205 a n, 206 a n, 207 fire a n 0, 400 fire d m 1, 401 fire d m 1",
        ),
        case(
            "fire while a violation holds",
            fire_rules(),
            "0 a m, 1 a m, 2 a m, 3 a m, 4 a m, 5 a m, 6 a m, 7 a m, 8 fire a m 2, \
             9 fire a m 1, 10 a m, 100 fire a m 0",
        ),
        // Unban: an active ban, no ban, a new ban after it, a ban several metrics carry.
        case(
            "unban",
            fire_rules(),
            "0 a m, 1 a m, 2 a m, 3 unban a, 3 a m, 4 a m, 5 a n, 6 a n, 7 unban a, \
             8 unban a, 9 unban z, 10 fire a m 1, 11 unban a, 12 fire a m 0, 500 unban a, \
             501 a m, 502 a m, 503 a m, 504 a m",
        ),
        // Two rules carrying one ban to the same second: which one its end names.
        case(
            "two rules reach the same end",
            two_bans(),
            "0 a m, 0 a m, 0 a n, 12 a n, 12 a m, 12 a m, 30 b n",
        ),
        case(
            "two rules carry one ban",
            two_bans(),
            "0 a m, 0 a m, 0 a n, 5 a n, 5 a m, 6 a m, 20 a n, 21 a m, 21 a m, 30 b n",
        ),
        // The same, once the token has been idle for the rules' longest window and once not.
        case(
            "a banned token forgotten",
            idle_bans(10),
            "0 a m, 50 a n, 50 a n",
        ),
        case(
            "a banned token remembered",
            idle_bans(60),
            "0 a m, 50 a n, 50 a n",
        ),
        // Tokens and members with the characters that structure keys and records.
        case(
            "escapes",
            ruleset(vec![
                metric("f:x", Scope::Token, vec![t(2, 10, Block, 50, Tr)]),
                metric("f:x}:ban", Scope::Token, vec![t(2, 10, Block, 50, Tr)]),
                metric("g", Scope::Token, vec![t(3, 10, Notify, 50, Tr)]),
                metric("h:*", Scope::Token, vec![t(2, 10, Block, 50, Tr)]),
            ]),
            "0 v}:w:f:x f:x, 1 v f:x}:ban, 2 v}:w:f:x f:x, 3 v f:x}:ban, 4 a|b g, 4 a|b g, \
             5 a|b g, 6 %7C g, 6 %7C g, 7 %7C g, 8 {x} h:|, 9 {x} h:%|, 10 {x} h:|, \
             11 fire é:ü|% h:{y} 0, 12 unban é:ü|%",
        ),
        // Refusals: the same error as the engine's, and nothing counted.
        (
            "refused events",
            distinct_rules(Tr),
            vec![
                Step::Event {
                    at: 0,
                    token: long.clone(),
                    metric: "form".into(),
                    attrs: vec![("email".into(), "x".into()), ("ip".into(), "1".into())],
                    rates: true,
                },
                Step::Event {
                    at: 0,
                    token: String::new(),
                    metric: "form".into(),
                    attrs: vec![("email".into(), "x".into()), ("ip".into(), "1".into())],
                    rates: true,
                },
                Step::Event {
                    at: 1,
                    token: "a".into(),
                    metric: "form".into(),
                    attrs: vec![("email".into(), huge.clone()), ("ip".into(), "1".into())],
                    rates: true,
                },
                Step::Event {
                    at: 1,
                    token: "a".into(),
                    metric: "form".into(),
                    attrs: vec![("email".into(), "x".into())],
                    rates: true,
                },
                Step::Event {
                    at: 2,
                    token: "a".into(),
                    metric: "nope".into(),
                    attrs: vec![],
                    rates: true,
                },
                Step::Event {
                    at: 2,
                    token: long.clone(),
                    metric: "nope".into(),
                    attrs: vec![],
                    rates: true,
                },
                Step::Event {
                    at: 3,
                    token: "a".into(),
                    metric: "form".into(),
                    attrs: vec![("email".into(), "x".into()), ("ip".into(), "1".into())],
                    rates: true,
                },
            ],
        ),
        (
            "refused fires",
            fire_rules(),
            vec![
                Step::Fire {
                    at: 0,
                    token: long.clone(),
                    metric: "m".into(),
                    tier: 0,
                },
                Step::Fire {
                    at: 0,
                    token: String::new(),
                    metric: "m".into(),
                    tier: 0,
                },
                Step::Fire {
                    at: 0,
                    token: "a".into(),
                    metric: "nope".into(),
                    tier: 0,
                },
                Step::Fire {
                    at: 0,
                    token: long,
                    metric: "hits".into(),
                    tier: 0,
                },
                Step::Fire {
                    at: 0,
                    token: "a".into(),
                    metric: "m".into(),
                    tier: 3,
                },
                Step::Fire {
                    at: 0,
                    token: "a".into(),
                    metric: "detect:".into(),
                    tier: 0,
                },
                Step::Fire {
                    at: 1,
                    token: "a".into(),
                    metric: "detect:x".into(),
                    tier: 1,
                },
            ],
        ),
    ]
}

async fn conform(url: &str) {
    for (name, rules, script) in &cases() {
        let store = connect(url, rules).await;
        let memory = in_memory(rules, script);
        let redis = on_redis(&store, script).await;
        if let Some(diff) = difference(script, &memory, &redis) {
            panic!("{name}: {diff}");
        }
    }
}

#[tokio::test]
async fn one_redis_server_decides_as_the_engine() {
    let server = RedisServer::start();
    conform(&server.url()).await;
}

#[tokio::test]
async fn a_redis_cluster_decides_as_the_engine() {
    let cluster = RedisCluster::start();
    conform(&cluster.url()).await;
}

// ---------------------------------------------------------------------------------------------
// Random scripts.

fn random_tier(effects: &'static [Effect]) -> impl Strategy<Value = Threshold> {
    (
        1u64..5,
        1u64..15,
        1u64..40,
        0..effects.len(),
        any::<bool>(),
        0u8..4,
    )
        .prop_map(move |(limit, window, duration, e, violation, kind)| {
            let policy = if violation {
                BanPolicy::AfterViolation
            } else {
                BanPolicy::AfterTrigger
            };
            let th = t(limit, window, effects[e], duration, policy);
            // One tier in four measures distinct values.
            if kind == 0 {
                distinct(th, "v")
            } else {
                th
            }
        })
}

/// Two token metrics, a family and a global alert, with random tiers.
fn random_rules() -> impl Strategy<Value = Arc<Ruleset>> {
    const TOKEN: &[Effect] = &[Effect::Notify, Effect::Block, Effect::Block];
    const GLOBAL: &[Effect] = &[Effect::Alert];
    (
        proptest::collection::vec(random_tier(TOKEN), 1..3),
        proptest::collection::vec(random_tier(TOKEN), 1..3),
        proptest::collection::vec(random_tier(TOKEN), 1..3),
        random_tier(GLOBAL),
        any::<bool>(),
    )
        .prop_map(|(m, n, family, global, rates)| {
            ruleset_with(
                rates,
                vec![
                    metric("m", Scope::Token, m),
                    metric("n", Scope::Token, n),
                    metric("d:*", Scope::Token, family),
                    metric("hits", Scope::Global, vec![global]),
                ],
            )
        })
}

/// Events (some late), fires and unbans of three tokens.
fn random_script() -> impl Strategy<Value = Vec<Step>> {
    const TOKENS: [&str; 3] = ["a", "b", "c"];
    const METRICS: [&str; 5] = ["m", "n", "d:x", "d:y", "hits"];
    const VALUES: [&str; 4] = ["p", "q", "r", "s"];
    // Mostly small steps, some late; now and then a long pause that outlasts windows.
    let gap = prop_oneof![8 => -4i64..7, 1 => 10i64..40];
    let step = (
        gap,
        0usize..TOKENS.len(),
        0usize..METRICS.len(),
        0usize..VALUES.len(),
        0u8..20,
        0usize..3,
        any::<bool>(),
    );
    proptest::collection::vec(step, 1..40).prop_map(|items| {
        let mut now = 1_000;
        items
            .into_iter()
            .map(|(gap, token, metric, value, what, tier, rates)| {
                // A negative gap is a late event; the clock itself only moves on.
                let at = now + gap;
                now = now.max(at);
                let token = TOKENS[token].to_owned();
                let metric = METRICS[metric].to_owned();
                match what {
                    0 => Step::Fire {
                        at,
                        token,
                        metric,
                        tier,
                    },
                    1 => Step::Unban { at, token },
                    _ => Step::Event {
                        at,
                        token,
                        metric,
                        attrs: vec![("v".to_owned(), VALUES[value].to_owned())],
                        rates,
                    },
                }
            })
            .collect()
    })
}

/// `cases` random rule sets and scripts on the server at `url` (`CONFORMANCE_CASES` in the
/// environment asks for more, for a longer hunt).
fn random_scripts_on(url: &str, cases: u32) {
    let cases = std::env::var("CONFORMANCE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases));
    runner
        .run(&(random_rules(), random_script()), |(rules, script)| {
            let memory = in_memory(&rules, &script);
            let redis = rt.block_on(async {
                let store = connect(url, &rules).await;
                on_redis(&store, &script).await
            });
            if let Some(diff) = difference(&script, &memory, &redis) {
                return Err(TestCaseError::fail(format!("{diff}\nrules: {rules:?}")));
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn random_scripts_decide_alike() {
    let server = RedisServer::start();
    random_scripts_on(&server.url(), 256);
}

#[test]
fn random_scripts_decide_alike_on_a_cluster() {
    let cluster = RedisCluster::start();
    random_scripts_on(&cluster.url(), 48);
}

// ---------------------------------------------------------------------------------------------
// The store on its own.

#[tokio::test]
async fn an_operator_unban_ends_the_ban_at_once_on_every_node() {
    let server = RedisServer::start();
    let rules = one_ban_rule(2);
    let a = connect(&server.url(), &rules).await;
    let b = connect(&server.url(), &rules).await;
    a.flush().await.unwrap();
    let now = Timestamp::from_unix(1_000);
    a.observe(&Event::new("x", "m", now), now, false)
        .await
        .unwrap();
    let v = b
        .observe(&Event::new("x", "m", now), now, false)
        .await
        .unwrap();
    assert!(
        !v.passed,
        "two events through two nodes reach the shared limit"
    );
    assert_eq!(
        a.bans().await.unwrap(),
        [(
            "x".to_owned(),
            "m".to_owned(),
            0,
            Timestamp::from_unix(1_600)
        )]
    );
    let end = a
        .unban("x", Timestamp::from_unix(1_010))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end.to_string(), "1010,UNBAN,x");
    assert_eq!(b.ban_until("x").await.unwrap(), None);
    assert!(b.bans().await.unwrap().is_empty(), "no longer listed");
    // Banned again: listed once, with the new end.
    let later = Timestamp::from_unix(1_020);
    for node in [&a, &b] {
        node.observe(&Event::new("x", "m", later), later, false)
            .await
            .unwrap();
    }
    assert_eq!(
        a.bans().await.unwrap(),
        [(
            "x".to_owned(),
            "m".to_owned(),
            0,
            Timestamp::from_unix(1_620)
        )]
    );
    assert!(a.unban("x", later).await.unwrap().is_some());
    assert!(a
        .unban("x", Timestamp::from_unix(1_011))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn firing_a_tier_answers_the_same_stats_and_ban_as_the_engine() {
    let server = RedisServer::start();
    let rules = ruleset(vec![metric(
        "m",
        Scope::Token,
        vec![
            t(5, 60, Effect::Block, 600, BanPolicy::AfterTrigger),
            t(50, 600, Effect::Notify, 900, BanPolicy::AfterTrigger),
        ],
    )]);
    let script = parse(
        "0 x m, 100 x m, 500 x m, 530 x m, 560 x m, 570 fire x m 1, 570 fire x m 0, \
         580 fire x m 0, 590 fire x m 1",
    );
    let store = connect(&server.url(), &rules).await;
    let memory = in_memory(&rules, &script);
    assert_eq!(memory, on_redis(&store, &script).await);
    // (530, 590] holds 560; (-10, 590] all five.
    let Ok(Some(answer)) = &memory.steps[8].answer else {
        panic!("the fire is answered");
    };
    assert_eq!(
        answer.rates,
        Some(Rates {
            last_1m: 1,
            last_10m: 5,
            last_60m: 5
        })
    );
}

#[tokio::test]
async fn a_token_too_long_is_refused_as_in_memory_not_an_outage() {
    // Before the store checked events as the engine does, a 300-byte token reached Redis and
    // came back as `Unavailable` (HTTP 503) where the engine says `BadToken` (422).
    let server = RedisServer::start();
    let rules = one_ban_rule(2);
    let store = connect(&server.url(), &rules).await;
    let token = "x".repeat(300);
    let now = Timestamp::from_unix(1_000);
    let mut engine = Engine::new(Arc::clone(&rules), ManualClock::new(now));
    for _ in 0..2 {
        let refused = store
            .observe(&Event::new(&token, "m", now), now, false)
            .await;
        let expected = engine.observe(&Event::new(&token, "m", now), false);
        assert_eq!(
            refused.unwrap_err(),
            StoreError::Event(expected.unwrap_err())
        );
    }
    let refused = store.fire(&token, "m", 0, now).await;
    let expected = engine.fire(&token, "m", 0);
    assert_eq!(
        refused.unwrap_err(),
        StoreError::Event(expected.unwrap_err())
    );
    let health = store.connection().health();
    assert_eq!(
        health.errors.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "nothing failed"
    );
}

#[tokio::test]
async fn a_ban_stands_when_its_deadline_cannot_be_indexed() {
    let server = RedisServer::start();
    let store = connect(&server.url(), &one_ban_rule(2)).await;
    store.flush().await.unwrap();
    // The index key of the wrong type: registering fails, the event's own script does not.
    let cli = std::process::Command::new("redis-cli")
        .args(["-p", &server.port.to_string(), "SET", "bh:{deadlines}", "x"])
        .output()
        .unwrap();
    assert!(cli.status.success());
    let now = Timestamp::from_unix(1_000);
    store
        .observe(&Event::new("y", "m", now), now, false)
        .await
        .unwrap();
    let v = store
        .observe(&Event::new("y", "m", now), now, false)
        .await
        .expect("the decision is answered, not turned into a store error");
    assert!(!v.passed);
    assert_eq!(v.decisions[0].to_string(), "1000,BAN,y");
    // Not swept, but ended by the token's next event after its end.
    let later = Timestamp::from_unix(1_700);
    let v = store
        .observe(&Event::new("y", "m", later), later, false)
        .await
        .unwrap();
    assert!(v.passed);
    assert_eq!(v.decisions[0].to_string(), "1600,UNBAN,y");
}
