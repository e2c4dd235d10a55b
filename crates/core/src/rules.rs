//! The validated rule set: metrics, their tiers of thresholds, and what firing does.

use std::num::{NonZeroU64, NonZeroUsize};
use std::sync::Arc;

use hashbrown::HashMap;

use crate::action::Action;
use crate::error::MAX_NAME_LEN;
use crate::time::{Seconds, Window};

/// Index of a metric in its [`Ruleset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricId(pub(crate) u32);

impl MetricId {
    /// The metric's position in the rule set.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One threshold of one metric: the unit a decision is attributed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId {
    /// The metric.
    pub metric: MetricId,
    /// The tier: the threshold's index in the metric's list.
    pub tier: u32,
}

impl RuleId {
    /// An operator's ban by hand ([`crate::Engine::ban_by_hand`]): no metric of the rule set,
    /// named [`Ruleset::MANUAL`] in records.
    pub const MANUAL: RuleId = RuleId {
        metric: MetricId(u32::MAX),
        tier: 0,
    };
}

/// Who a metric counts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Each token has its own windows (the default).
    #[default]
    Token,
    /// All tokens count together (traffic alerts).
    Global,
}

/// What a threshold measures over its window.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Kind {
    /// The weight of events (1 each unless the source says otherwise).
    #[default]
    Count,
    /// The number of distinct values of an attribute.
    Distinct(Box<str>),
    /// The sum of an attribute's integer values.
    Sum(Box<str>),
}

/// What a decision does while it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// A ban: the token does not pass. `BAN` … `UNBAN`.
    Block,
    /// Only runs actions (report, record): the token still passes. `NOTIFY` … `NOTIFY_END`.
    Notify,
    /// A global-scope traffic alert. `ALERT` … `RECOVER`.
    Alert,
}

/// How far a decision reaches past the moments its threshold holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BanPolicy {
    /// `until = max(until, t + action_duration)` for each event `t` at which the threshold holds.
    #[default]
    AfterTrigger,
    /// `until = (last second at which the threshold still holds) + action_duration`, bounded
    /// by the clock.
    AfterViolation,
}

/// A threshold: when its measure over `window` reaches `limit`, the decision `effect` starts.
///
/// `A` is what an action is at this stage: the engine runs [`Action`] objects; a
/// configuration holds action names until they are resolved ([`Threshold::map_actions`]).
#[derive(Debug, Clone)]
pub struct Threshold<A = Arc<dyn Action>> {
    /// The limit; token-scope thresholds hold when the measure reaches it (≥), global-scope
    /// alerts when the measure exceeds it (>).
    pub limit: NonZeroU64,
    /// The sliding window the measure is taken over.
    pub window: Window,
    /// What is measured.
    pub kind: Kind,
    /// What the decision does.
    pub effect: Effect,
    /// How far the decision reaches.
    pub policy: BanPolicy,
    /// How long the decision lasts after the threshold holds (ignored by alerts, which last
    /// while the measure exceeds the limit).
    pub action_duration: Seconds,
    /// Run when the decision starts.
    pub actions: Vec<A>,
    /// Also run the actions on every further event of the metric while the decision lasts.
    pub repeat_actions: bool,
    /// When the shared state (Redis) cannot be reached: deny (true) or pass (false, default)
    /// the metric's events. The in-memory engine never fails.
    pub fail_closed: bool,
    /// Longer bans for repeat offenders (block tiers only).
    pub escalate: Option<Escalation>,
}

/// Longer bans for repeat offenders (as fail2ban's `bantime.increment` and `CrowdSec`'s recidivism):
/// the `n`-th ban of a token started within `memory` of its earlier ones lasts
/// `action_duration × factor^(n−1)`, at most `max` (never less than `action_duration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escalation {
    /// What each earlier ban within `memory` multiplies the duration by.
    pub factor: u32,
    /// The longest a ban of this tier gets.
    pub max: Seconds,
    /// How long a ban counts as an earlier offence, from its start.
    pub memory: Seconds,
}

