//! `DecisionWriter`: one thread owning the SQLite store; callers await their decisions' commit,
//! and decisions that could not be committed are kept and written once the store takes them.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use banhammer_core::{DecisionEvent, Timestamp, Token, WindowsSnapshot};
use banhammer_store_sqlite::{DecisionStore, StoredDecision};
use tokio::sync::oneshot;

/// The store could not take a decision (yet: the writer keeps it and tries again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the decision store failed: {0}")]
pub struct PersistError(pub String);

/// How often decisions that could not be committed are tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The most decisions kept while the store refuses them (about 150 bytes each); past that the
/// oldest are dropped, counted and logged, so a store that never recovers cannot exhaust memory.
pub const MAX_PENDING: usize = 100_000;

enum Job {
    Write(
        Vec<DecisionEvent>,
        oneshot::Sender<Result<(), PersistError>>,
    ),
    /// The bans active at a time, as the log holds them.
    ActiveBans(Timestamp, oneshot::Sender<Vec<StoredDecision>>),
    /// The latest decisions of the log (of one token, or all), oldest first.
    History(Option<String>, usize, oneshot::Sender<Vec<StoredDecision>>),
    /// Windows to save, and the second at or before which saved ones can go.
    Windows(Vec<WindowsSnapshot>, Timestamp, Option<oneshot::Sender<()>>),
    Stop,
}

/// What the writer's store is going through, for answers and `/metrics`.
#[derive(Debug, Default)]
pub struct WriterHealth {
    /// The last commit failed: some decisions are not on disk yet.
    failing: AtomicBool,
    /// Decisions waiting to be committed.
    pending: AtomicUsize,
    /// Commits that failed.
    failures: AtomicU64,
    /// Decisions dropped because too many were waiting ([`MAX_PENDING`]).
    lost: AtomicU64,
    /// Tokens with a decision not on disk yet (only read while `failing`).
    pending_tokens: Mutex<HashSet<Token>>,
    /// Windows saved, and saves the store refused (their windows are saved again when their
    /// tokens next change).
    windows_saved: AtomicU64,
    windows_failed: AtomicU64,
}

impl WriterHealth {
    /// Whether some decisions are not on disk yet.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// How many decisions wait to be committed.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Commits that failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Decisions dropped because too many were waiting.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Windows saved so far, and saves that failed.
    pub fn windows(&self) -> (u64, u64) {
        (
            self.windows_saved.load(Ordering::Relaxed),
            self.windows_failed.load(Ordering::Relaxed),
        )
    }

    /// Whether `token` has a decision that is not on disk yet.
    pub fn holds_pending(&self, token: &str) -> bool {
        self.failing()
            && self
                .pending_tokens
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(token)
    }

    fn committed(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!(
                "The decision store takes writes again; every waiting decision is stored."
            );
        }
        self.pending.store(0, Ordering::Relaxed);
        self.pending_tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn refused(&self, pending: &[DecisionEvent], error: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::error!(
                error,
                pending = pending.len(),
                "The decision store refuses writes; decisions are kept and retried every second."
            );
        }
        self.pending.store(pending.len(), Ordering::Relaxed);
        let mut tokens = self
            .pending_tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        tokens.clear();
        tokens.extend(pending.iter().map(|d| d.token.clone()));
    }
}

/// Writes decisions from many tasks through one SQLite connection on its own thread
/// (SQLite calls block; they must not run on the async workers). Everything waiting when a
/// transaction starts goes into it: concurrent bans share one commit (group commit). A commit
/// that fails (a full disk) keeps its decisions, in order, and they go first into the next
/// attempt, every second until the store takes them.
#[derive(Debug)]
pub struct DecisionWriter {
    tx: mpsc::Sender<Job>,
    thread: Mutex<Option<JoinHandle<()>>>,
    health: Arc<WriterHealth>,
}

