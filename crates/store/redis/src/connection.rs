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

/// Where the store is: `redis://host:port[/db]` or `redis+cluster://h1:p1,h2:p2,…`, or the
/// same over TLS (`rediss://…`, `rediss+cluster://…`), with the CA to check the server
/// certificate against (the system's roots unless [`StoreUrl::with_ca`] names one).
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    target: Target,
    /// PEM certificates that alone are trusted to sign the servers' certificates.
    ca: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// One server, by its URL.
    Single(String),
    /// A cluster, by some of its nodes' URLs.
    Cluster(Vec<String>),
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreUrl")
            .field("target", &self.target)
            .field("ca", &self.ca.as_ref().map(|_| "custom"))
            .finish()
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let cluster = [
            ("redis+cluster://", "redis"),
            ("rediss+cluster://", "rediss"),
        ]
        .into_iter()
        .find_map(|(prefix, scheme)| Some((s.strip_prefix(prefix)?, scheme)));
        let target = if let Some((rest, scheme)) = cluster {
            let nodes: Vec<String> = rest
                .split(',')
                .filter(|n| !n.is_empty())
                .map(|n| format!("{scheme}://{n}"))
                .collect();
            if nodes.is_empty() {
                return Err(format!("`{s}` names no cluster node"));
            }
            Target::Cluster(nodes)
        } else if s.starts_with("redis://") || s.starts_with("rediss://") {
            Target::Single(s.to_owned())
        } else {
            return Err(format!(
                "`{s}` is not redis[s]://host:port or redis[s]+cluster://host:port,…"
            ));
        };
        Ok(StoreUrl { target, ca: None })
    }
}

impl StoreUrl {
    /// Whether it speaks TLS (`rediss://`, `rediss+cluster://`).
    pub fn tls(&self) -> bool {
        match &self.target {
            Target::Single(u) => u.starts_with("rediss://"),
            Target::Cluster(nodes) => nodes.iter().all(|n| n.starts_with("rediss://")),
        }
    }

    /// Trusts only the certificates in `pem` (a private CA) to sign the servers'
    /// certificates, instead of the system's roots. Refused for a URL without TLS, and for
    /// a `pem` holding no certificate or a malformed one.
    pub fn with_ca(mut self, pem: Vec<u8>) -> Result<Self, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        if !self.tls() {
            return Err("a CA is only used with TLS (rediss://, rediss+cluster://)".to_owned());
        }
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            cert.map_err(|e| format!("not a PEM certificate: {e}"))?;
            n += 1;
        }
        if n == 0 {
            return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned());
        }
        self.ca = Some(pem);
        Ok(self)
    }

    /// Whether a failed first connection is one that retrying will not fix: the server's
    /// certificate refused, or (without TLS) the connection closed by the server at once.
    fn hopeless(&self, e: &redis::RedisError) -> bool {
        if self.tls() {
            e.to_string().contains("certificate")
        } else {
            e.is_connection_dropped() && !e.is_connection_refusal()
        }
    }

    /// The first connection's error, with what is likely wrong when the cause is TLS: the
    /// roots the certificate was checked against, or a plain client on a TLS-only port
    /// (which the server answers by closing the connection).
    fn explain(&self, e: &redis::RedisError) -> String {
        let text = e.to_string();
        if !self.hopeless(e) {
            return text;
        }
        if !self.tls() {
            return format!("{text} (if the server speaks only TLS, the URL is rediss://)");
        }
        let roots = if self.ca.is_some() {
            "the configured CA (serve.store_ca)"
        } else {
            "the system's roots (a private CA goes in serve.store_ca)"
        };
        format!("{text} (the server's certificate was checked against {roots})")
    }

    fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: None,
            root_cert: self.ca.clone(),
        }
    }

    /// A client for one node's URL, with this store's TLS settings.
    fn client(&self, url: &str) -> redis::RedisResult<redis::Client> {
        if url.starts_with("rediss://") {
            install_crypto_provider();
            redis::Client::build_with_tls(url, self.certificates())
        } else {
            redis::Client::open(url)
        }
    }
}

/// rustls needs a process-wide crypto provider when more than one could be compiled in; ring
/// is the one the rest of the binary (reqwest) already uses. Installing twice is harmless.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
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
        let fail = |e: redis::RedisError| StoreError::Unavailable(url.explain(&e));
        let inner = match &url.target {
            Target::Single(u) => {
                let client = url.client(u).map_err(fail)?;
                // One plain attempt first: a certificate the roots refuse, or a TLS port
                // answering a plain client, is said at once, not after the manager's retries
                // (which are for a Redis that is still starting).
                let probe = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(timeout));
                if let Err(e) = client
                    .get_multiplexed_async_connection_with_config(&probe)
                    .await
                {
                    if url.hopeless(&e) {
                        return Err(fail(e));
                    }
                }
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(timeout));
                Inner::Single(
                    ConnectionManager::new_with_config(client, config)
                        .await
                        .map_err(fail)?,
                )
            }
            Target::Cluster(nodes) => {
                let mut builder = redis::cluster::ClusterClientBuilder::new(nodes.clone());
                if url.tls() {
                    install_crypto_provider();
                    builder = builder.certs(url.certificates());
                }
                let client = builder
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
        let url = match &self.url.target {
            Target::Single(u) => u.clone(),
            Target::Cluster(nodes) => {
                let turn = self.health.subscribe_turn.fetch_add(1, Ordering::Relaxed);
                let i = usize::try_from(turn).unwrap_or(0) % nodes.len().max(1);
                nodes.get(i).cloned().unwrap_or_default()
            }
        };
        let fail = |e: redis::RedisError| StoreError::Unavailable(e.to_string());
        let client = self.url.client(&url).map_err(fail)?;
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

#[cfg(test)]
mod tests {
    use super::{StoreUrl, Target};

    #[test]
    fn urls_over_tls_keep_their_scheme_on_every_node() {
        let u: StoreUrl = "rediss+cluster://a:1,b:2".parse().unwrap();
        assert!(u.tls());
        assert_eq!(
            u.target,
            Target::Cluster(vec!["rediss://a:1".into(), "rediss://b:2".into()])
        );
        let u: StoreUrl = "redis+cluster://a:1".parse().unwrap();
        assert!(!u.tls());
        assert!("rediss://a:1".parse::<StoreUrl>().unwrap().tls());
        assert!("http://a:1".parse::<StoreUrl>().is_err());
    }

    #[test]
    fn a_ca_needs_tls_and_a_certificate() {
        let plain: StoreUrl = "redis://a:1".parse().unwrap();
        assert!(plain
            .with_ca(Vec::new())
            .unwrap_err()
            .contains("only used with TLS"));
        let tls: StoreUrl = "rediss://a:1".parse().unwrap();
        let err = tls.clone().with_ca(b"junk\n".to_vec()).unwrap_err();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        let err = tls
            .with_ca(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n".to_vec())
            .unwrap_err();
        assert!(err.contains("not a PEM certificate"), "{err}");
    }
}
