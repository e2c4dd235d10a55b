//! Actions off the request path: a bounded queue drained by one task that appends JSON lines
//! and posts webhooks, retrying with backoff. A full queue drops and counts.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use banhammer_core::{Action, ActionCall, Effect, Escaped};
use serde::Serialize;
use tokio::sync::mpsc;

/// Where a queued action's record goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionTarget {
    /// Append one JSON line to this file.
    File(PathBuf),
    /// POST the JSON to this URL.
    Webhook(String),
}

/// The JSON an action sends: the seed API's arguments plus when and why.
#[derive(Debug, Clone, Serialize)]
struct ActionRecord {
    action: String,
    at: i64,
    token: String,
    duration: u64,
    metric: String,
    window: u64,
    limit: u64,
    tier: usize,
    effect: &'static str,
    repeat: bool,
}

#[derive(Debug)]
struct Job {
    target: ActionTarget,
    record: ActionRecord,
}

/// What the queue did, for `/metrics`.
#[derive(Debug, Default)]
pub struct QueueCounters {
    /// Records delivered (written or posted).
    pub delivered: AtomicU64,
    /// Records dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Records given up on after every retry.
    pub failed: AtomicU64,
}

/// The sending side of the queue; cheap to share.
#[derive(Debug)]
pub struct ActionQueue {
    tx: mpsc::Sender<Job>,
    counters: Arc<QueueCounters>,
}

/// How many records may wait; past this they are dropped (and counted).
const CAPACITY: usize = 4096;
/// Attempts per webhook record, with doubling waits from 100 ms.
const ATTEMPTS: u32 = 5;

impl ActionQueue {
    /// Starts the queue's worker on the current tokio runtime.
    pub fn start() -> Arc<Self> {
        ActionQueue::with_capacity(CAPACITY)
    }

    /// [`ActionQueue::start`] with room for `capacity` waiting records.
    pub fn with_capacity(capacity: usize) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let counters = Arc::new(QueueCounters::default());
        tokio::spawn(work(rx, Arc::clone(&counters)));
        Arc::new(ActionQueue { tx, counters })
    }

    /// The counters.
    pub fn counters(&self) -> &QueueCounters {
        &self.counters
    }

    /// An action named `name` whose records go to `target`.
    pub fn action(self: &Arc<Self>, name: &str, target: ActionTarget) -> Arc<dyn Action> {
        Arc::new(QueuedAction {
            name: name.to_owned(),
            target,
            queue: Arc::clone(self),
        })
    }
}

/// An [`Action`] that queues its record and returns at once.
#[derive(Debug)]
pub struct QueuedAction {
    name: String,
    target: ActionTarget,
    queue: Arc<ActionQueue>,
}

impl Action for QueuedAction {
    fn name(&self) -> &str {
        &self.name
    }

    fn call(&self, c: &ActionCall<'_>) {
        let record = ActionRecord {
            action: self.name.clone(),
            at: c.at.as_unix(),
            token: c.token.to_owned(),
            duration: c.duration.get(),
            metric: c.metric.to_owned(),
            window: c.window.secs(),
            limit: c.limit,
            tier: c.tier,
            effect: match c.effect {
                Effect::Block => "block",
                Effect::Notify => "notify",
                Effect::Alert => "alert",
            },
            repeat: c.repeat,
        };
        let job = Job {
            target: self.target.clone(),
            record,
        };
        if self.queue.tx.try_send(job).is_err() {
            self.queue.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn work(mut rx: mpsc::Receiver<Job>, counters: Arc<QueueCounters>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build();
    while let Some(job) = rx.recv().await {
        let ok = match &job.target {
            ActionTarget::File(path) => {
                let path = path.clone();
                let mut line = serde_json::to_vec(&job.record).unwrap_or_default();
                line.push(b'\n');
                tokio::task::spawn_blocking(move || {
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)?
                        .write_all(&line)
                })
                .await
                .is_ok_and(|r| r.is_ok())
            }
            ActionTarget::Webhook(url) => match &client {
                Ok(client) => post(client, url, &job.record).await,
                Err(_) => false,
            },
        };
        let counter = if ok {
            &counters.delivered
        } else {
            &counters.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if !ok {
            tracing::warn!(action = %job.record.action, token = %Escaped(&job.record.token), "Action record not delivered.");
        }
    }
}

async fn post(client: &reqwest::Client, url: &str, record: &ActionRecord) -> bool {
    let mut wait = Duration::from_millis(100);
    for attempt in 1..=ATTEMPTS {
        match client.post(url).json(record).send().await {
            Ok(r) if r.status().is_success() => return true,
            // A client error will not fix itself: do not retry.
            Ok(r) if r.status().is_client_error() => return false,
            _ if attempt < ATTEMPTS => {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            _ => {}
        }
    }
    false
}
