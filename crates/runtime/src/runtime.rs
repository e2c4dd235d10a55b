//! `Runtime`: the engine's state (in memory, or shared in Redis) with its decision log and its
//! clock, behind async calls.

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use banhammer_core::{
    Change, Clock, DecisionEvent, DecisionView, Effect, EngineCounters, Event, EventError,
    MetricStatus, Rates, Ruleset, SharedEngine, Timestamp, Token, Verdict,
};
use banhammer_store_redis::{RedisStore, StoreError, StoreUrl};
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
    /// The shared store could not answer (and the call has no fail policy to fall back on).
    #[error("{0}")]
    Store(String),
    /// Not available with this store.
    #[error("{0}")]
    Unsupported(String),
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
    /// Events answered by a rule's fail policy because the shared store was unavailable.
    pub fail_policy_answers: AtomicU64,
    /// Actions that panicked (caught; the decision stands).
    pub action_panics: AtomicU64,
}

/// One page of `status_all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPage {
    /// `(token, metric, rates)`.
    pub items: Vec<(String, String, Rates)>,
    /// Where the next page starts, if there is one.
    pub next: Option<String>,
}

/// Where the engine's state lives.
enum Backend {
    /// In this process (the embedded default).
    Memory(SharedEngine<Arc<dyn Clock>>),
    /// In Redis, shared by every node.
    Redis(Arc<RedisStore>),
}

/// The shared store's health, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreHealth {
    /// Whether the last call succeeded.
    pub up: bool,
    /// Calls that failed or timed out.
    pub errors: u64,
    /// Calls refused by the open circuit breaker.
    pub short_circuited: u64,
}

