//! From an access-log line to the engine's events: which token, which metrics.

use banhammer_config::{AccessLogSettings, LineMatcher};
use banhammer_core::Ruleset;

use crate::AccessLogLine;

/// Turns parsed lines into metric names per the `[accesslog]` settings: every line is the
/// request metric (if the rule set defines it), and each matching `[[accesslog.match]]`
/// adds its own.
#[derive(Debug)]
pub struct LineEvents<'s> {
    settings: &'s AccessLogSettings,
    count_requests: bool,
}

impl<'s> LineEvents<'s> {
    /// Mapping for `settings` under `rules`.
    pub fn new(settings: &'s AccessLogSettings, rules: &Ruleset) -> Self {
        LineEvents {
            settings,
            count_requests: rules.metric_id(&settings.request_metric).is_some(),
        }
    }

    /// The token a line counts for, or `None` if its client is ignored.
    pub fn token(&self, line: &AccessLogLine<'_>) -> Option<String> {
        if self.settings.ignores(line.client) {
            None
        } else {
            Some(self.settings.token_of(line.client))
        }
    }

    /// The metrics `line` counts as, in order: the request metric, then matchers'.
    pub fn metrics<'a>(
        &'a self,
        line: &'a AccessLogLine<'_>,
    ) -> impl Iterator<Item = &'a str> + 'a {
        let request = self
            .count_requests
            .then_some(self.settings.request_metric.as_str());
        let matched = self
            .settings
            .matchers
            .iter()
            .filter(move |m| matches(m, line))
            .map(|m| m.metric.as_str());
        request.into_iter().chain(matched)
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
