//! `RedisBackend`: the state in Redis or Redis Cluster, shared by every node.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use banhammer_core::{
    BanRecord, Clock, DecisionEvent, DecisionView, Effect, Escaped, Event, EventError, Ruleset,
    Seconds, Timestamp, Token, Verdict,
};
use banhammer_store_redis::{RedisStore, StoreError, StoreUrl};
use banhammer_store_sqlite::StoredDecision;

use super::{Backend, BackendError, StoreHealth, Sweep, Unban};

/// The engine's state in Redis: one script call per event; this node's ban cache answers
/// known bans at once and holds them while Redis is away.
pub struct RedisBackend {
    store: Arc<RedisStore>,
    clock: Arc<dyn Clock>,
    /// The last count of active bans and when it was taken: counting lists the whole deadline
    /// index, so a scrape reuses a count younger than [`BAN_COUNT_TTL`].
    ban_count: Mutex<Option<(Timestamp, usize)>>,
}

/// How long a count of active bans is reused.
const BAN_COUNT_TTL: Seconds = Seconds::new(10);

impl RedisBackend {
    /// Connects to `url` for `rules`, every call bounded by `timeout`.
    pub async fn connect(
        url: &StoreUrl,
        rules: Arc<Ruleset>,
        clock: Arc<dyn Clock>,
        timeout: Duration,
    ) -> Result<Self, BackendError> {
        let store = RedisStore::connect(url, rules, timeout)
            .await
            .map_err(backend_error)?;
        Ok(RedisBackend {
            store: Arc::new(store),
            clock,
            ban_count: Mutex::new(None),
        })
    }

    /// Deletes every key on the store (a scratch instance for `eval`).
    pub async fn flush(&self) -> Result<(), BackendError> {
        self.store.flush().await.map_err(backend_error)
    }
}

/// A store failure as the runtime sees it: an outage, a refused event, or a fault.
fn backend_error(e: StoreError) -> BackendError {
    match e {
        StoreError::Event(e) => BackendError::Event(e),
        e @ StoreError::Unavailable(_) => BackendError::Unavailable(e.to_string()),
        StoreError::Unsupported(why) => BackendError::Unsupported(why),
        e @ StoreError::Protocol(_) => BackendError::Protocol(e.to_string()),
        other => BackendError::Protocol(other.to_string()),
    }
}

/// What a node knows of a ban kept in Redis when only its index entry (or, in an outage, its
/// cache entry) is at hand: its end, not its value or start.
fn partial_view(metric: &str, tier: usize, until: Timestamp) -> DecisionView {
    DecisionView {
        effect: Effect::Block,
        metric: Arc::from(metric),
        tier,
        value: 0,
        from: until,
        until,
        reason: None,
    }
}

#[async_trait]
impl Backend for RedisBackend {
    async fn observe(&self, event: &Event<'_>, rates: bool) -> Result<Verdict, BackendError> {
        let now = self.clock.now().max(event.at);
        self.store
            .observe(event, now, rates)
            .await
            .map_err(backend_error)
    }

    async fn fire(&self, token: &str, metric: &str, tier: usize) -> Result<Verdict, BackendError> {
        self.store
            .fire(token, metric, tier, self.clock.now())
            .await
            .map_err(backend_error)
    }

    async fn ban_by_hand(
        &self,
        token: &str,
        duration: Seconds,
        reason: Option<&str>,
    ) -> Result<Verdict, BackendError> {
        self.store
            .ban_by_hand(token, duration, reason, self.clock.now())
            .await
            .map_err(backend_error)
    }

    async fn unban(&self, token: &str) -> Result<Unban, BackendError> {
        let end = self
            .store
            .unban(token, self.clock.now())
            .await
            .map_err(backend_error)?;
        Ok((Vec::new(), end))
    }

    async fn sweep(&self) -> Result<Sweep, BackendError> {
        let ends = self
            .store
            .sweep(self.clock.now())
            .await
            .map_err(backend_error)?;
        Ok(Sweep { ends, next: None })
    }

    async fn finish(&self) -> Result<Vec<DecisionEvent>, BackendError> {
        self.store
            .finish(self.clock.now())
            .await
            .map_err(backend_error)
    }

