//! `Runtime`: the engine plus its store and its clock, behind async calls.

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use banhammer_core::{
    Change, Clock, DecisionEvent, DecisionView, Effect, EngineCounters, Event, EventError,
    MetricStatus, Rates, Ruleset, SharedEngine, Timestamp, Token, Verdict,
};
use banhammer_store_sqlite::DecisionStore;
use tokio::sync::Notify;

use crate::writer::{DecisionWriter, PersistError};

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The event was refused (unknown metric, bad token, missing attribute…): a client fault.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The decision was made but could not be stored: an internal fault.
    #[error(transparent)]
    Persist(#[from] PersistError),
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct RuntimeCounters {
    /// Bans started.
    pub bans: AtomicU64,
    /// Bans ended.
    pub unbans: AtomicU64,
    /// Alerts started.
    pub alerts: AtomicU64,
    /// Notices started.
    pub notices: AtomicU64,
}

/// One page of `status_all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPage {
    /// `(token, metric, rates)`.
    pub items: Vec<(String, String, Rates)>,
    /// Where the next page starts, if there is one.
    pub next: Option<String>,
}

/// The engine with its store, its clock and its ticker. Cheap to share behind an `Arc`.
pub struct Runtime {
    engine: SharedEngine<Arc<dyn Clock>>,
    clock: Arc<dyn Clock>,
    writer: DecisionWriter,
    /// Wakes the ticker when a decision starts (its end may be the next deadline).
    wake: Notify,
    counters: RuntimeCounters,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// Starts a runtime over `rules` and `store`: bans that ended while nobody ran are closed
    /// (their UNBAN recorded at its own time), the others restored into the engine.
    pub fn start(
        rules: Arc<Ruleset>,
        clock: Arc<dyn Clock>,
        mut store: DecisionStore,
        shards: NonZeroUsize,
    ) -> Result<Arc<Runtime>, PersistError> {
        let engine = SharedEngine::new(Arc::clone(&rules), &clock, shards);
        let now = clock.now();
        let closed = store
            .close_expired(now)
            .map_err(|e| PersistError(e.to_string()))?;
        let active = store
            .active_bans(now)
            .map_err(|e| PersistError(e.to_string()))?;
        for b in &active {
            let restored = {
                let mut result = Ok(());
                engine.for_each_token_shard(&b.token, |e| {
                    result = e.restore_ban(&b.token, &b.rule, b.tier, b.value, b.from, b.until);
                });
                result
            };
            if let Err(e) = restored {
                tracing::warn!(token = %b.token, error = %e, "A stored ban does not fit the rules; kept on disk only.");
            }
        }
        tracing::info!(
            restored = active.len(),
            closed = closed.len(),
            "Bans read back."
        );
        Ok(Arc::new(Runtime {
            engine,
            clock,
            writer: DecisionWriter::start(store),
            wake: Notify::new(),
            counters: RuntimeCounters::default(),
        }))
    }

    /// The rules.
    pub fn rules(&self) -> &Arc<Ruleset> {
        self.engine.rules()
    }

    /// The clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// One event now; its decisions are stored before this returns.
    pub async fn observe(&self, event: &Event<'_>, rates: bool) -> Result<Verdict, RuntimeError> {
        let verdict = self.engine.observe(event, rates)?;
        self.settle(&verdict.decisions).await?;
        Ok(verdict)
    }

    /// The seed API's `now(token, metric, tier)`.
    pub async fn fire(
        &self,
        token: &str,
        metric: &str,
        tier: usize,
    ) -> Result<Verdict, RuntimeError> {
        let verdict = self.engine.fire(token, metric, tier)?;
        self.settle(&verdict.decisions).await?;
        Ok(verdict)
    }

    /// Ends `token`'s ban now; the UNBAN is stored before this returns.
    pub async fn unban(&self, token: &str) -> Result<Option<DecisionEvent>, RuntimeError> {
        let end = self.engine.unban(token);
        if let Some(e) = &end {
            self.settle(std::slice::from_ref(e)).await?;
        }
        Ok(end)
    }