/// The engine with its state, its decision log, its clock and its ticker. Share it in an `Arc`.
pub struct Runtime {
    backend: Backend,
    rules: Arc<Ruleset>,
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
    /// Starts a runtime with its state in memory, over `rules` and the decision log `store`:
    /// bans that ended while nobody ran are closed (their UNBAN recorded at its own time), the
    /// others restored into the engine.
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
            let mut result = Ok(());
            engine.for_each_token_shard(&b.token, |e| {
                result = e.restore_ban(&b.token, &b.rule, b.tier, b.value, b.from, b.until);
            });
            if let Err(e) = result {
                tracing::warn!(token = %b.token, error = %e, "A stored ban does not fit the rules; kept on disk only.");
            }
        }
        tracing::info!(
            restored = active.len(),
            closed = closed.len(),
            "Bans read back."
        );
        Ok(Arc::new(Runtime {
            backend: Backend::Memory(engine),
            rules,
            clock,
            writer: DecisionWriter::start(store),
            wake: Notify::new(),
            counters: RuntimeCounters::default(),
        }))
    }

    /// Starts a runtime whose state is shared in Redis at `url` (every call bounded by
    /// `timeout`); decisions are also logged in `store`. Listens for other nodes' bans.
    pub async fn start_redis(
        rules: Arc<Ruleset>,
        clock: Arc<dyn Clock>,
        store: DecisionStore,
        url: &StoreUrl,
        timeout: Duration,
    ) -> Result<Arc<Runtime>, RuntimeError> {
        let redis = RedisStore::connect(url, Arc::clone(&rules), timeout)
            .await
            .map_err(|e| RuntimeError::Store(e.to_string()))?;
        let redis = Arc::new(redis);
        // Other nodes' bans and unbans, for as long as the node runs: reconnect after a drop.
        let listener = Arc::clone(&redis);
        tokio::spawn(async move {
            loop {
                if let Err(e) = listener.subscribe().await {
                    tracing::debug!(error = %e, "Ban channel lost; reconnecting.");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(Arc::new(Runtime {
            backend: Backend::Redis(redis),
            rules,
            clock,
            writer: DecisionWriter::start(store),
            wake: Notify::new(),
            counters: RuntimeCounters::default(),
        }))
    }

    /// The rules.
    pub fn rules(&self) -> &Arc<Ruleset> {
        &self.rules
    }

    /// The clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// One event now; its decisions are stored before this returns.
    pub async fn observe(
        self: &Arc<Self>,
        event: &Event<'_>,
        rates: bool,
    ) -> Result<Verdict, RuntimeError> {
        match &self.backend {
            Backend::Memory(engine) => {
                let verdict = engine.observe(event, rates)?;
                self.run_actions(&verdict);
                self.settle(&verdict.decisions).await?;
                Ok(verdict)
            }
            Backend::Redis(redis) => {
                let now = self.clock.now().max(event.at);
                if redis.cache().is_banned(event.token, now) && !rates {
                    // Known banned: answer at once; the event still counts, in the background.
                    let (rt, redis) = (Arc::clone(self), Arc::clone(redis));
                    let (token, metric) = (event.token.to_owned(), event.metric.to_owned());
                    let attrs: Vec<(String, String)> = event
                        .attrs
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect();
                    let at = event.at;
                    tokio::spawn(async move {
                        let attrs: Vec<(&str, &str)> = attrs
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.as_str()))
                            .collect();
                        let ev = Event::new(&token, &metric, at).with_attrs(&attrs);
                        if let Ok(v) = redis.observe(&ev, now, false).await {
                            rt.run_actions(&v);
                            let _ = rt.settle(&v.decisions).await;
                        }
                    });
                    return Ok(Verdict {
                        passed: false,
                        rates: None,
                        decisions: Vec::new(),
                        actions: Vec::new(),
                    });
                }
                match redis.observe(event, now, rates).await {
                    Ok(verdict) => {
                        self.run_actions(&verdict);
                        self.settle(&verdict.decisions).await?;
                        Ok(verdict)
                    }
                    Err(StoreError::Event(e)) => Err(e.into()),
                    Err(e) => {
                        // The rule's fail policy answers; bans known here still hold.
                        tracing::debug!(error = %e, "Answering by fail policy.");
                        self.counters
                            .fail_policy_answers
                            .fetch_add(1, Ordering::Relaxed);
                        let passed = !redis.cache().is_banned(event.token, now)
                            && redis.passes_when_unavailable(event.metric);
                        Ok(Verdict {
                            passed,
                            rates: None,
                            decisions: Vec::new(),
                            actions: Vec::new(),
                        })
                    }
                }
            }
        }
    }

    /// The seed API's `now(token, metric, tier)`.
    pub async fn fire(
        &self,
        token: &str,
        metric: &str,
        tier: usize,
    ) -> Result<Verdict, RuntimeError> {
        let verdict = match &self.backend {
            Backend::Memory(engine) => engine.fire(token, metric, tier)?,
            Backend::Redis(redis) => redis
                .fire(token, metric, tier, self.clock.now())
                .await
                .map_err(store_error)?,
        };
        self.run_actions(&verdict);
        self.settle(&verdict.decisions).await?;
        Ok(verdict)
    }

    /// Ends `token`'s ban now; the UNBAN is stored before this returns.
    pub async fn unban(&self, token: &str) -> Result<Option<DecisionEvent>, RuntimeError> {
        let end = match &self.backend {
            Backend::Memory(engine) => engine.unban(token),
            Backend::Redis(redis) => redis
                .unban(token, self.clock.now())
                .await
                .map_err(store_error)?,
        };
        if let Some(e) = &end {
            self.settle(std::slice::from_ref(e)).await?;
        }
        Ok(end)
    }

    /// Runs the actions a verdict lists, after the engine (and its lock) is done with it.
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
                tracing::info!(token = %d.token, rule = %d.metric, tier = d.tier, value = d.value, until = %d.until, "{}.", d.verb());
            }
        }
        if decisions.iter().any(|d| d.change == Change::Start) {
            self.wake.notify_one();
        }
        self.writer.write(decisions.to_vec()).await
    }

    /// `status(token, metric)` (in-memory state only).
    pub fn status(&self, token: &str, metric: &str) -> Result<MetricStatus, RuntimeError> {
        match &self.backend {
            Backend::Memory(engine) => Ok(engine.status(token, metric)?),
            Backend::Redis(_) => Err(unsupported("status")),
        }
    }

    /// A page of `status_all`, at most `limit` items from `cursor` (in-memory state only).
    pub fn status_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<StatusPage, RuntimeError> {
        let Backend::Memory(engine) = &self.backend else {
            return Err(unsupported("status_all"));
        };
        // A cursor is `shard.offset`: shards are visited in order, tokens in each in LRU order.
        let (shard, offset) = cursor
            .and_then(|c| c.split_once('.'))
            .and_then(|(s, o)| Some((s.parse::<usize>().ok()?, o.parse::<usize>().ok()?)))
            .unwrap_or((0, 0));
        let mut items = Vec::new();
        let mut index = 0usize;
        let mut next = None;
        engine.for_each_shard(|e| {
            let skip = if index == shard { offset } else { 0 };
            if index < shard || next.is_some() {
                index += 1;
                return;
            }
            for (taken, (token, metric, rates)) in e.status_all().skip(skip).enumerate() {
                if items.len() == limit {
                    next = Some(format!("{index}.{}", skip + taken));
                    break;
                }
                items.push((token.to_owned(), metric.to_owned(), rates));
            }
            index += 1;
        });
        Ok(StatusPage { items, next })
    }

    /// Every active ban, oldest first.
    pub async fn bans(&self) -> Result<Vec<(Token, DecisionView)>, RuntimeError> {
        match &self.backend {
            Backend::Memory(engine) => {
                let mut all = Vec::new();
                engine.for_each_shard(|e| {
                    all.extend(
                        e.decisions()
                            .filter(|(_, d)| d.effect == Effect::Block)
                            .map(|(t, d)| (t.clone(), d)),
                    );
                });
                all.sort_by(|a, b| (a.1.from, &a.0).cmp(&(b.1.from, &b.0)));
                Ok(all)
            }
            Backend::Redis(redis) => {
                let now = self.clock.now();
                let bans = match redis.bans().await {
                    Ok(bans) => bans,
                    Err(e) => {
                        // Unreachable: the bans this node knows, without their rule.
                        tracing::debug!(error = %e, "Listing the bans this node knows.");
                        return Ok(redis
                            .cache()
                            .snapshot()
                            .into_iter()
                            .filter(|(_, until)| *until > now.as_unix())
                            .filter_map(|(t, until)| {
                                let until = Timestamp::from_unix(until);
                                Some((Token::new(&t)?, redis_view("", 0, until)))
                            })
                            .collect());
                    }
                };
                let mut out = Vec::with_capacity(bans.len());
                for (t, metric, tier, until) in bans.into_iter().filter(|b| b.3 > now) {
                    let Some(token) = Token::new(&t) else {
                        continue;
                    };
                    // The full record (value, from) when Redis has it; one round trip per ban
                    // on an admin route.
                    let view = match self.ban(&t).await {
                        Ok(Some(v)) => v,
                        _ => redis_view(&metric, tier, until),
                    };
                    out.push((token, view));
                }
                Ok(out)
            }
        }
    }

    /// How many tokens are banned now (for metrics: no per-ban round trips).
    pub async fn active_bans(&self) -> Result<usize, RuntimeError> {
        match &self.backend {
            Backend::Memory(_) => Ok(self.bans().await?.len()),
            Backend::Redis(redis) => {
                let now = self.clock.now();
                Ok(match redis.bans().await {
                    Ok(bans) => bans.iter().filter(|b| b.3 > now).count(),
                    Err(_) => redis
                        .cache()
                        .snapshot()
                        .iter()
                        .filter(|(_, until)| *until > now.as_unix())
                        .count(),
                })
            }
        }
    }

    /// `token`'s active ban.
    pub async fn ban(&self, token: &str) -> Result<Option<DecisionView>, RuntimeError> {
        match &self.backend {
            Backend::Memory(engine) => {
                let mut found = None;
                engine.for_each_token_shard(token, |e| found = e.ban(token));
                Ok(found)
            }
            Backend::Redis(redis) => {
                let now = self.clock.now();
                let view = match redis.ban(token).await {
                    Ok(b) => b.map(|(rule, tier, value, from, until)| DecisionView {
                        effect: Effect::Block,
                        metric: Arc::from(rule),
                        tier,
                        value,
                        from,
                        until,
                    }),
                    // Unreachable: what this node knows.
                    Err(_) => redis.cache().until(token).map(|u| redis_view("", 0, u)),
                };
                Ok(view.filter(|v| v.until > now))
            }
        }
    }

    /// The engine's counters (in-memory state; zeros for Redis).
    pub fn engine_counters(&self) -> EngineCounters {
        match &self.backend {
            Backend::Memory(engine) => engine.counters(),
            Backend::Redis(_) => EngineCounters::default(),
        }
    }

    /// The shared store's health, if the state is in Redis.
    pub fn store_health(&self) -> Option<StoreHealth> {
        let Backend::Redis(redis) = &self.backend else {
            return None;
        };
        let h = redis.connection().health();
        Some(StoreHealth {
            up: h.up.load(Ordering::Relaxed),
            errors: h.errors.load(Ordering::Relaxed),
            short_circuited: h.short_circuited.load(Ordering::Relaxed),
        })
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
            let (ends, next) = match &self.backend {
                Backend::Memory(engine) => (engine.advance(now), engine.next_deadline()),
                Backend::Redis(redis) => match redis.sweep(now).await {
                    Ok(ends) => (ends, None),
                    Err(e) => {
                        tracing::debug!(error = %e, "Sweep failed; next second.");
                        (Vec::new(), None)
                    }
                },
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

    /// Commits what is queued and stops the store's writer.
    pub fn close(&self) {
        self.writer.close();
    }
}

fn store_error(e: StoreError) -> RuntimeError {
    match e {
        StoreError::Event(e) => RuntimeError::Event(e),
        other => RuntimeError::Store(other.to_string()),
    }
}

fn unsupported(what: &str) -> RuntimeError {
    RuntimeError::Unsupported(format!(
        "{what} is answered from a node's memory; with the Redis store it is not available"
    ))
}

/// What a node knows of a ban kept in Redis: its end.
/// A ban known only by its index entry (or, in an outage, by the node's cache): its value and
/// start are not known.
fn redis_view(metric: &str, tier: usize, until: Timestamp) -> DecisionView {
    DecisionView {
        effect: Effect::Block,
        metric: Arc::from(metric),
        tier,
        value: 0,
        from: until,
        until,
    }
}
