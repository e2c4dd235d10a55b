//! banhammer-store-redis: the engine's state in Redis or Redis Cluster, so that many nodes
//! enforce one limit.
//!
//! Per event, one round trip: `engine.lua` (loaded once, called by SHA) updates the token's
//! windows and decisions atomically and returns the answer, its stats and any decision. All
//! keys of a token share the hash tag `{token}` and so one cluster slot; they expire once
//! nothing about them can matter. Active decisions are also indexed in `bh:{deadlines}` (a
//! sorted set by end), which every node's ticker sweeps, so each end is reported exactly once
//! whichever node gets there first. See docs/scale-out.md.

mod cache;
mod connection;
mod keys;

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use banhammer_core::{
    BanPolicy, Change, DecisionEvent, DueAction, Effect, Event, EventError, Kind, MeasureSlot,
    MetricId, Rates, RuleId, Ruleset, Scope, Timestamp, Token, Verdict,
};
use redis::Script;

pub use cache::BanCache;
pub use connection::{Connection, StoreUrl};
pub use keys::BAN_CHANNEL;

use keys::{dec, effect_code, enc, DeadlineMember, DEADLINES, DEADLINE_SEQ};

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
    /// The event itself was refused (unknown metric, bad token…).
    #[error(transparent)]
    Event(#[from] EventError),
    /// The rules use what the script does not implement.
    #[error("{0}")]
    Unsupported(String),
}

