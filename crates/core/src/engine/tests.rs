//! Unit tests: one per rule of docs/semantics.md, each on a manual clock.
//!
//! Contents: worked examples (both policies) · reaching the limit and the window's edges ·
//! episodes (extension, other metrics, longest reach) · `passed` and `fire` · global alerts ·
//! notices · distinct and sum · rates · memory bounds · actions · late events · status.

use std::num::{NonZeroU64, NonZeroUsize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::action::{Action, ActionCall, NamedNoop};
use crate::clock::ManualClock;
use crate::decision::Change;
use crate::error::{MAX_MEMBERS, MAX_NAME_LEN};
use crate::rules::{Kind, MetricRule, RuleError, Threshold};
use crate::time::{Seconds, Window};

fn ts(s: i64) -> Timestamp {
    Timestamp::from_unix(s)
}

/// Restores a ban of tier 0 of `metric`, as a restart reads one back.
fn restore<C: Clock>(
    e: &mut Engine<C>,
    token: &str,
    metric: &str,
    value: u64,
    from: Timestamp,
    until: Timestamp,
) -> Result<(), EventError> {
    e.restore_ban(&BanRecord {
        token,
        metric,
        tier: 0,
        value,
        from,
        until,
        reason: None,
    })
}

fn threshold(limit: u64, window: u64, effect: Effect, duration: u64) -> Threshold {
    Threshold::new(
        NonZeroU64::new(limit).unwrap(),
        Window::from_secs(window).unwrap(),
        effect,
        Seconds::new(duration),
    )
}

fn metric(name: &str, thresholds: Vec<Threshold>) -> MetricRule {
    MetricRule {
        name: name.into(),
        scope: Scope::Token,
        thresholds,
    }
}

fn global(name: &str, thresholds: Vec<Threshold>) -> MetricRule {
    MetricRule {
        name: name.into(),
        scope: Scope::Global,
        thresholds,
    }
}

fn rules(metrics: Vec<MetricRule>) -> Arc<Ruleset> {
    let mut b = Ruleset::builder().rates(true);
    for m in metrics {
        b = b.metric(m);
    }
    Arc::new(b.build().unwrap())
}

/// Rules without rates that track at most `cap` tokens.
fn capped(metrics: Vec<MetricRule>, cap: usize) -> Arc<Ruleset> {
    let mut b = Ruleset::builder().max_tokens(NonZeroUsize::new(cap));
    for m in metrics {
        b = b.metric(m);
    }
    Arc::new(b.build().unwrap())
}

/// docs/semantics.md's example threshold: limit 3, window 10 s, 100 s, with `policy`.
fn example(policy: BanPolicy) -> Arc<Ruleset> {
    let mut t = threshold(3, 10, Effect::Block, 100);
    t.policy = policy;
    rules(vec![metric("m", vec![t])])
}

/// Runs an event script as `banhammer eval` does: events in event time, then the clock stops.
/// `script` is `"<time> <token> [metric]"` items separated by commas; the metric defaults to `m`.
fn run(rules: &Arc<Ruleset>, script: &str) -> Vec<String> {
    let mut engine = Engine::new(Arc::clone(rules), ManualClock::new(ts(0)));
    let mut out = Vec::new();
    for item in script.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut parts = item.split_whitespace();
        let at: i64 = parts.next().unwrap().parse().unwrap();
        let token = parts.next().unwrap();
        let metric = parts.next().unwrap_or("m");
        let v = engine
            .observe(&Event::new(token, metric, ts(at)), false)
            .unwrap();
        out.extend(
            v.decisions
                .iter()
                .filter(|d| d.is_record())
                .map(ToString::to_string),
        );
    }
    out.extend(engine.finish().iter().map(ToString::to_string));
    out
}

#[test]
fn design_examples_after_trigger() {
    let r = example(BanPolicy::AfterTrigger);
    assert_eq!(run(&r, "0 a, 1 a, 2 a, 50 a"), ["2,BAN,a", "102,UNBAN,a"]);
    assert_eq!(run(&r, "0 a, 1 a, 2 a, 5 a"), ["2,BAN,a", "105,UNBAN,a"]);
    assert_eq!(
        run(&r, "0 a, 1 a, 2 a, 102 a, 103 a, 104 a, 300 b"),
        ["2,BAN,a", "102,UNBAN,a", "104,BAN,a", "204,UNBAN,a"]
    );
}

#[test]
fn design_examples_after_violation() {
    let r = example(BanPolicy::AfterViolation);
    assert_eq!(run(&r, "0 a, 1 a, 2 a"), ["2,BAN,a", "102,UNBAN,a"]);
    assert_eq!(run(&r, "0 a, 1 a, 2 a, 20 b"), ["2,BAN,a", "109,UNBAN,a"]);
    assert_eq!(
        run(&r, "0 a, 1 a, 2 a, 5 a, 200 b"),
        ["2,BAN,a", "110,UNBAN,a"]
    );
}

#[test]
fn after_violation_clock_stop_clips_only_what_still_holds() {
    let r = example(BanPolicy::AfterViolation);
    // The hold runs to 9; the clock stops at 5, so until = 5 + 100.
    assert_eq!(run(&r, "0 a, 1 a, 2 a, 5 b"), ["2,BAN,a", "105,UNBAN,a"]);
    // The clock passes 9 but stops before the live end (109): the hold ran out, 109 stays.
    assert_eq!(run(&r, "0 a, 1 a, 2 a, 50 b"), ["2,BAN,a", "109,UNBAN,a"]);
}

#[test]
fn a_threshold_holds_when_the_measure_reaches_the_limit() {
    let r = example(BanPolicy::AfterTrigger);
    assert_eq!(
        run(&r, "0 a, 1 a"),
        Vec::<String>::new(),
        "two is below three"
    );
    assert_eq!(
        run(&r, "0 a, 0 a, 0 a")[0],
        "0,BAN,a",
        "same-second events all count"
    );
}

#[test]
fn the_window_is_open_on_the_left_and_closed_on_the_right() {
    let r = example(BanPolicy::AfterTrigger);
    // Window 10 s at 10 is (0, 10]: the event at 0 has left.
    assert!(run(&r, "0 a, 9 a, 10 a").is_empty());
    // At 9 it is (−1, 9]: all three count.
    assert_eq!(run(&r, "0 a, 8 a, 9 a")[0], "9,BAN,a");
}