impl Escalation {
    /// The duration of the `n`-th ban (`n ≥ 1`; the first is `base`).
    pub fn duration(&self, base: Seconds, n: u32) -> Seconds {
        let mut d = base.get();
        for _ in 1..n {
            d = d.saturating_mul(u64::from(self.factor));
            if d >= self.max.get() {
                break;
            }
        }
        Seconds::new(d.min(self.max.get()).max(base.get()))
    }
}

impl<A> Threshold<A> {
    /// A `count` threshold with the given effect, `after_trigger`, no actions.
    pub fn new(limit: NonZeroU64, window: Window, effect: Effect, duration: Seconds) -> Self {
        Threshold {
            limit,
            window,
            kind: Kind::Count,
            effect,
            policy: BanPolicy::AfterTrigger,
            action_duration: duration,
            actions: Vec::new(),
            repeat_actions: false,
            fail_closed: false,
            escalate: None,
        }
    }

    /// How much of the measure must be seen for the threshold to hold: `limit` for
    /// "reaches", `limit + 1` for an alert's "exceeds".
    pub(crate) fn needed(&self) -> u64 {
        match self.effect {
            Effect::Alert => self.limit.get().saturating_add(1),
            Effect::Block | Effect::Notify => self.limit.get(),
        }
    }

    /// The same threshold with each action turned into a `B` (names into actions).
    pub fn map_actions<B>(self, mut f: impl FnMut(A) -> B) -> Threshold<B> {
        match self.try_map_actions(|a| Ok::<B, std::convert::Infallible>(f(a))) {
            Ok(t) => t,
            Err(never) => match never {},
        }
    }

    /// Like [`Threshold::map_actions`], stopping at the first action `f` refuses.
    pub fn try_map_actions<B, E>(
        self,
        f: impl FnMut(A) -> Result<B, E>,
    ) -> Result<Threshold<B>, E> {
        let actions = self.actions.into_iter().map(f).collect::<Result<_, E>>()?;
        Ok(Threshold {
            limit: self.limit,
            window: self.window,
            kind: self.kind,
            effect: self.effect,
            policy: self.policy,
            action_duration: self.action_duration,
            actions,
            repeat_actions: self.repeat_actions,
            fail_closed: self.fail_closed,
            escalate: self.escalate,
        })
    }
}

/// A metric: a named kind of event and its hierarchy of thresholds.
#[derive(Debug, Clone)]
pub struct MetricRule<A = Arc<dyn Action>> {
    /// The metric's name, as events carry it.
    pub name: Arc<str>,
    /// Per token or global.
    pub scope: Scope,
    /// Tier 0, tier 1, …: each checked on its own.
    pub thresholds: Vec<Threshold<A>>,
}

impl<A> MetricRule<A> {
    /// Whether this metric is a family (`PREFIX:*`) whose members count apart.
    pub fn is_family(&self) -> bool {
        self.name.ends_with(":*")
    }

    /// Whether `name` is this metric, or a member of this family.
    pub fn matches(&self, name: &str) -> bool {
        metric_matches(&self.name, name)
    }

    /// The same metric with each action turned into a `B`.
    pub fn try_map_actions<B, E>(
        self,
        mut f: impl FnMut(A) -> Result<B, E>,
    ) -> Result<MetricRule<B>, E> {
        Ok(MetricRule {
            name: self.name,
            scope: self.scope,
            thresholds: self
                .thresholds
                .into_iter()
                .map(|t| t.try_map_actions(&mut f))
                .collect::<Result<_, E>>()?,
        })
    }
}

/// Whether an event's metric `name` is counted by the metric defined as `defined`: the same
/// name, or a member of the family (`detect:login` of `detect:*`; `detect:` alone is not).
pub fn metric_matches(defined: &str, name: &str) -> bool {
    match defined.strip_suffix('*') {
        Some(prefix) if prefix.ends_with(':') => {
            name.len() > prefix.len() && name.starts_with(prefix)
        }
        _ => defined == name,
    }
}

/// Where a tier reads its measure from, among a metric's windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeasureSlot {
    /// The count window (also the rates').
    Count,
    /// The sum window of the metric's n-th `sum` attribute.
    Sum(usize),
    /// The distinct set of the metric's n-th `distinct` attribute.
    Distinct(usize),
}

