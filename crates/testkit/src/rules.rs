//! Rules in one line each: thresholds, metrics and rule sets as tests write them, instead of
//! `Threshold::new(NonZeroU64::new(3).unwrap(), Window::from_secs(60).unwrap(), …)`, a
//! `MetricRule { … }` and a `Ruleset::builder()` chain in every test file.
//!
//! Thresholds are generic over what an action is (`Threshold<A>`), as in the core: the engine's
//! `Arc<dyn Action>` by default, Python callables in the Python front end.
//!
//! ```
//! use banhammer_core::{BanPolicy, Effect};
//! use banhammer_testkit::rules::{block, metric, global, ruleset, threshold, ThresholdExt};
//!
//! // docs/semantics.md's example: 3 events in 10 s ban for 100 s, after the violation.
//! let example = ruleset([metric(
//!     "m",
//!     [block(3, 10, 100).with_policy(BanPolicy::AfterViolation)],
//! )]);
//! assert_eq!(example.metrics().count(), 1);
//! // A credential-stuffing tier and a global traffic alert.
//! let rules = ruleset([
//!     metric("detect:*", [block(3, 5, 30).distinct("email")]),
//!     global("hits", [threshold(100, 10, Effect::Alert, 0)]),
//! ]);
//! assert!(!rules.rates());
//! ```

use std::num::NonZeroU64;
use std::sync::Arc;

use banhammer_core::{
    BanPolicy, Effect, Kind, MetricRule, Ruleset, RulesetBuilder, Scope, Seconds, Threshold,
    Timestamp, Window,
};

/// The time `secs` seconds after the Unix epoch.
pub fn ts(secs: i64) -> Timestamp {
    Timestamp::from_unix(secs)
}

/// A `count` threshold: `limit` events in `window_secs` seconds start `effect` for
/// `duration_secs` seconds (`after_trigger`, no actions). Panics on a zero limit or window.
pub fn threshold<A>(
    limit: u64,
    window_secs: u64,
    effect: Effect,
    duration_secs: u64,
) -> Threshold<A> {
    Threshold::new(
        NonZeroU64::new(limit).expect("a limit of at least 1"),
        Window::from_secs(window_secs).expect("a window of at least 1 second"),
        effect,
        Seconds::new(duration_secs),
    )
}

/// A threshold that bans: `limit` events in `window_secs` seconds ban for `duration_secs`.
pub fn block<A>(limit: u64, window_secs: u64, duration_secs: u64) -> Threshold<A> {
    threshold(limit, window_secs, Effect::Block, duration_secs)
}

/// A threshold that only notifies (its actions run; the token still passes).
pub fn notify<A>(limit: u64, window_secs: u64, duration_secs: u64) -> Threshold<A> {
    threshold(limit, window_secs, Effect::Notify, duration_secs)
}

/// What tests change on a threshold after building it, one call each.
pub trait ThresholdExt<A>: Sized {
    /// The same threshold with `policy`.
    #[must_use]
    fn with_policy(self, policy: BanPolicy) -> Self;
    /// The same threshold measuring the distinct values of `attr` instead of the count.
    #[must_use]
    fn distinct(self, attr: &str) -> Self;
    /// The same threshold with one more action.
    #[must_use]
    fn with_action(self, action: A) -> Self;
}

impl<A> ThresholdExt<A> for Threshold<A> {
    fn with_policy(mut self, policy: BanPolicy) -> Self {
        self.policy = policy;
        self
    }

    fn distinct(mut self, attr: &str) -> Self {
        self.kind = Kind::Distinct(attr.into());
        self
    }

    fn with_action(mut self, action: A) -> Self {
        self.actions.push(action);
        self
    }
}

/// A metric of `scope` called `name` with its tiers in order.
pub fn scoped<A>(
    name: &str,
    scope: Scope,
    thresholds: impl IntoIterator<Item = Threshold<A>>,
) -> MetricRule<A> {
    MetricRule {
        name: name.into(),
        scope,
        thresholds: thresholds.into_iter().collect(),
    }
}

/// A token-scope metric (each token counted apart).
pub fn metric<A>(name: &str, thresholds: impl IntoIterator<Item = Threshold<A>>) -> MetricRule<A> {
    scoped(name, Scope::Token, thresholds)
}

/// A global-scope metric (all tokens counted together; its tiers are alerts).
pub fn global<A>(name: &str, thresholds: impl IntoIterator<Item = Threshold<A>>) -> MetricRule<A> {
    scoped(name, Scope::Global, thresholds)
}

/// A builder holding `metrics`, for the engine-wide options (`rates`, `max_tokens`).
pub fn builder(metrics: impl IntoIterator<Item = MetricRule>) -> RulesetBuilder {
    metrics
        .into_iter()
        .fold(Ruleset::builder(), RulesetBuilder::metric)
}

/// The rule set of `metrics`, without rates; panics if the core refuses it.
pub fn ruleset(metrics: impl IntoIterator<Item = MetricRule>) -> Arc<Ruleset> {
    build(builder(metrics))
}

/// The rule set of `metrics`, keeping 1/10/60-minute rates (and so an hour of events).
pub fn ruleset_with_rates(metrics: impl IntoIterator<Item = MetricRule>) -> Arc<Ruleset> {
    build(builder(metrics).rates(true))
}

/// Builds, panicking with the core's reasons if it refuses.
pub fn build(builder: RulesetBuilder) -> Arc<Ruleset> {
    match builder.build() {
        Ok(rules) => Arc::new(rules),
        Err(why) => panic!("the core refused the test's rules: {why:?}"),
    }
}