#[test]
fn tokens_are_counted_separately() {
    let r = example(BanPolicy::AfterTrigger);
    assert!(run(&r, "0 a, 1 b, 2 a, 3 b").is_empty());
}

#[test]
fn events_during_a_ban_count_and_extend_it() {
    let r = example(BanPolicy::AfterTrigger);
    // At 90 the window (80, 90] holds 3 events again: until 190. One episode.
    assert_eq!(
        run(&r, "0 a, 1 a, 2 a, 88 a, 89 a, 90 a"),
        ["2,BAN,a", "190,UNBAN,a"]
    );
}

#[test]
fn another_metric_extends_the_ban_instead_of_banning_again() {
    let login = threshold(2, 10, Effect::Block, 50);
    let request = threshold(3, 10, Effect::Block, 200);
    let r = rules(vec![
        metric("login", vec![login]),
        metric("request", vec![request]),
    ]);
    assert_eq!(
        run(
            &r,
            "0 a login, 1 a login, 5 a request, 6 a request, 7 a request"
        ),
        ["1,BAN,a", "207,UNBAN,a"]
    );
}

#[test]
fn extensions_are_reported_only_when_the_end_moves() {
    let clock = ManualClock::new(ts(0));
    let mut e = Engine::new(example(BanPolicy::AfterTrigger), clock.clone());
    let mut verbs = Vec::new();
    for at in [0, 1, 2, 2, 3] {
        clock.set(ts(at));
        let v = e.incr("a", "m").unwrap();
        verbs.extend(v.decisions.iter().map(|d| (d.verb(), d.until.as_unix())));
    }
    // The second event at 2 reaches no further than the first: no extension.
    assert_eq!(verbs, [("BAN", 102), ("EXTEND", 103)]);
}

#[test]
fn the_tier_reaching_furthest_wins() {
    let short = threshold(2, 10, Effect::Block, 10);
    let long = threshold(3, 10, Effect::Block, 1000);
    let r = rules(vec![metric("m", vec![short, long])]);
    assert_eq!(run(&r, "0 a, 1 a, 2 a"), ["1,BAN,a", "1002,UNBAN,a"]);
    // A shorter reach never shortens a ban.
    assert_eq!(
        run(&r, "0 a, 1 a, 2 a, 500 a, 501 a"),
        ["1,BAN,a", "1002,UNBAN,a"]
    );
}

#[test]
fn unban_comes_at_exactly_until_without_any_event() {
    let clock = ManualClock::new(ts(0));
    let mut e = Engine::new(example(BanPolicy::AfterTrigger), clock.clone());
    for _ in 0..3 {
        e.incr("a", "m").unwrap();
    }
    assert!(e.is_banned("a"));
    assert_eq!(e.next_deadline(), Some(ts(100)));
    clock.set(ts(99));
    assert!(e.tick().is_empty());
    assert!(e.is_banned("a"));
    clock.set(ts(250));
    let ends = e.tick();
    assert_eq!(ends.len(), 1);
    assert_eq!(
        ends[0].to_string(),
        "100,UNBAN,a",
        "at until, not at the tick"
    );
    assert!(!e.is_banned("a"));
    assert_eq!(e.next_deadline(), None);
}

#[test]
fn passed_is_false_exactly_while_banned() {
    let clock = ManualClock::new(ts(0));
    let mut e = Engine::new(example(BanPolicy::AfterTrigger), clock.clone());
    assert!(e.incr("a", "m").unwrap().passed);
    assert!(e.incr("a", "m").unwrap().passed);
    assert!(
        !e.incr("a", "m").unwrap().passed,
        "the event that reaches the limit is refused"
    );
    assert!(e.incr("b", "m").unwrap().passed, "other tokens pass");
    clock.set(ts(99));
    assert!(!e.incr("a", "m").unwrap().passed);
    clock.set(ts(200));
    // 99 + 100 = 199 was the extended end (the window at 99 held 1 event only: no extension).
    let v = e.incr("a", "m").unwrap();
    assert!(v.passed);
    assert_eq!(v.decisions[0].to_string(), "100,UNBAN,a");
}

#[test]
fn fire_bans_at_once_and_extends_an_active_ban() {
    let t0 = threshold(10, 3600, Effect::Block, 3600);
    let t1 = threshold(100, 3600, Effect::Block, 86_400);
    let clock = ManualClock::new(ts(1000));
    let mut e = Engine::new(
        rules(vec![metric("login_failed", vec![t0, t1])]),
        clock.clone(),
    );
    let v = e.fire("1.2.3.4", "login_failed", 0).unwrap();
    assert!(!v.passed);
    assert_eq!(v.decisions[0].to_string(), "1000,BAN,1.2.3.4");
    assert_eq!(v.decisions[0].until, ts(4600));
    assert_eq!(v.decisions[0].value, 10, "as if the limit were reached");
    let v = e.fire("1.2.3.4", "login_failed", 1).unwrap();
    let verbs: Vec<&str> = v.decisions.iter().map(DecisionEvent::verb).collect();
    assert_eq!(verbs, ["EXTEND"], "one ban per episode, extended");
    assert_eq!(v.decisions[0].until, ts(1000 + 86_400));
    assert_eq!(e.ban("1.2.3.4").unwrap().until, ts(1000 + 86_400));
    assert_eq!(
        e.fire("1.2.3.4", "login_failed", 2),
        Err(EventError::UnknownTier {
            metric: "login_failed".into(),
            tier: 2
        })
    );
}

fn traffic_alert() -> Arc<Ruleset> {
    // "more than 2 hits per second over 10 s on average": hits in 10 s > 20.
    rules(vec![global(
        "hits",
        vec![threshold(20, 10, Effect::Alert, 0)],
    )])
}

#[test]
fn a_global_alert_fires_when_the_measure_exceeds_the_limit() {
    let mut e = Engine::new(traffic_alert(), ManualClock::new(ts(0)));
    let mut decisions = Vec::new();
    for i in 0..21i64 {
        let token = format!("10.0.0.{}", i % 4);
        let v = e
            .observe(&Event::new(&token, "hits", ts(i / 3)), false)
            .unwrap();
        assert!(v.passed, "alerts never block");
        decisions.extend(v.decisions);
    }
    assert_eq!(decisions.len(), 1, "20 is not more than 20; the 21st is");
    assert_eq!(decisions[0].to_string(), "6,ALERT,global");
    assert_eq!(decisions[0].value, 21);
}

