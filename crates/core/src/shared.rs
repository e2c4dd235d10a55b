//! `SharedEngine`: the engine for many threads, sharded by token behind plain mutexes.

use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::clock::Clock;
use crate::decision::{BanRecord, DecisionEvent};
use crate::engine::{Engine, EngineCounters, MetricStatus, TokenHasher, Verdict, WindowsSnapshot};
use crate::error::EventError;
use crate::event::Event;
use crate::rules::{Ruleset, Scope};
use crate::time::{Seconds, Timestamp};

/// An [`Engine`] that many threads can call at once.
///
/// Like the engine, it returns the actions due in the verdict: callers run them with
/// [`Ruleset::run_actions`] after the shard lock is released.
///
/// Every token-scope decision depends on one token only, so tokens are split across
/// independent shards by hash and threads rarely wait for each other. Global-scope metrics
/// all live in shard 0. A std `Mutex` is right here: it is never held across an `.await`.
#[derive(Debug)]
pub struct SharedEngine<C> {
    shards: Box<[Mutex<Engine<C>>]>,
    rules: Arc<Ruleset>,
    /// Picks a token's shard; keyed at random, so no one can choose tokens of one shard.
    hasher: TokenHasher,
}

impl<C: Clock + Clone> SharedEngine<C> {
    /// `shards` engines over `rules` sharing `clock`; the token cap is split evenly.
    pub fn new(rules: Arc<Ruleset>, clock: &C, shards: NonZeroUsize) -> Self {
        let n = shards.get();
        // At least one each: a cap below the shard count still tracks a token per shard.
        let per_shard =
            NonZeroUsize::new(rules.max_tokens().get().div_ceil(n)).unwrap_or(NonZeroUsize::MIN);
        let shards = (0..n)
            .map(|_| {
                let mut e = Engine::new(Arc::clone(&rules), clock.clone());
                e.set_max_tokens(per_shard);
                Mutex::new(e)
            })
            .collect();
        SharedEngine {
            shards,
            rules,
            hasher: TokenHasher::default(),
        }
    }

    /// The rules.
    pub fn rules(&self) -> &Arc<Ruleset> {
        &self.rules
    }

