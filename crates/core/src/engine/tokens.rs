//! `TokenTable`: every tracked token's windows, least recently seen first, capped and expired.

use std::num::NonZeroUsize;

use hashlink::linked_hash_map::RawEntryMut;
use hashlink::LinkedHashMap;
use smallvec::SmallVec;

use crate::error::{EventError, MAX_MEMBERS};
use crate::resolve::MetricRef;
use crate::rules::{CompiledMetric, MetricId};
use crate::time::{Seconds, Timestamp};
use crate::token::Token;

use super::windows::MetricWindows;

/// A copy of a token's ban kept beside its windows, so a banned token hammering away is
/// answered, and its ban found not to move, without a lookup of the decisions. Only ever
/// trusted when it says "banned past now".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BanCache {
    /// The ban's end (`Timestamp::MIN` when not banned).
    pub(super) until: Timestamp,
    /// How far the ban's `after_trigger` reaches go (they are never cut when the clock stops,
    /// so one no further than this changes nothing).
    pub(super) trigger_until: Timestamp,
}

impl BanCache {
    /// Not banned.
    pub(super) const NONE: BanCache = BanCache {
        until: Timestamp::MIN,
        trigger_until: Timestamp::MIN,
    };
}

#[derive(Debug)]
pub(super) struct TokenState {
    /// The engine time at the last event: the LRU order and idle expiry go by it.
    last_seen: Timestamp,
    /// Counted an event since the windows were last taken out (`take_changed`).
    changed: bool,
    ban: BanCache,
    metrics: SmallVec<[(MetricKey, MetricWindows); 1]>,
}

/// Which windows: a metric, and for a family (`detect:*`) the member (`detect:login`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct MetricKey {
    id: MetricId,
    member: Option<Box<str>>,
}

impl MetricKey {
    fn is(&self, m: MetricRef<'_>) -> bool {
        self.id == m.id && self.member.as_deref() == m.member
    }
}

/// Per-token windows in least-recently-seen order, so that idle expiry and the `max_tokens`
/// cap both drop from the front in O(1).
#[derive(Debug)]
pub(super) struct TokenTable {
    map: LinkedHashMap<Token, TokenState>,
    cap: Option<NonZeroUsize>,
    /// Tokens dropped for the cap.
    pub(super) evictions: u64,
    /// Tokens dropped because nothing about them could matter any more.
    pub(super) expired: u64,
    /// Tokens whose `changed` flag was set since the last `take_changed`.
    changed: Vec<Token>,
    /// Whether changes are tracked at all (only callers that take them out ask: the list
    /// would otherwise grow with every token seen).
    track: bool,
}

impl TokenTable {
    pub(super) fn new(cap: Option<NonZeroUsize>) -> Self {
        TokenTable {
            map: LinkedHashMap::new(),
            cap,
            evictions: 0,
            expired: 0,
            changed: Vec::new(),
            track: false,
        }
    }

    pub(super) fn set_cap(&mut self, cap: Option<NonZeroUsize>) {
        self.cap = cap;
    }

    pub(super) fn tracks_changes(&self) -> bool {
        self.track
    }

    pub(super) fn track_changes(&mut self, on: bool) {
        self.track = on;
        if !on {
            self.changed = Vec::new();
        }
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// `token`'s windows of `metric`, created if new (evicting the least recently seen token
    /// at the cap), with its cached ban; `token` becomes the most recently seen at `now`.
    /// `token` must be 1..=`Token::MAX_LEN` bytes (checked when the event was resolved).
    pub(super) fn windows_mut(
        &mut self,
        token: &str,
        metric: MetricRef<'_>,
        m: &CompiledMetric,
        now: Timestamp,
    ) -> Result<(&mut MetricWindows, BanCache), EventError> {
        if let Some(cap) = self.cap {
            if self.map.len() >= cap.get() && !self.map.contains_key(token) {
                self.map.pop_front();
                self.evictions += 1;
            }
        }
        let (key, st) = match self.map.raw_entry_mut().from_key(token) {
            RawEntryMut::Occupied(mut o) => {
                o.to_back();
                o.into_key_value()
            }
            RawEntryMut::Vacant(v) => {
                let key = Token::new(token).unwrap_or_else(Token::global);
                let state = TokenState {
                    last_seen: now,
                    changed: false,
                    ban: BanCache::NONE,
                    metrics: SmallVec::new(),
                };
                v.insert(key, state)
            }
        };
        st.last_seen = now;
        if self.track && !st.changed {
            st.changed = true;
            self.changed.push(key.clone());
        }
        let pos = if let Some(pos) = st.metrics.iter().position(|(k, _)| k.is(metric)) {
            pos
        } else {
            if metric.member.is_some()
                && st.metrics.iter().filter(|(k, _)| k.id == metric.id).count() >= MAX_MEMBERS
            {
                return Err(EventError::TooManyMembers(m.rule.name.to_string()));
            }
            st.metrics.push((
                MetricKey {
                    id: metric.id,
                    member: metric.member.map(Box::from),
                },
                MetricWindows::new(m),
            ));
            st.metrics.len() - 1
        };
        Ok((&mut st.metrics[pos].1, st.ban))
    }

    /// `token`'s windows of `metric`, if tracked.
    pub(super) fn windows(&self, token: &str, metric: MetricRef<'_>) -> Option<&MetricWindows> {
        self.map
            .get(token)?
            .metrics
            .iter()
            .find(|(k, _)| k.is(metric))
            .map(|(_, w)| w)
    }

    /// Updates `token`'s cached ban, if it is tracked.
    pub(super) fn set_ban(&mut self, token: &str, ban: BanCache) {
        if let Some(st) = self.map.get_mut(token) {
            st.ban = ban;
        }
    }

    /// Forgets tokens not seen for `horizon` by `now`.
    pub(super) fn expire(&mut self, now: Timestamp, horizon: Seconds) {
        while let Some((_, st)) = self.map.front() {
            if st.last_seen.plus(horizon) > now {
                break;
            }
            self.map.pop_front();
            self.expired += 1;
        }
    }

    /// Calls `f` with the windows of every token that changed since the last call (still
    /// tracked: a token expired or evicted meanwhile is skipped), and marks them unchanged.
    pub(super) fn take_changed(
        &mut self,
        mut f: impl FnMut(&Token, MetricId, Option<&str>, &MetricWindows),
    ) {
        for token in std::mem::take(&mut self.changed) {
            let Some(st) = self.map.get_mut(&token) else {
                continue;
            };
            st.changed = false;
            for (k, w) in &st.metrics {
                f(&token, k.id, k.member.as_deref(), w);
            }
        }
    }

    /// Every token's windows, least recently seen first: `(token, metric, member, windows)`.
    pub(super) fn iter(
        &self,
    ) -> impl Iterator<Item = (&Token, MetricId, Option<&str>, &MetricWindows)> + '_ {
        self.map.iter().flat_map(|(token, st)| {
            st.metrics
                .iter()
                .map(move |(k, w)| (token, k.id, k.member.as_deref(), w))
        })
    }
}