/// The script: the engine's logic, second copy.
const ENGINE_LUA: &str = include_str!("engine.lua");

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
        for (id, m) in rules.metrics() {
            for t in &m.thresholds {
                if matches!(t.kind, Kind::Sum(_)) {
                    return Err(StoreError::Unsupported(format!(
                        "metric `{}`: sum(...) thresholds are not available with the Redis store",
                        m.name
                    )));
                }
            }
            let _ = id;
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
        })
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

    /// One event at `now`; its decisions are returned (and shared) before this returns.
    pub async fn observe(
        &self,
        event: &Event<'_>,
        now: Timestamp,
        want_rates: bool,
    ) -> Result<Verdict, StoreError> {
        let id = self
            .rules
            .metric_id(event.metric)
            .ok_or_else(|| EventError::UnknownMetric(event.metric.chars().take(64).collect()))?;
        if event.token.is_empty() || event.token.len() > Token::MAX_LEN {
            return Err(EventError::BadToken.into());
        }
        let rule = self.rules.metric(id);
        let global = rule.scope == Scope::Global;
        let who = if global { Token::GLOBAL } else { event.token };
        let layout = self.rules.layout(id);
        let mut inv = self.engine.prepare_invoke();
        inv.key(keys::ban(who)).key(keys::events(who, event.metric));
        for (attr, _, _) in layout.distincts {
            inv.key(keys::distinct(who, event.metric, attr));
        }
        for tier in 0..rule.thresholds.len() {
            inv.key(keys::episode(who, event.metric, tier));
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        inv.arg("event")
            .arg(now.as_unix())
            .arg(event.at.as_unix())
            .arg(u8::from(want_rates && self.rules.rates()))
            .arg(layout.count_horizon.get())
            .arg(format!("{:x}.{seq:x}", self.node))
            .arg(rule.thresholds.len())
            .arg(layout.distincts.len())
            .arg(enc(event.metric).as_ref())
            .arg(enc(who).as_ref());
        for (t, slot) in rule.thresholds.iter().zip(layout.slots) {
            let (kind, dindex) = match slot {
                MeasureSlot::Distinct(i) => (1, i + 1),
                _ => (0, 0),
            };
            inv.arg(t.limit.get())
                .arg(t.window.secs())
                .arg(kind)
                .arg(dindex)
                .arg(effect_code(t.effect))
                .arg(u8::from(t.policy == BanPolicy::AfterViolation))
                .arg(t.action_duration.get());
        }
        for (attr, horizon, keep) in layout.distincts {
            let value = event.attr(attr).ok_or_else(|| EventError::MissingAttr {
                metric: rule.name.to_string(),
                attr: attr.to_string(),
            })?;
            inv.arg(value).arg(horizon.get()).arg(*keep);
        }
        let reply: Vec<redis::Value> = self.conn.invoke(&inv).await?;
        let parsed = Reply::parse(&reply)?;
        let mut decisions = Vec::with_capacity(parsed.records.len());
        for r in &parsed.records {
            let d = self.decision(r)?;
            if d.change == Change::Start {
                self.register(&d).await;
            }
            self.publish(&d).await;
            decisions.push(d);
        }
        let passed = if global {
            !self.cache.is_banned(event.token, now)
        } else {
            parsed.passed
        };
        let rates = (want_rates && self.rules.rates()).then_some(parsed.rates);
        let actions = self.due(&decisions);
        Ok(Verdict {
            passed,
            rates,
            decisions,
            actions,
        })
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
            tracing::warn!(token = %d.token, error = %e, "A decision could not be indexed for its end.");
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
            let (limit, window) = self.tier_spec(&m.metric, m.tier);
            let episode = keys::decision(m.effect, &m.token, &m.metric, m.tier);
            let mut inv = self.engine.prepare_invoke();
            inv.key(&episode)
                .key(keys::events(&m.token, &m.metric))
                .arg(if finish { "finish" } else { "end" })
                .arg(now.as_unix())
                .arg(limit)
                .arg(window);
            // One entry that cannot be read must not hold up every other end: it is left for
            // later (the connection counts and logs the protocol error).
            let reply: Vec<redis::Value> = match self.conn.invoke(&inv).await {
                Ok(reply) => reply,
                Err(StoreError::Protocol(_)) => continue,
                Err(e) => return Err(e),
            };
            let parsed = Reply::parse(&reply)?;
            match parsed.until {
                Some(u) if !finish => self.conn.zadd(DEADLINES, &member, u).await?,
                _ => self.conn.zrem(DEADLINES, &member).await?,
            }
            for r in &parsed.records {
                let d = self.decision(r)?;
                self.publish(&d).await;
                out.push((d.at, member.clone(), d));
            }
        }
        out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Ok(out.into_iter().map(|(_, _, d)| d).collect())
    }

    fn tier_spec(&self, metric: &str, tier: usize) -> (u64, u64) {
        self.rules
            .metric_id(metric)
            .and_then(|id| self.rules.metric(id).thresholds.get(tier))
            .map_or((0, 1), |t| (t.limit.get(), t.window.secs()))
    }

    /// Fires tier `tier` of `metric` for `token` at `now`, as if its limit were reached.
    pub async fn fire(
        &self,
        token: &str,
        metric: &str,
        tier: usize,
        now: Timestamp,
    ) -> Result<Verdict, StoreError> {
        // A fired tier is an event that already reached its limit: replayed through the script
        // as a one-tier rule of limit 1, so the episode logic is the script's own.
        let id = self
            .rules
            .metric_id(metric)
            .ok_or_else(|| EventError::UnknownMetric(metric.chars().take(64).collect()))?;
        let rule = self.rules.metric(id);
        let t = rule
            .thresholds
            .get(tier)
            .ok_or_else(|| EventError::UnknownTier {
                metric: metric.to_owned(),
                tier,
            })?;
        if rule.scope == Scope::Global {
            return Err(EventError::GlobalFire(metric.to_owned()).into());
        }
        let mut inv = self.engine.prepare_invoke();
        let emetric = enc(metric);
        inv.key(keys::ban(token)).key(keys::fired(token, metric));
        for i in 0..=tier {
            inv.key(keys::episode(token, metric, i));
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        inv.arg("event")
            .arg(now.as_unix())
            .arg(now.as_unix())
            .arg(0)
            .arg(1)
            .arg(format!("{:x}.{seq:x}", self.node))
            .arg(tier + 1)
            .arg(0)
            .arg(emetric.as_ref())
            .arg(enc(token).as_ref());
        for i in 0..=tier {
            // Lower tiers are present only to keep the tier number; they cannot hold.
            let limit = if i == tier { 1 } else { u64::MAX >> 12 };
            inv.arg(limit)
                .arg(1)
                .arg(0)
                .arg(0)
                .arg(effect_code(t.effect))
                .arg(0)
                .arg(t.action_duration.get());
        }
        let reply: Vec<redis::Value> = self.conn.invoke(&inv).await?;
        let parsed = Reply::parse(&reply)?;
        let mut decisions = Vec::new();
        for r in &parsed.records {
            let mut d = self.decision(r)?;
            d.value = t.limit.get();
            if d.change == Change::Start {
                self.register(&d).await;
            }
            self.publish(&d).await;
            decisions.push(d);
        }
        // The stats the seed's `now` answers, when rates are kept: the token's events of the
        // metric (the fire itself is not one).
        let rates = if self.rules.rates() {
            let events = keys::events(token, metric);
            let mut r = [0u64; 3];
            for (n, secs) in r.iter_mut().zip([60, 600, 3600]) {
                *n = self
                    .conn
                    .zcount_after(&events, now.as_unix() - secs)
                    .await?;
            }
            Some(Rates {
                last_1m: r[0],
                last_10m: r[1],
                last_60m: r[2],
            })
        } else {
            None
        };
        let actions = self.due(&decisions);
        Ok(Verdict {
            passed: parsed.passed,
            rates,
            decisions,
            actions,
        })
    }

    /// Ends `token`'s ban at `now` (an operator's unban); the UNBAN, if it was banned.
    pub async fn unban(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<Option<DecisionEvent>, StoreError> {
        let mut inv = self.engine.prepare_invoke();
        inv.key(keys::ban(token)).arg("unban").arg(now.as_unix());
        let reply: Vec<redis::Value> = self.conn.invoke(&inv).await?;
        let parsed = Reply::parse(&reply)?;
        match parsed.records.first() {
            Some(r) => {
                let d = self.decision(r)?;
                self.publish(&d).await;
                // Its deadline entries go too, or listings would show the ban until its old
                // end. A scan of the index: unbans are rare operator actions.
                for (member, _) in self.conn.zrange_all(DEADLINES).await? {
                    if DeadlineMember::parse(&member)
                        .is_some_and(|m| m.effect == Effect::Block && m.token == token)
                    {
                        self.conn.zrem(DEADLINES, &member).await?;
                    }
                }
                Ok(Some(d))
            }
            None => Ok(None),
        }
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

    /// `token`'s ban as Redis holds it: (rule, tier, value, from, until).
    pub async fn ban(
        &self,
        token: &str,
    ) -> Result<Option<(String, usize, u64, Timestamp, Timestamp)>, StoreError> {
        let v: Vec<Option<String>> = self
            .conn
            .hmget(
                &keys::ban(token),
                &["rule", "tier", "value", "from", "until"],
            )
            .await?;
        let num = |i: usize| {
            v.get(i)
                .and_then(|x| x.as_deref())
                .and_then(|x| x.parse::<i64>().ok())
        };
        let (Some(rule), Some(until)) = (v.first().cloned().flatten(), num(4)) else {
            return Ok(None);
        };
        Ok(Some((
            dec(&rule).into_owned(),
            usize::try_from(num(1).unwrap_or(0)).unwrap_or(0),
            u64::try_from(num(2).unwrap_or(0)).unwrap_or(0),
            Timestamp::from_unix(num(3).unwrap_or(until)),
            Timestamp::from_unix(until),
        )))
    }

    /// Whether `token` is banned at `now`, asking Redis.
    pub async fn ban_until(&self, token: &str) -> Result<Option<Timestamp>, StoreError> {
        let until: Option<i64> = self.conn.hget(&keys::ban(token), "until").await?;
        Ok(until.map(Timestamp::from_unix))
    }

    /// Deletes every key this store wrote (tests).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.conn.flushall().await
    }

    fn decision(&self, r: &str) -> Result<DecisionEvent, StoreError> {
        let bad = || StoreError::Protocol(format!("unexpected record from the script: {r}"));
        let p: Vec<&str> = r.split('|').collect();
        let [verb, at, token, metric, tier, value, from, until, effect] = p[..] else {
            return Err(bad());
        };
        let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
        let change = match verb {
            "BAN" | "ALERT" | "NOTIFY" => Change::Start,
            "EXTEND" | "NOTIFY_EXTEND" => Change::Extend,
            _ => Change::End,
        };
        let effect = match effect {
            "0" => Effect::Block,
            "1" => Effect::Notify,
            _ => Effect::Alert,
        };
        Ok(DecisionEvent {
            at: Timestamp::from_unix(num(at)?),
            change,
            effect,
            token: Token::new(&dec(token)).ok_or_else(bad)?,
            metric: self.metric_name(&dec(metric)),
            tier: usize::try_from(num(tier)?).map_err(|_| bad())?,
            value: u64::try_from(num(value)?).unwrap_or(0),
            from: Timestamp::from_unix(num(from)?),
            until: Timestamp::from_unix(num(until)?),
        })
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

/// The script's answer.
struct Reply {
    passed: bool,
    rates: Rates,
    until: Option<i64>,
    records: Vec<String>,
}

impl Reply {
    fn parse(v: &[redis::Value]) -> Result<Self, StoreError> {
        let int = |i: usize| -> Result<i64, StoreError> {
            match v.get(i) {
                Some(redis::Value::Int(n)) => Ok(*n),
                other => Err(StoreError::Protocol(format!("unexpected reply {other:?}"))),
            }
        };
        let rate = |i| int(i).map(|n| u64::try_from(n).unwrap_or(0));
        let until = int(4)?;
        let mut records = Vec::new();
        for item in v.iter().skip(5) {
            match item {
                redis::Value::BulkString(b) => {
                    records.push(String::from_utf8_lossy(b).into_owned())
                }
                redis::Value::SimpleString(s) => records.push(s.clone()),
                other => return Err(StoreError::Protocol(format!("unexpected record {other:?}"))),
            }
        }
        Ok(Reply {
            passed: int(0)? == 1,
            rates: Rates {
                last_1m: rate(1)?,
                last_10m: rate(2)?,
                last_60m: rate(3)?,
            },
            until: (until >= 0).then_some(until),
            records,
        })
    }
}
