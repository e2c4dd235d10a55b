//! `Action`: code run when a decision starts, called with the seed API's arguments.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::rules::{Effect, RuleId, Ruleset};
use crate::time::{Seconds, Timestamp, Window};
use crate::token::Token;

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
/// The engine never runs actions itself: its verdict lists them ([`DueAction`]) and the
/// caller runs them with [`Ruleset::run_actions`] once no lock is held. An action that needs
/// I/O should hand the work to a queue. A panicking action is caught and counted.
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

/// An action the engine decided to run: which threshold's, for whom, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueAction {
    /// The threshold whose actions run.
    pub rule: RuleId,
    /// Who the decision is about (`global` for global-scope alerts).
    pub token: Token,
    /// The metric as the event named it (a family member's own name).
    pub metric: Arc<str>,
    /// The engine's time when it decided.
    pub at: Timestamp,
    /// A repeat call for a further event during the decision (`repeat_actions`).
    pub repeat: bool,
}

impl Ruleset {
    /// Runs the actions of `due`, in order, each told the seed API's arguments. Returns how
    /// many panicked (caught: one failing action neither stops the others nor the caller).
    pub fn run_actions(&self, due: &[DueAction]) -> u64 {
        let mut panics = 0;
        for d in due {
            let t = self.threshold(d.rule);
            let call = ActionCall {
                token: d.token.as_str(),
                duration: t.action_duration,
                metric: &d.metric,
                window: t.window,
                limit: t.limit.get(),
                tier: d.rule.tier as usize,
                at: d.at,
                effect: t.effect,
                repeat: d.repeat,
            };
            for action in &t.actions {
                if catch_unwind(AssertUnwindSafe(|| action.call(&call))).is_err() {
                    panics += 1;
                }
            }
        }
        panics
    }
}