impl DecisionWriter {
    /// Starts the writer thread on `store`.
    pub fn start(mut store: DecisionStore) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let health = Arc::new(WriterHealth::default());
        let h = Arc::clone(&health);
        let thread = std::thread::Builder::new()
            .name("banhammer-writer".to_owned())
            .spawn(move || {
                let mut pending: Vec<DecisionEvent> = Vec::new();
                loop {
                    let first = if pending.is_empty() {
                        rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
                    } else {
                        rx.recv_timeout(RETRY_EVERY)
                    };
                    let mut acks = Vec::new();
                    let mut stop = false;
                    match first {
                        Ok(job) => {
                            for job in std::iter::once(job).chain(rx.try_iter()) {
                                match job {
                                    Job::Write(d, ack) => {
                                        pending.extend(d);
                                        acks.push(ack);
                                    }
                                    Job::ActiveBans(now, answer) => {
                                        let bans = store.active_bans(now).unwrap_or_else(|e| {
                                            tracing::warn!(error = %e, "Active bans not read.");
                                            Vec::new()
                                        });
                                        let _ = answer.send(bans);
                                    }
                                    Job::History(token, limit, answer) => {
                                        let rows = store
                                            .history(token.as_deref(), limit)
                                            .unwrap_or_else(|e| {
                                                tracing::warn!(error = %e, "Decision log not read.");
                                                Vec::new()
                                            });
                                        let _ = answer.send(rows);
                                    }
                                    Job::Windows(w, forget, done) => {
                                        save_windows(&mut store, &h, &w, forget);
                                        if let Some(done) = done {
                                            let _ = done.send(());
                                        }
                                    }
                                    Job::Stop => stop = true,
                                }
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => stop = true,
                    }
                    let result = if pending.is_empty() {
                        Ok(())
                    } else {
                        store.record(&pending).map_err(|e| PersistError(e.to_string()))
                    };
                    match &result {
                        Ok(()) => {
                            pending.clear();
                            h.committed();
                        }
                        Err(e) => {
                            if pending.len() > MAX_PENDING {
                                let drop = pending.len() - MAX_PENDING;
                                pending.drain(..drop);
                                h.lost.fetch_add(drop as u64, Ordering::Relaxed);
                                tracing::error!(dropped = drop, "Too many decisions wait for the store; the oldest are dropped.");
                            }
                            h.refused(&pending, &e.0);
                        }
                    }
                    for ack in acks {
                        let _ = ack.send(result.clone());
                    }
                    if stop {
                        if !pending.is_empty() {
                            tracing::error!(
                                lost = pending.len(),
                                "Stopping with decisions the store never took."
                            );
                        }
                        break;
                    }
                }
            })
            .expect("the writer thread starts");
        DecisionWriter {
            tx,
            thread: Mutex::new(Some(thread)),
            health,
        }
    }

    /// Stores `decisions`; returns once they are committed (on disk, with full sync). On an
    /// error they are not lost: the writer keeps them and commits them when it can.
    pub async fn write(&self, decisions: Vec<DecisionEvent>) -> Result<(), PersistError> {
        if decisions.is_empty() {
            return Ok(());
        }
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Job::Write(decisions, ack))
            .map_err(|_| PersistError("the writer has stopped".to_owned()))?;
        done.await
            .map_err(|_| PersistError("the writer has stopped".to_owned()))?
    }

    /// Saves `windows` (not waiting for it) and drops saved windows at or before `forget`.
    pub fn save_windows(&self, windows: Vec<WindowsSnapshot>, forget: Timestamp) {
        let _ = self.tx.send(Job::Windows(windows, forget, None));
    }

    /// [`DecisionWriter::save_windows`], returning once they are saved (or refused).
    pub async fn save_windows_now(&self, windows: Vec<WindowsSnapshot>, forget: Timestamp) {
        let (done, saved) = oneshot::channel();
        if self
            .tx
            .send(Job::Windows(windows, forget, Some(done)))
            .is_ok()
        {
            let _ = saved.await;
        }
    }

    /// The bans the log holds active at `now` (decisions not committed yet are not among
    /// them).
    pub async fn active_bans(&self, now: Timestamp) -> Vec<StoredDecision> {
        let (answer, bans) = oneshot::channel();
        if self.tx.send(Job::ActiveBans(now, answer)).is_err() {
            return Vec::new();
        }
        bans.await.unwrap_or_default()
    }

    /// The latest `limit` decisions the log holds (of `token`, or all), oldest first;
    /// decisions not committed yet are not among them.
    pub async fn history(&self, token: Option<String>, limit: usize) -> Vec<StoredDecision> {
        let (answer, rows) = oneshot::channel();
        if self.tx.send(Job::History(token, limit, answer)).is_err() {
            return Vec::new();
        }
        rows.await.unwrap_or_default()
    }

    /// The store's health as the writer sees it.
    pub fn health(&self) -> &WriterHealth {
        &self.health
    }

    /// Commits what is queued and stops the thread. Later writes fail.
    pub fn close(&self) {
        let _ = self.tx.send(Job::Stop);
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

fn save_windows(
    store: &mut DecisionStore,
    health: &WriterHealth,
    windows: &[WindowsSnapshot],
    forget: Timestamp,
) {
    match store.save_windows(windows, forget) {
        Ok(()) => {
            health
                .windows_saved
                .fetch_add(windows.len() as u64, Ordering::Relaxed);
        }
        Err(e) => {
            let n = health.windows_failed.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() || n == 0 {
                tracing::warn!(error = %e, windows = windows.len(), "Windows not saved; a restart would forget these counts.");
            }
        }
    }
}

impl Drop for DecisionWriter {
    fn drop(&mut self) {
        self.close();
    }
}
