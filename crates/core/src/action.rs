//! `Action`: code run when a decision starts, called with the seed API's arguments.

use std::fmt;

use crate::rules::Effect;
use crate::time::{Seconds, Timestamp, Window};

/// What an action is told when it runs: the seed API's `(token, duration, metric, window,
/// limit)`, plus when and why.
#[derive(Debug, Clone, Copy)]
pub struct ActionCall<'a> {
    /// Who the decision is about (`global` for global-scope alerts).
    pub token: &'a str,
    /// The threshold's action duration.
    pub duration: Seconds,
    /// The metric whose threshold fired.
    pub metric: &'a str,
    /// The threshold's window.
    pub window: Window,
    /// The threshold's limit.
    pub limit: u64,
    /// The threshold's tier (its index in the metric's list).
    pub tier: usize,
    /// When the engine ran the action.
    pub at: Timestamp,
    /// What the decision does.
    pub effect: Effect,
    /// True when this is a repeat call for a further event during the decision.
    pub repeat: bool,
}

/// Something to do when a threshold fires: block, report, record, run a command, a callback.
///
/// Actions run synchronously inside the engine call, after its state is updated; an action
/// that needs I/O should hand the work to a queue. A panicking action is caught and counted.
pub trait Action: Send + Sync + fmt::Debug {
    /// A short name for logs and records, such as `block_local`.
    fn name(&self) -> &str;
    /// Runs the action.
    fn call(&self, call: &ActionCall<'_>);
}

/// An action that does nothing but carry a name; the decision itself is the effect
/// (`block_local`: the engine answers `passed = false` while the ban lasts).
#[derive(Debug, Clone)]
pub struct NamedNoop(pub String);

impl Action for NamedNoop {
    fn name(&self) -> &str {
        &self.0
    }

    fn call(&self, _call: &ActionCall<'_>) {}
}