/// A metric's windows as the engine lays them out: what another store of the same state
/// (the Redis script) must keep to decide the same way.
#[derive(Debug, Clone, Copy)]
pub struct WindowLayout<'a> {
    /// How long the count window keeps events.
    pub count_horizon: Seconds,
    /// The `sum` windows: attribute and horizon.
    pub sums: &'a [(Box<str>, Seconds)],
    /// The `distinct` sets: attribute, horizon, values kept.
    pub distincts: &'a [(Box<str>, Seconds, usize)],
    /// For each tier, the window it measures.
    pub slots: &'a [MeasureSlot],
}

/// A metric plus the window layout derived from its thresholds.
#[derive(Debug)]
pub(crate) struct CompiledMetric {
    pub(crate) rule: MetricRule,
    /// How long the count window keeps events (longest count window, or an hour for rates).
    pub(crate) count_horizon: Seconds,
    /// One sum window per attribute: (attr, horizon).
    pub(crate) sums: Vec<(Box<str>, Seconds)>,
    /// One distinct set per attribute: (attr, horizon, values kept).
    pub(crate) distincts: Vec<(Box<str>, Seconds, usize)>,
    /// For each tier, which window it measures.
    pub(crate) slots: Vec<MeasureSlot>,
}

/// A problem that makes a rule set impossible, found when it is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// Two metrics share a name.
    #[error("metric `{0}` is defined twice")]
    DuplicateMetric(String),
    /// A metric named as what records call a ban by hand ([`Ruleset::MANUAL`]).
    #[error("metric name `{0}` is reserved: records name bans made by hand so")]
    ReservedName(String),
    /// A metric name is empty or too long, or a family name is not `PREFIX:*`.
    #[error("metric name `{0}` must be 1 to {MAX_NAME_LEN} bytes, and a family must be named `PREFIX:*`")]
    BadMetricName(String),
    /// Families count each member apart per token; a global family makes no sense.
    #[error("metric family `{0}` cannot be global-scope")]
    GlobalFamily(String),
    /// A global-scope tier that is not an alert, or an alert on a token-scope metric.
    #[error("metric `{metric}` tier {tier}: {why}")]
    ScopeEffect {
        /// The metric.
        metric: String,
        /// The tier.
        tier: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// A block or notify decision of zero seconds would never be seen.
    #[error("metric `{metric}` tier {tier}: action_duration must be at least 1 second")]
    ZeroDuration {
        /// The metric.
        metric: String,
        /// The tier.
        tier: usize,
    },
    /// A `distinct` limit beyond what is kept in memory per token.
    #[error("metric `{metric}` tier {tier}: a distinct limit may be at most {max}")]
    DistinctTooLarge {
        /// The metric.
        metric: String,
        /// The tier.
        tier: usize,
        /// The largest accepted.
        max: u64,
    },
    /// A window or action duration longer than [`Ruleset::MAX_SPAN`].
    #[error("metric `{metric}` tier {tier}: {field} must be at most {} seconds (10 years)", Ruleset::MAX_SPAN.get())]
    SpanTooLong {
        /// The metric.
        metric: String,
        /// The tier.
        tier: usize,
        /// `window` or `action_duration`.
        field: &'static str,
    },
    /// An `escalate` setting that cannot work.
    #[error("metric `{metric}` tier {tier}: escalate: {why}")]
    BadEscalation {
        /// The metric.
        metric: String,
        /// The tier.
        tier: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// An attribute name that is empty.
    #[error("metric `{metric}` tier {tier}: the attribute name is empty")]
    EmptyAttr {
        /// The metric.
        metric: String,
        /// The tier.
        tier: usize,
    },
}

/// The validated rules an engine runs: metrics by name, plus engine-wide options.
#[derive(Debug)]
pub struct Ruleset {
    metrics: Vec<CompiledMetric>,
    by_name: HashMap<Arc<str>, MetricId>,
    /// Metric families (`detect:*`): the prefix (`detect:`) and the rule every member shares.
    families: Vec<(Box<str>, MetricId)>,
    rates: bool,
    max_tokens: NonZeroUsize,
    horizon: Seconds,
    /// See [`Ruleset::offence_memory`].
    offence_memory: Option<Seconds>,
    /// [`Ruleset::MANUAL`], shared by the records of bans made by hand.
    manual: Arc<str>,
}

/// The rate statistics' windows: 1, 10 and 60 minutes.
pub(crate) const RATE_WINDOWS: [u64; 3] = [60, 600, 3600];

impl Ruleset {
    /// The largest `distinct` limit: that many values are kept per token and metric.
    pub const MAX_DISTINCT_LIMIT: u64 = 1024;

    /// The longest window or action duration: ten years. Nothing about abuse needs more, and
    /// a longer span would overflow the time arithmetic of a store that counts in floating
    /// point (Redis's Lua) long before it overflows the engine's.
    pub const MAX_SPAN: Seconds = Seconds::new(10 * 365 * 86_400);

    /// The rule name records, logs and listings give a ban made by hand
    /// ([`crate::Engine::ban_by_hand`]), tier 0: no metric may be called so.
    pub const MANUAL: &'static str = "manual";

    /// The cap on tracked tokens when none is given: a million tokens with one event each
    /// take about 210 MB (ARCHITECTURE.md, "Memory per tracked token"); every front end is
    /// bounded without a configuration.
    pub const DEFAULT_MAX_TOKENS: NonZeroUsize = match NonZeroUsize::new(1_000_000) {
        Some(n) => n,
        None => NonZeroUsize::MIN,
    };

    /// Starts an empty rule set.
    pub fn builder() -> RulesetBuilder {
        RulesetBuilder::default()
    }

    /// The metric called `name`: its own rule, or the rule of the family it belongs to
    /// (`detect:login` belongs to `detect:*`).
    pub fn metric_id(&self, name: &str) -> Option<MetricId> {
        if let Some(id) = self.by_name.get(name) {
            return Some(*id);
        }
        self.families
            .iter()
            .find(|(prefix, _)| name.len() > prefix.len() && name.starts_with(&**prefix))
            .map(|(_, id)| *id)
    }

    /// Whether any metric is a family (`NAME:*`), so that tokens keep lists of members.
    pub fn has_families(&self) -> bool {
        !self.families.is_empty()
    }

    /// Whether `id` is a family (`NAME:*`) whose members count apart.
    pub fn is_family(&self, id: MetricId) -> bool {
        self.metrics[id.index()].rule.is_family()
    }

    /// The metric `id`.
    pub fn metric(&self, id: MetricId) -> &MetricRule {
        &self.metrics[id.index()].rule
    }

    /// The window layout of metric `id`.
    pub fn layout(&self, id: MetricId) -> WindowLayout<'_> {
        let m = &self.metrics[id.index()];
        WindowLayout {
            count_horizon: m.count_horizon,
            sums: &m.sums,
            distincts: &m.distincts,
            slots: &m.slots,
        }
    }

    pub(crate) fn compiled(&self, id: MetricId) -> &CompiledMetric {
        &self.metrics[id.index()]
    }

    /// Every metric, in definition order.
    pub fn metrics(&self) -> impl Iterator<Item = (MetricId, &MetricRule)> + '_ {
        self.metrics
            .iter()
            .enumerate()
            .map(|(i, m)| (MetricId(i as u32), &m.rule))
    }

    /// The name records give `rule`: a family's `member` when there is one, the metric's
    /// name, or [`Ruleset::MANUAL`] for [`RuleId::MANUAL`].
    pub fn rule_name(&self, rule: RuleId, member: Option<&Arc<str>>) -> Arc<str> {
        match member {
            Some(m) => Arc::clone(m),
            None if rule == RuleId::MANUAL => Arc::clone(&self.manual),
            None => Arc::clone(&self.metric(rule.metric).name),
        }
    }

    /// The threshold `rule`.
    pub fn threshold(&self, rule: RuleId) -> &Threshold {
        &self.metric(rule.metric).thresholds[rule.tier as usize]
    }

    /// The longest `escalate.memory` of any tier: how long a ban start is remembered as an
    /// offence; `None` when no tier escalates (then nothing is remembered).
    pub fn offence_memory(&self) -> Option<Seconds> {
        self.offence_memory
    }

    /// Whether 1m/10m/60m rates are kept (and so an hour of every metric's events).
    pub fn rates(&self) -> bool {
        self.rates
    }

    /// The cap on tracked tokens ([`Ruleset::DEFAULT_MAX_TOKENS`] unless set).
    pub fn max_tokens(&self) -> NonZeroUsize {
        self.max_tokens
    }

    /// The longest any event can matter: after this long without events a token is forgotten.
    pub fn horizon(&self) -> Seconds {
        self.horizon
    }
}

