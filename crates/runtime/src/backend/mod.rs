//! `Backend`: where the engine's state lives (this process, or Redis shared by every node),
//! behind one trait so that the runtime never asks which.

mod memory;
mod redis;

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use banhammer_core::{
    BanRecord, DecisionEvent, DecisionView, EngineCounters, Event, EventError, MetricStatus, Rates,
    Seconds, Timestamp, Token, TokenLoad, Verdict, WindowsSnapshot,
};
use banhammer_store_sqlite::StoredDecision;

pub use memory::MemoryBackend;
pub use redis::RedisBackend;

/// Why a backend could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The event was refused (unknown metric, bad token, missing attribute…): a client fault.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The shared store could not be reached: the rules' fail policy answers instead.
    #[error("{0}")]
    Unavailable(String),
    /// The shared store answered something this node does not understand: a fault, not an
    /// outage (no fail policy hides it).
    #[error("{0}")]
    Protocol(String),
    /// Not available with this backend.
    #[error("{0}")]
    Unsupported(String),
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
    /// Answers this node could not understand (not outages).
    pub protocol_errors: u64,
}

/// One page of `status_all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPage {
    /// `(token, metric, rates)`.
    pub items: Vec<(String, String, Rates)>,
    /// Where the next page starts, if there is one.
    pub next: Option<String>,
}

/// What an unban did: the ends that were due by then, and the token's UNBAN, if it was
/// banned.
pub type Unban = (Vec<DecisionEvent>, Option<DecisionEvent>);

/// What a sweep found: the decisions that ended, and when to look again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Ends, in time order.
    pub ends: Vec<DecisionEvent>,
    /// The next deadline, if the backend knows it (else the ticker looks again in a second).
    pub next: Option<Timestamp>,
}

/// Where the engine's state lives. Every call reads time from the backend's clock (or, for
/// an event, its own time when that is later); decisions come back as data, actions due
/// included, and the caller stores and runs them.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Counts one event and decides.
    async fn observe(&self, event: &Event<'_>, rates: bool) -> Result<Verdict, BackendError>;

    /// Fires tier `tier` of `metric` for `token`, as if its limit were reached (`now`).
    async fn fire(&self, token: &str, metric: &str, tier: usize) -> Result<Verdict, BackendError>;

    /// An operator's ban by hand: bans `token` now for `duration` with `reason`, or carries
    /// its ban further (never shorter); the decisions, if any.
    async fn ban_by_hand(
        &self,
        token: &str,
        duration: Seconds,
        reason: Option<&str>,
    ) -> Result<Verdict, BackendError>;

    /// Ends `token`'s ban now. Returns the ends that were due by now (a ban over already is
    /// not there to end), and its UNBAN, if it was banned.
    async fn unban(&self, token: &str) -> Result<Unban, BackendError>;

    /// Ends every decision due by now.
    async fn sweep(&self) -> Result<Sweep, BackendError>;

    /// The input is over and the clock stops now: ends every active decision where it would
    /// end with no further time for its thresholds (a replay's end).
    async fn finish(&self) -> Result<Vec<DecisionEvent>, BackendError>;

    /// Every active ban, oldest first.
    async fn bans(&self) -> Result<Vec<(Token, DecisionView)>, BackendError>;

    /// How many tokens are banned now.
    async fn active_bans(&self) -> Result<usize, BackendError>;

    /// `token`'s active ban.
    async fn ban(&self, token: &str) -> Result<Option<DecisionView>, BackendError>;

    /// Whether this node already knows `token` to be banned now, without asking anyone:
    /// such an event can be answered at once and counted in the background.
    fn known_banned(&self, token: &str) -> bool;

    /// Restores a ban read back from the decision log at start. A backend whose state
    /// outlives the node (Redis) keeps its own bans and ignores this.
    fn restore_ban(&self, ban: &BanRecord<'_>) -> Result<(), EventError>;

    /// Whether the backend's shared state was lost since the last look (a store restarted
    /// without persistence): the runtime then puts back the bans its log holds.
    async fn lost_state(&self) -> bool {
        false
    }

    /// Puts back `bans` (active in this node's decision log) into a shared state that lost
    /// them; the BANs that were re-issued.
    async fn put_back(&self, _bans: &[StoredDecision]) -> Vec<DecisionEvent> {
        Vec::new()
    }

    /// Reads back a ban start from the decision log (for tiers that escalate repeat
    /// offenders). A backend whose state outlives the node (Redis) keeps its own.
    fn restore_offence(&self, _token: &str, _at: Timestamp) {}

    /// Starts noting whose windows change, for [`Backend::take_changed_windows`] (a backend
    /// whose windows outlive the node keeps none).
    fn track_windows(&self) {}

    /// The windows that changed since the last call, to be saved (a restart puts them back
    /// with [`Backend::restore_windows`], so nobody's counts reset).
    fn take_changed_windows(&self) -> Vec<WindowsSnapshot> {
        Vec::new()
    }

    /// Puts back windows saved before a restart.
    fn restore_windows(&self, _windows: &WindowsSnapshot) -> Result<(), EventError> {
        Ok(())
    }

    /// `status(token, metric)`, if this backend can answer it.
    fn status(&self, _token: &str, _metric: &str) -> Result<MetricStatus, BackendError> {
        Err(unsupported("status"))
    }

    /// A page of `status_all`, if this backend can answer it.
    fn status_page(
        &self,
        _cursor: Option<&str>,
        _limit: usize,
    ) -> Result<StatusPage, BackendError> {
        Err(unsupported("status_all"))
    }

    /// Each tier's measure and limit for about the `recent` most recently seen tokens (per
    /// shard), if this backend can answer it: a live console's "busiest tokens".
    fn recent_loads(&self, _recent: usize) -> Result<Vec<TokenLoad>, BackendError> {
        Err(unsupported("the busiest tokens"))
    }

    /// The in-memory engine's counters (zeros where the state is elsewhere).
    fn engine_counters(&self) -> EngineCounters {
        EngineCounters::default()
    }

    /// The shared store's health, if there is a shared store.
    fn store_health(&self) -> Option<StoreHealth> {
        None
    }

    /// Work the backend needs done for as long as it runs (listening to other nodes' bans);
    /// the runtime's guard runs it and stops it.
    fn background(&self) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        None
    }
}

fn unsupported(what: &str) -> BackendError {
    BackendError::Unsupported(format!(
        "{what} is answered from a node's memory; with the Redis store it is not available"
    ))
}
