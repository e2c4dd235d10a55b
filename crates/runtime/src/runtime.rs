//! `Runtime`: a backend (the engine's state, in memory or shared in Redis) with its decision
//! log, its clock and its background work, behind async calls.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use banhammer_core::{
    Change, Clock, DecisionEvent, DecisionView, Effect, EngineCounters, Escaped, Event, EventError,
    MetricStatus, Ruleset, Seconds, Timestamp, Token, TokenLoad, Verdict,
};
use banhammer_store_sqlite::DecisionStore;
use banhammer_store_sqlite::StoredDecision;
use tokio::sync::{broadcast, watch, Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::backend::{Backend, BackendError, StatusPage, StoreHealth};
use crate::feed::{MetricCounts, MetricRate, DECISION_FEED_CAPACITY};
use crate::writer::{DecisionWriter, PersistError, WriterHealth};

/// How many events of known-banned tokens may be counting in the background at once; past
/// that they are answered but not counted (their token is banned already).
const BACKGROUND_COUNTS: usize = 256;

/// How often the windows that changed are saved: a process killed without warning forgets
/// at most the counts of this long (a clean stop saves them all).
pub const SAVE_WINDOWS_EVERY: Seconds = Seconds::new(2);

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
    /// The shared store could not answer (and the call has no fail policy to fall back on).
    #[error("{0}")]
    Store(String),
    /// The shared store answered what this node cannot understand: an internal fault.
    #[error("{0}")]
    Protocol(String),
    /// Not available with this store.
    #[error("{0}")]
    Unsupported(String),
}

impl From<BackendError> for RuntimeError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Event(e) => RuntimeError::Event(e),
            BackendError::Unavailable(why) => RuntimeError::Store(why),
            BackendError::Unsupported(why) => RuntimeError::Unsupported(why),
            BackendError::Protocol(why) => RuntimeError::Protocol(why),
        }
    }
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
    /// Events answered by a rule's fail policy: the shared store was unavailable, or the
    /// decision log could not store a decision yet.
    pub fail_policy_answers: AtomicU64,
    /// Actions that panicked (caught; the decision stands).
    pub action_panics: AtomicU64,
    /// Events of known-banned tokens answered but not counted: too many were counting already.
    pub background_dropped: AtomicU64,
    /// Ban changes a firewall refused or could not be given (a command's failure, a refused
    /// nftables transaction): kept by the enforcement the front end attaches.
    pub firewall_failures: AtomicU64,
}

/// Told of every decision once the decision log has it, on the task that made it: it must
/// not block (hand the work to a thread of its own).
pub type CommittedListener = Box<dyn Fn(&[DecisionEvent]) + Send + Sync>;