/// Builds a [`Ruleset`], checking what types cannot.
#[derive(Debug, Default)]
pub struct RulesetBuilder {
    metrics: Vec<MetricRule>,
    rates: bool,
    max_tokens: Option<NonZeroUsize>,
}

impl RulesetBuilder {
    /// Adds a metric.
    #[must_use]
    pub fn metric(mut self, metric: MetricRule) -> Self {
        self.metrics.push(metric);
        self
    }

    /// Keeps 1m/10m/60m rates for every metric.
    #[must_use]
    pub fn rates(mut self, on: bool) -> Self {
        self.rates = on;
        self
    }

    /// Caps the number of tracked tokens: past it, the token with the least at stake among
    /// the least recently seen is evicted (docs/semantics.md, "Memory"). `None` keeps the
    /// default,
    /// [`Ruleset::DEFAULT_MAX_TOKENS`]: there is no uncapped engine, since untrusted tokens
    /// would then grow memory without bound.
    #[must_use]
    pub fn max_tokens(mut self, cap: Option<NonZeroUsize>) -> Self {
        self.max_tokens = cap;
        self
    }

    /// Checks the rules and derives each metric's window layout. Returns every problem found.
    pub fn build(self) -> Result<Ruleset, Vec<RuleError>> {
        let mut errors = Vec::new();
        let mut by_name = HashMap::new();
        let mut families = Vec::new();
        let mut metrics = Vec::with_capacity(self.metrics.len());
        for rule in self.metrics {
            if let Some(prefix) = rule.name.strip_suffix('*') {
                if !prefix.ends_with(':')
                    || prefix.len() < 2
                    || prefix[..prefix.len() - 1].contains('*')
                {
                    errors.push(RuleError::BadMetricName(rule.name.to_string()));
                } else if rule.scope == Scope::Global {
                    errors.push(RuleError::GlobalFamily(rule.name.to_string()));
                }
                families.push((prefix.into(), MetricId(metrics.len() as u32)));
            }
            if rule.name.is_empty() || rule.name.len() > MAX_NAME_LEN {
                errors.push(RuleError::BadMetricName(rule.name.to_string()));
            }
            if &*rule.name == Ruleset::MANUAL {
                errors.push(RuleError::ReservedName(rule.name.to_string()));
            }
            let id = MetricId(metrics.len() as u32);
            if by_name.insert(rule.name.clone(), id).is_some() {
                errors.push(RuleError::DuplicateMetric(rule.name.to_string()));
            }
            metrics.push(compile(rule, self.rates, &mut errors));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let horizon = metrics
            .iter()
            .flat_map(|m| {
                std::iter::once(m.count_horizon)
                    .chain(m.sums.iter().map(|s| s.1))
                    .chain(m.distincts.iter().map(|d| d.1))
            })
            .max()
            .unwrap_or(Seconds::ZERO);
        let offence_memory = metrics
            .iter()
            .flat_map(|m| m.rule.thresholds.iter().filter_map(|t| t.escalate))
            .map(|e| e.memory)
            .max();
        Ok(Ruleset {
            metrics,
            by_name,
            families,
            rates: self.rates,
            max_tokens: self.max_tokens.unwrap_or(Ruleset::DEFAULT_MAX_TOKENS),
            horizon,
            offence_memory,
            manual: Arc::from(Ruleset::MANUAL),
        })
    }
}

/// Why `t`'s `escalate` setting cannot work, if it cannot.
fn check_escalation<A>(
    t: &Threshold<A>,
    metric: &dyn Fn() -> String,
    tier: usize,
    errors: &mut Vec<RuleError>,
) {
    let Some(e) = t.escalate else {
        return;
    };
    let why = if t.effect != Effect::Block {
        Some("only a ban (a block_local tier) can escalate")
    } else if e.factor == 0 {
        Some("factor must be at least 1")
    } else if e.memory == Seconds::ZERO {
        Some("memory must be at least 1 second")
    } else if e.memory > Ruleset::MAX_SPAN || e.max > Ruleset::MAX_SPAN {
        Some("max and memory must be at most 10 years")
    } else {
        None
    };
    if let Some(why) = why {
        errors.push(RuleError::BadEscalation {
            metric: metric(),
            tier,
            why,
        });
    }
}

fn compile(rule: MetricRule, rates: bool, errors: &mut Vec<RuleError>) -> CompiledMetric {
    let mut count_horizon = if rates { RATE_WINDOWS[2] } else { 0 };
    let mut sums: Vec<(Box<str>, Seconds)> = Vec::new();
    let mut distincts: Vec<(Box<str>, Seconds, usize)> = Vec::new();
    let mut slots = Vec::with_capacity(rule.thresholds.len());
    for (tier, t) in rule.thresholds.iter().enumerate() {
        let metric = || rule.name.to_string();
        match (rule.scope, t.effect) {
            (Scope::Global, Effect::Block | Effect::Notify) => {
                errors.push(RuleError::ScopeEffect {
                    metric: metric(),
                    tier,
                    why: "a global-scope threshold can only alert (it cannot block every token)",
                });
            }
            (Scope::Token, Effect::Alert) => errors.push(RuleError::ScopeEffect {
                metric: metric(),
                tier,
                why: "alerts are for global-scope metrics",
            }),
            _ => {}
        }
        for (field, span) in [
            ("window", t.window.length()),
            ("action_duration", t.action_duration),
        ] {
            if span > Ruleset::MAX_SPAN {
                errors.push(RuleError::SpanTooLong {
                    metric: metric(),
                    tier,
                    field,
                });
            }
        }
        check_escalation(t, &metric, tier, errors);
        if t.effect != Effect::Alert && t.action_duration == Seconds::ZERO {
            errors.push(RuleError::ZeroDuration {
                metric: metric(),
                tier,
            });
        }
        let w = t.window.length();
        let slot = match &t.kind {
            Kind::Count => {
                count_horizon = count_horizon.max(w.get());
                MeasureSlot::Count
            }
            Kind::Sum(attr) => {
                if attr.is_empty() {
                    errors.push(RuleError::EmptyAttr {
                        metric: metric(),
                        tier,
                    });
                }
                let i = sums.iter().position(|(a, _)| a == attr).unwrap_or_else(|| {
                    sums.push((attr.clone(), Seconds::ZERO));
                    sums.len() - 1
                });
                sums[i].1 = sums[i].1.max(w);
                MeasureSlot::Sum(i)
            }
            Kind::Distinct(attr) => {
                if attr.is_empty() {
                    errors.push(RuleError::EmptyAttr {
                        metric: metric(),
                        tier,
                    });
                }
                if t.limit.get() > Ruleset::MAX_DISTINCT_LIMIT {
                    errors.push(RuleError::DistinctTooLarge {
                        metric: metric(),
                        tier,
                        max: Ruleset::MAX_DISTINCT_LIMIT,
                    });
                }
                let i = distincts
                    .iter()
                    .position(|(a, _, _)| a == attr)
                    .unwrap_or_else(|| {
                        distincts.push((attr.clone(), Seconds::ZERO, 0));
                        distincts.len() - 1
                    });
                let keep = usize::try_from(t.needed().min(Ruleset::MAX_DISTINCT_LIMIT + 1))
                    .unwrap_or(usize::MAX);
                distincts[i].1 = distincts[i].1.max(w);
                distincts[i].2 = distincts[i].2.max(keep);
                MeasureSlot::Distinct(i)
            }
        };
        slots.push(slot);
    }
    CompiledMetric {
        rule,
        count_horizon: Seconds::new(count_horizon),
        sums,
        distincts,
        slots,
    }
}
