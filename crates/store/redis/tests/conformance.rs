//! Conformance: the same event scripts through the in-memory engine and through the Redis
//! store (one server, and a three-master cluster) give identical decisions, `passed` flags and
//! rates — so the script's copy of the window logic cannot drift from the engine's.
//!
//! Contents: DESIGN.md's worked examples · notices · distinct emails · global alerts ·
//! families · random scripts (proptest) · the same on a cluster.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use banhammer_core::{
    BanPolicy, Effect, Engine, Event, Kind, ManualClock, MetricRule, Rates, Ruleset, Scope,
    Seconds, Threshold, Timestamp, Window,
};
use banhammer_store_redis::{RedisStore, StoreError, StoreUrl};
use banhammer_testkit::{RedisCluster, RedisServer};
use proptest::prelude::*;

type Step = (Vec<String>, bool, Option<Rates>);

/// `time token metric [email]` items separated by commas.
fn parse(script: &str) -> Vec<(i64, String, String, Option<String>)> {
    script
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let p: Vec<&str> = item.split_whitespace().collect();
            (
                p[0].parse().unwrap(),
                p[1].to_owned(),
                p[2].to_owned(),
                p.get(3).map(|s| (*s).to_owned()),
            )
        })
        .collect()
}

fn memory(
    rules: &Arc<Ruleset>,
    script: &[(i64, String, String, Option<String>)],
) -> (Vec<Step>, Vec<String>) {
    let mut e = Engine::new(Arc::clone(rules), ManualClock::new(Timestamp::MIN));
    let mut steps = Vec::new();
    for (t, token, metric, email) in script {
        let attrs: Vec<(&str, &str)> = email.iter().map(|e| ("email", e.as_str())).collect();
        let v = e
            .observe(
                &Event::new(token, metric, Timestamp::from_unix(*t)).with_attrs(&attrs),
                true,
            )
            .unwrap();
        let d = v
            .decisions
            .iter()
            .filter(|d| d.is_record())
            .map(ToString::to_string)
            .collect();
        steps.push((d, v.passed, v.rates));
    }
    (steps, e.finish().iter().map(ToString::to_string).collect())
}

async fn redis(
    store: &RedisStore,
    script: &[(i64, String, String, Option<String>)],
) -> (Vec<Step>, Vec<String>) {
    store.flush().await.unwrap();
    let mut now = Timestamp::MIN;
    let mut steps = Vec::new();
    for (t, token, metric, email) in script {
        let at = Timestamp::from_unix(*t);
        now = now.max(at);
        let attrs: Vec<(&str, &str)> = email.iter().map(|e| ("email", e.as_str())).collect();
        // As the engine does before each event: every decision due by now ends first.
        let mut d: Vec<String> = store
            .sweep(now)
            .await
            .unwrap()
            .iter()
            .filter(|d| d.is_record())
            .map(ToString::to_string)
            .collect();
        let v = store
            .observe(&Event::new(token, metric, at).with_attrs(&attrs), now, true)
            .await
            .unwrap();
        d.extend(
            v.decisions
                .iter()
                .filter(|d| d.is_record())
                .map(ToString::to_string),
        );
        steps.push((d, v.passed, v.rates));
    }
    (
        steps,
        store
            .finish(now)
            .await
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect(),
    )
}

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

