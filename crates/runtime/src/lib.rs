//! banhammer-runtime: the async shell that owns a backend and its decision log.
//!
//! A [`Runtime`] answers events through a [`Backend`] (a sharded in-memory engine, or Redis
//! shared by many nodes), writes every decision to the SQLite store *before* the answer that
//! reports it, ends decisions on time with a ticker task (no request needed), and runs
//! actions after the engine has answered. Its background tasks belong to the
//! [`RuntimeGuard`] that starts them. Front ends (the HTTP service, `eval`) only translate
//! their input into calls on a `Runtime` or a `Backend`.

mod actions;
pub mod backend;
mod clock;
mod feed;
mod runtime;
mod writer;

pub use actions::{ActionQueue, ActionTarget, QueueCounters, QueuedAction};
pub use backend::{
    Backend, BackendError, MemoryBackend, RedisBackend, StatusPage, StoreHealth, Sweep, Unban,
};
pub use banhammer_store_redis::StoreUrl;
pub use banhammer_store_sqlite::StoredDecision;
pub use clock::TokioClock;
pub use feed::{MetricCounts, MetricRate, DECISION_FEED_CAPACITY, RATE_HISTORY_SECS};
pub use runtime::{
    CommittedListener, Runtime, RuntimeCounters, RuntimeError, RuntimeGuard, SAVE_WINDOWS_EVERY,
};
pub use writer::{DecisionWriter, PersistError, WriterHealth, MAX_PENDING};
