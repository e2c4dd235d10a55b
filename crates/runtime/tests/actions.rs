//! Actions off the request path, against a real webhook receiver on 127.0.0.1 and a real
//! file: retries with backoff, a bounded queue that drops and counts, JSON lines appended.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use banhammer_core::{Engine, EventError, ManualClock, Timestamp, Verdict};
use banhammer_runtime::{ActionQueue, ActionTarget};
use banhammer_testkit::rules::{metric, notify, ruleset, ThresholdExt};
use banhammer_testkit::wait::until_async;
use serde_json::Value;

#[derive(Clone, Default)]
struct Receiver {
    calls: Arc<AtomicUsize>,
    fail_first: usize,
    hang: bool,
    got: Arc<Mutex<Vec<Value>>>,
}

async fn hook(State(r): State<Receiver>, Json(body): Json<Value>) -> StatusCode {
    let n = r.calls.fetch_add(1, Ordering::SeqCst);
    if r.hang {
        // The behaviour under test: a receiver that never answers holds the queue's worker,
        // so that the queue fills. Not a wait for something to happen.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if n < r.fail_first {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    r.got.lock().unwrap().push(body);
    StatusCode::NO_CONTENT
}

async fn receiver(r: Receiver) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new().route("/hook", post(hook)).with_state(r);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// An engine whose one rule (2 events in 60 s) notifies through `action`.
fn engine(action: Arc<dyn banhammer_core::Action>) -> Engine<ManualClock> {
    let rules = ruleset([metric(
        "login_failed",
        [notify(2, 60, 600).with_action(action)],
    )]);
    Engine::new(rules, ManualClock::new(Timestamp::from_unix(1_700_000_000)))
}

/// One event now, then its actions, as the runtime runs them.
fn incr(e: &mut Engine<ManualClock>, token: &str, metric: &str) -> Result<Verdict, EventError> {
    let v = e.incr(token, metric)?;
    e.rules().run_actions(&v.actions);
    Ok(v)
}

#[tokio::test]
async fn report_central_posts_the_decision_and_retries_until_it_is_taken() {
    let r = Receiver {
        fail_first: 2,
        ..Receiver::default()
    };
    let url = receiver(r.clone()).await;
    let queue = ActionQueue::start();
    let mut e = engine(queue.action("report_central", ActionTarget::Webhook(url)));
    incr(&mut e, "203.0.113.9", "login_failed").unwrap();
    let v = incr(&mut e, "203.0.113.9", "login_failed").unwrap();
    assert!(v.passed, "the call returned at once; the post is queued");
    until_async("the post", || !r.got.lock().unwrap().is_empty()).await;
    let body = r.got.lock().unwrap()[0].clone();
    assert_eq!(body["action"], "report_central");
    assert_eq!(body["token"], "203.0.113.9");
    assert_eq!(body["metric"], "login_failed");
    assert_eq!(body["duration"], 600);
    assert_eq!(body["window"], 60);
    assert_eq!(body["limit"], 2);
    assert_eq!(
        r.calls.load(Ordering::SeqCst),
        3,
        "two refusals, then taken"
    );
    assert_eq!(queue.counters().delivered.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let r = Receiver {
        hang: true,
        ..Receiver::default()
    };
    let url = receiver(r.clone()).await;
    let queue = ActionQueue::with_capacity(1);
    let mut e = engine(queue.action("report_central", ActionTarget::Webhook(url)));
    incr(&mut e, "a", "login_failed").unwrap();
    incr(&mut e, "a", "login_failed").unwrap();
    // The worker takes the first record and hangs on its post.
    until_async("the first post", || r.calls.load(Ordering::SeqCst) == 1).await;
    for token in ["b", "c", "d"] {
        incr(&mut e, token, "login_failed").unwrap();
        incr(&mut e, token, "login_failed").unwrap();
    }
    // One more waits in the queue; the other two are dropped, and the calls did not wait.
    assert_eq!(queue.counters().dropped.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn record_local_appends_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("record.jsonl");
    let queue = ActionQueue::start();
    let mut e = engine(queue.action("record_local", ActionTarget::File(path.clone())));
    for token in ["a", "b"] {
        incr(&mut e, token, "login_failed").unwrap();
        incr(&mut e, token, "login_failed").unwrap();
    }
    until_async("two lines", || {
        std::fs::read_to_string(&path).is_ok_and(|t| t.lines().count() == 2)
    })
    .await;
    let text = std::fs::read_to_string(&path).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["token"], "a");
    assert_eq!(first["effect"], "notify");
}
