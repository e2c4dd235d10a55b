//! `Episodes`: active decisions (one ban per token, notices, alerts) and the deadlines that
//! end them.
//!
//! Ends come from a lazy deadline heap (`BinaryHeap<(until, id)>`): extending a decision costs
//! nothing there; a stale deadline is re-queued at the episode's current end when it comes up.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use hashbrown::{Equivalent, HashMap};
use smallvec::SmallVec;

use crate::decision::{Change, DecisionEvent, DecisionView};
use crate::rules::{BanPolicy, Effect, RuleId, Ruleset};
use crate::time::{Seconds, Timestamp};
use crate::token::Token;

use super::tokens::BanCache;
use super::windows::MetricWindows;

/// Which episode a decision belongs to: one ban per token (whatever metric), one notice per
/// token and rule, one alert per global rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EpisodeKey {
    Block(Token),
    Notify(Token, RuleId),
    Alert(RuleId),
}

impl EpisodeKey {
    fn of(effect: Effect, token: &str, rule: RuleId) -> Self {
        let token = || Token::new(token).unwrap_or_else(Token::global);
        match effect {
            Effect::Block => EpisodeKey::Block(token()),
            Effect::Notify => EpisodeKey::Notify(token(), rule),
            Effect::Alert => EpisodeKey::Alert(rule),
        }
    }
}

impl Hash for EpisodeKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        match self {
            EpisodeKey::Block(t) => BlockKey(t.as_str()).hash(h),
            EpisodeKey::Notify(t, r) => {
                1u8.hash(h);
                t.as_str().hash(h);
                r.hash(h);
            }
            EpisodeKey::Alert(r) => {
                2u8.hash(h);
                r.hash(h);
            }
        }
    }
}

impl PartialOrd for EpisodeKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EpisodeKey {
    /// Only a tie-breaker behind `(at, id)`, which are unique; kept total for the heap.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        fn parts(k: &EpisodeKey) -> (u8, &str, Option<RuleId>) {
            match k {
                EpisodeKey::Block(t) => (0, t.as_str(), None),
                EpisodeKey::Notify(t, r) => (1, t.as_str(), Some(*r)),
                EpisodeKey::Alert(r) => (2, "", Some(*r)),
            }
        }
        parts(self).cmp(&parts(other))
    }
}

/// Looks up a token's ban without building a `Token`.
struct BlockKey<'a>(&'a str);

impl Hash for BlockKey<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        0u8.hash(h);
        self.0.hash(h);
    }
}

impl Equivalent<EpisodeKey> for BlockKey<'_> {
    fn equivalent(&self, key: &EpisodeKey) -> bool {
        matches!(key, EpisodeKey::Block(t) if t.as_str() == self.0)
    }
}

/// How far one rule carries a decision.
#[derive(Debug, Clone)]
pub(super) struct Reach {
    pub(super) rule: RuleId,
    /// The family member that held (`detect:login`), for records; `None` for plain metrics.
    pub(super) member: Option<Arc<str>>,
    pub(super) value: u64,
    /// `after_trigger`: the decision's end. `after_violation`: the last second the rule holds.
    pub(super) mark: Timestamp,
    /// `after_violation` only: added to `mark`.
    pub(super) duration: Seconds,
    pub(super) policy: BanPolicy,
}

impl Reach {
    /// An `after_trigger` reach that ends at `until`.
    pub(super) fn until(
        rule: RuleId,
        member: Option<Arc<str>>,
        value: u64,
        until: Timestamp,
    ) -> Self {
        Reach {
            rule,
            member,
            value,
            mark: until,
            duration: Seconds::ZERO,
            policy: BanPolicy::AfterTrigger,
        }
    }

