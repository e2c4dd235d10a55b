//! banhammer-core: the engine every banhammer front end shares.
//!
//! Events (`token`, `metric`, time, weight, attributes) go into exact sliding windows; each
//! metric's tiers of thresholds are checked against them; holding thresholds start, extend and
//! end decisions (ban, notice, alert) whose records every front end prints or stores. Time is
//! injected through [`Clock`]. This crate does no I/O, no async, and knows no file format.
//!
//! ```
//! use std::{num::NonZeroU64, sync::Arc};
//! use banhammer_core::*;
//!
//! let login_failed = MetricRule {
//!     name: "login_failed".into(),
//!     scope: Scope::Token,
//!     thresholds: vec![Threshold::new(
//!         NonZeroU64::new(3).unwrap(),
//!         Window::from_secs(60).unwrap(),
//!         Effect::Block,
//!         Seconds::new(600),
//!     )],
//! };
//! let rules = Arc::new(Ruleset::builder().metric(login_failed).build().unwrap());
//! let clock = ManualClock::new(Timestamp::from_unix(1_000));
//! let mut engine = Engine::new(rules, clock.clone());
//! assert!(engine.incr("10.0.0.1", "login_failed").unwrap().passed);
//! assert!(engine.incr("10.0.0.1", "login_failed").unwrap().passed);
//! let third = engine.incr("10.0.0.1", "login_failed").unwrap();
//! assert!(!third.passed);
//! assert_eq!(third.decisions[0].to_string(), "1000,BAN,10.0.0.1");
//! clock.advance(Seconds::new(600));
//! assert_eq!(engine.tick()[0].to_string(), "1600,UNBAN,10.0.0.1");
//! ```
#![warn(clippy::pedantic)]
// Counts and indices are far below 2^32 (tiers, shards, buckets); the casts are checked by
// construction, not worth a fallible conversion on the hot path.
#![allow(clippy::cast_possible_truncation)]
#![allow(clippy::module_name_repetitions)]
// Every fallible call returns the one `EventError` enum, whose variants document themselves.
#![allow(clippy::missing_errors_doc)]
// Getters whose result is obviously used; the attribute on each would be noise.
#![allow(clippy::must_use_candidate)]

mod action;
mod clock;
mod decision;
mod distinct;
mod engine;
mod error;
mod escape;
mod event;
mod resolve;
mod rules;
mod shared;
mod time;
mod token;
mod window;

pub use action::{Action, ActionCall, DueAction, NamedNoop};
pub use clock::{Clock, ManualClock, SystemClock};
pub use decision::{BanRecord, Change, DecisionEvent, DecisionView};
pub use distinct::DistinctWindow;
pub use engine::{
    Engine, EngineCounters, MetricStatus, Rates, TierMeasure, TokenHasher, TokenLoad, Verdict,
    WindowsData, WindowsSnapshot,
};
pub use error::{EventError, MAX_MEMBERS, MAX_NAME_LEN, MAX_REASON_LEN};
pub use escape::{escape, is_unsafe, Escaped};
pub use event::Event;
pub use resolve::{check_token, MetricRef, ResolvedEvent};
pub use rules::{
    metric_matches, BanPolicy, Effect, Escalation, Kind, MeasureSlot, MetricId, MetricRule,
    RuleError, RuleId, Ruleset, RulesetBuilder, Scope, Threshold, WindowLayout,
};
pub use shared::SharedEngine;
pub use time::{Seconds, Timestamp, Window};
pub use token::Token;
pub use window::SlidingWindow;