#[test]
fn a_global_alert_recovers_with_no_traffic_at_the_exact_second() {
    let clock = ManualClock::new(ts(0));
    let mut e = Engine::new(traffic_alert(), clock.clone());
    // 7 hits in each of seconds 0, 1, 2: 21 > 20 at second 2.
    for s in 0..3 {
        clock.set(ts(s));
        for _ in 0..7 {
            e.incr("x", "hits").unwrap();
        }
    }
    assert!(e.decisions().any(|(_, d)| d.effect == Effect::Alert));
    // At 10 the window (0, 10] holds 14 hits: recovered. At 9 it still holds 21.
    clock.set(ts(9));
    assert!(e.tick().is_empty());
    clock.set(ts(60));
    let ends = e.tick();
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].to_string(), "10,RECOVER,global");
    assert_eq!(ends[0].value, 14);
}

#[test]
fn a_global_alert_stays_while_traffic_stays_over() {
    let clock = ManualClock::new(ts(0));
    let mut e = Engine::new(traffic_alert(), clock.clone());
    let mut log = Vec::new();
    for s in 0..30 {
        clock.set(ts(s));
        for _ in 0..3 {
            log.extend(
                e.incr("x", "hits")
                    .unwrap()
                    .decisions
                    .iter()
                    .map(ToString::to_string),
            );
        }
    }
    // 3 per second: 21 hits first in (−3, 6]... at second 6 the window holds 21.
    assert_eq!(log, ["6,ALERT,global"]);
    clock.set(ts(100));
    let ends: Vec<String> = e.tick().iter().map(ToString::to_string).collect();
    // Last hits at 29: the window (t−10, t] holds ≤ 20 once seconds up to 22 have left: t = 33.
    assert_eq!(ends, ["33,RECOVER,global"]);
}

#[test]
fn notices_run_actions_without_blocking() {
    let mut t = threshold(2, 60, Effect::Notify, 3600);
    t.actions.push(Arc::new(NamedNoop("record_local".into())));
    let r = rules(vec![metric("login_successful", vec![t])]);
    let clock = ManualClock::new(ts(0));
    let mut e = Engine::new(r, clock);
    e.incr("a", "login_successful").unwrap();
    let v = e.incr("a", "login_successful").unwrap();
    assert!(v.passed);
    assert_eq!(v.decisions[0].to_string(), "0,NOTIFY,a");
    assert_eq!(v.actions.len(), 1);
    assert_eq!(
        (v.actions[0].token.as_str(), &*v.actions[0].metric),
        ("a", "login_successful")
    );
    let v = e.incr("a", "login_successful").unwrap();
    assert!(v.decisions.is_empty(), "one notice per episode");
    assert!(v.actions.is_empty());
    assert_eq!(
        e.finish()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["3600,NOTIFY_END,a"]
    );
}

fn credential_stuffing() -> Arc<Ruleset> {
    let requests = threshold(11, 5, Effect::Block, 30);
    let mut emails = threshold(3, 5, Effect::Block, 30);
    emails.kind = Kind::Distinct("email".into());
    rules(vec![metric("detect:login", vec![requests, emails])])
}

#[test]
fn distinct_counts_values_not_events() {
    let mut e = Engine::new(credential_stuffing(), ManualClock::new(ts(0)));
    let mut go = |at: i64, email: &str| {
        let attrs = [("email", email)];
        e.observe(
            &Event::new("1.1.1.1", "detect:login", ts(at)).with_attrs(&attrs),
            false,
        )
        .unwrap()
    };
    assert!(go(0, "a@x").passed);
    assert!(go(1, "a@x").passed);
    assert!(go(2, "b@x").passed);
    assert!(go(3, "b@x").passed, "two distinct emails are allowed");
    let v = go(4, "c@x");
    assert!(!v.passed, "the third distinct email in 5 s is the attack");
    assert_eq!(v.decisions[0].tier, 1);
    assert_eq!(v.decisions[0].value, 3);
}

#[test]
fn distinct_values_leave_the_window() {
    let mut e = Engine::new(credential_stuffing(), ManualClock::new(ts(0)));
    for (at, email) in [(0, "a"), (1, "b"), (6, "c")] {
        let attrs = [("email", email)];
        let v = e
            .observe(
                &Event::new("1.1.1.1", "detect:login", ts(at)).with_attrs(&attrs),
                false,
            )
            .unwrap();
        assert!(v.passed, "at 6 the window (1, 6] holds b and c only");
    }
}

#[test]
fn a_distinct_metric_needs_its_attribute() {
    let mut e = Engine::new(credential_stuffing(), ManualClock::new(ts(0)));
    let err = e.incr("1.1.1.1", "detect:login").unwrap_err();
    assert_eq!(
        err.to_string(),
        "metric `detect:login` needs attribute `email`"
    );
    assert_eq!(e.counters().tracked_tokens, 0, "nothing was counted");
}

#[test]
fn sum_adds_an_attribute() {
    let mut t = threshold(1000, 60, Effect::Block, 60);
    t.kind = Kind::Sum("bytes".into());
    let mut e = Engine::new(
        rules(vec![metric("download", vec![t])]),
        ManualClock::new(ts(0)),
    );
    let mut go = |bytes: &str| {
        let attrs = [("bytes", bytes)];
        e.observe(
            &Event::new("a", "download", ts(1)).with_attrs(&attrs),
            false,
        )
    };
    assert!(go("600").unwrap().passed);
    assert_eq!(
        go("-1").unwrap_err(),
        EventError::BadSumAttr {
            attr: "bytes".into(),
            value: "-1".into()
        }
    );
    let v = go("400").unwrap();
    assert!(!v.passed);
    assert_eq!(v.decisions[0].value, 1000);
}

#[test]
fn rates_count_the_last_1_10_and_60_minutes_including_now() {
    let clock = ManualClock::new(ts(10_000));
    let mut e = Engine::new(example(BanPolicy::AfterTrigger), clock.clone());
    let v = e.incr("a", "m").unwrap();
    assert_eq!(
        v.rates,
        Some(Rates {
            last_1m: 1,
            last_10m: 1,
            last_60m: 1
        })
    );
    clock.advance(Seconds::new(60));
    let v = e.incr("a", "m").unwrap();
    assert_eq!(
        v.rates,
        Some(Rates {
            last_1m: 1,
            last_10m: 2,
            last_60m: 2
        })
    );
    clock.advance(Seconds::new(3540));
    // The first event (at 10 000) is exactly 3600 s old: out of (now − 3600, now].
    let v = e.incr("a", "m").unwrap();
    assert_eq!(
        v.rates,
        Some(Rates {
            last_1m: 1,
            last_10m: 1,
            last_60m: 2
        })
    );
}

