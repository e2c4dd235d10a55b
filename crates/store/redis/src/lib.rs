//! banhammer-store-redis: the engine's state in Redis or Redis Cluster, so that many nodes
//! enforce one limit.
//!
//! Per event, one round trip: `engine.lua` (loaded once, called by SHA) updates the token's
//! windows and decisions atomically and returns the answer, its stats and any decision. All
//! keys of a token share the hash tag `{token}` and so one cluster slot; they expire once
//! nothing about them can matter. Active decisions are also indexed in `bh:{deadlines}` (a
//! sorted set by end), which every node's ticker sweeps, so each end is reported exactly once
//! whichever node gets there first. See docs/scale-out.md.
//!
//! `keys` owns the key layout, `script` the script's protocol (every call laid out from a typed
//! `ScriptCall`, every answer read strictly), `connection` the timeouts, the circuit breaker
//! and which failures are outages.

mod cache;
mod connection;
mod keys;
mod script;

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use banhammer_core::{
    check_token, Change, DecisionEvent, DecisionView, DueAction, Effect, Escaped, Event,
    EventError, Kind, MetricId, RuleId, Ruleset, Scope, Seconds, Timestamp, Verdict,
};
use redis::Script;

pub use cache::BanCache;
pub use connection::{Connection, StoreUrl};
pub use keys::BAN_CHANNEL;

use keys::{DeadlineMember, DEADLINES, DEADLINE_SEQ};
use script::{Answer, Record, Reply, ScriptCall, ENGINE_LUA};

/// A store failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Redis could not be reached: refused, timed out, loading, cluster down, or the circuit
    /// breaker is open. An outage: rules answer events by their fail policy.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered, but with an error about the call itself (a fault of the script, a key
    /// of the wrong type) or with a reply the store cannot read. Not an outage: it neither
    /// opens the circuit breaker nor calls for the fail policy; callers report it as an
    /// internal error (HTTP 500).
    #[error("redis protocol error: {0}")]
    Protocol(String),
    /// The event itself was refused (unknown metric, bad token…), with the engine's error.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The rules use what the script does not implement.
    #[error("{0}")]
    Unsupported(String),
}

/// Registers a new decision in the deadline index, with an id that orders equal ends by start.
const INDEX_LUA: &str = r"
local id = redis.call('INCR', KEYS[2])
local member = string.format('%020d', id) .. '|' .. ARGV[2]
redis.call('ZADD', KEYS[1], ARGV[1], member)
return member";

/// The engine's state in Redis.
pub struct RedisStore {
    conn: Connection,
    rules: Arc<Ruleset>,
    engine: Script,
    index: Script,
    /// Makes event members unique across nodes: node id, then a counter.
    node: u64,
    seq: AtomicU64,
    cache: Arc<BanCache>,
    /// The store's epoch as this node last saw it (see [`RedisStore::lost_state`]).
    epoch: std::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://…` or `redis+cluster://h1:p1,h2:p2,…`) for `rules`, with
    /// `timeout` per call. Refuses rules the script does not implement (`sum` kinds); an
    /// event's weight counts as 1 (no front end sets another).
    pub async fn connect(
        url: &StoreUrl,
        rules: Arc<Ruleset>,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        for (_, m) in rules.metrics() {
            if m.thresholds.iter().any(|t| matches!(t.kind, Kind::Sum(_))) {
                return Err(StoreError::Unsupported(format!(
                    "metric `{}`: sum(...) thresholds are not available with the Redis store",
                    m.name
                )));
            }
        }
        let conn = Connection::open(url, timeout).await?;
        let node = u64::from(std::process::id()) << 20 ^ (nonce_seed() & 0xFFFFF);
        let cache = Arc::new(BanCache::default());
        Ok(RedisStore {
            conn,
            rules,
            engine: Script::new(ENGINE_LUA),
            index: Script::new(INDEX_LUA),
            node,
            seq: AtomicU64::new(0),
            cache,
            epoch: std::sync::Mutex::new(None),
        })
    }