    fn shard_for(&self, token: &str, metric: &str) -> MutexGuard<'_, Engine<C>> {
        let global = self
            .rules
            .metric_id(metric)
            .is_some_and(|id| self.rules.metric(id).scope == Scope::Global);
        if global {
            lock(&self.shards[0])
        } else {
            self.token_shard(token)
        }
    }

    fn token_shard(&self, token: &str) -> MutexGuard<'_, Engine<C>> {
        let i = (self.hasher.hash_one(token) % self.shards.len() as u64) as usize;
        lock(&self.shards[i])
    }

    /// [`Engine::incr`].
    pub fn incr(&self, token: &str, metric: &str) -> Result<Verdict, EventError> {
        self.shard_for(token, metric).incr(token, metric)
    }

    /// [`Engine::observe`]. A global-scope metric counts in shard 0; `passed` is then the
    /// token's own ban, in its shard, brought to the same time first.
    pub fn observe(&self, event: &Event<'_>, want_rates: bool) -> Result<Verdict, EventError> {
        if self.shards.len() == 1 || !self.is_global(event.metric) {
            return self
                .shard_for(event.token, event.metric)
                .observe(event, want_rates);
        }
        let (verdict, now) = {
            let mut shard = lock(&self.shards[0]);
            let verdict = shard.observe(event, want_rates)?;
            (verdict, shard.time())
        };
        // The token's shard may not have seen time pass: a ban that has ended must be seen to
        // have ended (and its UNBAN reported first, as one engine would).
        let mut own = self.token_shard(event.token);
        let mut decisions = own.advance(now);
        let passed = !own.is_banned(event.token);
        decisions.extend(verdict.decisions);
        decisions.sort_by_key(|d| d.at);
        Ok(Verdict {
            passed,
            decisions,
            ..verdict
        })
    }

    fn is_global(&self, metric: &str) -> bool {
        self.rules
            .metric_id(metric)
            .is_some_and(|id| self.rules.metric(id).scope == Scope::Global)
    }

    /// [`Engine::fire`].
    pub fn fire(&self, token: &str, metric: &str, tier: usize) -> Result<Verdict, EventError> {
        self.token_shard(token).fire(token, metric, tier)
    }

    /// [`Engine::ban_by_hand`].
    pub fn ban_by_hand(
        &self,
        token: &str,
        duration: Seconds,
        reason: Option<&str>,
    ) -> Result<Verdict, EventError> {
        self.token_shard(token).ban_by_hand(token, duration, reason)
    }

    /// [`Engine::restore_ban`], in the token's shard.
    pub fn restore_ban(&self, ban: &BanRecord<'_>) -> Result<(), EventError> {
        self.token_shard(ban.token).restore_ban(ban)
    }

    /// [`Engine::unban`].
    pub fn unban(&self, token: &str) -> Option<DecisionEvent> {
        self.token_shard(token).unban(token)
    }

    /// [`Engine::is_banned`].
    pub fn is_banned(&self, token: &str) -> bool {
        self.token_shard(token).is_banned(token)
    }

    /// [`Engine::status`].
    pub fn status(&self, token: &str, metric: &str) -> Result<MetricStatus, EventError> {
        self.shard_for(token, metric).status(token, metric)
    }

    /// Advances every shard to `now`; the decisions that ended, in time order.
    pub fn advance(&self, now: Timestamp) -> Vec<DecisionEvent> {
        let mut all: Vec<DecisionEvent> = self
            .shards
            .iter()
            .flat_map(|s| lock(s).advance(now))
            .collect();
        all.sort_by_key(|d| d.at);
        all
    }

    /// [`Engine::finish`] on every shard; the ends in time order (each shard's own order kept
    /// among equal times, so one shard ends exactly as one engine does).
    pub fn finish(&self) -> Vec<DecisionEvent> {
        let mut all: Vec<DecisionEvent> =
            self.shards.iter().flat_map(|s| lock(s).finish()).collect();
        all.sort_by_key(|d| d.at);
        all
    }

    /// The earliest next deadline of any shard.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.shards
            .iter()
            .filter_map(|s| lock(s).next_deadline())
            .min()
    }

    /// Runs `f` on each shard in turn (for status listings and snapshots).
    pub fn for_each_shard(&self, mut f: impl FnMut(&mut Engine<C>)) {
        for s in &self.shards {
            f(&mut lock(s));
        }
    }

    /// Runs `f` on the shard that holds `token` (restoring a ban, reading one).
    pub fn for_each_token_shard(&self, token: &str, f: impl FnOnce(&mut Engine<C>)) {
        f(&mut self.token_shard(token));
    }

    /// [`Engine::track_changed_windows`] on every shard.
    pub fn track_changed_windows(&self, on: bool) {
        for s in &self.shards {
            lock(s).track_changed_windows(on);
        }
    }

    /// [`Engine::take_changed_windows`] of every shard.
    pub fn take_changed_windows(&self) -> Vec<WindowsSnapshot> {
        let mut all = Vec::new();
        for s in &self.shards {
            all.extend(lock(s).take_changed_windows());
        }
        all
    }

    /// [`Engine::restore_offence`] in the shard that holds `token`.
    pub fn restore_offence(&self, token: &str, at: Timestamp) {
        self.token_shard(token).restore_offence(token, at);
    }

    /// [`Engine::restore_windows`] in the shard that holds the snapshot's token (shard 0 for
    /// global-scope metrics, where they count).
    pub fn restore_windows(&self, s: &WindowsSnapshot) -> Result<(), EventError> {
        if self.is_global(&s.metric) {
            lock(&self.shards[0]).restore_windows(s)
        } else {
            self.token_shard(s.token.as_str()).restore_windows(s)
        }
    }

    /// The counters of all shards added up.
    pub fn counters(&self) -> EngineCounters {
        let mut total = EngineCounters::default();
        for s in &self.shards {
            let c = lock(s).counters();
            total.tracked_tokens += c.tracked_tokens;
            total.active_decisions += c.active_decisions;
            total.active_bans += c.active_bans;
            total.evictions += c.evictions;
            total.evictions_at_stake += c.evictions_at_stake;
            total.expired += c.expired;
            total.late_events += c.late_events;
        }
        total
    }
}

/// No caller code runs under a shard lock (actions run after it is released), so a poisoned
/// shard can only come from a bug in the engine; its state is still used rather than lost.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
