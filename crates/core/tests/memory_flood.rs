//! Memory under a flood, with no cap configured: long family member names are refused and
//! cost nothing, and distinct tokens stop at the default `max_tokens`, so resident memory stays
//! under a stated bound however many arrive. (A process of its own, apart from
//! `memory_bound.rs`, so that no other test's memory is counted or reused.)

use std::num::NonZeroU64;
use std::sync::Arc;

use banhammer_core::{
    Effect, Engine, EventError, ManualClock, MetricRule, Ruleset, Scope, Seconds, Threshold,
    Timestamp, Window,
};

mod common;
use common::{rss_bytes, token};

/// The rules a front end gets with no `[engine]` section: rates on (the HTTP service's
/// choice), a family for detections and a plain metric, and no `max_tokens` given.
fn default_rules() -> Arc<Ruleset> {
    let t = |limit| {
        Threshold::new(
            NonZeroU64::new(limit).unwrap(),
            Window::from_secs(60).unwrap(),
            Effect::Block,
            Seconds::new(600),
        )
    };
    let metric = |name: &str, limit| MetricRule {
        name: name.into(),
        scope: Scope::Token,
        thresholds: vec![t(limit)],
    };
    Arc::new(
        Ruleset::builder()
            .rates(true)
            .metric(metric("detect:*", 5))
            .metric(metric("request", 100))
            .build()
            .unwrap(),
    )
}

/// One test, so that nothing else runs in this process while resident memory is read.
#[test]
fn a_flood_stays_within_the_default_bounds() {
    long_member_names_are_refused_and_cost_nothing();
    distinct_tokens_stop_at_the_default_cap();
}

/// The reproduction: `detect:<16 kB>` from 20,000 addresses used to keep 16 kB per token
/// (330 MB here; gigabytes when sent for long).
fn long_member_names_are_refused_and_cost_nothing() {
    let engine_rules = default_rules();
    let mut engine = Engine::new(engine_rules, ManualClock::new(Timestamp::from_unix(1_000)));
    let name = format!("detect:{}", "x".repeat(16 * 1024));
    let mut buf = String::new();
    let before = rss_bytes();
    for i in 0..20_000 {
        let refused = engine.incr(token(i, &mut buf), &name).unwrap_err();
        assert!(matches!(refused, EventError::MetricTooLong(_)), "{refused}");
    }
    let grown = rss_bytes().saturating_sub(before);
    assert_eq!(engine.counters().tracked_tokens, 0, "nothing kept");
    assert!(grown < 16_000_000, "{grown} bytes for refused events");
}

/// 1,600,000 distinct tokens with one event each and no cap configured: the default cap
/// (1,000,000) holds, and resident memory stays under 300 bytes per token of the cap. Without
/// the default every token was kept for an hour (rates on): some 340 MB here, and 530 MB for
/// 1.1 million tokens through the HTTP service.
#[allow(clippy::print_stdout)] // the figure is the point of this test
fn distinct_tokens_stop_at_the_default_cap() {
    let rules = default_rules();
    let cap = rules.max_tokens().get();
    assert_eq!(cap, 1_000_000);
    let n = 1_600_000u32;
    let clock = ManualClock::new(Timestamp::from_unix(1_700_000_000));
    let mut engine = Engine::new(rules, clock.clone());
    let mut buf = String::new();
    let before = rss_bytes();
    for i in 0..n {
        if i % 10_000 == 0 {
            clock.advance(Seconds::new(1));
        }
        engine.incr(token(i, &mut buf), "request").unwrap();
    }
    let grown = rss_bytes().saturating_sub(before);
    let c = engine.counters();
    println!(
        "{n} tokens, default cap {cap}: {} MB resident, {} bytes per tracked token",
        grown / 1_000_000,
        grown / cap as u64
    );
    assert!(grown < 300 * cap as u64, "{grown} bytes for {cap} tokens");
    assert_eq!(c.tracked_tokens, cap);
    assert_eq!(c.evictions, u64::from(n) - cap as u64);
}