/// The backend with its decision log, its clock and its counters. Share it in an `Arc`; its
/// background work belongs to the [`RuntimeGuard`] that [`Runtime::start`] returns.
pub struct Runtime {
    backend: Box<dyn Backend>,
    rules: Arc<Ruleset>,
    clock: Arc<dyn Clock>,
    writer: DecisionWriter,
    /// Wakes the ticker when a decision starts (its end may be the next deadline).
    wake: Notify,
    /// Shared with the runtime a reload replaces this one with, so `/metrics` counters go on.
    counters: Arc<RuntimeCounters>,
    /// Bounds the events of known-banned tokens counting in the background.
    background: Arc<Semaphore>,
    /// Told of each decision once it is committed (the firewall enforcement of `serve`).
    committed: OnceLock<CommittedListener>,
    /// Events per metric, sampled every second (live consoles' rates).
    metric_counts: MetricCounts,
    /// Decisions once stored, for live consoles; sent only while someone subscribes.
    feed: broadcast::Sender<DecisionEvent>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

/// Owns a running [`Runtime`]'s background tasks (the ticker that ends decisions on time,
/// the backend's own work such as listening to other nodes' bans): dropping it stops them
/// (mini-redis's `DbDropGuard`); [`RuntimeGuard::shutdown`] also waits and commits.
#[derive(Debug)]
pub struct RuntimeGuard {
    runtime: Arc<Runtime>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RuntimeGuard {
    /// The runtime, for the front ends.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Stops the background tasks, waits for them, saves the windows that changed since the
    /// last save, and commits what the writer holds.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
        Arc::clone(&self.runtime).save_windows(true).await;
        self.runtime.writer.close();
    }
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Runtime {
    /// Starts a runtime on `backend` for `rules`, logging decisions in `store`: bans that
    /// ended while nobody ran are closed in the log (their UNBAN recorded at its own time),
    /// the others restored into the backend. Spawns its background tasks on the current
    /// tokio runtime; they live as long as the returned guard.
    pub fn start(
        rules: Arc<Ruleset>,
        clock: Arc<dyn Clock>,
        store: DecisionStore,
        backend: Box<dyn Backend>,
    ) -> Result<RuntimeGuard, PersistError> {
        Self::start_counting(rules, clock, store, backend, Arc::default())
    }

    /// [`Runtime::start`] adding to `counters` (those of the runtime it replaces, on a
    /// configuration reload, so that `/metrics` counters do not go back to zero).
    pub fn start_counting(
        rules: Arc<Ruleset>,
        clock: Arc<dyn Clock>,
        mut store: DecisionStore,
        backend: Box<dyn Backend>,
        counters: Arc<RuntimeCounters>,
    ) -> Result<RuntimeGuard, PersistError> {
        // Repeat offenders first: a restored ban keeps the offences before it.
        if let Some(memory) = rules.offence_memory() {
            let starts = store
                .ban_starts(clock.now().minus(memory))
                .map_err(|e| PersistError(e.to_string()))?;
            for (token, at) in &starts {
                backend.restore_offence(token, *at);
            }
        }
        let back = store
            .read_back(clock.now())
            .map_err(|e| PersistError(e.to_string()))?;
        let restored = back.restore(|ban| backend.restore_ban(ban));
        tracing::info!(restored, closed = back.ended.len(), "Bans read back.");
        // Counts too: a crash or a deploy must not give anyone a fresh start.
        let forget = clock.now().minus(rules.horizon());
        let windows = store
            .load_windows(forget)
            .map_err(|e| PersistError(e.to_string()))?;
        let mut put_back = 0usize;
        for w in &windows {
            match backend.restore_windows(w) {
                Ok(()) => put_back += 1,
                Err(e) => {
                    tracing::debug!(metric = %Escaped(&w.metric), error = %Escaped(&e), "A saved window does not fit the rules; skipped.");
                }
            }
        }
        backend.track_windows();
        tracing::info!(windows = put_back, "Counts read back.");
        let background = backend.background();
        let runtime = Arc::new(Runtime {
            backend,
            metric_counts: MetricCounts::new(&rules),
            feed: broadcast::channel(DECISION_FEED_CAPACITY).0,
            rules,
            clock,
            writer: DecisionWriter::start(store),
            wake: Notify::new(),
            counters,
            background: Arc::new(Semaphore::new(BACKGROUND_COUNTS)),
            committed: OnceLock::new(),
        });
        let (stop, stopped) = watch::channel(false);
        let mut tasks = vec![
            tokio::spawn(Arc::clone(&runtime).run_ticker(wait_for(stopped.clone()))),
            tokio::spawn(Arc::clone(&runtime).sample_rates(wait_for(stopped.clone()))),
        ];
        if let Some(work) = background {
            let mut stopped = stopped;
            tasks.push(tokio::spawn(async move {
                tokio::select! {
                    () = work => {}
                    _ = stopped.wait_for(|s| *s) => {}
                }
            }));
        }
        Ok(RuntimeGuard {
            runtime,
            stop,
            tasks,
        })
    }

    /// Tells `listener` of every decision from now on, once the decision log has it (stored,
    /// or held until its disk takes it). One listener per runtime: a second one is refused.
    pub fn on_committed(&self, listener: CommittedListener) -> Result<(), CommittedListener> {
        self.committed.set(listener)
    }

    /// The rules.
    pub fn rules(&self) -> &Arc<Ruleset> {
        &self.rules
    }

    /// The clock's time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// One event now; its decisions are stored before this returns.
    pub async fn observe(
        self: &Arc<Self>,
        event: &Event<'_>,
        rates: bool,
    ) -> Result<Verdict, RuntimeError> {
        if let Some(id) = self.rules.metric_id(event.metric) {
            self.metric_counts.count(id);
        }
        if !rates && self.backend.known_banned(event.token) {
            // Known banned: answer at once; the event still counts, in the background.
            self.count_in_background(event);
            return Ok(Verdict {
                passed: false,
                rates: None,
                decisions: Vec::new(),
                actions: Vec::new(),
            });
        }
        match self.backend.observe(event, rates).await {
            Ok(verdict) => {
                self.run_actions(&verdict);
                if let Err(e) = self.settle(&verdict.decisions).await {
                    // Not on disk: not reported as made. The writer keeps it and stores it
                    // once the disk takes it; meanwhile the rule's fail policy answers.
                    tracing::debug!(error = %Escaped(&e), "Decision not stored yet; answering by fail policy.");
                    return Ok(self.by_fail_policy(verdict, event.metric));
                }
                if !verdict.passed && self.writer.health().holds_pending(event.token) {
                    // Refused by a ban that is not on disk yet.
                    return Ok(self.by_fail_policy(verdict, event.metric));
                }
                Ok(verdict)
            }
            Err(BackendError::Unavailable(why)) => {
                // The rule's fail policy answers; bans known here still hold.
                tracing::debug!(error = %Escaped(&why), "Answering by fail policy.");
                self.counters
                    .fail_policy_answers
                    .fetch_add(1, Ordering::Relaxed);
                let passed = !self.backend.known_banned(event.token)
                    && passes_when_unavailable(&self.rules, event.metric);
                Ok(Verdict {
                    passed,
                    rates: None,
                    decisions: Vec::new(),
                    actions: Vec::new(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The answer while the verdict's decisions are not on disk: passes unless the metric's
    /// rules fail closed; no decision is reported.
    fn by_fail_policy(&self, verdict: Verdict, metric: &str) -> Verdict {
        self.counters
            .fail_policy_answers
            .fetch_add(1, Ordering::Relaxed);
        Verdict {
            passed: verdict.passed || passes_when_unavailable(&self.rules, metric),
            rates: verdict.rates,
            decisions: Vec::new(),
            actions: Vec::new(),
        }
    }

    /// Counts `event` of a known-banned token off the request path, at most
    /// [`BACKGROUND_COUNTS`] at a time.
    fn count_in_background(self: &Arc<Self>, event: &Event<'_>) {
        let Ok(permit) = Arc::clone(&self.background).try_acquire_owned() else {
            self.counters
                .background_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        let rt = Arc::clone(self);
        let (token, metric, at) = (event.token.to_owned(), event.metric.to_owned(), event.at);
        let attrs: Vec<(String, String)> = event
            .attrs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        tokio::spawn(async move {
            let attrs: Vec<(&str, &str)> = attrs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let ev = Event::new(&token, &metric, at).with_attrs(&attrs);
            if let Ok(v) = rt.backend.observe(&ev, false).await {
                rt.run_actions(&v);
                let _ = rt.settle(&v.decisions).await;
            }
            drop(permit);
        });
    }

    /// The seed API's `now(token, metric, tier)`.
    pub async fn fire(
        &self,
        token: &str,
        metric: &str,
        tier: usize,
    ) -> Result<Verdict, RuntimeError> {
        let verdict = self.backend.fire(token, metric, tier).await?;
        self.run_actions(&verdict);
        self.settle(&verdict.decisions).await?;
        Ok(verdict)
    }

    /// An operator's ban by hand: `token` banned now for `duration` with `reason`, or its
    /// ban carried further (never shorter); the decisions are stored before this returns.
    pub async fn ban_by_hand(
        &self,
        token: &str,
        duration: Seconds,
        reason: Option<&str>,
    ) -> Result<Verdict, RuntimeError> {
        let verdict = self.backend.ban_by_hand(token, duration, reason).await?;
        self.settle(&verdict.decisions).await?;
        Ok(verdict)
    }

    /// Ends `token`'s ban now; the UNBAN is stored before this returns.
    pub async fn unban(&self, token: &str) -> Result<Option<DecisionEvent>, RuntimeError> {
        let (mut decisions, end) = self.backend.unban(token).await?;
        decisions.extend(end.clone());
        self.settle(&decisions).await?;
        Ok(end)
    }

    /// Runs the actions a verdict lists, after the backend (and any lock) is done with it.
    fn run_actions(&self, verdict: &Verdict) {
        if verdict.actions.is_empty() {
            return;
        }
        let panics = self.rules.run_actions(&verdict.actions);
        if panics > 0 {
            self.counters
                .action_panics
                .fetch_add(panics, Ordering::Relaxed);
        }
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
                tracing::info!(token = %Escaped(&d.token), rule = %Escaped(&d.metric), tier = d.tier, value = d.value, until = %d.until, "{}.", d.verb());
            }
        }
        if decisions.iter().any(|d| d.change == Change::Start) {
            self.wake.notify_one();
        }
        let stored = self.writer.write(decisions.to_vec()).await;
        // Told even if the disk refused it: the writer keeps it and stores it later, and the
        // engine holds the ban meanwhile, so the firewall follows the engine (a restart's
        // reconcile removes what was never stored).
        if let Some(listener) = self.committed.get() {
            listener(decisions);
        }
        // Consoles are told once stored, as every answer is; nothing is cloned while nobody
        // listens.
        if stored.is_ok() && self.feed.receiver_count() > 0 {
            for d in decisions.iter().filter(|d| d.is_record()) {
                let _ = self.feed.send(d.clone());
            }
        }
        stored
    }

    /// Decisions (records: no `EXTEND`) as they are stored from now on. A receiver that
    /// falls [`DECISION_FEED_CAPACITY`] behind is told how many it missed (`Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<DecisionEvent> {
        self.feed.subscribe()
    }

    /// How many decision subscribers there are.
    pub fn subscribers(&self) -> usize {
        self.feed.receiver_count()
    }

    /// Events per second and per minute of each metric, as sampled up to now.
    pub fn metric_rates(&self) -> Vec<MetricRate> {
        self.metric_counts.rates(self.clock.now())
    }

    /// The latest `limit` decisions of the log (of `token`, or all), oldest first.
    pub async fn history(&self, token: Option<String>, limit: usize) -> Vec<StoredDecision> {
        self.writer.history(token, limit).await
    }

    /// Tier measures of about the `recent` most recently seen tokens per shard (in-memory
    /// state only).
    pub fn recent_loads(&self, recent: usize) -> Result<Vec<TokenLoad>, RuntimeError> {
        Ok(self.backend.recent_loads(recent)?)
    }

    /// Samples the per-metric event counts every second, until `shutdown`.
    async fn sample_rates(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = every.tick() => self.metric_counts.sample(self.clock.now()),
            }
        }
    }

    /// `status(token, metric)` (in-memory state only).
    pub fn status(&self, token: &str, metric: &str) -> Result<MetricStatus, RuntimeError> {
        Ok(self.backend.status(token, metric)?)
    }

    /// A page of `status_all`, at most `limit` items from `cursor` (in-memory state only).
    pub fn status_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<StatusPage, RuntimeError> {
        Ok(self.backend.status_page(cursor, limit)?)
    }

    /// Every active ban, oldest first.
    pub async fn bans(&self) -> Result<Vec<(Token, DecisionView)>, RuntimeError> {
        Ok(self.backend.bans().await?)
    }

    /// How many tokens are banned now.
    pub async fn active_bans(&self) -> Result<usize, RuntimeError> {
        Ok(self.backend.active_bans().await?)
    }

    /// `token`'s active ban.
    pub async fn ban(&self, token: &str) -> Result<Option<DecisionView>, RuntimeError> {
        Ok(self.backend.ban(token).await?)
    }

    /// The engine's counters (in-memory state; zeros for Redis).
    pub fn engine_counters(&self) -> EngineCounters {
        self.backend.engine_counters()
    }

    /// The shared store's health, if the state is in Redis.
    pub fn store_health(&self) -> Option<StoreHealth> {
        self.backend.store_health()
    }

    /// The decision log's health: decisions waiting for a store that refuses writes.
    pub fn writer_health(&self) -> &WriterHealth {
        self.writer.health()
    }

    /// The decision counters.
    pub fn counters(&self) -> &RuntimeCounters {
        &self.counters
    }

    /// The decision counters, to hand on to the runtime a reload starts.
    pub fn shared_counters(&self) -> Arc<RuntimeCounters> {
        Arc::clone(&self.counters)
    }

    /// Ends decisions when their time comes, until `shutdown`: sleeps until the next deadline
    /// (at most a second, so a clock that jumps is followed), or until a new decision starts.
    async fn run_ticker(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut saved_at = self.clock.now();
        loop {
            let now = self.clock.now();
            if now >= saved_at.plus(SAVE_WINDOWS_EVERY) || now < saved_at {
                saved_at = now;
                Arc::clone(&self).save_windows(false).await;
            }
            if self.backend.lost_state().await {
                // The shared store restarted empty: the bans this node holds go back in.
                let bans = self.writer.active_bans(now).await;
                let again = self.backend.put_back(&bans).await;
                if let Err(e) = self.settle(&again).await {
                    tracing::error!(error = %e, "Bans put back, not stored yet.");
                }
            }
            let (ends, next) = match self.backend.sweep().await {
                Ok(s) => (s.ends, s.next),
                Err(e) => {
                    tracing::debug!(error = %e, "Sweep failed; next second.");
                    (Vec::new(), None)
                }
            };
            if let Err(e) = self.settle(&ends).await {
                tracing::error!(error = %e, "Ends not stored.");
            }
            let wait = next
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
}

impl Runtime {
    /// Takes the windows that changed out of the backend (off the async workers: it walks
    /// every changed token) and has the writer save them; `wait` waits for the save.
    async fn save_windows(self: Arc<Self>, wait: bool) {
        let rt = Arc::clone(&self);
        let Ok(windows) =
            tokio::task::spawn_blocking(move || rt.backend.take_changed_windows()).await
        else {
            return;
        };
        if windows.is_empty() {
            return;
        }
        let forget = self.clock.now().minus(self.rules.horizon());
        if wait {
            self.writer.save_windows_now(windows, forget).await;
        } else {
            self.writer.save_windows(windows, forget);
        }
    }
}

async fn wait_for(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// What a metric's rules say to answer while the shared store cannot be reached: false if
/// any tier of the metric is `fail_closed`.
fn passes_when_unavailable(rules: &Ruleset, metric: &str) -> bool {
    rules
        .metric_id(metric)
        .is_none_or(|id| !rules.metric(id).thresholds.iter().any(|t| t.fail_closed))
}