    /// Whether the store lost its state since this node last looked (a Redis restarted
    /// without persistence, or flushed): the epoch key, written by whichever node finds it
    /// missing, is gone or not the one seen before. At the first look, a missing key means
    /// an empty store. Every node sees the change once and can put back the bans it holds.
    pub async fn lost_state(&self) -> Result<bool, StoreError> {
        let mut created = false;
        let now = match self.conn.get(keys::EPOCH).await? {
            Some(e) => e,
            None => {
                let mine = format!("{:x}.{:x}", self.node, nonce_seed());
                created = self.conn.set_nx(keys::EPOCH, &mine).await?;
                // Another node may have written it first: theirs counts.
                self.conn.get(keys::EPOCH).await?.unwrap_or(mine)
            }
        };
        let mut seen = self
            .epoch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let lost = match seen.as_deref() {
            None => created,
            Some(before) => before != now,
        };
        *seen = Some(now);
        Ok(lost)
    }

    /// Puts back a ban this node holds (from its decision log) into a store that lost it:
    /// `token` banned as `ban` says (its rule, tier, value, from and until); nothing if the
    /// token is banned in the store already or the ban is over. Its BAN is indexed for its
    /// end and told to the other nodes.
    pub async fn restore_ban(
        &self,
        token: &str,
        ban: &DecisionView,
        now: Timestamp,
    ) -> Result<Option<DecisionEvent>, StoreError> {
        let (name, rule, tier) = if ban.is_manual() && ban.tier == 0 {
            check_token(token)?;
            (Ruleset::MANUAL, Ruleset::MANUAL, 0)
        } else {
            let (m, rule) = self.rules.resolve_ban(token, &ban.metric, ban.tier)?;
            let rule_name = &*self.rules.metric(m.id).name;
            (m.member.unwrap_or(rule_name), rule_name, rule.tier as usize)
        };
        let call = ScriptCall::Restore {
            now,
            token,
            name,
            rule,
            tier,
            value: ban.value,
            from: ban.from,
            until: ban.until,
            reason: ban.reason.as_deref(),
        };
        let reply = self.call(&call).await?;
        Ok(self.settle(reply.records).await.into_iter().next())
    }

    /// The rules.
    pub fn rules(&self) -> &Arc<Ruleset> {
        &self.rules
    }

    /// The node's ban cache (fed by [`RedisStore::subscribe`]).
    pub fn cache(&self) -> &Arc<BanCache> {
        &self.cache
    }

    /// Listens to other nodes' bans and unbans, keeping the cache current, until the
    /// connection drops (call again to reconnect).
    pub async fn subscribe(&self) -> Result<(), StoreError> {
        self.conn.subscribe(BAN_CHANNEL, &self.cache).await
    }

    /// One event at `now`; its decisions are returned (and shared) before this returns. The
    /// event is checked as the engine checks it (`Ruleset::resolve`), so a refused event gets
    /// the engine's [`EventError`] and never reaches Redis.
    pub async fn observe(
        &self,
        event: &Event<'_>,
        now: Timestamp,
        want_rates: bool,
    ) -> Result<Verdict, StoreError> {
        let event = self.rules.resolve(event)?;
        let want_rates = want_rates && self.rules.rates();
        let call = ScriptCall::event(&self.rules, &event, now, want_rates, self.nonce());
        let reply = match self.answer(&call).await? {
            Answer::Done(reply) => reply,
            Answer::TooManyMembers => {
                let family = self.rules.metric(event.metric.id).name.to_string();
                return Err(EventError::TooManyMembers(family).into());
            }
        };
        let decisions = self.settle(reply.records).await;
        let passed = match event.scope {
            Scope::Token => reply.passed,
            // Counted under `global`: whether the token itself is banned, the node's cache says.
            Scope::Global => !self.cache.is_banned(event.token, now),
        };
        Ok(Verdict {
            passed,
            rates: want_rates.then_some(reply.rates),
            actions: self.due(&decisions),
            decisions,
        })
    }