    /// Stores decisions and counts them; wakes the ticker for new ends.
    async fn settle(&self, decisions: &[DecisionEvent]) -> Result<(), PersistError> {
        if decisions.is_empty() {
            return Ok(());
        }
        for d in decisions {
            let counter = match (d.effect, d.change) {
                (Effect::Block, Change::Start) => &self.counters.bans,
                (Effect::Block, Change::End) => &self.counters.unbans,
                (Effect::Alert, Change::Start) => &self.counters.alerts,
                (Effect::Notify, Change::Start) => &self.counters.notices,
                _ => continue,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if d.is_record() {
                tracing::info!(token = %d.token, rule = %d.metric, tier = d.tier, value = d.value, until = %d.until, "{}.", d.verb());
            }
        }
        if decisions.iter().any(|d| d.change == Change::Start) {
            self.wake.notify_one();
        }
        self.writer.write(decisions.to_vec()).await
    }

    /// `status(token, metric)`.
    pub fn status(&self, token: &str, metric: &str) -> Result<MetricStatus, EventError> {
        self.engine.status(token, metric)
    }

    /// A page of `status_all`, at most `limit` items from `cursor` (`None` for the start).
    pub fn status_page(&self, cursor: Option<&str>, limit: usize) -> StatusPage {
        // A cursor is `shard.offset`: shards are visited in order, tokens in each in LRU order.
        let (mut shard, mut offset) = cursor
            .and_then(|c| c.split_once('.'))
            .and_then(|(s, o)| Some((s.parse::<usize>().ok()?, o.parse::<usize>().ok()?)))
            .unwrap_or((0, 0));
        let mut items = Vec::new();
        let mut index = 0usize;
        let mut next = None;
        self.engine.for_each_shard(|e| {
            if index < shard || next.is_some() {
                index += 1;
                return;
            }
            for (taken, (token, metric, rates)) in e.status_all().skip(offset).enumerate() {
                if items.len() == limit {
                    next = Some(format!("{index}.{}", offset + taken));
                    break;
                }
                items.push((token.to_owned(), metric.to_owned(), rates));
            }
            index += 1;
            shard = index;
            offset = 0;
        });
        StatusPage { items, next }
    }

    /// Every active ban, oldest first.
    pub fn bans(&self) -> Vec<(Token, DecisionView)> {
        let mut all = Vec::new();
        self.engine.for_each_shard(|e| {
            all.extend(
                e.decisions()
                    .filter(|(_, d)| d.effect == Effect::Block)
                    .map(|(t, d)| (t.clone(), d)),
            );
        });
        all.sort_by(|a, b| (a.1.from, &a.0).cmp(&(b.1.from, &b.0)));
        all
    }

    /// `token`'s active ban.
    pub fn ban(&self, token: &str) -> Option<DecisionView> {
        let mut found = None;
        self.engine
            .for_each_token_shard(token, |e| found = e.ban(token));
        found
    }

    /// The engine's counters.
    pub fn engine_counters(&self) -> EngineCounters {
        self.engine.counters()
    }

    /// The decision counters.
    pub fn counters(&self) -> &RuntimeCounters {
        &self.counters
    }

    /// Ends decisions when their time comes, until `shutdown`: sleeps until the next deadline
    /// (at most a second, so a clock that jumps is followed), or until a new decision starts.
    pub async fn run_ticker(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let now = self.clock.now();
            let ends = self.engine.advance(now);
            if let Err(e) = self.settle(&ends).await {
                tracing::error!(error = %e, "Ends not stored.");
            }
            let wait = self
                .engine
                .next_deadline()
                .map_or(Duration::from_secs(1), |d| {
                    Duration::from_secs(d.since(now).get().clamp(0, 1))
                })
                .max(Duration::from_millis(50));
            tokio::select! {
                () = &mut shutdown => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Commits what is queued and stops the store's writer.
    pub fn close(&self) {
        self.writer.close();
    }
}
