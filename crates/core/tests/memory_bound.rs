//! Memory bounds: a million tokens with one event each stay under 300 MB of resident memory,
//! and a `max_tokens` cap holds the tracked tokens at the cap however many arrive, in one
//! engine and split across the shards of a `SharedEngine`. (`memory_flood.rs` floods the
//! default cap.)

use std::num::NonZeroUsize;
use std::sync::Arc;

use banhammer_core::{Engine, Event, ManualClock, Ruleset, SharedEngine, Timestamp};
use banhammer_testkit::rules::{block, build, builder, metric};

mod common;
use common::{rss_bytes, token};

/// 100 requests in 60 s ban for 600 s; rates on, at most `cap` tokens.
fn rules(cap: Option<usize>) -> Arc<Ruleset> {
    let request = metric("request", [block(100, 60, 600)]);
    build(
        builder([request])
            .rates(true)
            .max_tokens(cap.and_then(NonZeroUsize::new)),
    )
}

/// One test, so that nothing else runs in this process while resident memory is read.
#[test]
fn memory_stays_bounded() {
    a_million_tokens_fit_in_300_mb();
    the_cap_holds_and_counts_its_evictions();
    a_shared_engine_splits_the_cap_across_its_shards();
}

#[allow(clippy::print_stdout)] // the figure is the point of this test
fn a_million_tokens_fit_in_300_mb() {
    let n = 1_000_000u32;
    let before = rss_bytes();
    let clock = ManualClock::new(Timestamp::from_unix(1_700_000_000));
    let mut engine = Engine::new(rules(None), clock.clone());
    let mut buf = String::new();
    for i in 0..n {
        let at = Timestamp::from_unix(1_700_000_000 + i64::from(i / 10_000));
        engine
            .observe(&Event::new(token(i, &mut buf), "request", at), true)
            .unwrap();
    }
    let after = rss_bytes();
    assert_eq!(engine.counters().tracked_tokens, n as usize);
    let grown = after.saturating_sub(before);
    println!(
        "1,000,000 tokens, one event each, rates on: {} MB resident, {} bytes per token",
        grown / 1_000_000,
        grown / u64::from(n)
    );
    assert!(grown < 300_000_000, "{grown} bytes for a million tokens");
}

fn the_cap_holds_and_counts_its_evictions() {
    let clock = ManualClock::new(Timestamp::from_unix(1_700_000_000));
    let mut engine = Engine::new(rules(Some(100_000)), clock);
    let mut buf = String::new();
    for i in 0..1_000_000u32 {
        engine.incr(token(i, &mut buf), "request").unwrap();
    }
    let c = engine.counters();
    assert_eq!(c.tracked_tokens, 100_000);
    assert_eq!(c.evictions, 900_000);
    // All in one second, so each evicted token still had its event inside the window; with
    // every token as much at stake, the least recently seen goes first.
    assert_eq!(c.evictions_at_stake, 900_000);
    // The most recent tokens are the ones kept.
    let last = token(999_999, &mut buf).to_owned();
    assert_eq!(engine.status(&last, "request").unwrap().tiers[0].value, 1);
    let first = token(0, &mut buf).to_owned();
    assert_eq!(engine.status(&first, "request").unwrap().tiers[0].value, 0);
}

fn a_shared_engine_splits_the_cap_across_its_shards() {
    let clock = ManualClock::new(Timestamp::from_unix(1_700_000_000));
    let shards = NonZeroUsize::new(16).unwrap();
    let engine = SharedEngine::new(rules(Some(100_000)), &clock, shards);
    let mut buf = String::new();
    for i in 0..1_000_000u32 {
        engine.incr(token(i, &mut buf), "request").unwrap();
    }
    // 6,250 per shard; every shard sees far more tokens than that, so each is full.
    let c = engine.counters();
    assert_eq!(c.tracked_tokens, 100_000);
    assert_eq!(c.evictions, 900_000);
}
