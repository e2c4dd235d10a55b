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
//! distinct values, families, global alerts, fire, unban, bans by hand, escapes, refusals) ·
//! random scripts
//! (proptest) · the same on a cluster · a few store-only behaviours.

use std::sync::Arc;
use std::time::Duration;

use banhammer_core::{
    BanPolicy, DecisionEvent, DueAction, Effect, Engine, Escalation, Event, EventError,
    ManualClock, Rates, Ruleset, Seconds, Threshold, Timestamp, Verdict,
};
use banhammer_store_redis::{RedisStore, StoreError, StoreUrl};
use banhammer_testkit::rules::{
    block, build, builder, global, metric, ruleset, ruleset_with_rates, threshold, ThresholdExt,
};
use banhammer_testkit::script::{self, Step as ScriptStep};
use banhammer_testkit::{RedisCluster, RedisServer};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// The harness.

/// One step of a script: an event, a fire or an unban (testkit's script steps), and whether
/// an event asks for rates. Each moves the clock to the latest time seen (a late event does not
/// move it back).
#[derive(Debug, Clone)]
struct Step {
    what: ScriptStep,
    /// Events only: ask for rates.
    rates: bool,
}

/// A step that asks for rates if it is an event.
fn rated(what: ScriptStep) -> Step {
    Step { what, rates: true }
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
        now = now.max(Timestamp::from_unix(step.what.at()));
        clock.set(now);
        let mut records = engine.advance(now);
        let answer = match &step.what {
            ScriptStep::Event {
                at,
                token,
                metric,
                attrs,
            } => {
                let attrs = borrowed(attrs);
                engine
                    .observe(&event(*at, token, metric, &attrs), step.rates)
                    .map(|v| {
                        records.extend(v.decisions.iter().cloned());
                        Some(v.into())
                    })
            }
            ScriptStep::Fire {
                token,
                metric,
                tier,
                ..
            } => engine.fire(token, metric, *tier).map(|v| {
                records.extend(v.decisions.iter().cloned());
                Some(v.into())
            }),
            ScriptStep::Unban { token, .. } => {
                records.extend(engine.unban(token));
                Ok(None)
            }
            ScriptStep::Ban { token, secs, .. } => engine
                .ban_by_hand(token, Seconds::new(*secs), Some("by hand"))
                .map(|v| {
                    records.extend(v.decisions.iter().cloned());
                    Some(v.into())
                }),
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
        now = now.max(Timestamp::from_unix(step.what.at()));
        let mut records = store.sweep(now).await.unwrap();
        let answer = match &step.what {
            ScriptStep::Event {
                at,
                token,
                metric,
                attrs,
            } => {
                let attrs = borrowed(attrs);
                store
                    .observe(&event(*at, token, metric, &attrs), now, step.rates)
                    .await
                    .map_err(refusal)
                    .map(|v| {
                        records.extend(v.decisions.iter().cloned());
                        Some(v.into())
                    })
            }
            ScriptStep::Fire {
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
            ScriptStep::Unban { token, .. } => {
                records.extend(store.unban(token, now).await.unwrap());
                Ok(None)
            }
            ScriptStep::Ban { token, secs, .. } => store
                .ban_by_hand(token, Seconds::new(*secs), Some("by hand"), now)
                .await
                .map_err(refusal)
                .map(|v| {
                    records.extend(v.decisions.iter().cloned());
                    Some(v.into())
                }),
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

/// One token-scope metric `m` that bans for 600 s at `limit` events in 60 s (rates kept, so
/// that every answer's rates are compared too).
fn one_ban_rule(limit: u64) -> Arc<Ruleset> {
    ruleset_with_rates([metric("m", [block(limit, 60, 600)])])
}

/// A script in testkit's notation (`T TOKEN METRIC [ATTR=VALUE…]`, `T fire TOKEN METRIC TIER`,
/// `T unban TOKEN`); events ask for rates.
fn parse(script: &str) -> Vec<Step> {
    script::parse(script).into_iter().map(rated).collect()
}

/// The fixed cases: each a name, a rule set and its script.
#[allow(clippy::too_many_lines)] // a table of cases
fn cases() -> Vec<(&'static str, Arc<Ruleset>, Vec<Step>)> {
    use BanPolicy::{AfterTrigger as Tr, AfterViolation as Vi};
    use Effect::{Alert, Block, Notify};
    // Rules keep rates (so every answer's rates are compared too), but for `idle_bans`.
    let design = |p| {
        ruleset_with_rates(vec![metric(
            "m",
            vec![threshold(3, 10, Block, 100).with_policy(p)],
        )])
    };
    let tiers = || {
        ruleset_with_rates(vec![
            metric(
                "login",
                vec![
                    threshold(2, 10, Block, 50),
                    threshold(4, 30, Notify, 500).with_policy(Vi),
                ],
            ),
            metric(
                "request",
                vec![threshold(3, 10, Block, 200).with_policy(Vi)],
            ),
        ])
    };
    let detector = || {
        ruleset_with_rates(vec![metric(
            "detect:*",
            vec![
                threshold(11, 5, Block, 30),
                threshold(3, 5, Block, 30).distinct("email"),
            ],
        )])
    };
    let family_notices = || {
        ruleset_with_rates(vec![metric(
            "detect:*",
            vec![
                threshold(2, 10, Notify, 20),
                threshold(4, 10, Block, 30).with_policy(Vi),
            ],
        )])
    };
    let alerts = || {
        ruleset_with_rates(vec![
            global("hits", vec![threshold(4, 10, Alert, 0)]),
            global("agents", vec![threshold(2, 10, Alert, 0).distinct("ua")]),
            metric("m", vec![threshold(2, 10, Block, 30)]),
        ])
    };
    let fire_rules = || {
        ruleset_with_rates(vec![
            metric(
                "m",
                vec![
                    threshold(3, 10, Block, 100),
                    threshold(5, 60, Notify, 300).with_policy(Vi),
                    threshold(8, 60, Block, 1000).with_policy(Vi),
                ],
            ),
            metric("n", vec![threshold(2, 10, Block, 50)]),
            metric("detect:*", vec![threshold(2, 10, Block, 40)]),
            global("hits", vec![threshold(4, 10, Alert, 0)]),
        ])
    };
    let escalating = || {
        let mut t = threshold(3, 10, Block, 100);
        t.escalate = Some(Escalation {
            factor: 2,
            max: Seconds::new(1000),
            memory: Seconds::new(1000),
        });
        ruleset_with_rates(vec![metric("m", vec![t])])
    };
    let two_bans = || {
        ruleset_with_rates(vec![
            metric("m", vec![threshold(2, 10, Block, 10)]),
            metric("n", vec![threshold(1, 10, Block, 10)]),
        ])
    };
    // Without rates the rules' longest window is `window`: a token idle that long is forgotten.
    let idle_bans = |window| {
        ruleset(vec![
            metric("m", vec![threshold(1, window, Block, 100)]),
            metric("n", vec![threshold(1, window, Block, 50)]),
        ])
    };
    let distinct_rules = |p| {
        ruleset_with_rates(vec![metric(
            "form",
            vec![
                threshold(3, 10, Block, 50).with_policy(p).distinct("email"),
                threshold(2, 4, Notify, 20).distinct("email"),
                threshold(2, 10, Notify, 20).distinct("ip"),
            ],
        )])
    };
    // A family and a plain metric, no rates: a token idle for 10 s is forgotten.
    let members = || {
        ruleset(vec![
            metric("d:*", vec![threshold(2, 10, Block, 30).with_policy(Tr)]),
            metric("m", vec![threshold(5, 10, Notify, 20).with_policy(Tr)]),
        ])
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
            ruleset(vec![metric(
                "d:*",
                vec![threshold(1, 3, Block, 30).with_policy(Vi)],
            )]),
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
        // Bans by hand: start, carried further, not shortened, unbanned, extended by a rule,
        // refused; and as offences for a tier that escalates.
        case(
            "bans by hand",
            fire_rules(),
            "0 ban a 50, 10 ban a 100, 20 ban a 5, 21 a m, 22 a m, 23 a m, 200 ban b 30, \
             210 unban b, 211 ban b 0, 300 fire c m 0, 301 ban c 500, 302 c n, 303 c n",
        ),
        case(
            "bans by hand are offences",
            escalating(),
            "0 ban a 30, 100 a m, 101 a m, 102 a m, 400 ban a 10, 500 a m, 501 a m, 502 a m, \
             600 b m, 601 b m, 602 b m",
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
            ruleset_with_rates(vec![
                metric("f:x", vec![threshold(2, 10, Block, 50)]),
                metric("f:x}:ban", vec![threshold(2, 10, Block, 50)]),
                metric("g", vec![threshold(3, 10, Notify, 50)]),
                metric("h:*", vec![threshold(2, 10, Block, 50)]),
            ]),
            "0 v}:w:f:x f:x, 1 v f:x}:ban, 2 v}:w:f:x f:x, 3 v f:x}:ban, 4 a|b g, 4 a|b g, \
             5 a|b g, 6 %7C g, 6 %7C g, 7 %7C g, 8 {x} h:|, 9 {x} h:%|, 10 {x} h:|, \
             11 fire é:ü|% h:{y} 0, 12 unban é:ü|%",
        ),
        // Refusals: the same error as the engine's, and nothing counted.
        (
            "refused events",
            distinct_rules(Tr),
            [
                ScriptStep::event(0, &long, "form", &[("email", "x"), ("ip", "1")]),
                ScriptStep::event(0, "", "form", &[("email", "x"), ("ip", "1")]),
                ScriptStep::event(1, "a", "form", &[("email", &huge), ("ip", "1")]),
                ScriptStep::event(1, "a", "form", &[("email", "x")]),
                ScriptStep::event(2, "a", "nope", &[]),
                ScriptStep::event(2, &long, "nope", &[]),
                ScriptStep::event(3, "a", "form", &[("email", "x"), ("ip", "1")]),
            ]
            .into_iter()
            .map(rated)
            .collect(),
        ),
        (
            "refused fires",
            fire_rules(),
            [
                ScriptStep::fire(0, &long, "m", 0),
                ScriptStep::fire(0, "", "m", 0),
                ScriptStep::fire(0, "a", "nope", 0),
                ScriptStep::fire(0, &long, "hits", 0),
                ScriptStep::fire(0, "a", "m", 3),
                ScriptStep::fire(0, "a", "detect:", 0),
                ScriptStep::fire(1, "a", "detect:x", 1),
            ]
            .into_iter()
            .map(rated)
            .collect(),
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
        proptest::option::of((1u32..4, 1u64..300, 1u64..200)),
    )
        .prop_map(
            move |(limit, window, duration, e, violation, kind, escalate)| {
                let policy = if violation {
                    BanPolicy::AfterViolation
                } else {
                    BanPolicy::AfterTrigger
                };
                let mut th = threshold(limit, window, effects[e], duration).with_policy(policy);
                // Bans may escalate for repeat offenders.
                if effects[e] == Effect::Block {
                    th.escalate = escalate.map(|(factor, max, memory)| Escalation {
                        factor,
                        max: Seconds::new(max),
                        memory: Seconds::new(memory),
                    });
                }
                // One tier in four measures distinct values.
                if kind == 0 {
                    th.distinct("v")
                } else {
                    th
                }
            },
        )
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
        .prop_map(|(m, n, family, alert, rates)| {
            // Without rates, a token's windows are forgotten after the rules' longest window
            // instead of an hour.
            let metrics = [
                metric("m", m),
                metric("n", n),
                metric("d:*", family),
                global("hits", [alert]),
            ];
            build(builder(metrics).rates(rates))
        })
}

/// Events (some late), fires, unbans and bans by hand of three tokens.
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
                let (token, metric) = (TOKENS[token], METRICS[metric]);
                let what = match what {
                    0 => ScriptStep::fire(at, token, metric, tier),
                    1 => ScriptStep::unban(at, token),
                    2 => ScriptStep::ban(at, token, 10 + 40 * value as u64),
                    _ => ScriptStep::event(at, token, metric, &[("v", VALUES[value])]),
                };
                Step { what, rates }
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
    let rules = ruleset_with_rates(vec![metric(
        "m",
        vec![
            threshold(5, 60, Effect::Block, 600),
            threshold(50, 600, Effect::Notify, 900),
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
    server.cli(&["SET", "bh:{deadlines}", "x"]);
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