    /// Fires tier `tier` of `metric` for `token` at `now`, as if its limit were reached (the
    /// engine's `fire`: `until = now + action_duration`, value = the limit). Checked as the
    /// engine checks it (`Ruleset::resolve_fire`). Rates, when kept, are the token's events of
    /// the metric (the fire is not one).
    pub async fn fire(
        &self,
        token: &str,
        metric: &str,
        tier: usize,
        now: Timestamp,
    ) -> Result<Verdict, StoreError> {
        let (metric, rule) = self.rules.resolve_fire(token, metric, tier)?;
        let call = ScriptCall::fire(&self.rules, token, metric, rule, now);
        let reply = self.call(&call).await?;
        let decisions = self.settle(reply.records).await;
        Ok(Verdict {
            passed: reply.passed,
            rates: self.rules.rates().then_some(reply.rates),
            actions: self.due(&decisions),
            decisions,
        })
    }

    /// An operator's ban by hand at `now` (the engine's `ban_by_hand`, checked as it checks
    /// it): bans `token` for `duration`, or carries its ban further, never shorter; the ban
    /// keeps `reason` in its hash. Its start is an offence for the tiers that escalate.
    pub async fn ban_by_hand(
        &self,
        token: &str,
        duration: Seconds,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<Verdict, StoreError> {
        let reason = self.rules.resolve_manual(token, duration, reason)?;
        let call = ScriptCall::manual(&self.rules, token, duration.get(), reason, now);
        let reply = self.call(&call).await?;
        let decisions = self.settle(reply.records).await;
        Ok(Verdict {
            passed: reply.passed,
            rates: None,
            actions: Vec::new(),
            decisions,
        })
    }

    /// Runs one script call and reads its answer strictly.
    async fn answer(&self, call: &ScriptCall<'_>) -> Result<Answer, StoreError> {
        let value: redis::Value = self.conn.invoke(&call.invocation(&self.engine)).await?;
        Answer::parse(&value).map_err(|why| self.conn.protocol_error(why))
    }

    /// Runs a call that is never refused (all but events).
    async fn call(&self, call: &ScriptCall<'_>) -> Result<Reply, StoreError> {
        match self.answer(call).await? {
            Answer::Done(reply) => Ok(reply),
            Answer::TooManyMembers => Err(self
                .conn
                .protocol_error("engine.lua refused a call that is not an event".into())),
        }
    }

    /// Makes an event's member in its window unique across nodes.
    fn nonce(&self) -> String {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{:x}.{seq:x}", self.node)
    }

    /// The decisions of a call's records: the ones that start are indexed for their end, bans
    /// are told to the other nodes.
    async fn settle(&self, records: Vec<Record>) -> Vec<DecisionEvent> {
        let mut decisions = Vec::with_capacity(records.len());
        for r in records {
            let d = r.into_decision(|m| self.metric_name(m));
            if d.change == Change::Start {
                self.register(&d).await;
            }
            self.publish(&d).await;
            decisions.push(d);
        }
        decisions
    }

    /// The actions of the decisions this node's call started: they run here, once, as the
    /// in-memory engine runs its own.
    fn due(&self, decisions: &[DecisionEvent]) -> Vec<DueAction> {
        decisions
            .iter()
            .filter(|d| d.change == Change::Start)
            .filter_map(|d| {
                Some(DueAction {
                    rule: self.rule_of(&d.metric, d.tier)?,
                    token: d.token.clone(),
                    metric: Arc::clone(&d.metric),
                    at: d.at,
                    repeat: false,
                })
            })
            .collect()
    }

    /// Adds a decision that just started to the deadline index, for the sweep. A failure here
    /// does not undo the decision (the script made it, every node sees it): it is logged, and
    /// the decision then ends at the token's next event after its end instead of by the sweep.
    async fn register(&self, d: &DecisionEvent) {
        let member = DeadlineMember::of(d).unsequenced();
        let registered: Result<String, StoreError> = self
            .conn
            .invoke(
                self.index
                    .key(DEADLINES)
                    .key(DEADLINE_SEQ)
                    .arg(d.until.as_unix())
                    .arg(member),
            )
            .await;
        if let Err(e) = registered {
            tracing::warn!(token = %Escaped(&d.token), error = %Escaped(&e), "A decision could not be indexed for its end.");
        }
    }

    async fn publish(&self, d: &DecisionEvent) {
        if d.effect != Effect::Block {
            return;
        }
        let until = if d.change == Change::End {
            0
        } else {
            d.until.as_unix()
        };
        self.cache.set(d.token.as_str(), until);
        let _ = self
            .conn
            .publish(BAN_CHANNEL, &format!("{}|{until}", d.token))
            .await;
    }

    /// Ends every decision due by `now`, whichever node started it; returns the ends in order.
    /// An entry whose decision cannot be read (a protocol error, counted and logged) is left
    /// for later rather than holding up every other end.
    pub async fn sweep(&self, now: Timestamp) -> Result<Vec<DecisionEvent>, StoreError> {
        self.ends(now, false).await
    }

    /// The input is over and the clock stops at `now`: ends every active decision where it
    /// would end with no further time for its thresholds (as `Engine::finish`).
    pub async fn finish(&self, now: Timestamp) -> Result<Vec<DecisionEvent>, StoreError> {
        self.ends(now, true).await
    }

    async fn ends(&self, now: Timestamp, finish: bool) -> Result<Vec<DecisionEvent>, StoreError> {
        let due: Vec<(String, f64)> = if finish {
            self.conn.zrange_all(DEADLINES).await?
        } else {
            self.conn.zrange_due(DEADLINES, now.as_unix()).await?
        };
        let mut out: Vec<(Timestamp, String, DecisionEvent)> = Vec::new();
        for (member, _) in due {
            let Some(m) = DeadlineMember::parse(&member) else {
                self.conn.zrem(DEADLINES, &member).await?;
                continue;
            };
            let reply = match self
                .call(&ScriptCall::end(&self.rules, &m, now, finish))
                .await
            {
                Ok(reply) => reply,
                Err(StoreError::Protocol(_)) => continue,
                Err(e) => return Err(e),
            };
            match reply.until {
                Some(u) if !finish => self.conn.zadd(DEADLINES, &member, u.as_unix()).await?,
                _ => self.conn.zrem(DEADLINES, &member).await?,
            }
            for r in reply.records {
                let d = r.into_decision(|m| self.metric_name(m));
                self.publish(&d).await;
                out.push((d.at, member.clone(), d));
            }
        }
        // In time order, equal ends in the order they started (the index's SEQ), as the engine.
        out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Ok(out.into_iter().map(|(_, _, d)| d).collect())
    }

    /// Ends `token`'s ban at `now` (an operator's unban); the UNBAN, if it was banned.
    pub async fn unban(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<Option<DecisionEvent>, StoreError> {
        let reply = self.call(&ScriptCall::unban(token, now)).await?;
        let mut records = reply.records.into_iter();
        let (end, None) = (records.next(), records.next()) else {
            return Err(self
                .conn
                .protocol_error("engine.lua answered an unban with several records".into()));
        };
        let Some(end) = end else {
            return Ok(None);
        };
        if (end.effect, end.change) != (Effect::Block, Change::End) {
            return Err(self
                .conn
                .protocol_error("engine.lua answered an unban with another record".into()));
        }
        let d = end.into_decision(|m| self.metric_name(m));
        self.publish(&d).await;
        // Its deadline entries go too, or listings would show the ban until its old end. A
        // scan of the index: unbans are rare operator actions.
        for (member, _) in self.conn.zrange_all(DEADLINES).await? {
            if DeadlineMember::parse(&member)
                .is_some_and(|m| m.effect == Effect::Block && m.token == token)
            {
                self.conn.zrem(DEADLINES, &member).await?;
            }
        }
        Ok(Some(d))
    }

    /// Active bans from the deadline index (ends not yet swept included): token, the metric
    /// and tier that started the ban, and its end; one entry per token.
    pub async fn bans(&self) -> Result<Vec<(String, String, usize, Timestamp)>, StoreError> {
        let all = self.conn.zrange_all(DEADLINES).await?;
        let mut bans: std::collections::BTreeMap<String, (String, usize, Timestamp)> =
            std::collections::BTreeMap::new();
        for (member, score) in all {
            let Some(m) = DeadlineMember::parse(&member).filter(|m| m.effect == Effect::Block)
            else {
                continue;
            };
            #[allow(clippy::cast_possible_truncation)] // scores are whole seconds
            let until = Timestamp::from_unix(score as i64);
            let entry = (m.metric, m.tier, until);
            bans.entry(m.token)
                .and_modify(|e| {
                    if until > e.2 {
                        *e = entry.clone();
                    }
                })
                .or_insert(entry);
        }
        Ok(bans
            .into_iter()
            .map(|(token, (metric, tier, until))| (token, metric, tier, until))
            .collect())
    }

    /// `token`'s ban as Redis holds it: rule, tier, value, from, until and reason.
    pub async fn ban(&self, token: &str) -> Result<Option<DecisionView>, StoreError> {
        let v: Vec<Option<String>> = self
            .conn
            .hmget(
                &keys::ban(token),
                &["rule", "tier", "value", "from", "until", "reason"],
            )
            .await?;
        let [rule, tier, value, from, until, reason] = &v[..] else {
            return Err(self
                .conn
                .protocol_error(format!("HMGET answered {} fields for 6", v.len())));
        };
        let (Some(rule), Some(_)) = (rule, until) else {
            return Ok(None);
        };
        Ok(Some(DecisionView {
            effect: Effect::Block,
            metric: Arc::from(keys::dec(rule).as_ref()),
            tier: self.field(token, "tier", tier)?,
            value: self.field(token, "value", value)?,
            from: Timestamp::from_unix(self.field(token, "from", from)?),
            until: Timestamp::from_unix(self.field(token, "until", until)?),
            reason: reason.as_deref().map(|r| Arc::from(keys::dec(r).as_ref())),
        }))
    }

    /// A number field of `token`'s ban hash; anything else is a protocol error.
    fn field<T: std::str::FromStr>(
        &self,
        token: &str,
        name: &str,
        raw: &Option<String>,
    ) -> Result<T, StoreError> {
        let raw = raw.as_deref().unwrap_or_default();
        raw.parse().map_err(|_| {
            self.conn
                .protocol_error(format!("the ban of `{token}` has {name} `{raw}`"))
        })
    }

    /// When `token`'s ban ends, asking Redis.
    pub async fn ban_until(&self, token: &str) -> Result<Option<Timestamp>, StoreError> {
        let until: Option<i64> = self.conn.hget(&keys::ban(token), "until").await?;
        Ok(until.map(Timestamp::from_unix))
    }

    /// Deletes every key this store wrote (tests).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.conn.flushall().await
    }

    /// The rule's own `Arc<str>` for plain metrics (no allocation), a new one for members.
    fn metric_name(&self, name: &str) -> Arc<str> {
        match self.rules.metric_id(name).map(|id| self.rules.metric(id)) {
            Some(m) if &*m.name == name => Arc::clone(&m.name),
            _ => Arc::from(name),
        }
    }

    /// What a rule says to answer while Redis cannot be reached: false if any tier of the
    /// metric is `fail_closed`.
    pub fn passes_when_unavailable(&self, metric: &str) -> bool {
        self.rules.metric_id(metric).is_none_or(|id| {
            !self
                .rules
                .metric(id)
                .thresholds
                .iter()
                .any(|t| t.fail_closed)
        })
    }

    /// The connection's health counters.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// A shard count is meaningless here; present for symmetry with the memory store.
    pub fn shards(&self) -> Option<NonZeroUsize> {
        None
    }

    /// The rule a decision is attributed to.
    pub fn rule_of(&self, metric: &str, tier: usize) -> Option<RuleId> {
        let id: MetricId = self.rules.metric_id(metric)?;
        let tier = u32::try_from(tier).ok()?;
        ((tier as usize) < self.rules.metric(id).thresholds.len())
            .then_some(RuleId { metric: id, tier })
    }
}

fn nonce_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}
