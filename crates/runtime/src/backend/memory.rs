//! `MemoryBackend`: the state in this process, in a sharded engine (the embedded default).

use std::num::NonZeroUsize;
use std::sync::Arc;

use async_trait::async_trait;
use banhammer_core::{
    BanRecord, Clock, DecisionEvent, DecisionView, Effect, EngineCounters, Event, EventError,
    MetricStatus, Ruleset, Seconds, SharedEngine, Timestamp, Token, TokenLoad, Verdict,
    WindowsSnapshot,
};

use super::{Backend, BackendError, StatusPage, Sweep, Unban};

/// The engine's state in memory: a [`SharedEngine`] on the runtime's clock.
pub struct MemoryBackend {
    engine: SharedEngine<Arc<dyn Clock>>,
    clock: Arc<dyn Clock>,
}

impl MemoryBackend {
    /// An engine of `shards` shards over `rules`, reading time from `clock`.
    pub fn new(rules: Arc<Ruleset>, clock: Arc<dyn Clock>, shards: NonZeroUsize) -> Self {
        MemoryBackend {
            engine: SharedEngine::new(rules, &clock, shards),
            clock,
        }
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn observe(&self, event: &Event<'_>, rates: bool) -> Result<Verdict, BackendError> {
        Ok(self.engine.observe(event, rates)?)
    }

    async fn fire(&self, token: &str, metric: &str, tier: usize) -> Result<Verdict, BackendError> {
        Ok(self.engine.fire(token, metric, tier)?)
    }

    async fn ban_by_hand(
        &self,
        token: &str,
        duration: Seconds,
        reason: Option<&str>,
    ) -> Result<Verdict, BackendError> {
        Ok(self.engine.ban_by_hand(token, duration, reason)?)
    }

    async fn unban(&self, token: &str) -> Result<Unban, BackendError> {
        // At the clock's time, not the shard's last: the shard may not have been called for
        // up to a ticker's second.
        let now = self.clock.now();
        let mut out = (Vec::new(), None);
        self.engine.for_each_token_shard(token, |e| {
            out = (e.advance(now), e.unban(token));
        });
        Ok(out)
    }

    async fn sweep(&self) -> Result<Sweep, BackendError> {
        let ends = self.engine.advance(self.clock.now());
        Ok(Sweep {
            ends,
            next: self.engine.next_deadline(),
        })
    }

    async fn finish(&self) -> Result<Vec<DecisionEvent>, BackendError> {
        Ok(self.engine.finish())
    }

    async fn bans(&self) -> Result<Vec<(Token, DecisionView)>, BackendError> {
        let mut all = Vec::new();
        self.engine.for_each_shard(|e| {
            all.extend(
                e.decisions()
                    .filter(|(_, d)| d.effect == Effect::Block)
                    .map(|(t, d)| (t.clone(), d)),
            );
        });
        all.sort_by(|a, b| (a.1.from, &a.0).cmp(&(b.1.from, &b.0)));
        Ok(all)
    }

    async fn active_bans(&self) -> Result<usize, BackendError> {
        // Each shard keeps its count as bans start and end: a scrape locks each shard only to
        // read a number, however many bans there are.
        Ok(self.engine.counters().active_bans)
    }

    async fn ban(&self, token: &str) -> Result<Option<DecisionView>, BackendError> {
        let mut found = None;
        self.engine
            .for_each_token_shard(token, |e| found = e.ban(token));
        Ok(found)
    }

    fn known_banned(&self, _token: &str) -> bool {
        // The engine answers a banned token at once anyway: nothing to gain from guessing.
        false
    }

    fn restore_ban(&self, ban: &BanRecord<'_>) -> Result<(), EventError> {
        self.engine.restore_ban(ban)
    }

    fn restore_offence(&self, token: &str, at: Timestamp) {
        self.engine.restore_offence(token, at);
    }

    fn track_windows(&self) {
        self.engine.track_changed_windows(true);
    }

    fn take_changed_windows(&self) -> Vec<WindowsSnapshot> {
        self.engine.take_changed_windows()
    }

    fn restore_windows(&self, windows: &WindowsSnapshot) -> Result<(), EventError> {
        self.engine.restore_windows(windows)
    }

    fn status(&self, token: &str, metric: &str) -> Result<MetricStatus, BackendError> {
        Ok(self.engine.status(token, metric)?)
    }

    fn status_page(&self, cursor: Option<&str>, limit: usize) -> Result<StatusPage, BackendError> {
        // A cursor is `shard.offset`: shards are visited in order, tokens in each in LRU order.
        let (shard, offset) = cursor
            .and_then(|c| c.split_once('.'))
            .and_then(|(s, o)| Some((s.parse::<usize>().ok()?, o.parse::<usize>().ok()?)))
            .unwrap_or((0, 0));
        let mut items = Vec::new();
        let mut index = 0usize;
        let mut next = None;
        self.engine.for_each_shard(|e| {
            let skip = if index == shard { offset } else { 0 };
            if index < shard || next.is_some() {
                index += 1;
                return;
            }
            for (taken, (token, metric, rates)) in e.status_all().skip(skip).enumerate() {
                if items.len() == limit {
                    next = Some(format!("{index}.{}", skip + taken));
                    break;
                }
                items.push((token.to_owned(), metric.to_owned(), rates));
            }
            index += 1;
        });
        Ok(StatusPage { items, next })
    }

    fn recent_loads(&self, recent: usize) -> Result<Vec<TokenLoad>, BackendError> {
        let mut all = Vec::new();
        self.engine
            .for_each_shard(|e| all.extend(e.recent_loads(recent)));
        Ok(all)
    }

    fn engine_counters(&self) -> EngineCounters {
        self.engine.counters()
    }
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend").finish_non_exhaustive()
    }
}