#[test]
fn rates_are_absent_when_not_kept() {
    let r = Arc::new(
        Ruleset::builder()
            .metric(metric("m", vec![threshold(3, 10, Effect::Block, 100)]))
            .build()
            .unwrap(),
    );
    let mut e = Engine::new(r, ManualClock::new(ts(0)));
    assert_eq!(e.incr("a", "m").unwrap().rates, None);
}

#[test]
fn idle_tokens_are_dropped_once_nothing_can_matter() {
    let r = Arc::new(
        Ruleset::builder()
            .metric(metric("m", vec![threshold(3, 10, Effect::Block, 100)]))
            .build()
            .unwrap(),
    );
    let clock = ManualClock::new(ts(0));
    let mut e = Engine::new(r, clock.clone());
    e.incr("a", "m").unwrap();
    e.incr("b", "m").unwrap();
    clock.set(ts(9));
    e.tick();
    assert_eq!(
        e.counters().tracked_tokens,
        2,
        "still inside the 10 s window"
    );
    clock.set(ts(10));
    e.tick();
    assert_eq!(e.counters().tracked_tokens, 0);
    assert_eq!(e.counters().expired, 2);
}

#[test]
fn the_token_cap_evicts_the_least_at_stake_but_never_a_ban() {
    let r = capped(
        vec![metric("m", vec![threshold(2, 100, Effect::Block, 100)])],
        2,
    );
    let clock = ManualClock::new(ts(0));
    let mut e = Engine::new(r, clock.clone());
    e.incr("a", "m").unwrap();
    e.incr("a", "m").unwrap(); // banned
    e.incr("b", "m").unwrap();
    e.incr("c", "m").unwrap(); // evicts b: a is less recent, but at its limit
    assert_eq!(e.counters().evictions, 1);
    assert_eq!(e.counters().tracked_tokens, 2);
    assert!(
        e.status("b", "m").unwrap().tiers[0].value == 0,
        "b's counts are gone"
    );
    assert_eq!(e.status("a", "m").unwrap().tiers[0].value, 2);
    e.incr("c", "m").unwrap(); // c reaches its limit too
    e.incr("d", "m").unwrap(); // evicts a's windows: as much at stake, and less recent
    assert_eq!(e.status("a", "m").unwrap().tiers[0].value, 0);
    assert!(e.is_banned("a"), "the ban is kept apart from the windows");
    assert_eq!(e.counters().evictions_at_stake, 2);
}

/// The reproduction of the LRU reset: under `max_tokens = 1000`, two failures (limit 3) and
/// then more than a thousand other tokens used to evict the attacker's windows, so that its
/// next two failures passed again.
#[test]
fn an_attacker_keeps_its_count_while_one_shot_visitors_fill_the_table() {
    let r = capped(
        vec![
            metric("login_failed", vec![threshold(3, 600, Effect::Block, 600)]),
            metric("request", vec![threshold(100, 60, Effect::Block, 60)]),
        ],
        1000,
    );
    let clock = ManualClock::new(ts(0));
    let mut e = Engine::new(r, clock.clone());
    assert!(e.incr("attacker", "login_failed").unwrap().passed);
    assert!(e.incr("attacker", "login_failed").unwrap().passed);
    // One-shot visitors: a request each, then a failed login each, a few per second.
    for (i, metric) in (0..1_500)
        .map(|i| (i, "request"))
        .chain((1_500..3_000).map(|i| (i, "login_failed")))
    {
        clock.set(ts(i / 10));
        assert!(e.incr(&format!("visitor-{i}"), metric).unwrap().passed);
    }
    let third = e.incr("attacker", "login_failed").unwrap();
    assert!(!third.passed, "banned at the third failure");
    assert_eq!(third.decisions[0].to_string(), "299,BAN,attacker");
    let c = e.counters();
    assert_eq!((c.tracked_tokens, c.evictions), (1000, 2_001));
    // Visitors 0..=2000 went, oldest first: the requests had left their 60 s window by then
    // and cost nothing; the 501 failed logins were still inside their 600 s window.
    assert_eq!(c.evictions_at_stake, 501);
}

#[test]
fn eviction_prefers_a_token_with_nothing_inside_any_window() {
    let r = capped(
        vec![
            metric("m", vec![threshold(5, 60, Effect::Block, 60)]),
            metric("n", vec![threshold(5, 2, Effect::Block, 60)]),
        ],
        2,
    );
    let clock = ManualClock::new(ts(0));
    let mut e = Engine::new(r, clock.clone());
    e.incr("old", "m").unwrap();
    clock.set(ts(1));
    e.incr("newer", "n").unwrap();
    clock.set(ts(5));
    // `old` is the least recently seen, but its event still counts; `newer`'s has left its
    // 2 s window.
    e.incr("third", "m").unwrap();
    assert_eq!(e.status("old", "m").unwrap().tiers[0].value, 1);
    let c = e.counters();
    assert_eq!((c.evictions, c.evictions_at_stake), (1, 0));
}

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<String>>);

impl Action for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn call(&self, c: &ActionCall<'_>) {
        self.0.lock().unwrap().push(format!(
            "{} {} {} {} {} repeat={}",
            c.token, c.duration, c.metric, c.window, c.limit, c.repeat
        ));
    }
}

#[test]
fn actions_are_called_once_per_decision_with_the_seed_arguments() {
    let rec = Arc::new(Recorder::default());
    let mut t = threshold(10, 3600, Effect::Block, 3600);
    t.actions.push(rec.clone());
    let clock = ManualClock::new(ts(0));
    let mut e = Engine::new(rules(vec![metric("login_failed", vec![t])]), clock.clone());
    for i in 0..15 {
        clock.set(ts(i));
        let v = e.incr("1.2.3.4", "login_failed").unwrap();
        assert_eq!(e.rules().run_actions(&v.actions), 0);
    }
    assert_eq!(
        *rec.0.lock().unwrap(),
        ["1.2.3.4 3600s login_failed 3600s 10 repeat=false"]
    );
}