fn ruleset(metrics: Vec<MetricRule>) -> Arc<Ruleset> {
    let mut b = Ruleset::builder().rates(true);
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

/// One token-scope metric `m` that bans for 600 s at `limit` events in 60 s.
fn one_ban_rule(limit: u64) -> Arc<Ruleset> {
    ruleset(vec![metric(
        "m",
        Scope::Token,
        vec![t(limit, 60, Effect::Block, 600, BanPolicy::AfterTrigger)],
    )])
}

/// The fixed scripts: each a rule set and its events.
fn cases() -> Vec<(&'static str, Arc<Ruleset>, &'static str)> {
    use BanPolicy::{AfterTrigger as Tr, AfterViolation as Vi};
    let design = |p| {
        ruleset(vec![metric(
            "m",
            Scope::Token,
            vec![t(3, 10, Effect::Block, 100, p)],
        )])
    };
    let mut emails = t(3, 5, Effect::Block, 30, Tr);
    emails.kind = Kind::Distinct("email".into());
    vec![
        ("trigger 1", design(Tr), "0 a m, 1 a m, 2 a m, 50 a m"),
        ("trigger 2", design(Tr), "0 a m, 1 a m, 2 a m, 5 a m"),
        ("trigger 3", design(Tr), "0 a m, 1 a m, 2 a m, 102 a m, 103 a m, 104 a m, 300 b m"),
        ("violation 1", design(Vi), "0 a m, 1 a m, 2 a m"),
        ("violation 2", design(Vi), "0 a m, 1 a m, 2 a m, 20 b m"),
        ("violation 3", design(Vi), "0 a m, 1 a m, 2 a m, 5 a m, 200 b m"),
        (
            "tiers and metrics",
            ruleset(vec![
                metric("login", Scope::Token, vec![t(2, 10, Effect::Block, 50, Tr), t(4, 30, Effect::Notify, 500, Vi)]),
                metric("request", Scope::Token, vec![t(3, 10, Effect::Block, 200, Vi)]),
            ]),
            "0 a login, 1 a login, 5 a request, 6 a request, 7 a request, 8 b login, 9 a login, 20 a login, 400 b request",
        ),
        (
            "distinct emails",
            ruleset(vec![metric("detect:*", Scope::Token, vec![t(11, 5, Effect::Block, 30, Tr), emails])]),
            "0 1.1.1.1 detect:login x@a, 1 1.1.1.1 detect:login y@a, 2 1.1.1.1 detect:login x@a, \
             3 1.1.1.1 detect:signup z@a, 3 1.1.1.1 detect:login z@a, 40 1.1.1.1 detect:login w@a",
        ),
        (
            "global alert",
            ruleset(vec![metric("hits", Scope::Global, vec![t(4, 10, Effect::Alert, 0, Tr)])]),
            "0 a hits, 0 b hits, 1 c hits, 1 a hits, 2 b hits, 3 c hits, 15 a hits, 40 b hits",
        ),
    ]
}

fn check(name: &str, memory: &(Vec<Step>, Vec<String>), redis: &(Vec<Step>, Vec<String>)) {
    for (i, (m, r)) in memory.0.iter().zip(&redis.0).enumerate() {
        assert_eq!(m, r, "{name}: event {i}");
    }
    assert_eq!(memory.1, redis.1, "{name}: at the end");
}

async fn conform(url: &str) {
    for (name, rules, script) in cases() {
        let store = connect(url, &rules).await;
        let script = parse(script);
        check(
            name,
            &memory(&rules, &script),
            &redis(&store, &script).await,
        );
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

fn random_rules() -> impl Strategy<Value = Arc<Ruleset>> {
    let tier = (1u64..5, 1u64..15, 1u64..40, 0u8..3, any::<bool>()).prop_map(
        |(limit, window, duration, e, violation)| {
            let effect = if e == 0 {
                Effect::Notify
            } else {
                Effect::Block
            };
            t(
                limit,
                window,
                effect,
                duration,
                if violation {
                    BanPolicy::AfterViolation
                } else {
                    BanPolicy::AfterTrigger
                },
            )
        },
    );
    (
        proptest::collection::vec(tier.clone(), 1..3),
        proptest::collection::vec(tier, 1..3),
        1u64..6,
        2u64..12,
    )
        .prop_map(|(m, n, glimit, gwindow)| {
            ruleset(vec![
                metric("m", Scope::Token, m),
                metric("n", Scope::Token, n),
                metric(
                    "hits",
                    Scope::Global,
                    vec![t(
                        glimit,
                        gwindow,
                        Effect::Alert,
                        0,
                        BanPolicy::AfterTrigger,
                    )],
                ),
            ])
        })
}

fn random_script() -> impl Strategy<Value = Vec<(i64, String, String, Option<String>)>> {
    proptest::collection::vec((0i64..6, 0usize..3, 0usize..3), 1..40).prop_map(|items| {
        let mut now = 1_000;
        items
            .into_iter()
            .map(|(gap, token, metric)| {
                now += gap;
                (
                    now,
                    ["a", "b", "c"][token].to_owned(),
                    ["m", "n", "hits"][metric].to_owned(),
                    None,
                )
            })
            .collect()
    })
}

#[test]
fn random_scripts_decide_alike() {
    let server = RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    runner
        .run(&(random_rules(), random_script()), |(rules, script)| {
            let mem = memory(&rules, &script);
            let red = rt.block_on(async {
                let store = connect(&url, &rules).await;
                redis(&store, &script).await
            });
            for (i, (m, r)) in mem.0.iter().zip(&red.0).enumerate() {
                prop_assert_eq!(m, r, "event {} of {:?}", i, script);
            }
            prop_assert_eq!(&mem.1, &red.1);
            Ok(())
        })
        .unwrap();
}

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
    let store = connect(&server.url(), &rules).await;
    store.flush().await.unwrap();
    let clock = ManualClock::new(Timestamp::from_unix(0));
    let mut engine = Engine::new(Arc::clone(&rules), clock.clone());
    for at in [0, 100, 500, 530, 560] {
        let at = Timestamp::from_unix(at);
        clock.set(at);
        engine.observe(&Event::new("x", "m", at), false).unwrap();
        store
            .observe(&Event::new("x", "m", at), at, false)
            .await
            .unwrap();
    }
    // The same records field by field: starts, extensions and, at the end, the ends (the
    // fired value used to be 1 in all but the first record).
    for (at, tier) in [(570, 1), (570, 0), (580, 0), (590, 1)] {
        let now = Timestamp::from_unix(at);
        clock.set(now);
        let mem = engine.fire("x", "m", tier).unwrap();
        let red = store.fire("x", "m", tier, now).await.unwrap();
        assert_eq!(mem.rates, red.rates, "tier {tier} at {at}");
        assert_eq!(mem.passed, red.passed, "tier {tier} at {at}");
        assert_eq!(mem.decisions, red.decisions, "tier {tier} at {at}");
        assert_eq!(mem.actions, red.actions, "tier {tier} at {at}");
    }
    let now = Timestamp::from_unix(590);
    assert_eq!(engine.finish(), store.finish(now).await.unwrap());
    assert_eq!(
        engine.fire("x", "m", 0).unwrap().rates,
        // (530, 590] holds 560; (-10, 590] all five.
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
async fn a_distinct_value_too_long_is_refused_as_in_memory() {
    let server = RedisServer::start();
    let mut emails = t(3, 60, Effect::Block, 600, BanPolicy::AfterTrigger);
    emails.kind = Kind::Distinct("email".into());
    let rules = ruleset(vec![metric("form", Scope::Token, vec![emails])]);
    let store = connect(&server.url(), &rules).await;
    let now = Timestamp::from_unix(1_000);
    let mut engine = Engine::new(Arc::clone(&rules), ManualClock::new(now));
    let long = "e".repeat(1025);
    for attrs in [vec![("email", long.as_str())], vec![]] {
        let event = Event::new("a", "form", now).with_attrs(&attrs);
        let refused = store.observe(&event, now, false).await.unwrap_err();
        let expected = engine.observe(&event, false).unwrap_err();
        assert_eq!(refused, StoreError::Event(expected));
    }
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