    async fn bans(&self) -> Result<Vec<(Token, DecisionView)>, BackendError> {
        let now = self.clock.now();
        let bans = match self.store.bans().await {
            Ok(bans) => bans,
            Err(e) => {
                // Unreachable: the bans this node knows, without their rule.
                tracing::debug!(error = %e, "Listing the bans this node knows.");
                return Ok(self
                    .store
                    .cache()
                    .snapshot()
                    .into_iter()
                    .filter(|(_, until)| *until > now.as_unix())
                    .filter_map(|(t, until)| {
                        let until = Timestamp::from_unix(until);
                        Some((Token::new(&t)?, partial_view("", 0, until)))
                    })
                    .collect());
            }
        };
        let mut out = Vec::with_capacity(bans.len());
        for (t, metric, tier, until) in bans.into_iter().filter(|b| b.3 > now) {
            let Some(token) = Token::new(&t) else {
                continue;
            };
            // The full record (value, from) when Redis has it; one round trip per ban on an
            // admin route.
            let view = match self.ban(&t).await {
                Ok(Some(v)) => v,
                _ => partial_view(&metric, tier, until),
            };
            out.push((token, view));
        }
        Ok(out)
    }

    async fn active_bans(&self) -> Result<usize, BackendError> {
        let now = self.clock.now();
        let fresh = |c: &Option<(Timestamp, usize)>| {
            c.filter(|(at, _)| now < at.plus(BAN_COUNT_TTL) && *at <= now)
                .map(|(_, n)| n)
        };
        if let Some(n) = self.ban_count.lock().ok().and_then(|c| fresh(&c)) {
            return Ok(n);
        }
        let n = match self.store.bans().await {
            Ok(bans) => bans.iter().filter(|b| b.3 > now).count(),
            Err(_) => self
                .store
                .cache()
                .snapshot()
                .iter()
                .filter(|(_, until)| *until > now.as_unix())
                .count(),
        };
        if let Ok(mut c) = self.ban_count.lock() {
            *c = Some((now, n));
        }
        Ok(n)
    }

    async fn ban(&self, token: &str) -> Result<Option<DecisionView>, BackendError> {
        let now = self.clock.now();
        let view = match self.store.ban(token).await {
            Ok(b) => b,
            // Unreachable: what this node knows.
            Err(_) => self
                .store
                .cache()
                .until(token)
                .map(|u| partial_view("", 0, u)),
        };
        Ok(view.filter(|v| v.until > now))
    }

    async fn lost_state(&self) -> bool {
        match self.store.lost_state().await {
            Ok(lost) => lost,
            Err(e) => {
                tracing::debug!(error = %e, "Could not check the store's epoch.");
                false
            }
        }
    }

    async fn put_back(&self, bans: &[StoredDecision]) -> Vec<DecisionEvent> {
        let now = self.clock.now();
        let mut out = Vec::new();
        for b in bans {
            let ban = DecisionView {
                effect: Effect::Block,
                metric: Arc::from(b.rule.as_str()),
                tier: b.tier,
                value: b.value,
                from: b.from,
                until: b.until,
                reason: b.reason.as_deref().map(Arc::from),
            };
            match self.store.restore_ban(&b.token, &ban, now).await {
                Ok(Some(d)) => out.push(d),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(token = %Escaped(&b.token), error = %Escaped(&e), "A ban could not be put back into the store.");
                }
            }
        }
        if !bans.is_empty() {
            tracing::warn!(
                put_back = out.len(),
                held = bans.len(),
                "The shared store lost its state; this node put back the bans it holds."
            );
        }
        out
    }

    fn known_banned(&self, token: &str) -> bool {
        self.store.cache().is_banned(token, self.clock.now())
    }

    fn restore_ban(&self, _ban: &BanRecord<'_>) -> Result<(), EventError> {
        // Redis keeps the bans itself; this node's log is only a record.
        Ok(())
    }

    fn store_health(&self) -> Option<StoreHealth> {
        let h = self.store.connection().health();
        Some(StoreHealth {
            up: h.up.load(Ordering::Relaxed),
            errors: h.errors.load(Ordering::Relaxed),
            short_circuited: h.short_circuited.load(Ordering::Relaxed),
            protocol_errors: h.protocol_errors.load(Ordering::Relaxed),
        })
    }

    fn background(&self) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        // Other nodes' bans and unbans, for as long as the node runs: reconnect after a drop.
        let store = Arc::clone(&self.store);
        Some(Box::pin(async move {
            loop {
                if let Err(e) = store.subscribe().await {
                    tracing::debug!(error = %e, "Ban channel lost; reconnecting.");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }))
    }
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend").finish_non_exhaustive()
    }
}
