//! Checks an event against the rules once: its metric (and family member), token and
//! attribute values, as every store of the engine's state needs them.

use smallvec::SmallVec;

use crate::error::{EventError, MAX_NAME_LEN, MAX_REASON_LEN};
use crate::event::Event;
use crate::rules::{MetricId, RuleId, Ruleset, Scope};
use crate::time::{Seconds, Timestamp};
use crate::token::Token;

/// A metric name resolved against the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricRef<'a> {
    /// The metric, or the family the name belongs to.
    pub id: MetricId,
    /// For a family member, its full name (`detect:login`); `None` for a plain metric.
    pub member: Option<&'a str>,
}

/// An event checked against the rules: everything a store needs to count and decide it, with
/// no further check or lookup by name.
#[derive(Debug, Clone)]
pub struct ResolvedEvent<'a> {
    /// The metric.
    pub metric: MetricRef<'a>,
    /// Per token, or global (then [`ResolvedEvent::counted_as`] is `global`).
    pub scope: Scope,
    /// The event's token, 1 to [`Token::MAX_LEN`] bytes.
    pub token: &'a str,
    /// When it happened.
    pub at: Timestamp,
    /// What it adds to `count` windows.
    pub weight: u64,
    /// The `sum` attributes' values, in the order of the metric's sum windows.
    pub sums: SmallVec<[u64; 2]>,
    /// The `distinct` attributes' values, in the order of the metric's distinct sets (each at
    /// most [`Event::MAX_ATTR_LEN`] bytes).
    pub distincts: SmallVec<[&'a str; 2]>,
}

impl<'a> ResolvedEvent<'a> {
    /// The token whose windows count the event: its own, or `global` in global scope.
    pub fn counted_as(&self) -> &'a str {
        match self.scope {
            Scope::Token => self.token,
            Scope::Global => Token::GLOBAL,
        }
    }

    /// The metric's name as records carry it: the member for a family, else the rule's name.
    pub fn metric_name<'r>(&self, rules: &'r Ruleset) -> &'r str
    where
        'a: 'r,
    {
        self.metric
            .member
            .unwrap_or_else(|| &rules.metric(self.metric.id).name)
    }
}

/// `token` if it is 1 to [`Token::MAX_LEN`] bytes.
pub fn check_token(token: &str) -> Result<&str, EventError> {
    if token.is_empty() || token.len() > Token::MAX_LEN {
        Err(EventError::BadToken)
    } else {
        Ok(token)
    }
}

impl Ruleset {
    /// The metric called `name`: its own rule, or the family it is a member of. A name longer
    /// than [`MAX_NAME_LEN`] is refused whatever it starts with: a family member that long
    /// would be kept per token.
    pub fn resolve_metric<'a>(&self, name: &'a str) -> Result<MetricRef<'a>, EventError> {
        if name.len() > MAX_NAME_LEN {
            return Err(EventError::MetricTooLong(cut(name)));
        }
        let id = self
            .metric_id(name)
            .ok_or_else(|| EventError::UnknownMetric(cut(name)))?;
        Ok(MetricRef {
            id,
            member: self.is_family(id).then_some(name),
        })
    }

    /// Checks `event` against the rules: known metric, valid token, the attributes its
    /// `sum` and `distinct` thresholds need, each within bounds.
    pub fn resolve<'a>(&self, event: &Event<'a>) -> Result<ResolvedEvent<'a>, EventError> {
        let metric = self.resolve_metric(event.metric)?;
        let token = check_token(event.token)?;
        let m = self.compiled(metric.id);
        let missing = |attr: &str| EventError::MissingAttr {
            metric: m.rule.name.to_string(),
            attr: attr.to_owned(),
        };
        let mut sums = SmallVec::new();
        for (attr, _) in &m.sums {
            let raw = event.attr(attr).ok_or_else(|| missing(attr))?;
            let v = raw.parse::<u64>().map_err(|_| EventError::BadSumAttr {
                attr: attr.to_string(),
                value: cut(raw),
            })?;
            sums.push(v);
        }
        let mut distincts = SmallVec::new();
        for (attr, _, _) in &m.distincts {
            let raw = event.attr(attr).ok_or_else(|| missing(attr))?;
            if raw.len() > Event::MAX_ATTR_LEN {
                return Err(EventError::AttrTooLong(attr.to_string()));
            }
            distincts.push(raw);
        }
        Ok(ResolvedEvent {
            metric,
            scope: m.rule.scope,
            token,
            at: event.at,
            weight: event.weight,
            sums,
            distincts,
        })
    }

    /// Checks a request to fire tier `tier` of `metric` for `token` (the seed API's `now`):
    /// known metric, not global-scope, valid token, existing tier.
    pub fn resolve_fire<'a>(
        &self,
        token: &str,
        metric: &'a str,
        tier: usize,
    ) -> Result<(MetricRef<'a>, RuleId), EventError> {
        let m = self.resolve_metric(metric)?;
        if self.metric(m.id).scope == Scope::Global {
            return Err(EventError::GlobalFire(metric.to_owned()));
        }
        self.resolve_ban(token, metric, tier)
    }

    /// Checks an operator's ban by hand (`Engine::ban_by_hand`): valid token, a duration of
    /// 1 second to [`Ruleset::MAX_SPAN`], a reason of at most [`MAX_REASON_LEN`] bytes.
    /// Returns the reason to keep: `None` when blank.
    pub fn resolve_manual<'a>(
        &self,
        token: &str,
        duration: Seconds,
        reason: Option<&'a str>,
    ) -> Result<Option<&'a str>, EventError> {
        check_token(token)?;
        if duration == Seconds::ZERO || duration > Ruleset::MAX_SPAN {
            return Err(EventError::BadDuration);
        }
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        if reason.is_some_and(|r| r.len() > MAX_REASON_LEN) {
            return Err(EventError::ReasonTooLong);
        }
        Ok(reason)
    }

    /// Checks a ban read back from storage: known metric, valid token, existing tier.
    pub fn resolve_ban<'a>(
        &self,
        token: &str,
        metric: &'a str,
        tier: usize,
    ) -> Result<(MetricRef<'a>, RuleId), EventError> {
        let m = self.resolve_metric(metric)?;
        check_token(token)?;
        let rule = self.rule_id(m.id, metric, tier)?;
        Ok((m, rule))
    }

    fn rule_id(&self, id: MetricId, metric: &str, tier: usize) -> Result<RuleId, EventError> {
        match u32::try_from(tier) {
            Ok(t) if tier < self.metric(id).thresholds.len() => Ok(RuleId {
                metric: id,
                tier: t,
            }),
            _ => Err(EventError::UnknownTier {
                metric: cut(metric),
                tier,
            }),
        }
    }
}

/// Untrusted text quoted in an error, cut to 64 bytes at a character boundary.
pub(crate) fn cut(s: &str) -> String {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