#[test]
fn repeat_actions_run_on_every_further_event_during_the_decision() {
    let rec = Arc::new(Recorder::default());
    let mut t = threshold(2, 60, Effect::Block, 60);
    t.actions.push(rec.clone());
    t.repeat_actions = true;
    let mut e = Engine::new(rules(vec![metric("m", vec![t])]), ManualClock::new(ts(0)));
    for _ in 0..4 {
        let v = e.incr("a", "m").unwrap();
        e.rules().run_actions(&v.actions);
    }
    let calls = rec.0.lock().unwrap().clone();
    assert_eq!(calls.len(), 3);
    assert!(calls[0].ends_with("repeat=false"));
    assert!(calls[1].ends_with("repeat=true"));
}

#[derive(Debug)]
struct Panics(AtomicUsize);

impl Action for Panics {
    fn name(&self) -> &'static str {
        "panics"
    }

    fn call(&self, _: &ActionCall<'_>) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("an action failed");
    }
}

#[test]
fn a_panicking_action_is_counted_and_leaves_the_state_whole() {
    let action = Arc::new(Panics(AtomicUsize::new(0)));
    let mut t = threshold(2, 60, Effect::Block, 60);
    t.actions.push(action.clone());
    let mut e = Engine::new(rules(vec![metric("m", vec![t])]), ManualClock::new(ts(0)));
    e.incr("a", "m").unwrap();
    let v = e.incr("a", "m").unwrap();
    assert!(!v.passed);
    assert_eq!(v.decisions.len(), 1);
    // The engine only lists the action; running it is the caller's, and a panic is counted.
    assert_eq!(action.0.load(Ordering::SeqCst), 0);
    assert_eq!(e.rules().run_actions(&v.actions), 1);
    assert_eq!(action.0.load(Ordering::SeqCst), 1);
    assert!(e.is_banned("a"));
    assert!(!e.incr("a", "m").unwrap().passed);
}

#[test]
fn a_late_event_counts_in_its_own_second_and_decides_now() {
    let r = example(BanPolicy::AfterTrigger);
    // At 9, events at 0, 9 and a late 5: (−1, 9] holds 3.
    assert_eq!(run(&r, "0 a, 9 a, 5 a"), ["9,BAN,a", "109,UNBAN,a"]);
    // A late event older than every window is ignored and counted as late.
    let mut e = Engine::new(r, ManualClock::new(ts(0)));
    e.observe(&Event::new("a", "m", ts(5000)), false).unwrap();
    e.observe(&Event::new("a", "m", ts(10)), false).unwrap();
    assert_eq!(e.counters().late_events, 1);
}

#[test]
fn the_engine_time_never_goes_back() {
    let clock = ManualClock::new(ts(100));
    let mut e = Engine::new(example(BanPolicy::AfterTrigger), clock.clone());
    clock.set(ts(50));
    e.incr("a", "m").unwrap();
    assert_eq!(e.time(), ts(100));
}

#[test]
fn unban_ends_a_ban_now_and_restore_brings_one_back() {
    let clock = ManualClock::new(ts(0));
    let mut e = Engine::new(example(BanPolicy::AfterTrigger), clock.clone());
    for _ in 0..3 {
        e.incr("a", "m").unwrap();
    }
    clock.set(ts(7));
    e.tick();
    let end = e.unban("a").unwrap();
    assert_eq!(end.to_string(), "7,UNBAN,a");
    assert!(!e.is_banned("a"));
    assert!(e.unban("a").is_none());
    clock.set(ts(200));
    assert!(e.tick().is_empty(), "the stale deadline is skipped");

    restore(&mut e, "b", "m", 3, ts(150), ts(400)).unwrap();
    assert!(e.is_banned("b"));
    clock.set(ts(400));
    assert_eq!(e.tick()[0].to_string(), "400,UNBAN,b");
    restore(&mut e, "c", "m", 3, ts(100), ts(300)).unwrap();
    assert!(!e.is_banned("c"), "an expired ban is not restored");
}

#[test]
fn a_token_unbanned_by_hand_passes_and_can_be_banned_again() {
    let clock = ManualClock::new(ts(0));
    let mut e = Engine::new(example(BanPolicy::AfterTrigger), clock.clone());
    for _ in 0..4 {
        e.incr("a", "m").unwrap();
    }
    e.unban("a").unwrap();
    clock.set(ts(1));
    // The window still holds 4 (≥ 3): the next event bans again at once.
    let v = e.incr("a", "m").unwrap();
    assert!(!v.passed);
    assert_eq!(v.decisions[0].to_string(), "1,BAN,a");
    e.unban("a").unwrap();
    clock.set(ts(20));
    assert!(
        e.incr("a", "m").unwrap().passed,
        "unbanned, and the window has emptied"
    );
}

#[test]
fn status_shows_tier_measures_and_the_ban() {
    let t0 = threshold(2, 10, Effect::Block, 100);
    let t1 = threshold(5, 60, Effect::Notify, 100);
    let mut e = Engine::new(
        rules(vec![metric("m", vec![t0, t1])]),
        ManualClock::new(ts(0)),
    );
    e.incr("a", "m").unwrap();
    e.incr("a", "m").unwrap();
    let s = e.status("a", "m").unwrap();
    assert_eq!(
        s.tiers,
        [
            TierMeasure {
                value: 2,
                holds: true
            },
            TierMeasure {
                value: 2,
                holds: false
            }
        ]
    );
    assert_eq!(s.ban.unwrap().until, ts(100));
    let all: Vec<_> = e.status_all().collect();
    assert_eq!(
        all,
        [(
            "a",
            "m",
            Rates {
                last_1m: 2,
                last_10m: 2,
                last_60m: 2
            }
        )]
    );
    assert_eq!(e.status("zz", "m").unwrap().tiers[0].value, 0);
    assert!(matches!(
        e.status("a", "nope"),
        Err(EventError::UnknownMetric(_))
    ));
}

#[test]
fn bad_tokens_and_unknown_metrics_are_refused() {
    let mut e = Engine::new(example(BanPolicy::AfterTrigger), ManualClock::new(ts(0)));
    assert_eq!(e.incr("", "m").unwrap_err(), EventError::BadToken);
    let long = "x".repeat(Token::MAX_LEN + 1);
    assert_eq!(e.incr(&long, "m").unwrap_err(), EventError::BadToken);
    assert_eq!(
        e.incr("a", "nope").unwrap_err().to_string(),
        "unknown metric `nope`"
    );
}

