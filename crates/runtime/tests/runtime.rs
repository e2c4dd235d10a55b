//! The runtime through its entry point: the guard owns the background tasks, the ticker ends
//! decisions on time, and events of known-banned tokens count in the background within a
//! bound (against a real, paused redis-server).

use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use banhammer_core::{Clock, Event, ManualClock, Ruleset, Seconds, Timestamp};
use banhammer_runtime::{MemoryBackend, RedisBackend, Runtime};
use banhammer_store_sqlite::DecisionStore;
use banhammer_testkit::rules::{block, metric, ruleset};
use banhammer_testkit::wait::until_async;
use banhammer_testkit::RedisServer;

const T0: i64 = 1_700_000_000;

/// One rule: 3 `login_failed` in 60 s ban for 10 minutes.
fn rules() -> Arc<Ruleset> {
    ruleset([metric("login_failed", [block(3, 60, 600)])])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_owns_the_ticker_which_ends_bans_on_time_and_stops_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = DecisionStore::open(&dir.path().join("d.sqlite")).unwrap();
    let clock = ManualClock::new(Timestamp::from_unix(T0));
    let clock_dyn: Arc<dyn Clock> = Arc::new(clock.clone());
    let backend = MemoryBackend::new(rules(), Arc::clone(&clock_dyn), NonZeroUsize::MIN);
    let guard = Runtime::start(rules(), clock_dyn, store, Box::new(backend)).unwrap();
    let rt = Arc::clone(guard.runtime());
    let v = rt.fire("203.0.113.9", "login_failed", 0).await.unwrap();
    assert!(!v.passed);
    // No request comes: the ticker alone ends the ban once its time has come.
    clock.advance(Seconds::new(600));
    until_async("the UNBAN", || {
        rt.counters().unbans.load(Ordering::Relaxed) == 1
    })
    .await;
    // The ticker holds the runtime while it runs; dropping the guard stops it.
    assert!(Arc::strong_count(&rt) > 2);
    drop(guard);
    until_async("the ticker's end", || Arc::strong_count(&rt) == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_a_banned_token_count_in_the_background_within_a_bound() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = DecisionStore::open(&dir.path().join("d.sqlite")).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Timestamp::from_unix(T0)));
    let backend = RedisBackend::connect(
        &redis.url().parse().unwrap(),
        rules(),
        Arc::clone(&clock),
        Duration::from_secs(3),
    )
    .await
    .unwrap();
    let guard = Runtime::start(rules(), clock, store, Box::new(backend)).unwrap();
    let rt = guard.runtime();
    assert!(!rt.fire("a", "login_failed", 0).await.unwrap().passed);
    // Redis stops answering: each background count now waits for its timeout.
    redis.cli(&["CLIENT", "PAUSE", "20000", "ALL"]);
    let event = Event::new("a", "login_failed", Timestamp::from_unix(T0));
    for _ in 0..300 {
        // Answered at once from this node's ban cache.
        assert!(!rt.observe(&event, false).await.unwrap().passed);
    }
    // 256 wait in the background; the rest were answered without being counted.
    assert_eq!(rt.counters().background_dropped.load(Ordering::Relaxed), 44);
    drop(guard);
}
