//! `Connection`: one Redis or a Redis Cluster, every call bounded by a timeout and guarded by
//! a circuit breaker, reconnecting by itself; a failed call is told apart as an outage or a
//! protocol error.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{FromRedisValue, ScriptInvocation};

use crate::cache::BanCache;
use crate::StoreError;

/// Where the store is: `redis://host:port[/db]` or `redis+cluster://h1:p1,h2:p2,…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// One server.
    Single(String),
    /// A cluster, by some of its nodes.
    Cluster(Vec<String>),
}

impl std::str::FromStr for StoreUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("redis+cluster://") {
            let nodes: Vec<String> = rest
                .split(',')
                .filter(|n| !n.is_empty())
                .map(|n| format!("redis://{n}"))
                .collect();
            if nodes.is_empty() {
                return Err(format!("`{s}` names no cluster node"));
            }
            Ok(StoreUrl::Cluster(nodes))
        } else if s.starts_with("redis://") {
            Ok(StoreUrl::Single(s.to_owned()))
        } else {
            Err(format!(
                "`{s}` is not redis://host:port or redis+cluster://host:port,…"
            ))
        }
    }
}

/// Whether a failed call means Redis cannot be reached now (an outage: the fail policy
/// answers, the breaker counts it) rather than that it answered with an error about the call
/// itself (a script fault, `WRONGTYPE`, a reply of the wrong shape: a protocol error, which
/// retrying will not fix).
fn is_outage(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind as K, ServerErrorKind as S};
    match e.kind() {
        // The server or cluster cannot serve now (loading, failing over, resharding, down), or
        // refuses this client (its password or permissions changed).
        K::Server(
            S::BusyLoading
            | S::TryAgain
            | S::ClusterDown
            | S::MasterDown
            | S::ReadOnly
            | S::Moved
            | S::Ask
            | S::NoPerm,
        ) => true,
        // Any other error the server answered is about the call.
        K::Server(_) | K::UnexpectedReturnType | K::Parse => false,
        // Codes the client does not name: a few mean that the server cannot serve now.
        K::Extension => matches!(
            e.code(),
            Some("BUSY" | "OOM" | "MISCONF" | "NOREPLICAS" | "NOAUTH" | "WRONGPASS")
        ),
        // I/O, timeouts, refused connections, authentication, the cluster client's own
        // failures to reach a node.
        _ => true,
    }
}

