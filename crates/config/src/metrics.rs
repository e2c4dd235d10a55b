//! `[metrics]`: each metric and its tiers of thresholds, read into the core's own rule types
//! with actions still by name, and where each was written.

use std::num::NonZeroU64;
use std::ops::Range;

use banhammer_core::{
    BanPolicy, Effect, Escalation, Kind, MetricRule, RuleError, Scope, Seconds, Threshold, Window,
};
use toml::de::DeValue;
use toml::Spanned;

use crate::context::Cx;
use crate::error::ConfigError;
use crate::raw::{RawDuration, RawEscalation, RawThreshold};
use crate::BUILTIN_ACTIONS;

/// One metric, validated: the core's rule with its actions still by name.
pub type MetricSpec = MetricRule<String>;

/// One threshold, validated: the core's threshold with its actions still by name. Its effect
/// is derived: `global` scope alerts; `block_local` blocks; else the decision only notifies.
pub type ThresholdSpec = Threshold<String>;

/// Where the metrics and their thresholds were written (line, column), kept with the
/// [`Config`](crate::Config) so that the core's errors name their place even after the file is read.
#[derive(Debug, Clone)]
pub(crate) struct MetricPlaces {
    pub(crate) origin: String,
    pub(crate) metrics: Vec<MetricPlace>,
}

/// Where one metric's name and each of its thresholds were written.
#[derive(Debug, Clone)]
pub(crate) struct MetricPlace {
    name: String,
    at: (usize, usize),
    thresholds: Vec<(usize, usize)>,
}

impl MetricPlaces {
    /// The core's complaint as `file:line:column: metrics.NAME…: why`; a metric written
    /// nowhere (the detector's) has no line.
    pub(crate) fn error(&self, e: &RuleError) -> ConfigError {
        let (metric, tier) = match e {
            RuleError::ScopeEffect { metric, tier, .. }
            | RuleError::ZeroDuration { metric, tier }
            | RuleError::DistinctTooLarge { metric, tier, .. }
            | RuleError::EmptyAttr { metric, tier }
            | RuleError::SpanTooLong { metric, tier, .. }
            | RuleError::BadEscalation { metric, tier, .. } => (Some(metric), Some(*tier)),
            RuleError::DuplicateMetric(metric)
            | RuleError::BadMetricName(metric)
            | RuleError::ReservedName(metric) => (Some(metric), None),
            _ => (None, None),
        };
        let place = metric.and_then(|name| self.metrics.iter().find(|m| m.name == *name));
        let (field, at) = match (metric, tier) {
            (None, _) => (String::new(), None),
            (Some(name), Some(t)) => (
                format!("metrics.{name}.thresholds[{t}]"),
                place.and_then(|m| m.thresholds.get(t).copied()),
            ),
            (Some(name), None) => (format!("metrics.{name}"), place.map(|m| m.at)),
        };
        let (line, column) = at.unwrap_or((0, 0));
        ConfigError {
            origin: self.origin.clone(),
            line,
            column,
            field,
            message: e.to_string(),
        }
    }
}

