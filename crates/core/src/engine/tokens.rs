//! `TokenTable`: every tracked token's windows, least recently seen first, capped and expired.
//!
//! At the cap, the token evicted is the one with the least at stake among the few least
//! recently seen (docs/semantics.md, "Memory"): a plain LRU let an attacker push its own
//! count out with a thousand one-shot tokens and start over.

use std::hash::BuildHasher;
use std::num::NonZeroUsize;

use hashlink::linked_hash_map::RawEntryMut;
use hashlink::LinkedHashMap;
use smallvec::SmallVec;

use crate::error::MAX_MEMBERS;
use crate::resolve::MetricRef;
use crate::rules::{MetricId, Ruleset};
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

/// How many of the least recently seen tokens an eviction weighs against each other: enough
/// that a token near a limit is rarely the only candidate, few enough to stay O(1) per event.
const EVICTION_SAMPLE: usize = 8;

/// What evicting a token would lose, ordered least first: how near its nearest threshold is
/// (its measure over the limit, in 1/65536, at most 1), then whether its windows still hold
/// anything at all (rates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Stake {
    nearest: u32,
    retained: bool,
}

impl Stake {
    /// Nothing in any window: evicting loses nothing.
    const NOTHING: Stake = Stake {
        nearest: 0,
        retained: false,
    };
}

impl TokenState {
    /// What evicting this token at `now` would lose.
    fn stake(&self, rules: &Ruleset, now: Timestamp) -> Stake {
        let mut stake = Stake::NOTHING;
        for (k, w) in &self.metrics {
            let m = rules.compiled(k.id);
            stake.retained |= w.retains(m, now);
            for (t, slot) in m.rule.thresholds.iter().zip(&m.slots) {
                let needed = t.needed();
                let value = w.measure_after(*slot, t.window.boundary(now)).min(needed);
                // value <= needed, so this is at most 1 << 16.
                let part = (u128::from(value) << 16) / u128::from(needed);
                stake.nearest = stake.nearest.max(part as u32);
            }
        }
        stake
    }
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

/// Per-token windows in least-recently-seen order, so that idle expiry pops from the front in
/// O(1) and the `max_tokens` cap looks no further than the first few.
#[derive(Debug)]
pub(super) struct TokenTable<S> {
    map: LinkedHashMap<Token, TokenState, S>,
    cap: NonZeroUsize,
    /// Tokens dropped for the cap.
    pub(super) evictions: u64,
    /// Of those, tokens that had events inside a threshold's window.
    pub(super) evictions_at_stake: u64,
    /// Tokens dropped because nothing about them could matter any more.
    pub(super) expired: u64,
    /// Tokens whose `changed` flag was set since the last `take_changed`.
    changed: Vec<Token>,
    /// Whether changes are tracked at all (only callers that take them out ask: the list
    /// would otherwise grow with every token seen).
    track: bool,
}

impl<S: BuildHasher + Default> TokenTable<S> {
    pub(super) fn new(cap: NonZeroUsize) -> Self {
        TokenTable {
            map: LinkedHashMap::with_hasher(S::default()),
            cap,
            evictions: 0,
            evictions_at_stake: 0,
            expired: 0,
            changed: Vec::new(),
            track: false,
        }
    }

    pub(super) fn set_cap(&mut self, cap: NonZeroUsize) {
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

    /// Whether `token` may count `metric` at `now`: not a new family member beyond
    /// [`MAX_MEMBERS`]. A token idle for `horizon` by `now` is forgotten by then, members and
    /// all. Asked before anything moves, so that a refused event changes nothing.
    pub(super) fn admits(
        &self,
        token: &str,
        metric: MetricRef<'_>,
        now: Timestamp,
        horizon: Seconds,
    ) -> bool {
        if metric.member.is_none() {
            return true;
        }
        let Some(st) = self.map.get(token) else {
            return true;
        };
        st.last_seen.plus(horizon) <= now
            || st.metrics.iter().any(|(k, _)| k.is(metric))
            || st.metrics.iter().filter(|(k, _)| k.id == metric.id).count() < MAX_MEMBERS
    }

    /// `token`'s windows of `metric`, created if new (evicting a token at the cap), with its
    /// cached ban; `token` becomes the most recently seen at `now`.
    /// `token` must be 1..=`Token::MAX_LEN` bytes (checked when the event was resolved), and
    /// a new family member must have been admitted ([`TokenTable::admits`]).
    pub(super) fn windows_mut(
        &mut self,
        token: &str,
        metric: MetricRef<'_>,
        rules: &Ruleset,
        now: Timestamp,
    ) -> (&mut MetricWindows, BanCache) {
        if self.map.len() >= self.cap.get() && !self.map.contains_key(token) {
            self.evict(rules, now);
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
            st.metrics.push((
                MetricKey {
                    id: metric.id,
                    member: metric.member.map(Box::from),
                },
                MetricWindows::new(rules.compiled(metric.id)),
            ));
            st.metrics.len() - 1
        };
        (&mut st.metrics[pos].1, st.ban)
    }

    /// Makes room for one token: of the [`EVICTION_SAMPLE`] least recently seen, drops the one
    /// with the least at stake (the least recently seen of equals). A token with nothing in
    /// any window ends the search at once, so an idle table costs what an LRU does.
    fn evict(&mut self, rules: &Ruleset, now: Timestamp) {
        let mut best: Option<(usize, Stake)> = None;
        for (i, (_, st)) in self.map.iter().take(EVICTION_SAMPLE).enumerate() {
            let stake = st.stake(rules, now);
            if best.is_none_or(|(_, b)| stake < b) {
                best = Some((i, stake));
                if stake == Stake::NOTHING {
                    break;
                }
            }
        }
        let Some((i, stake)) = best else {
            return;
        };
        let mut cursor = self.map.cursor_front_mut();
        for _ in 0..i {
            cursor.move_next();
        }
        if let Ok(entry) = cursor.current_entry() {
            entry.remove();
            self.evictions += 1;
            if stake.nearest > 0 {
                self.evictions_at_stake += 1;
            }
        }
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

    /// The `n` most recently seen tokens' windows, most recent first.
    pub(super) fn recent(
        &self,
        n: usize,
    ) -> impl Iterator<Item = (&Token, MetricId, Option<&str>, &MetricWindows)> + '_ {
        self.map.iter().rev().take(n).flat_map(|(token, st)| {
            st.metrics
                .iter()
                .map(move |(k, w)| (token, k.id, k.member.as_deref(), w))
        })
    }
}
