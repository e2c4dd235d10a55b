//! Failed admin authentications, counted per client address by banhammer's own engine: 10
//! within 60 s block the address from admin routes for 5 minutes (429 with `Retry-After`),
//! so that the admin token cannot be guessed at speed.

use std::net::IpAddr;
use std::num::{NonZeroU64, NonZeroUsize};
use std::sync::{Arc, Mutex, MutexGuard};

use banhammer_core::{
    Clock, Effect, Engine, MetricRule, Ruleset, Scope, Seconds, Threshold, Window,
};

use crate::conn::peer_key;

/// The built-in rule's metric.
const METRIC: &str = "admin_auth_failed";
/// Failures allowed within [`WINDOW`]: the 10th blocks.
pub(crate) const FAILURES: u64 = 10;
/// The window failures count in, seconds.
pub(crate) const WINDOW: u64 = 60;
/// How long a blocked address is answered 429, seconds.
pub(crate) const BLOCK: u64 = 300;
/// Addresses whose failures are tracked at once; past it the least recently seen is
/// forgotten (its block, if any, is kept: blocks live apart from counts).
const MAX_TRACKED: usize = 65_536;

/// The failed-authentication limiter: one small engine of its own, apart from the service's
/// rules, decision log and `/v1/bans`.
pub(crate) struct AuthLimiter {
    /// A std mutex: held for one engine call, never across an await; admin requests are few.
    engine: Mutex<Engine<Arc<dyn Clock>>>,
}

impl std::fmt::Debug for AuthLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLimiter").finish_non_exhaustive()
    }
}

impl AuthLimiter {
    /// A limiter on the service's clock (so that it follows a test's), not on the runtime
    /// itself: a configuration reload replaces the runtime.
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        let rule = MetricRule {
            name: METRIC.into(),
            scope: Scope::Token,
            thresholds: vec![Threshold::new(
                NonZeroU64::new(FAILURES).unwrap_or(NonZeroU64::MIN),
                Window::from_secs(WINDOW).unwrap_or(Window::from_secs(1).expect("1 is not 0")),
                Effect::Block,
                Seconds::new(BLOCK),
            )],
        };
        let rules = Ruleset::builder()
            .metric(rule)
            .max_tokens(NonZeroUsize::new(MAX_TRACKED))
            .build()
            .expect("the built-in rule is valid");
        AuthLimiter {
            engine: Mutex::new(Engine::new(Arc::new(rules), clock)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Engine<Arc<dyn Clock>>> {
        // The engine finishes each call before the lock is released; a panic inside one is a
        // bug the next call would meet anyway, so a poisoned lock is used as it is.
        self.engine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Seconds until `client` may try again, if it is blocked now.
    pub(crate) fn blocked(&self, client: IpAddr) -> Option<u64> {
        let key = peer_key(client).to_string();
        let mut engine = self.lock();
        engine.tick();
        let now = engine.time();
        engine.ban(&key).map(|b| b.until.since(now).get().max(1))
    }

    /// Counts a failed authentication from `client`; true when it starts a block.
    pub(crate) fn failed(&self, client: IpAddr) -> bool {
        let key = peer_key(client).to_string();
        self.lock()
            .incr(&key, METRIC)
            .is_ok_and(|v| !v.decisions.is_empty())
    }
}