    /// Where this reach ends, with the clock stopped at `stop` (docs/semantics.md: an
    /// `after_violation` hold is bounded by the clock); `None` means the clock runs on.
    fn end(&self, stop: Option<Timestamp>) -> Timestamp {
        match self.policy {
            BanPolicy::AfterTrigger => self.mark,
            BanPolicy::AfterViolation => stop
                .map_or(self.mark, |s| self.mark.min(s))
                .plus(self.duration),
        }
    }
}

#[derive(Debug)]
struct Episode {
    id: u64,
    /// The family member of the rule that started it, if any.
    member: Option<Arc<str>>,
    effect: Effect,
    token: Token,
    rule: RuleId,
    value: u64,
    from: Timestamp,
    /// One entry per rule (and policy: a fire is `after_trigger` whatever its tier's) that has
    /// held during the episode; `after_trigger` entries keep their furthest end,
    /// `after_violation` entries their latest hold end, each with the family member whose
    /// hold set it. Per rule, not per member: an episode can outlast its token's list of
    /// members, and untrusted names must not pile up here.
    reaches: SmallVec<[Reach; 1]>,
    /// The live end: when the deadline queue ends it (for alerts, the projected recovery).
    until: Timestamp,
    /// A ban's earlier offences (when the token's previous bans started), taken when it
    /// started, for tiers that escalate; `None` when no tier does.
    earlier: Option<Box<[Timestamp]>>,
    /// The operator's reason, once a ban by hand started it or carried it further (the
    /// latest given); every record of the episode carries it.
    reason: Option<Arc<str>>,
}

impl Episode {
    fn extend(&mut self, reach: Reach) {
        let end = reach.end(None);
        match self
            .reaches
            .iter_mut()
            .find(|r| r.rule == reach.rule && r.policy == reach.policy)
        {
            Some(r) => {
                // Only a reach that goes further replaces the record's value and member: a hold
                // that carries no further (like a banned token that keeps coming, which is not
                // even measured, or another member of the family) leaves the one that set the
                // mark.
                if reach.mark > r.mark {
                    r.mark = reach.mark;
                    r.value = reach.value;
                    r.member = reach.member;
                }
            }
            None => self.reaches.push(reach),
        }
        self.until = self.until.max(end);
    }

    /// The reach that ends last with the clock stopped at `stop`: its end, rule, value and
    /// family member.
    fn furthest(&self, stop: Option<Timestamp>) -> (Timestamp, RuleId, u64, Option<&Arc<str>>) {
        self.reaches
            .iter()
            .map(|r| (r.end(stop), r.rule, r.value, r.member.as_ref()))
            .max_by_key(|(end, _, _, _)| *end)
            .unwrap_or((self.until, self.rule, self.value, self.member.as_ref()))
    }

    /// What the token's cached ban copy must say while this ban lasts.
    fn ban_cache(&self) -> BanCache {
        let trigger = self
            .reaches
            .iter()
            .filter(|r| r.policy == BanPolicy::AfterTrigger)
            .map(|r| r.mark)
            .max()
            .unwrap_or(Timestamp::MIN);
        BanCache {
            until: self.until,
            trigger_until: trigger,
        }
    }

    fn view(&self, rules: &Ruleset) -> DecisionView {
        DecisionView {
            effect: self.effect,
            metric: rules.rule_name(self.rule, self.member.as_ref()),
            tier: self.rule.tier as usize,
            value: self.value,
            from: self.from,
            until: self.until,
            reason: self.reason.clone(),
        }
    }

    /// The end record at `at`, attributed to the reach that goes furthest with the clock
    /// stopped at `stop`.
    fn end_event(&self, rules: &Ruleset, at: Timestamp, stop: Option<Timestamp>) -> DecisionEvent {
        let (_, rule, value, member) = self.furthest(stop);
        DecisionEvent {
            at,
            change: Change::End,
            effect: self.effect,
            token: self.token.clone(),
            metric: rules.rule_name(rule, member),
            tier: rule.tier as usize,
            value,
            from: self.from,
            until: at,
            reason: self.reason.clone(),
        }
    }
}

