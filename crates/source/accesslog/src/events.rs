//! From an access-log line to the engine's events: which token, which metrics.

use std::sync::Arc;

use banhammer_config::{AccessLogSettings, LineMatcher};
use banhammer_core::{MetricRule, Ruleset};

use crate::{AccessLogLine, Client};

/// Turns parsed lines into metric names per the `[accesslog]` settings: every line is the
/// request metric (if the rule set defines it), and each matching `[[accesslog.match]]`
/// adds its own.
#[derive(Debug)]
pub struct LineEvents<'s> {
    settings: &'s AccessLogSettings,
    /// The request metric's name, if the rule set defines it.
    request: Option<Arc<str>>,
    /// Each matcher's metric, shared by the lines that count as it (lines wait, owned, to be
    /// put in order).
    matched: Vec<Arc<str>>,
}

impl<'s> LineEvents<'s> {
    /// Mapping for `settings` under `rules`.
    pub fn new(settings: &'s AccessLogSettings, rules: &Ruleset) -> Self {
        LineEvents {
            settings,
            request: rules
                .metric_id(&settings.request_metric)
                .map(|_| Arc::from(settings.request_metric.as_str())),
            matched: settings
                .matchers
                .iter()
                .map(|m| Arc::from(m.metric.as_str()))
                .collect(),
        }
    }

    /// The token a line counts for, or `None` if its client is ignored. A host name (logs
    /// written with name lookups) is its own token, lower-cased; `ignore` ranges are
    /// addresses, so they never cover a name.
    pub fn token(&self, line: &AccessLogLine<'_>) -> Option<String> {
        match line.client {
            Client::Ip(ip) if self.settings.ignores(ip) => None,
            Client::Ip(ip) => Some(self.settings.token_of(ip)),
            Client::Host(name) => Some(name.to_ascii_lowercase()),
        }
    }

    /// The metrics `line` counts as, in order: the request metric, then matchers'.
    pub fn metrics<'a>(
        &'a self,
        line: &'a AccessLogLine<'_>,
    ) -> impl Iterator<Item = &'a Arc<str>> + 'a {
        let matched = self
            .settings
            .matchers
            .iter()
            .zip(&self.matched)
            .filter(move |(m, _)| matches(m, line))
            .map(|(_, name)| name);
        self.request.iter().chain(matched)
    }

    /// The metrics of `rules` that no line can count as: neither the request metric nor any
    /// matcher's (nor a member of them, for a family). A configuration for another source
    /// (`login_failed` fed by `eval` or the HTTP API) runs silently over a log otherwise.
    pub fn unfed<'r>(&self, rules: &'r Ruleset) -> Vec<&'r str> {
        let fed = |rule: &MetricRule| {
            self.request
                .iter()
                .chain(&self.matched)
                .any(|name| rule.matches(name))
        };
        rules
            .metrics()
            .filter(|(_, rule)| !fed(rule))
            .map(|(_, rule)| &*rule.name)
            .collect()
    }
}

fn matches(m: &LineMatcher, line: &AccessLogLine<'_>) -> bool {
    if let Some(test) = &m.path {
        let Some(path) = line.path else { return false };
        let ok = match (m.with_query, line.query) {
            (true, Some(q)) => test.matches(&format!("{path}?{q}")),
            _ => test.matches(path),
        };
        if !ok {
            return false;
        }
    }
    if !m.methods.is_empty()
        && !line
            .method
            .is_some_and(|x| m.methods.iter().any(|a| a == x))
    {
        return false;
    }
    if !m.statuses.is_empty()
        && !line
            .status
            .is_some_and(|s| m.statuses.iter().any(|&(lo, hi)| (lo..=hi).contains(&s)))
    {
        return false;
    }
    if let Some(host) = &m.host {
        if !line.host.is_some_and(|h| h.eq_ignore_ascii_case(host)) {
            return false;
        }
    }
    if let Some(ua) = &m.user_agent {
        if !line.user_agent.as_deref().is_some_and(|u| ua.is_match(u)) {
            return false;
        }
    }
    true
}
