//! Decisions: what the engine decided and when (`BAN`/`UNBAN`, `ALERT`/`RECOVER`, `NOTIFY`/`NOTIFY_END`).

use std::fmt;
use std::sync::Arc;

use crate::rules::{Effect, Ruleset};
use crate::time::Timestamp;
use crate::token::Token;

/// Whether a decision starts or ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// The decision starts (`BAN`, `ALERT`, `NOTIFY`).
    Start,
    /// An active decision now reaches further (`EXTEND`, `NOTIFY_EXTEND`). Not a record of
    /// its own in CSV/JSONL output; stores use it to keep `until` current.
    Extend,
    /// The decision ends (`UNBAN`, `RECOVER`, `NOTIFY_END`).
    End,
}

/// A decision starting or ending: the record every front end prints, stores or acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionEvent {
    /// When it happened: the start, or exactly `until` for an end.
    pub at: Timestamp,
    /// Start or end.
    pub change: Change,
    /// What the decision does.
    pub effect: Effect,
    /// Who it is about (`global` for alerts).
    pub token: Token,
    /// The metric of the rule: the one that started it (start) or reached furthest (end).
    pub metric: Arc<str>,
    /// The rule's tier.
    pub tier: usize,
    /// The measure that reached the limit (start), or the rule's measure when last seen
    /// holding (end); for a recovery, the measure at recovery.
    pub value: u64,
    /// When the decision started.
    pub from: Timestamp,
    /// When it ends as far as is known now (a start's `until` can still be extended).
    pub until: Timestamp,
    /// An operator's reason, for a ban made or carried further by hand
    /// ([`crate::Engine::ban_by_hand`]); `None` for what rules decided alone.
    pub reason: Option<Arc<str>>,
}

impl DecisionEvent {
    /// Whether the rule it names is an operator's ban by hand ([`Ruleset::MANUAL`]).
    pub fn is_manual(&self) -> bool {
        &*self.metric == Ruleset::MANUAL
    }

    /// The record's verb: `BAN`, `EXTEND`, `UNBAN`, `ALERT`, `RECOVER`, `NOTIFY`,
    /// `NOTIFY_EXTEND` or `NOTIFY_END`.
    pub fn verb(&self) -> &'static str {
        match (self.effect, self.change) {
            (Effect::Block, Change::Start) => "BAN",
            (Effect::Block, Change::Extend) => "EXTEND",
            (Effect::Block, Change::End) => "UNBAN",
            (Effect::Alert, Change::Start) => "ALERT",
            (Effect::Alert, Change::Extend) => "ALERT_EXTEND",
            (Effect::Alert, Change::End) => "RECOVER",
            (Effect::Notify, Change::Start) => "NOTIFY",
            (Effect::Notify, Change::Extend) => "NOTIFY_EXTEND",
            (Effect::Notify, Change::End) => "NOTIFY_END",
        }
    }

    /// Whether this is a start or an end: what CSV/JSONL records list (extensions are not).
    pub fn is_record(&self) -> bool {
        self.change != Change::Extend
    }
}

impl fmt::Display for DecisionEvent {
    /// The CSV record `<unix_seconds>,<VERB>,<token>` (the access-log challenge's format).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{}", self.at, self.verb(), self.token)
    }
}

/// An active decision, as status queries show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionView {
    /// What it does.
    pub effect: Effect,
    /// The metric of the rule that started it ([`Ruleset::MANUAL`] for a ban by hand).
    pub metric: Arc<str>,
    /// That rule's tier.
    pub tier: usize,
    /// The measure that reached the limit.
    pub value: u64,
    /// When it started.
    pub from: Timestamp,
    /// When it ends if nothing extends it.
    pub until: Timestamp,
    /// The operator's reason, if the ban was made or carried further by hand.
    pub reason: Option<Arc<str>>,
}

impl DecisionView {
    /// Whether an operator started it by hand ([`Ruleset::MANUAL`]) rather than a rule.
    pub fn is_manual(&self) -> bool {
        &*self.metric == Ruleset::MANUAL
    }
}

/// A ban as a store keeps it, to be put back into an engine after a restart
/// ([`crate::Engine::restore_ban`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanRecord<'a> {
    /// Who is banned.
    pub token: &'a str,
    /// The metric of the rule that started it ([`Ruleset::MANUAL`] for a ban by hand).
    pub metric: &'a str,
    /// That rule's tier.
    pub tier: usize,
    /// The measure that reached the limit.
    pub value: u64,
    /// When it started.
    pub from: Timestamp,
    /// When it ends.
    pub until: Timestamp,
    /// The operator's reason, if it was made or carried further by hand.
    pub reason: Option<&'a str>,
}