/// A point at which an episode may end. Stale entries (the episode was extended or replaced)
/// are skipped or pushed again when they come up, so extending costs nothing here.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Deadline {
    at: Timestamp,
    id: u64,
    key: EpisodeKey,
}

/// The active decisions and their deadlines; `S` hashes the (token-keyed) decisions.
#[derive(Debug, Default)]
pub(super) struct Episodes<S> {
    map: HashMap<EpisodeKey, Episode, S>,
    deadlines: BinaryHeap<Reverse<Deadline>>,
    next_id: u64,
    /// Active bans, kept as they start and end so that counting them walks nothing.
    bans: usize,
}

impl<S: BuildHasher + Default> Episodes<S> {
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// How many tokens are banned.
    pub(super) fn bans(&self) -> usize {
        self.bans
    }

    /// When `token`'s active ban started, and its earlier offences if they were noted.
    pub(super) fn ban_offences(&self, token: &str) -> Option<(Timestamp, Option<&[Timestamp]>)> {
        self.map
            .get(&BlockKey(token))
            .map(|ep| (ep.from, ep.earlier.as_deref()))
    }

    /// Notes the earlier offences of `token`'s ban (once, when it starts or is restored).
    pub(super) fn set_earlier(&mut self, token: &str, earlier: Box<[Timestamp]>) {
        if let Some(ep) = self.map.get_mut(&BlockKey(token)) {
            ep.earlier.get_or_insert(earlier);
        }
    }

    fn removed(&mut self, ep: &Episode) {
        if ep.effect == Effect::Block {
            self.bans -= 1;
        }
    }

    /// How many reaches `token`'s ban keeps (tests: they must stay bounded).
    #[cfg(test)]
    pub(super) fn ban_reaches(&self, token: &str) -> usize {
        self.map
            .get(&BlockKey(token))
            .map_or(0, |ep| ep.reaches.len())
    }

    /// Applies one holding threshold of `token` at `now`: starts its decision (returns true:
    /// run its actions) or extends the active one. `recovery` is when an alert would end.
    #[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
    pub(super) fn hold(
        &mut self,
        rules: &Ruleset,
        token: &str,
        effect: Effect,
        reach: Reach,
        recovery: Timestamp,
        now: Timestamp,
        out: &mut Vec<DecisionEvent>,
    ) -> bool {
        let key = EpisodeKey::of(effect, token, reach.rule);
        if let Some(ep) = self.map.get_mut(&key) {
            // An alert's end is recomputed from its window when its deadline comes up.
            if effect != Effect::Alert {
                let before = ep.until;
                ep.extend(reach);
                if ep.until > before {
                    // Stores must learn how far a ban now reaches (a restart restores it).
                    let (_, rule, value, member) = ep.furthest(None);
                    let metric = rules.rule_name(rule, member);
                    out.push(DecisionEvent {
                        at: now,
                        change: Change::Extend,
                        effect,
                        token: ep.token.clone(),
                        metric,
                        tier: rule.tier as usize,
                        value,
                        from: ep.from,
                        until: ep.until,
                        reason: ep.reason.clone(),
                    });
                }
            }
            return false;
        }
        let Some(token) = Token::new(token) else {
            return false;
        };
        let until = match effect {
            Effect::Alert => recovery,
            Effect::Block | Effect::Notify => reach.end(None),
        };
        let (rule, value) = (reach.rule, reach.value);
        let metric = rules.rule_name(rule, reach.member.as_ref());
        let ep = self.start(effect, token, reach, now, until);
        out.push(DecisionEvent {
            at: now,
            change: Change::Start,
            effect,
            token: ep.token.clone(),
            metric,
            tier: rule.tier as usize,
            value,
            from: now,
            until: ep.until,
            reason: None,
        });
        true
    }

