//! banhammer-runtime: the async shell that owns an engine and its store.
//!
//! It answers events through a sharded [`banhammer_core::SharedEngine`], writes every decision
//! to the SQLite store *before* the answer that reports it, ends decisions on time with a
//! ticker task (no request needed), and runs actions off the request path through a bounded
//! queue (JSON-lines files, webhooks with retries). Front ends (the HTTP service) only
//! translate requests into calls on a [`Runtime`].

mod actions;
mod clock;
mod runtime;
mod writer;

pub use actions::{ActionQueue, ActionTarget, QueueCounters, QueuedAction};
pub use banhammer_store_redis::StoreUrl;
pub use clock::TokioClock;
pub use runtime::{Runtime, RuntimeCounters, RuntimeError, StatusPage, StoreHealth};
pub use writer::{DecisionWriter, PersistError};
