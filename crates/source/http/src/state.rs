//! `AppState`: what every handler shares — the runtime, the settings, the metrics.

use std::sync::{Arc, OnceLock};

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
    runtime: Arc<Runtime>,
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
                auth_limiter: AuthLimiter::new(Arc::clone(&runtime)),
                bouncers: Bouncers::new(Arc::clone(&runtime)),
                runtime,
                settings,
                metrics: Metrics::new(),
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

    /// The runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.inner.runtime
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