    /// A new episode from `from` to `until`, queued for its end.
    fn start(
        &mut self,
        effect: Effect,
        token: Token,
        reach: Reach,
        from: Timestamp,
        until: Timestamp,
    ) -> &Episode {
        let id = self.next_id;
        self.next_id += 1;
        let rule = reach.rule;
        let mut ep = Episode {
            id,
            member: reach.member.clone(),
            effect,
            token,
            rule,
            value: reach.value,
            from,
            reaches: SmallVec::new(),
            until,
            earlier: None,
            reason: None,
        };
        if effect != Effect::Alert {
            ep.extend(reach);
        }
        let key = EpisodeKey::of(effect, ep.token.as_str(), rule);
        self.deadlines.push(Reverse(Deadline {
            at: ep.until,
            id,
            key: key.clone(),
        }));
        self.bans += usize::from(effect == Effect::Block);
        self.map.entry(key).insert(ep).into_mut()
    }

    /// Restores a ban read back from storage: extends the token's ban, or starts one; with
    /// the operator's reason, if it was made or carried further by hand.
    pub(super) fn restore_ban(
        &mut self,
        token: Token,
        reach: Reach,
        from: Timestamp,
        reason: Option<Arc<str>>,
    ) {
        let key = EpisodeKey::Block(token.clone());
        if !self.map.contains_key(&key) {
            let until = reach.mark;
            self.start(Effect::Block, token, reach, from, until);
        } else if let Some(ep) = self.map.get_mut(&key) {
            ep.extend(reach);
        }
        if let (Some(ep), Some(reason)) = (self.map.get_mut(&key), reason) {
            ep.reason = Some(reason);
        }
    }

    /// Gives `token`'s ban the operator's `reason`: a ban by hand started it or carried it
    /// further.
    pub(super) fn set_reason(&mut self, token: &str, reason: Arc<str>) {
        if let Some(ep) = self.map.get_mut(&BlockKey(token)) {
            ep.reason = Some(reason);
        }
    }

    /// Whether the decision `rule` would belong to is active for `token`.
    pub(super) fn is_active(&self, effect: Effect, token: &str, rule: RuleId) -> bool {
        match effect {
            Effect::Block => self.map.contains_key(&BlockKey(token)),
            _ => self.map.contains_key(&EpisodeKey::of(effect, token, rule)),
        }
    }

    /// Whether `token` is banned.
    pub(super) fn is_banned(&self, token: &str) -> bool {
        self.map.contains_key(&BlockKey(token))
    }

    /// What `token`'s cached ban copy must say now.
    pub(super) fn ban_cache(&self, token: &str) -> BanCache {
        self.map
            .get(&BlockKey(token))
            .map_or(BanCache::NONE, Episode::ban_cache)
    }

    /// `token`'s ban, as status queries show it.
    pub(super) fn ban(&self, rules: &Ruleset, token: &str) -> Option<DecisionView> {
        self.map.get(&BlockKey(token)).map(|ep| ep.view(rules))
    }