#[test]
fn rule_sets_refuse_what_cannot_work() {
    let errors = Ruleset::builder()
        .metric(metric("m", vec![threshold(1, 10, Effect::Block, 0)]))
        .metric(metric("m", vec![]))
        .metric(global("g", vec![threshold(1, 10, Effect::Block, 10)]))
        .build()
        .unwrap_err();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 3, "{text:?}");
    assert!(text[0].contains("action_duration"));
    assert!(text[1].contains("defined twice"));
    assert!(text[2].contains("global-scope"));
}

fn family() -> Arc<Ruleset> {
    // Credential stuffing per IP and event name: 3 events of one name in 10 s ban the IP.
    rules(vec![metric(
        "detect:*",
        vec![threshold(3, 10, Effect::Block, 30)],
    )])
}

#[test]
fn a_family_counts_each_member_apart_and_bans_the_token() {
    let mut e = Engine::new(family(), ManualClock::new(ts(0)));
    for name in [
        "detect:login",
        "detect:signup",
        "detect:login",
        "detect:signup",
    ] {
        assert!(
            e.incr("1.2.3.4", name).unwrap().passed,
            "two of each: below the limit"
        );
    }
    let v = e.incr("1.2.3.4", "detect:login").unwrap();
    assert!(!v.passed);
    assert_eq!(
        v.decisions[0].metric.as_ref(),
        "detect:login",
        "records name the member"
    );
    assert!(
        !e.incr("1.2.3.4", "detect:reset").unwrap().passed,
        "the token is banned"
    );
    assert_eq!(
        e.status("1.2.3.4", "detect:signup").unwrap().tiers[0].value,
        2
    );
    assert_eq!(
        e.status("1.2.3.4", "detect:reset").unwrap().tiers[0].value,
        1
    );
    let mut names: Vec<&str> = e.status_all().map(|(_, m, _)| m).collect();
    names.sort_unstable();
    assert_eq!(names, ["detect:login", "detect:reset", "detect:signup"]);
    let end = e.finish();
    assert_eq!(end[0].metric.as_ref(), "detect:login");
}

#[test]
fn a_long_ban_keeps_one_reach_per_rule_whatever_members_hold() {
    // A token idle for the rules' longest window (1 s here) is forgotten with its list of
    // members, but its ban lasts: each second, 16 new member names held again, and the ban
    // used to keep a reach (and the name) for every one of them, scanned on every hold.
    let mut t = threshold(1, 1, Effect::Block, 86_400);
    t.policy = BanPolicy::AfterViolation;
    let r = Arc::new(
        Ruleset::builder()
            .metric(metric("detect:*", vec![t]))
            .build()
            .unwrap(),
    );
    let clock = ManualClock::new(ts(0));
    let mut e = Engine::new(r, clock.clone());
    for s in 0..50 {
        clock.set(ts(s));
        for i in 0..MAX_MEMBERS {
            e.incr("a", &format!("detect:{s}-{i}")).unwrap();
        }
    }
    assert!(e.is_banned("a"));
    assert_eq!(e.state.episodes.ban_reaches("a"), 1);
    // The end names the member whose hold reached furthest first.
    let end = e.finish();
    assert_eq!(end[0].metric.as_ref(), "detect:49-0");
}

#[test]
fn a_token_counts_a_bounded_number_of_members() {
    let mut e = Engine::new(family(), ManualClock::new(ts(0)));
    for i in 0..MAX_MEMBERS {
        e.incr("a", &format!("detect:{i}")).unwrap();
    }
    assert_eq!(
        e.incr("a", "detect:one-too-many").unwrap_err(),
        EventError::TooManyMembers("detect:*".into())
    );
    assert!(e.incr("a", "detect:0").is_ok(), "known members still count");
    assert!(e.incr("b", "detect:one-too-many").is_ok(), "per token");
}

#[test]
fn a_member_name_longer_than_a_metric_name_is_refused() {
    // Untrusted member names are kept per token (windows, records): 16 kB names used to grow
    // memory by gigabytes. The bound is the one metric names have.
    let mut e = Engine::new(family(), ManualClock::new(ts(0)));
    let longest = format!("detect:{}", "x".repeat(MAX_NAME_LEN - "detect:".len()));
    assert!(e.incr("a", &longest).is_ok());
    let long = format!("{longest}y");
    let refused = e.incr("a", &long).unwrap_err();
    assert_eq!(refused, EventError::MetricTooLong(long[..64].to_owned()));
    assert_eq!(
        refused.to_string(),
        format!("metric name `{}` is longer than 128 bytes", &long[..64])
    );
    assert_eq!(e.fire("a", &long, 0).unwrap_err(), refused);
    assert_eq!(e.status("a", &long).unwrap_err(), refused);
    assert_eq!(
        e.status_all().count(),
        1,
        "nothing kept for the refused name"
    );
}

#[test]
fn family_names_are_checked() {
    let bad = |name: &str, scope: Scope| {
        Ruleset::builder()
            .metric(MetricRule {
                name: name.into(),
                scope,
                thresholds: vec![],
            })
            .build()
            .unwrap_err()[0]
            .to_string()
    };
    assert!(bad("detect*", Scope::Token).contains("PREFIX:*"));
    assert!(bad("detect:*", Scope::Global).contains("cannot be global"));
    let r = family();
    assert_eq!(r.metric_id("detect:login"), r.metric_id("detect:*"));
    assert_eq!(r.metric_id("detect:"), None, "a member needs a name");
}