#[derive(Clone)]
enum Inner {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Consecutive failures that open the breaker.
const TRIP_AFTER: u64 = 3;
/// How long an open breaker refuses calls before one is let through.
const OPEN_FOR: Duration = Duration::from_millis(500);

/// A connection with a per-call timeout and a circuit breaker. Cheap to clone.
#[derive(Clone)]
pub struct Connection {
    inner: Inner,
    url: StoreUrl,
    timeout: Duration,
    health: Arc<Health>,
}

/// What `/metrics` shows of the store.
#[derive(Debug, Default)]
pub struct Health {
    /// Calls that failed or timed out (protocol errors included).
    pub errors: AtomicU64,
    /// Calls Redis answered with an error, or with a reply the store could not read: a fault
    /// of the script or of the data, not an outage (they neither open the breaker nor mark
    /// the store down).
    pub protocol_errors: AtomicU64,
    /// Calls refused because the breaker was open.
    pub short_circuited: AtomicU64,
    failures_in_a_row: AtomicU64,
    /// Whether the last call succeeded.
    pub up: AtomicBool,
    /// When the breaker opened (tokio instant as ms since the store started), 0 if closed.
    opened_at_ms: AtomicU64,
    started: std::sync::OnceLock<tokio::time::Instant>,
    /// Which node of a cluster URL the next ban subscription goes to.
    subscribe_turn: AtomicU64,
}

impl Health {
    fn elapsed_ms(&self) -> u64 {
        let start = *self.started.get_or_init(tokio::time::Instant::now);
        u64::try_from(start.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects (the first connection must succeed; later ones are retried by themselves).
    pub async fn open(url: &StoreUrl, timeout: Duration) -> Result<Self, StoreError> {
        let fail = |e: redis::RedisError| StoreError::Unavailable(e.to_string());
        let inner = match url {
            StoreUrl::Single(u) => {
                let client = redis::Client::open(u.as_str()).map_err(fail)?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(timeout));
                Inner::Single(
                    ConnectionManager::new_with_config(client, config)
                        .await
                        .map_err(fail)?,
                )
            }
            StoreUrl::Cluster(nodes) => {
                let client = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(Duration::from_secs(1))
                    .response_timeout(timeout)
                    .build()
                    .map_err(fail)?;
                Inner::Cluster(client.get_async_connection().await.map_err(fail)?)
            }
        };
        let health = Arc::new(Health::default());
        health.up.store(true, Ordering::Relaxed);
        Ok(Connection {
            inner,
            url: url.clone(),
            timeout,
            health,
        })
    }

    /// The store's health counters.
    pub fn health(&self) -> &Health {
        &self.health
    }

    fn breaker_open(&self) -> bool {
        let opened = self.health.opened_at_ms.load(Ordering::Relaxed);
        if opened == 0 {
            return false;
        }
        let now = self.health.elapsed_ms();
        if now.saturating_sub(opened) >= u64::try_from(OPEN_FOR.as_millis()).unwrap_or(500) {
            // Half open: let this call try; a failure opens it again.
            self.health.opened_at_ms.store(now, Ordering::Relaxed);
            return false;
        }
        true
    }

    async fn guard<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        if self.breaker_open() {
            self.health.short_circuited.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Unavailable("circuit open".to_owned()));
        }
        let result = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if !is_outage(&e) => {
                // Redis is there and answered: the breaker learns that much.
                self.answered();
                return Err(self.protocol_error(e.to_string()));
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        };
        match result {
            Ok(v) => {
                self.answered();
                Ok(v)
            }
            Err(why) => {
                self.health.errors.fetch_add(1, Ordering::Relaxed);
                let n = self
                    .health
                    .failures_in_a_row
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                if n >= TRIP_AFTER {
                    self.health
                        .opened_at_ms
                        .store(self.health.elapsed_ms(), Ordering::Relaxed);
                }
                if self.health.up.swap(false, Ordering::Relaxed) {
                    // Logged once per outage.
                    tracing::warn!(error = %why, "Redis is unavailable; rules answer by their fail policy.");
                }
                Err(StoreError::Unavailable(why))
            }
        }
    }

    /// Redis answered a call: the breaker closes and the store is up.
    fn answered(&self) {
        self.health.failures_in_a_row.store(0, Ordering::Relaxed);
        self.health.opened_at_ms.store(0, Ordering::Relaxed);
        if !self.health.up.swap(true, Ordering::Relaxed) {
            tracing::info!("Redis is back.");
        }
    }

