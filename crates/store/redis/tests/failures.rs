//! Failures: a Redis that cannot be reached is an outage (`Unavailable`: the fail policy
//! answers, the circuit breaker counts it); a Redis that answers what the store cannot use is
//! a protocol error (`Protocol`: neither).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use banhammer_core::{DecisionView, Effect, Event, Ruleset, Timestamp};
use banhammer_store_redis::{RedisStore, StoreError, StoreUrl};
use banhammer_testkit::rules::{block, metric, ruleset};
use banhammer_testkit::RedisServer;

/// One metric `m` that bans for 600 s at 2 events in 60 s.
fn rules() -> Arc<Ruleset> {
    ruleset([metric("m", [block(2, 60, 600)])])
}

async fn connect(server: &RedisServer, timeout: Duration) -> RedisStore {
    let url: StoreUrl = server.url().parse().unwrap();
    RedisStore::connect(&url, rules(), timeout).await.unwrap()
}

#[tokio::test]
async fn a_script_fault_is_a_protocol_error_and_leaves_the_breaker_closed() {
    let server = RedisServer::start();
    let store = connect(&server, Duration::from_secs(2)).await;
    store.flush().await.unwrap();
    // A key of the wrong type where the token's ban belongs: the script fails with WRONGTYPE.
    server.cli(&["SET", "bh:{y}:ban", "x"]);
    let now = Timestamp::from_unix(1_000);
    for _ in 0..5 {
        match store.observe(&Event::new("y", "m", now), now, false).await {
            Err(StoreError::Protocol(why)) => assert!(why.contains("WRONGTYPE"), "{why}"),
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }
    let health = store.connection().health();
    assert_eq!(health.protocol_errors.load(Ordering::Relaxed), 5);
    assert_eq!(health.short_circuited.load(Ordering::Relaxed), 0);
    assert!(
        health.up.load(Ordering::Relaxed),
        "Redis answered: it is up"
    );
    // Other tokens are decided as ever: the breaker never opened.
    let v = store
        .observe(&Event::new("z", "m", now), now, false)
        .await
        .unwrap();
    assert!(v.passed);
}

#[tokio::test]
async fn one_unreadable_decision_does_not_hold_up_the_other_ends() {
    let server = RedisServer::start();
    let store = connect(&server, Duration::from_secs(2)).await;
    store.flush().await.unwrap();
    let now = Timestamp::from_unix(1_000);
    for _ in 0..2 {
        store
            .observe(&Event::new("w", "m", now), now, false)
            .await
            .unwrap();
    }
    // An entry due first whose decision is a key of the wrong type.
    server.cli(&["SET", "bh:{z}:ban", "x"]);
    server.cli(&[
        "ZADD",
        "bh:{deadlines}",
        "5",
        "00000000000000000000|0|z|m|0",
    ]);
    let ends = store.sweep(Timestamp::from_unix(1_600)).await.unwrap();
    let ends: Vec<String> = ends.iter().map(ToString::to_string).collect();
    assert_eq!(ends, ["1600,UNBAN,w"]);
    let health = store.connection().health();
    assert_eq!(health.protocol_errors.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_redis_that_is_gone_is_unavailable_and_opens_the_breaker() {
    let mut server = RedisServer::start();
    let store = connect(&server, Duration::from_millis(300)).await;
    server.kill();
    let now = Timestamp::from_unix(1_000);
    for _ in 0..3 {
        let e = store
            .observe(&Event::new("y", "m", now), now, false)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    }
    let e = store
        .observe(&Event::new("y", "m", now), now, false)
        .await
        .unwrap_err();
    assert_eq!(e, StoreError::Unavailable("circuit open".into()));
    let health = store.connection().health();
    assert!(!health.up.load(Ordering::Relaxed));
    assert_eq!(health.protocol_errors.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_store_that_lost_its_state_is_seen_once_by_every_node_and_gets_its_bans_back() {
    let server = RedisServer::start();
    let a = connect(&server, Duration::from_secs(2)).await;
    let b = connect(&server, Duration::from_secs(2)).await;
    // The first look at an empty store: lost (nothing in it); then not again.
    assert!(a.lost_state().await.unwrap());
    assert!(!a.lost_state().await.unwrap());
    assert!(!b.lost_state().await.unwrap(), "b meets a's epoch");
    // Flushed (as a restart without persistence leaves it): each node sees it once.
    server.cli(&["FLUSHALL"]);
    assert!(b.lost_state().await.unwrap());
    assert!(a.lost_state().await.unwrap());
    assert!(!a.lost_state().await.unwrap() && !b.lost_state().await.unwrap());
    // A ban put back is a ban again, ended by the sweep at its end; a token banned already
    // is left as it is.
    let t = Timestamp::from_unix;
    let ban = |metric: &str, until: i64| DecisionView {
        effect: Effect::Block,
        metric: metric.into(),
        tier: 0,
        value: 2,
        from: t(900),
        until: t(until),
        reason: None,
    };
    let back = a
        .restore_ban("203.0.113.9", &ban("m", 1_600), t(1_000))
        .await
        .unwrap()
        .expect("put back");
    assert_eq!(back.to_string(), "1000,BAN,203.0.113.9");
    assert_eq!((back.from, back.until, back.value), (t(900), t(1_600), 2));
    assert_eq!(b.ban_until("203.0.113.9").await.unwrap(), Some(t(1_600)));
    let again = b
        .restore_ban("203.0.113.9", &ban("m", 1_700), t(1_000))
        .await
        .unwrap();
    assert_eq!(again, None);
    let ends = b.sweep(t(1_600)).await.unwrap();
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].to_string(), "1600,UNBAN,203.0.113.9");
    // What the store would refuse anyway is refused here too.
    assert!(a
        .restore_ban("x", &ban("nope", 2_000), t(1_000))
        .await
        .is_err());
}