/// Regression (found by the `a_shared_engine_agrees_with_one_engine` property): a global-scope
/// event counts in shard 0, but its `passed` is the token's own ban, in the token's shard,
/// which saw no time pass since its last event. A ban that ended meanwhile must be over, and
/// its UNBAN reported, as one engine does.
#[test]
fn a_shared_engine_ends_a_ban_before_answering_a_global_event() {
    let r = rules(vec![
        metric("m", vec![threshold(1, 10, Effect::Block, 10)]),
        global("hits", vec![threshold(100, 10, Effect::Alert, 0)]),
    ]);
    let clock = ManualClock::new(ts(i64::MIN));
    let shared = crate::shared::SharedEngine::new(r, &clock, NonZeroUsize::new(64).unwrap());
    // Several tokens, so that some surely live outside shard 0 whatever the hasher's seed.
    let tokens = ["a", "b", "c", "d", "e", "f", "g", "h"];
    for token in tokens {
        let v = shared
            .observe(&Event::new(token, "m", ts(0)), false)
            .unwrap();
        assert!(!v.passed);
    }
    // Bringing a shard forward ends every ban due in it, so an UNBAN may come with the event
    // of another token of the same shard; each comes once, by the token's own event at latest.
    let mut unbans = Vec::new();
    for token in tokens {
        let v = shared
            .observe(&Event::new(token, "hits", ts(50)), false)
            .unwrap();
        assert!(v.passed, "{token}'s ban ended at 10");
        unbans.extend(v.decisions.iter().map(ToString::to_string));
        assert!(unbans.contains(&format!("10,UNBAN,{token}")));
    }
    unbans.sort();
    assert_eq!(unbans, tokens.map(|t| format!("10,UNBAN,{t}")));
}

#[test]
fn the_ban_count_follows_bans_as_they_start_and_end() {
    let bans = |e: &Engine<ManualClock>| {
        let walked = e
            .decisions()
            .filter(|(_, d)| d.effect == Effect::Block)
            .count();
        assert_eq!(e.counters().active_bans, walked);
        walked
    };
    let mut notice = threshold(2, 60, Effect::Notify, 60);
    notice
        .actions
        .push(Arc::new(NamedNoop("record_local".into())));
    let r = rules(vec![
        metric("m", vec![threshold(2, 60, Effect::Block, 100)]),
        metric("n", vec![notice]),
    ]);
    let clock = ManualClock::new(ts(0));
    let mut e = Engine::new(r, clock.clone());
    for token in ["a", "b", "c"] {
        e.incr(token, "m").unwrap();
        e.incr(token, "m").unwrap();
        e.incr(token, "n").unwrap();
        e.incr(token, "n").unwrap();
    }
    assert_eq!(bans(&e), 3);
    e.incr("a", "m").unwrap(); // an extension is not a new ban
    assert_eq!(bans(&e), 3);
    e.unban("b");
    assert_eq!(bans(&e), 2);
    restore(&mut e, "d", "m", 2, ts(0), ts(50)).unwrap();
    restore(&mut e, "a", "m", 2, ts(0), ts(500)).unwrap(); // extends a's ban
    assert_eq!(bans(&e), 3);
    clock.set(ts(60));
    e.tick();
    assert_eq!(bans(&e), 2);
    clock.set(ts(150));
    e.tick();
    assert_eq!(bans(&e), 1);
    e.finish();
    assert_eq!(bans(&e), 0);
}

/// `(time, token, metric, attributes)`.
type Step<'a> = (i64, &'a str, &'a str, Vec<(&'a str, &'a str)>);

#[test]
fn windows_taken_out_and_put_back_decide_as_if_nothing_happened() {
    // Counts, sums, distinct values, a family and a global alert.
    let mut bytes = threshold(1000, 60, Effect::Block, 60);
    bytes.kind = Kind::Sum("bytes".into());
    let mut emails = threshold(3, 60, Effect::Block, 60);
    emails.kind = Kind::Distinct("email".into());
    let r = rules(vec![
        metric("m", vec![threshold(5, 60, Effect::Block, 100), bytes]),
        metric("detect:*", vec![emails]),
        global("hits", vec![threshold(2, 60, Effect::Alert, 0)]),
    ]);
    let events: Vec<Step<'_>> = vec![
        (0, "a", "m", vec![("bytes", "400")]),
        (1, "a", "m", vec![("bytes", "300")]),
        (2, "b", "detect:login", vec![("email", "x")]),
        (3, "b", "detect:login", vec![("email", "y")]),
        (3, "a", "hits", vec![]),
        (4, "b", "hits", vec![]),
        (5, "c", "m", vec![("bytes", "1")]),
    ];
    let later: Vec<Step<'_>> = vec![
        (10, "a", "m", vec![("bytes", "350")]),
        (11, "b", "detect:login", vec![("email", "z")]),
        (12, "c", "m", vec![("bytes", "1")]),
        (13, "c", "hits", vec![]),
    ];
    let observe = |e: &mut Engine<ManualClock>, evs: &[Step<'_>]| {
        let mut out = Vec::new();
        for (at, token, metric, attrs) in evs {
            let v = e
                .observe(&Event::new(token, metric, ts(*at)).with_attrs(attrs), false)
                .unwrap();
            out.extend(
                v.decisions
                    .iter()
                    .map(|d| format!("{d} {} {}", d.metric, d.value)),
            );
        }
        out
    };
    let mut first = Engine::new(Arc::clone(&r), ManualClock::new(ts(0)));
    first.track_changed_windows(true);
    observe(&mut first, &events);
    let saved = first.take_changed_windows();
    assert_eq!(saved.len(), 4, "a and c: m; b: detect:login; global: hits");
    assert!(
        first.take_changed_windows().is_empty(),
        "nothing changed since"
    );
    // A new engine (a restart at 5) with the windows put back decides like the first.
    let mut second = Engine::new(Arc::clone(&r), ManualClock::new(ts(5)));
    for s in &saved {
        second.restore_windows(s).unwrap();
    }
    let a = observe(&mut first, &later);
    let b = observe(&mut second, &later);
    assert_eq!(a, b);
    assert_eq!(
        a.len(),
        3,
        "the sum, the distinct emails and the alert all hold: {a:?}"
    );
    assert_eq!(first.finish(), second.finish());
    // Without tracking, nothing is noted.
    let mut quiet = Engine::new(r, ManualClock::new(ts(0)));
    observe(&mut quiet, &events);
    assert_eq!(quiet.take_changed_windows().len(), 0);
}

/// `escalate = { factor = 2, max = 1000, memory = 1000 }` on the example's tier (3 events in
/// 10 s ban for 100 s).
fn escalating() -> Arc<Ruleset> {
    let mut t = threshold(3, 10, Effect::Block, 100);
    t.escalate = Some(crate::rules::Escalation {
        factor: 2,
        max: Seconds::new(1000),
        memory: Seconds::new(1000),
    });
    rules(vec![metric("m", vec![t])])
}

