//! `DecisionWriter`: one thread owning the SQLite store; callers await their decisions' commit.

use std::sync::mpsc;
use std::sync::Mutex;
use std::thread::JoinHandle;

use banhammer_core::DecisionEvent;
use banhammer_store_sqlite::DecisionStore;
use tokio::sync::oneshot;

/// The store could not take a decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the decision store failed: {0}")]
pub struct PersistError(pub String);

enum Job {
    Write(
        Vec<DecisionEvent>,
        oneshot::Sender<Result<(), PersistError>>,
    ),
    Stop,
}

/// Writes decisions from many tasks through one SQLite connection on its own thread
/// (SQLite calls block; they must not run on the async workers). Everything waiting when a
/// transaction starts goes into it: concurrent bans share one commit (group commit).
#[derive(Debug)]
pub struct DecisionWriter {
    tx: mpsc::Sender<Job>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl DecisionWriter {
    /// Starts the writer thread on `store`.
    pub fn start(mut store: DecisionStore) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("banhammer-writer".to_owned())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = Vec::new();
                    let mut acks = Vec::new();
                    let mut stop = false;
                    for job in std::iter::once(first).chain(rx.try_iter()) {
                        match job {
                            Job::Write(d, ack) => {
                                batch.extend(d);
                                acks.push(ack);
                            }
                            Job::Stop => stop = true,
                        }
                    }
                    let result = store.record(&batch).map_err(|e| PersistError(e.to_string()));
                    if let Err(e) = &result {
                        tracing::error!(error = %e, decisions = batch.len(), "Decisions not stored.");
                    }
                    for ack in acks {
                        let _ = ack.send(result.clone());
                    }
                    if stop {
                        break;
                    }
                }
            })
            .expect("the writer thread starts");
        DecisionWriter {
            tx,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Stores `decisions`; returns once they are committed (on disk, with full sync).
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

    /// Commits what is queued and stops the thread. Later writes fail.
    pub fn close(&self) {
        let _ = self.tx.send(Job::Stop);
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

impl Drop for DecisionWriter {
    fn drop(&mut self) {
        self.close();
    }
}
