//! Windows as data: what tokens' windows hold, taken out so that a restart can put it back
//! (an attacker must not reset their counts by crashing the service or waiting for a deploy).

use std::hash::BuildHasher;
use std::sync::Arc;

use crate::clock::Clock;
use crate::error::EventError;
use crate::resolve::check_token;
use crate::rules::Scope;
use crate::time::Timestamp;
use crate::token::Token;

use super::windows::MetricWindows;
use super::Engine;

/// What one metric's windows of one token hold, oldest first, limited to what can still
/// matter: enough to rebuild them exactly.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WindowsData {
    /// The count window: the weight added in each second.
    pub count: Vec<(Timestamp, u64)>,
    /// Each `sum` window, in the order of the metric's sum attributes.
    pub sums: Vec<Vec<(Timestamp, u64)>>,
    /// Each `distinct` set, in the order of the metric's distinct attributes: the values
    /// kept, with when each was last seen.
    pub distincts: Vec<Vec<(Timestamp, Box<str>)>>,
}

impl WindowsData {
    /// Whether nothing that matters is left (the stored copy can go).
    pub fn is_empty(&self) -> bool {
        self.count.is_empty()
            && self.sums.iter().all(Vec::is_empty)
            && self.distincts.iter().all(Vec::is_empty)
    }

    /// The newest second anything was seen in.
    pub fn last_at(&self) -> Option<Timestamp> {
        let sums = self.sums.iter().filter_map(|s| s.last().map(|x| x.0));
        let distincts = self.distincts.iter().filter_map(|d| d.last().map(|x| x.0));
        self.count
            .last()
            .map(|x| x.0)
            .into_iter()
            .chain(sums)
            .chain(distincts)
            .max()
    }
}

/// One token's windows of one metric, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowsSnapshot {
    /// The token (`global` for global-scope metrics).
    pub token: Token,
    /// The metric as events name it (a family member's own name).
    pub metric: Arc<str>,
    /// What the windows hold.
    pub data: WindowsData,
}

impl<C: Clock, S: BuildHasher + Default> Engine<C, S> {
    /// Starts (or stops) noting which tokens' windows change, for
    /// [`Engine::take_changed_windows`]. Off by default: a caller that never takes the
    /// changes out would pay for a list that only grows.
    pub fn track_changed_windows(&mut self, on: bool) {
        self.state.tokens.track_changes(on);
    }

    /// The windows of every token (and global metric) that counted an event since the last
    /// call, as they are now; an empty [`WindowsData`] means the stored copy can go.
    pub fn take_changed_windows(&mut self) -> Vec<WindowsSnapshot> {
        let now = self.state.now;
        let rules = &self.rules;
        let mut out = Vec::new();
        self.state
            .tokens
            .take_changed(|token, id, member, windows| {
                out.push(snapshot(rules, token, id, member, windows, now));
            });
        if std::mem::take(&mut self.state.globals_changed) {
            for (i, w) in self.state.globals.iter().enumerate() {
                if let Some(w) = w {
                    let id = crate::rules::MetricId(i as u32);
                    out.push(snapshot(rules, &Token::global(), id, None, w, now));
                }
            }
        }
        out
    }

    /// Puts back windows read from storage after a restart, before any event: what they
    /// held counts again, as far as it is still inside a window. A metric no longer in the
    /// rules is refused (the caller skips it).
    pub fn restore_windows(&mut self, s: &WindowsSnapshot) -> Result<(), EventError> {
        let rules = Arc::clone(&self.rules);
        let metric = rules.resolve_metric(&s.metric)?;
        let m = rules.compiled(metric.id);
        let now = self.state.now;
        let windows = match m.rule.scope {
            Scope::Token => {
                let token = check_token(s.token.as_str())?;
                // Seen when its newest event was, if that is later than the engine's time (a
                // follower on line time restarts at the beginning of time): idle expiry must
                // not drop what was just put back.
                let seen = s.data.last_at().map_or(now, |last| last.max(now));
                if !self
                    .state
                    .tokens
                    .admits(token, metric, seen, rules.horizon())
                {
                    return Err(EventError::TooManyMembers(m.rule.name.to_string()));
                }
                self.state.tokens.windows_mut(token, metric, &rules, seen).0
            }
            Scope::Global => {
                self.state.globals_changed = true;
                self.state.globals[metric.id.index()].get_or_insert_with(|| MetricWindows::new(m))
            }
        };
        windows.restore(m, &s.data);
        windows.forget(m, now);
        Ok(())
    }
}

fn snapshot(
    rules: &crate::rules::Ruleset,
    token: &Token,
    id: crate::rules::MetricId,
    member: Option<&str>,
    windows: &MetricWindows,
    now: Timestamp,
) -> WindowsSnapshot {
    let m = rules.compiled(id);
    WindowsSnapshot {
        token: token.clone(),
        metric: member.map_or_else(|| Arc::clone(&m.rule.name), Arc::from),
        data: windows.data(m, now),
    }
}