#[test]
fn a_ban_by_hand_starts_a_manual_ban_with_its_reason_and_ends_on_time() {
    let clock = ManualClock::new(ts(100));
    let mut e = Engine::new(example(BanPolicy::AfterTrigger), clock.clone());
    let v = e
        .ban_by_hand("a", Seconds::new(3600), Some("  ticket #42 "))
        .unwrap();
    assert!(!v.passed);
    assert!(v.actions.is_empty(), "no rule, no action");
    let [start] = &v.decisions[..] else {
        panic!("{:?}", v.decisions)
    };
    assert_eq!(start.to_string(), "100,BAN,a");
    assert_eq!(&*start.metric, Ruleset::MANUAL);
    assert!(start.is_manual());
    assert_eq!((start.tier, start.value, start.until), (0, 0, ts(3700)));
    assert_eq!(start.reason.as_deref(), Some("ticket #42"), "trimmed");
    let view = e.ban("a").unwrap();
    assert!(view.is_manual());
    assert_eq!(view.reason.as_deref(), Some("ticket #42"));
    assert!(!e.incr("a", "m").unwrap().passed);
    clock.set(ts(3700));
    let ends = e.tick();
    assert_eq!(ends[0].to_string(), "3700,UNBAN,a");
    assert_eq!(&*ends[0].metric, Ruleset::MANUAL);
    assert_eq!(ends[0].reason.as_deref(), Some("ticket #42"));
    assert!(e.incr("a", "m").unwrap().passed);
}

#[test]
fn a_ban_by_hand_carries_an_active_ban_further_and_never_shortens_it() {
    let clock = ManualClock::new(ts(0));
    let mut e = Engine::new(example(BanPolicy::AfterTrigger), clock.clone());
    for _ in 0..3 {
        e.incr("a", "m").unwrap();
    }
    // Banned by rule m until 100: an hour by hand reaches further.
    let v = e
        .ban_by_hand("a", Seconds::new(3600), Some("persistent"))
        .unwrap();
    assert_eq!(v.decisions.len(), 1);
    assert_eq!(v.decisions[0].change, Change::Extend);
    assert_eq!(v.decisions[0].until, ts(3600));
    assert_eq!(v.decisions[0].reason.as_deref(), Some("persistent"));
    let view = e.ban("a").unwrap();
    assert_eq!(&*view.metric, "m", "the ban keeps the rule that started it");
    assert_eq!(view.reason.as_deref(), Some("persistent"));
    // Ten seconds by hand reach nowhere further: nothing changes, not even the reason.
    let v = e.ban_by_hand("a", Seconds::new(10), Some("other")).unwrap();
    assert!(v.decisions.is_empty());
    assert_eq!(e.ban("a").unwrap().until, ts(3600));
    assert_eq!(e.ban("a").unwrap().reason.as_deref(), Some("persistent"));
    clock.set(ts(3600));
    let ends = e.tick();
    assert_eq!(ends[0].to_string(), "3600,UNBAN,a");
    assert_eq!(
        &*ends[0].metric,
        Ruleset::MANUAL,
        "the hand carried it furthest"
    );
}

#[test]
fn a_ban_by_hand_is_checked_and_a_refused_one_changes_nothing() {
    let mut e = Engine::new(example(BanPolicy::AfterTrigger), ManualClock::new(ts(0)));
    let long = "x".repeat(crate::error::MAX_REASON_LEN + 1);
    assert_eq!(
        e.ban_by_hand("a", Seconds::ZERO, None).unwrap_err(),
        EventError::BadDuration
    );
    assert_eq!(
        e.ban_by_hand("a", Seconds::new(Ruleset::MAX_SPAN.get() + 1), None)
            .unwrap_err(),
        EventError::BadDuration
    );
    assert_eq!(
        e.ban_by_hand("a", Seconds::new(1), Some(&long))
            .unwrap_err(),
        EventError::ReasonTooLong
    );
    assert_eq!(
        e.ban_by_hand("", Seconds::new(1), None).unwrap_err(),
        EventError::BadToken
    );
    assert!(!e.is_banned("a"));
    let v = e.ban_by_hand("a", Seconds::new(1), Some("   ")).unwrap();
    assert_eq!(v.decisions[0].reason, None, "a blank reason is none");
}

#[test]
fn a_ban_by_hand_is_an_offence_but_is_not_escalated_itself() {
    let clock = ManualClock::new(ts(0));
    let mut e = Engine::new(escalating(), clock.clone());
    // Rule ban at 2: first offence, 100 s.
    for t in 0..3 {
        clock.set(ts(t));
        e.incr("a", "m").unwrap();
    }
    clock.set(ts(200));
    e.tick();
    // By hand at 200 for 50 s: one earlier offence, yet it lasts the 50 s asked for.
    let v = e.ban_by_hand("a", Seconds::new(50), None).unwrap();
    assert_eq!(v.decisions[0].until, ts(250));
    clock.set(ts(300));
    e.tick();
    // The next rule ban counts both (2 and 200): 100 × 2² = 400 s.
    let mut last = None;
    for t in 300..303 {
        clock.set(ts(t));
        last = e.incr("a", "m").unwrap().decisions.pop().or(last);
    }
    let ban = last.unwrap();
    assert_eq!(ban.to_string(), "302,BAN,a");
    assert_eq!(ban.until, ts(702));
}

#[test]
fn a_ban_by_hand_comes_back_after_a_restart_with_its_reason() {
    let mut e = Engine::new(example(BanPolicy::AfterTrigger), ManualClock::new(ts(10)));
    e.restore_ban(&BanRecord {
        token: "a",
        metric: Ruleset::MANUAL,
        tier: 0,
        value: 0,
        from: ts(0),
        until: ts(500),
        reason: Some("ticket #42"),
    })
    .unwrap();
    let view = e.ban("a").unwrap();
    assert!(view.is_manual());
    assert_eq!((view.from, view.until), (ts(0), ts(500)));
    assert_eq!(view.reason.as_deref(), Some("ticket #42"));
    let bad = BanRecord {
        token: "b",
        metric: Ruleset::MANUAL,
        tier: 1,
        value: 0,
        from: ts(0),
        until: ts(500),
        reason: None,
    };
    assert!(e.restore_ban(&bad).is_err(), "a manual ban has tier 0 only");
}

#[test]
fn no_metric_may_take_the_name_of_bans_by_hand() {
    let err = Ruleset::builder()
        .metric(metric(Ruleset::MANUAL, vec![]))
        .build()
        .unwrap_err();
    assert_eq!(err, vec![RuleError::ReservedName("manual".into())]);
}