    /// Every active decision with its token.
    pub(super) fn views<'a>(
        &'a self,
        rules: &'a Ruleset,
    ) -> impl Iterator<Item = (&'a Token, DecisionView)> + 'a {
        self.map.values().map(move |ep| (&ep.token, ep.view(rules)))
    }

    /// Ends `token`'s ban at `now` (an operator's unban); its UNBAN, if it was banned.
    pub(super) fn unban(
        &mut self,
        rules: &Ruleset,
        token: &str,
        now: Timestamp,
    ) -> Option<DecisionEvent> {
        let (_, ep) = self.map.remove_entry(&BlockKey(token))?;
        self.removed(&ep);
        let mut end = ep.end_event(rules, now, None);
        end.until = now;
        Some(end)
    }

    /// When the next decision may end, if any is active.
    pub(super) fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.peek().map(|Reverse(d)| d.at)
    }

    /// Ends every decision whose end has come by `now`, at exactly its end; `globals` are the
    /// global-scope windows that alerts recover from.
    pub(super) fn end_due(
        &mut self,
        rules: &Ruleset,
        globals: &[Option<MetricWindows>],
        now: Timestamp,
        out: &mut Vec<DecisionEvent>,
    ) {
        while let Some(Reverse(top)) = self.deadlines.peek() {
            if top.at > now {
                break;
            }
            let Some(Reverse(d)) = self.deadlines.pop() else {
                break;
            };
            let Some(ep) = self.map.get(&d.key) else {
                continue;
            };
            if ep.id != d.id {
                continue;
            }
            let end_at = match d.key {
                EpisodeKey::Alert(rule) => alert_recovery(rules, globals, rule)
                    .unwrap_or(d.at)
                    .max(d.at),
                EpisodeKey::Block(_) | EpisodeKey::Notify(..) => ep.until,
            };
            if end_at > d.at {
                // Extended since this deadline was queued: queue the new end.
                if let Some(ep) = self.map.get_mut(&d.key) {
                    ep.until = end_at;
                }
                self.deadlines.push(Reverse(Deadline { at: end_at, ..d }));
                continue;
            }
            if let Some(ep) = self.map.remove(&d.key) {
                self.removed(&ep);
                let end = match d.key {
                    EpisodeKey::Alert(rule) => end_of_alert(rules, globals, rule, &ep),
                    _ => ep.end_event(rules, d.at, None),
                };
                out.push(end);
            }
        }
    }

    /// The input is over and the clock stops at `stop`: ends every active decision where it
    /// would end with no further time passing for its thresholds, in time order.
    pub(super) fn finish(
        &mut self,
        rules: &Ruleset,
        globals: &[Option<MetricWindows>],
        stop: Timestamp,
    ) -> Vec<DecisionEvent> {
        let mut ends: Vec<(Timestamp, u64, DecisionEvent)> = Vec::new();
        self.bans = 0;
        for (key, ep) in std::mem::take(&mut self.map) {
            let end = match key {
                EpisodeKey::Alert(rule) => end_of_alert(rules, globals, rule, &ep),
                EpisodeKey::Block(_) | EpisodeKey::Notify(..) => {
                    ep.end_event(rules, ep.furthest(Some(stop)).0, Some(stop))
                }
            };
            ends.push((end.at, ep.id, end));
        }
        self.deadlines.clear();
        ends.sort_by_key(|(at, id, _)| (*at, *id));
        ends.into_iter().map(|(_, _, e)| e).collect()
    }
}

/// When a global alert's measure drops back to its limit, if no further event comes.
fn alert_recovery(
    rules: &Ruleset,
    globals: &[Option<MetricWindows>],
    rule: RuleId,
) -> Option<Timestamp> {
    let m = rules.compiled(rule.metric);
    let t = &m.rule.thresholds[rule.tier as usize];
    let w = globals[rule.metric.index()].as_ref()?;
    let nth = w.nth_latest(m.slots[rule.tier as usize], t.needed())?;
    Some(nth.plus(t.window.length()))
}

fn end_of_alert(
    rules: &Ruleset,
    globals: &[Option<MetricWindows>],
    rule: RuleId,
    ep: &Episode,
) -> DecisionEvent {
    let at = alert_recovery(rules, globals, rule)
        .unwrap_or(ep.until)
        .max(ep.until);
    let m = rules.compiled(rule.metric);
    let t = &m.rule.thresholds[rule.tier as usize];
    let value = globals[rule.metric.index()].as_ref().map_or(0, |w| {
        w.measure_after(m.slots[rule.tier as usize], t.window.boundary(at))
    });
    DecisionEvent {
        at,
        change: Change::End,
        effect: Effect::Alert,
        token: ep.token.clone(),
        metric: m.rule.name.clone(),
        tier: rule.tier as usize,
        value,
        from: ep.from,
        until: at,
        reason: None,
    }
}
