//! `AppState`: what every handler shares — the runtime, the settings, the metrics.

use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use banhammer_config::ServeSettings;
use banhammer_runtime::{ActionQueue, Runtime};

use crate::auth_limit::AuthLimiter;
use crate::conn::ConnStats;
use crate::crowdsec::Bouncers;
use crate::events::Consoles;
use crate::metrics::Metrics;

/// Shared state of the service; a cheap `Clone` handle.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Replaced by a configuration reload, while [`Inner::gate`] holds requests back.
    runtime: RwLock<Arc<Runtime>>,
    /// Every request holds it shared; a reload holds it alone while it swaps the runtime, so
    /// that no event is counted by a runtime that has already saved its windows.
    gate: tokio::sync::RwLock<()>,
    settings: ServeSettings,
    metrics: Metrics,
    /// Written by the accept loop ([`crate::run`]), read by `/metrics`.
    connections: Arc<ConnStats>,
    /// Failed admin authentications per client address.
    auth_limiter: AuthLimiter,
    /// CrowdSec bouncers: what each key was last given, and failed key attempts.
    bouncers: Bouncers,
    /// Live consoles: the cap on their streams, their shared rates.
    consoles: Consoles,
    openapi: OnceLock<String>,
    actions: OnceLock<Arc<ActionQueue>>,
}

impl AppState {
    /// State for a service over `runtime` with `settings`.
    pub fn new(runtime: Arc<Runtime>, settings: ServeSettings) -> Self {
        AppState {
            inner: Arc::new(Inner {
                auth_limiter: AuthLimiter::new(Arc::clone(runtime.clock())),
                bouncers: Bouncers::new(Arc::clone(runtime.clock())),
                metrics: Metrics::new(runtime.store_health().is_some()),
                runtime: RwLock::new(runtime),
                gate: tokio::sync::RwLock::new(()),
                settings,
                connections: Arc::default(),
                consoles: Consoles::new(),
                openapi: OnceLock::new(),
                actions: OnceLock::new(),
            }),
        }
    }

    /// Reports `queue`'s counters in `/metrics`.
    #[must_use]
    pub fn with_action_queue(self, queue: Arc<ActionQueue>) -> Self {
        let _ = self.inner.actions.set(queue);
        self
    }

    pub(crate) fn action_queue(&self) -> Option<&Arc<ActionQueue>> {
        self.inner.actions.get()
    }

    /// The runtime (the one in place when the request started: a reload waits for the
    /// requests in flight).
    pub fn runtime(&self) -> Arc<Runtime> {
        Arc::clone(
            &self
                .inner
                .runtime
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Waits for the requests in flight to be answered and holds new ones back until the
    /// returned guard is dropped: a configuration reload swaps the runtime meanwhile.
    pub async fn hold_requests(&self) -> HeldRequests<'_> {
        HeldRequests {
            state: self,
            _gate: self.inner.gate.write().await,
        }
    }

    /// Holds the gate for one request (the middleware of [`crate::app`]).
    pub(crate) async fn enter(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.inner.gate.read().await
    }

    /// The `[serve]` settings.
    pub fn settings(&self) -> &ServeSettings {
        &self.inner.settings
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(crate) fn auth_limiter(&self) -> &AuthLimiter {
        &self.inner.auth_limiter
    }

    pub(crate) fn bouncers(&self) -> &Bouncers {
        &self.inner.bouncers
    }

    pub(crate) fn consoles(&self) -> &Consoles {
        &self.inner.consoles
    }

    pub(crate) fn conn_stats(&self) -> &Arc<ConnStats> {
        &self.inner.connections
    }

    pub(crate) fn set_openapi(&self, doc: utoipa::openapi::OpenApi) {
        let _ = self
            .inner
            .openapi
            .set(doc.to_pretty_json().unwrap_or_default());
    }

    pub(crate) fn openapi(&self) -> &str {
        self.inner.openapi.get().map_or("{}", String::as_str)
    }
}

/// Requests held back (see [`AppState::hold_requests`]); they go on when this is dropped.
#[derive(Debug)]
pub struct HeldRequests<'a> {
    state: &'a AppState,
    _gate: tokio::sync::RwLockWriteGuard<'a, ()>,
}

impl HeldRequests<'_> {
    /// The runtime being replaced.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.state.runtime()
    }

    /// Puts `runtime` in place of the current one: the held requests, and all later ones,
    /// are answered by it.
    pub fn replace_runtime(&self, runtime: Arc<Runtime>) {
        *self
            .state
            .inner
            .runtime
            .write()
            .unwrap_or_else(PoisonError::into_inner) = runtime;
    }
}