    /// Counts a reply the store cannot use (an error Redis answered, or one the store could
    /// not read) and turns it into [`StoreError::Protocol`]. Logged at the 1st, 2nd, 4th, 8th…
    /// occurrence: a fault repeats with every event, the log must not.
    pub(crate) fn protocol_error(&self, why: String) -> StoreError {
        self.health.errors.fetch_add(1, Ordering::Relaxed);
        let n = self.health.protocol_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::error!(error = %banhammer_core::Escaped(&why), occurrences = n, "Redis answered what the store cannot use.");
        }
        StoreError::Protocol(why)
    }

    /// Runs a script (EVALSHA, loading it on NOSCRIPT).
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        inv: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        match self.inner.clone() {
            Inner::Single(mut c) => self.guard(inv.invoke_async(&mut c)).await,
            Inner::Cluster(mut c) => self.guard(inv.invoke_async(&mut c)).await,
        }
    }

    async fn query<T: FromRedisValue + Send>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        match self.inner.clone() {
            Inner::Single(mut c) => self.guard(cmd.query_async(&mut c)).await,
            Inner::Cluster(mut c) => self.guard(cmd.query_async(&mut c)).await,
        }
    }

    pub(crate) async fn zrange_due(
        &self,
        key: &str,
        now: i64,
    ) -> Result<Vec<(String, f64)>, StoreError> {
        self.query(
            redis::cmd("ZRANGE")
                .arg(key)
                .arg("-inf")
                .arg(now)
                .arg("BYSCORE")
                .arg("LIMIT")
                .arg(0)
                .arg(1000)
                .arg("WITHSCORES"),
        )
        .await
    }

    pub(crate) async fn zrange_all(&self, key: &str) -> Result<Vec<(String, f64)>, StoreError> {
        self.query(
            redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES"),
        )
        .await
    }

    pub(crate) async fn zadd(&self, key: &str, member: &str, score: i64) -> Result<(), StoreError> {
        self.query(redis::cmd("ZADD").arg(key).arg("XX").arg(score).arg(member))
            .await
    }

    pub(crate) async fn zrem(&self, key: &str, member: &str) -> Result<(), StoreError> {
        self.query(redis::cmd("ZREM").arg(key).arg(member)).await
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.query(redis::cmd("GET").arg(key)).await
    }

    /// `SET key value NX`: whether the key was absent (and is now `value`).
    pub(crate) async fn set_nx(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let set: Option<String> = self
            .query(redis::cmd("SET").arg(key).arg(value).arg("NX"))
            .await?;
        Ok(set.is_some())
    }

    pub(crate) async fn hget(&self, key: &str, field: &str) -> Result<Option<i64>, StoreError> {
        self.query(redis::cmd("HGET").arg(key).arg(field)).await
    }

    pub(crate) async fn hmget(
        &self,
        key: &str,
        fields: &[&str],
    ) -> Result<Vec<Option<String>>, StoreError> {
        self.query(redis::cmd("HMGET").arg(key).arg(fields)).await
    }

    pub(crate) async fn publish(&self, channel: &str, message: &str) -> Result<(), StoreError> {
        self.query(redis::cmd("PUBLISH").arg(channel).arg(message))
            .await
    }

    pub(crate) async fn flushall(&self) -> Result<(), StoreError> {
        match self.inner.clone() {
            Inner::Single(mut c) => self.guard(redis::cmd("FLUSHALL").query_async(&mut c)).await,
            Inner::Cluster(mut c) => {
                // Every master must be flushed; the cluster client routes FLUSHALL to all.
                self.guard(redis::cmd("FLUSHALL").query_async(&mut c)).await
            }
        }
    }

    /// Subscribes to `channel` on one node and applies each message to `cache` until the
    /// connection drops. (Cluster messages are broadcast to every node, so any node will do;
    /// each call tries the next node of the URL, so a node that is down is not retried alone.)
    pub(crate) async fn subscribe(
        &self,
        channel: &str,
        cache: &BanCache,
    ) -> Result<(), StoreError> {
        use futures_util::StreamExt;
        let url = match &self.url {
            StoreUrl::Single(u) => u.clone(),
            StoreUrl::Cluster(nodes) => {
                let turn = self.health.subscribe_turn.fetch_add(1, Ordering::Relaxed);
                let i = usize::try_from(turn).unwrap_or(0) % nodes.len().max(1);
                nodes.get(i).cloned().unwrap_or_default()
            }
        };
        let fail = |e: redis::RedisError| StoreError::Unavailable(e.to_string());
        let client = redis::Client::open(url.as_str()).map_err(fail)?;
        let mut pubsub = client.get_async_pubsub().await.map_err(fail)?;
        pubsub.subscribe(channel).await.map_err(fail)?;
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            if let Ok(text) = msg.get_payload::<String>() {
                cache.apply(&text);
            }
        }
        Ok(())
    }
}