impl Cx<'_> {
    /// `[metrics]`: appends each metric to `out` and where it was written to `places`.
    pub(crate) fn metrics(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        out: &mut Vec<MetricSpec>,
        places: &mut Vec<MetricPlace>,
    ) {
        let Some(table) = value.get_ref().as_table() else {
            self.push(Some(value.span()), "metrics", "must be a table of metrics");
            return;
        };
        for (name, metric) in table {
            let name_str = name.get_ref().as_ref();
            let field = format!("metrics.{name_str}");
            let Some(mt) = metric.get_ref().as_table() else {
                self.push(Some(metric.span()), &field, "must be a table");
                continue;
            };
            let mut scope = Scope::Token;
            let mut thresholds = Vec::new();
            let mut threshold_places = Vec::new();
            for (key, v) in mt {
                match key.get_ref().as_ref() {
                    "scope" => match v.get_ref().as_str() {
                        Some("token") => scope = Scope::Token,
                        Some("global") => scope = Scope::Global,
                        _ => self.push(
                            Some(v.span()),
                            &format!("{field}.scope"),
                            "must be \"token\" or \"global\"",
                        ),
                    },
                    "thresholds" => {
                        let Some(items) = v.get_ref().as_array() else {
                            self.push(
                                Some(v.span()),
                                &format!("{field}.thresholds"),
                                "must be an array of tables ([[metrics.NAME.thresholds]])",
                            );
                            continue;
                        };
                        for (i, item) in items.iter().enumerate() {
                            let tfield = format!("{field}.thresholds[{i}]");
                            threshold_places.push(self.src.locate(item.span().start));
                            if let (Some(raw), removed) =
                                self.de_partial::<RawThreshold>(&tfield, item)
                            {
                                thresholds.push((tfield, raw, removed, item.span()));
                            }
                        }
                    }
                    other => self.push(
                        Some(key.span()),
                        &format!("{field}.{other}"),
                        "unknown field, expected `scope` or `thresholds`",
                    ),
                }
            }
            let thresholds = thresholds
                .into_iter()
                .filter_map(|(tfield, raw, removed, span)| {
                    self.threshold(&tfield, raw, scope, &removed, span)
                })
                .collect();
            places.push(MetricPlace {
                name: name_str.to_owned(),
                at: self.src.locate(name.span().start),
                thresholds: threshold_places,
            });
            out.push(MetricSpec {
                name: name_str.into(),
                scope,
                thresholds,
            });
        }
    }

    fn threshold(
        &mut self,
        field: &str,
        raw: RawThreshold,
        scope: Scope,
        removed: &[String],
        span: Range<usize>,
    ) -> Option<ThresholdSpec> {
        let before = self.errors.len();
        // A field already reported (and taken out) is not reported missing as well.
        let required = |cx: &mut Self, name: &str, why: &str| {
            if !removed.iter().any(|r| r == name) {
                cx.push(
                    Some(span.clone()),
                    &format!("{field}.{name}"),
                    format!("is required ({why})"),
                );
            }
        };
        let limit = match &raw.limit {
            Some(l) => {
                let n = NonZeroU64::new(*l.get_ref());
                if n.is_none() {
                    self.push(
                        Some(l.span()),
                        &format!("{field}.limit"),
                        "must be at least 1",
                    );
                }
                n
            }
            None => {
                required(
                    self,
                    "limit",
                    "how much of the measure triggers the threshold",
                );
                None
            }
        };
        let window = match &raw.window {
            Some(w) => self.duration(&format!("{field}.window"), w).and_then(|s| {
                let win = Window::from_secs(s);
                if win.is_none() {
                    self.push(
                        Some(w.span()),
                        &format!("{field}.window"),
                        "must be at least 1 second",
                    );
                }
                win
            }),
            None => {
                required(self, "window", "how far back the measure looks");
                None
            }
        };
        let kind = match &raw.kind {
            None => Some(Kind::Count),
            Some(k) => {
                let parsed = parse_kind(k.get_ref());
                if parsed.is_none() {
                    self.push(
                        Some(k.span()),
                        &format!("{field}.kind"),
                        format!(
                            "`{}` is not a kind, expected \"count\", \"distinct(ATTR)\" or \"sum(ATTR)\"",
                            k.get_ref()
                        ),
                    );
                }
                parsed
            }
        };
        let policy = match raw
            .policy
            .as_ref()
            .map(|p| (p.get_ref().as_str(), p.span()))
        {
            None | Some(("after_trigger", _)) => BanPolicy::AfterTrigger,
            Some(("after_violation", _)) => BanPolicy::AfterViolation,
            Some((other, span)) => {
                self.push(
                    Some(span),
                    &format!("{field}.policy"),
                    format!("`{other}` is not a policy, expected \"after_trigger\" or \"after_violation\""),
                );
                BanPolicy::AfterTrigger
            }
        };
        let mut actions = Vec::new();
        if let Some(list) = &raw.actions {
            for a in list.get_ref() {
                let name = a.get_ref();
                if BUILTIN_ACTIONS.contains(&name.as_str()) {
                    actions.push(name.clone());
                } else {
                    self.push(
                        Some(a.span()),
                        &format!("{field}.actions"),
                        format!(
                            "unknown action `{name}`, expected one of {}",
                            BUILTIN_ACTIONS.join(", ")
                        ),
                    );
                }
            }
        }
        let fail_closed = match raw
            .on_store_error
            .as_ref()
            .map(|p| (p.get_ref().as_str(), p.span()))
        {
            None | Some(("fail_open", _)) => false,
            Some(("fail_closed", _)) => true,
            Some((other, span)) => {
                self.push(
                    Some(span),
                    &format!("{field}.on_store_error"),
                    format!("`{other}` is not \"fail_open\" or \"fail_closed\""),
                );
                false
            }
        };
        let blocks = actions.iter().any(|a| a == "block_local");
        let effect = match scope {
            Scope::Global => {
                if blocks {
                    self.push(
                        raw.actions.as_ref().map(Spanned::span),
                        &format!("{field}.actions"),
                        "a global-scope metric alerts; it cannot block_local every token",
                    );
                }
                Effect::Alert
            }
            Scope::Token if blocks => Effect::Block,
            Scope::Token => Effect::Notify,
        };
        let action_duration = match &raw.action_duration {
            Some(d) => self
                .duration(&format!("{field}.action_duration"), d)
                .map(Seconds::new),
            None if effect == Effect::Alert => Some(Seconds::ZERO),
            None => {
                required(self, "action_duration", "how long the decision lasts");
                None
            }
        };
        let escalate = raw
            .escalate
            .as_ref()
            .and_then(|e| self.escalation(&format!("{field}.escalate"), e));
        if self.errors.len() > before {
            return None;
        }
        Some(ThresholdSpec {
            limit: limit?,
            window: window?,
            kind: kind?,
            effect,
            policy,
            action_duration: action_duration?,
            actions,
            repeat_actions: raw.repeat_actions,
            fail_closed,
            escalate,
        })
    }

    /// `escalate = { factor, max, memory }`: durations read as everywhere else, the checks
    /// that need the tier left to the core (located by the rule's place).
    fn escalation(&mut self, field: &str, raw: &Spanned<RawEscalation>) -> Option<Escalation> {
        let e = raw.get_ref();
        let duration = |cx: &mut Self, name: &str, d: &Option<Spanned<RawDuration>>| match d {
            Some(d) => cx.duration(&format!("{field}.{name}"), d).map(Seconds::new),
            None => {
                cx.push(Some(raw.span()), &format!("{field}.{name}"), "is required");
                None
            }
        };
        let max = duration(self, "max", &e.max);
        let memory = duration(self, "memory", &e.memory);
        Some(Escalation {
            factor: e.factor.as_ref().map_or(2, |f| *f.get_ref()),
            max: max?,
            memory: memory?,
        })
    }
}

/// `count`, `distinct(ATTR)` or `sum(ATTR)`.
fn parse_kind(text: &str) -> Option<Kind> {
    let text = text.trim();
    if text == "count" {
        return Some(Kind::Count);
    }
    let (name, rest) = text.split_once('(')?;
    let attr = rest.strip_suffix(')')?.trim();
    let valid = !attr.is_empty()
        && attr
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if !valid {
        return None;
    }
    match name.trim() {
        "distinct" => Some(Kind::Distinct(attr.into())),
        "sum" => Some(Kind::Sum(attr.into())),
        _ => None,
    }
}
