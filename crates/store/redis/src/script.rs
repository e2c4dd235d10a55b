//! The protocol of `engine.lua`: [`ScriptCall`] lays out every call's keys and arguments from
//! a typed description, in this one place; [`Reply`] reads every answer strictly.

use std::borrow::Cow;
use std::sync::Arc;

use banhammer_core::{
    BanPolicy, Change, DecisionEvent, Effect, Escalation, MeasureSlot, MetricRef, Rates,
    ResolvedEvent, RuleId, Ruleset, Scope, Timestamp, Token, MAX_MEMBERS,
};
use redis::{Script, ScriptInvocation, Value};

use crate::keys::{self, enc, DeadlineMember};

/// The script: the engine's per-event logic, second copy.
pub(crate) const ENGINE_LUA: &str = include_str!("engine.lua");

/// A tier as the script decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tier {
    pub(crate) limit: u64,
    pub(crate) window: u64,
    /// The window it measures: `None` the events, `Some(j)` the metric's `j`-th distinct set.
    pub(crate) distinct: Option<usize>,
    pub(crate) effect: Effect,
    pub(crate) policy: BanPolicy,
    pub(crate) duration: u64,
    /// `escalate`: factor, max and memory in seconds (a factor of 0 when the tier does not).
    pub(crate) escalate: (u32, u64, u64),
}

/// A tier's `escalate` as the script reads it: `(0, 0, 0)` when it has none.
fn escalate_args(e: Option<Escalation>) -> (u32, u64, u64) {
    e.map_or((0, 0, 0), |e| (e.factor, e.max.get(), e.memory.get()))
}

/// A `distinct(attr)` set an event updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DistinctSet<'a> {
    pub(crate) attr: &'a str,
    /// The event's value of `attr`.
    pub(crate) value: &'a str,
    /// How long a value matters.
    pub(crate) horizon: u64,
    /// How many of the latest values are kept.
    pub(crate) keep: usize,
}

/// One call of `engine.lua`, described by what it means rather than by its positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScriptCall<'a> {
    /// One event: count it, then start or extend the decisions of the tiers that hold.
    Event {
        now: Timestamp,
        at: Timestamp,
        want_rates: bool,
        /// The token counted (`global` for a global metric).
        token: &'a str,
        /// The metric as records name it: the member for a family.
        name: &'a str,
        /// The rule's own name, which keys notices and alerts (`detect:*` for its members).
        rule: &'a str,
        count_horizon: u64,
        /// The rules' longest window: how long the engine keeps an idle token's windows (and
        /// its copy of the token's ban); 0 for a global metric, whose token is not tracked.
        horizon: u64,
        /// Makes the event's member unique across nodes.
        nonce: String,
        /// The most members of one family a token counts ([`MAX_MEMBERS`]); 0 when the rules
        /// have no family, so that the script keeps no member list.
        members_cap: usize,
        /// The rule's name when the metric is a family (then `name` is a member of it).
        family: Option<&'a str>,
        /// How long a ban start is remembered as an offence (0: no tier escalates).
        offence_memory: u64,
        tiers: Vec<Tier>,
        distincts: Vec<DistinctSet<'a>>,
    },
    /// Fires a tier: its decision starts or extends as if its limit were reached now.
    Fire {
        now: Timestamp,
        want_rates: bool,
        token: &'a str,
        name: &'a str,
        rule: &'a str,
        tier: usize,
        limit: u64,
        effect: Effect,
        duration: u64,
        escalate: (u32, u64, u64),
        offence_memory: u64,
        /// An operator's reason, kept in the ban's hash when the fire starts or extends it
        /// (bans by hand; `None` for the seed API's `now`).
        reason: Option<&'a str>,
    },
    /// Ends a decision of the deadline index if its end has come (the sweep), or, with
    /// `finish`, where it would end with the clock stopped at `now`.
    End {
        now: Timestamp,
        finish: bool,
        /// The decision's key.
        decision: String,
        /// An alert's measure and its threshold's limit and window (recoveries are computed
        /// from it); `None` for bans and notices.
        alert: Option<(String, u64, u64)>,
    },
    /// An operator's unban of `token` at `now`.
    Unban { now: Timestamp, token: &'a str },
    /// Puts back a ban the store lost (it restarted empty), unless the token is banned.
    Restore {
        now: Timestamp,
        token: &'a str,
        name: &'a str,
        /// The rule's own name (`detect:*` for its members).
        rule: &'a str,
        tier: usize,
        value: u64,
        from: Timestamp,
        until: Timestamp,
        /// The operator's reason, for a ban made or carried further by hand.
        reason: Option<&'a str>,
    },
}

impl<'a> ScriptCall<'a> {
    /// The call for `event` (already checked by `Ruleset::resolve`) at `now`.
    pub(crate) fn event(
        rules: &'a Ruleset,
        event: &ResolvedEvent<'a>,
        now: Timestamp,
        want_rates: bool,
        nonce: String,
    ) -> Self {
        let rule = rules.metric(event.metric.id);
        let layout = rules.layout(event.metric.id);
        let tiers = rule
            .thresholds
            .iter()
            .zip(layout.slots)
            .map(|(t, slot)| Tier {
                limit: t.limit.get(),
                window: t.window.secs(),
                distinct: match slot {
                    MeasureSlot::Distinct(j) => Some(*j),
                    MeasureSlot::Count | MeasureSlot::Sum(_) => None,
                },
                effect: t.effect,
                policy: t.policy,
                duration: t.action_duration.get(),
                escalate: escalate_args(t.escalate),
            })
            .collect();
        let distincts = layout
            .distincts
            .iter()
            .zip(&event.distincts)
            .map(|((attr, horizon, keep), value)| DistinctSet {
                attr,
                value,
                horizon: horizon.get(),
                keep: *keep,
            })
            .collect();
        ScriptCall::Event {
            now,
            at: event.at,
            want_rates,
            token: event.counted_as(),
            name: event.metric_name(rules),
            rule: &rule.name,
            count_horizon: layout.count_horizon.get(),
            horizon: match event.scope {
                Scope::Token => rules.horizon().get(),
                Scope::Global => 0,
            },
            nonce,
            members_cap: if rules.has_families() { MAX_MEMBERS } else { 0 },
            family: event.metric.member.map(|_| &*rule.name),
            offence_memory: rules.offence_memory().map_or(0, |m| m.get()),
            tiers,
            distincts,
        }
    }

    /// The call that fires `rule` (already checked by `Ruleset::resolve_fire`) for `token`.
    pub(crate) fn fire(
        rules: &'a Ruleset,
        token: &'a str,
        metric: MetricRef<'a>,
        rule: RuleId,
        now: Timestamp,
    ) -> Self {
        let m = rules.metric(metric.id);
        let t = rules.threshold(rule);
        ScriptCall::Fire {
            now,
            want_rates: rules.rates(),
            token,
            name: metric.member.unwrap_or(&m.name),
            rule: &m.name,
            tier: rule.tier as usize,
            limit: t.limit.get(),
            effect: t.effect,
            duration: t.action_duration.get(),
            escalate: escalate_args(t.escalate),
            offence_memory: rules.offence_memory().map_or(0, |m| m.get()),
            reason: None,
        }
    }

    /// The call that bans `token` by hand for `duration` (already checked by
    /// `Ruleset::resolve_manual`): a fire of the rule [`Ruleset::MANUAL`], tier 0, value 0,
    /// never escalated, whose start is an offence like any ban's.
    pub(crate) fn manual(
        rules: &'a Ruleset,
        token: &'a str,
        duration: u64,
        reason: Option<&'a str>,
        now: Timestamp,
    ) -> Self {
        ScriptCall::Fire {
            now,
            want_rates: false,
            token,
            name: Ruleset::MANUAL,
            rule: Ruleset::MANUAL,
            tier: 0,
            limit: 0,
            effect: Effect::Block,
            duration,
            escalate: (0, 0, 0),
            offence_memory: rules.offence_memory().map_or(0, |m| m.get()),
            reason,
        }
    }

    /// The call that ends the decision of a deadline-index entry. A metric this node does not
    /// know (nodes with different rules) is taken as a plain metric.
    pub(crate) fn end(
        rules: &Ruleset,
        member: &DeadlineMember,
        now: Timestamp,
        finish: bool,
    ) -> ScriptCall<'static> {
        let known = rules.metric_id(&member.metric);
        let rule = known.map_or(member.metric.as_str(), |id| &rules.metric(id).name);
        let decision = keys::decision(member.effect, &member.token, rule, member.tier);
        let alert = (member.effect == Effect::Alert).then(|| {
            let spec = known.and_then(|id| {
                let t = rules.metric(id).thresholds.get(member.tier)?;
                let layout = rules.layout(id);
                let measure = match layout.slots.get(member.tier)? {
                    MeasureSlot::Distinct(j) => {
                        let (attr, _, _) = layout.distincts.get(*j)?;
                        keys::distinct(&member.token, &member.metric, attr)
                    }
                    MeasureSlot::Count | MeasureSlot::Sum(_) => {
                        keys::events(&member.token, &member.metric)
                    }
                };
                Some((measure, t.limit.get(), t.window.secs()))
            });
            // Unknown here: recover at the end already set, from the events.
            spec.unwrap_or_else(|| (keys::events(&member.token, &member.metric), 0, 1))
        });
        ScriptCall::End {
            now,
            finish,
            decision,
            alert,
        }
    }

    /// The call that ends `token`'s ban at `now`.
    pub(crate) fn unban(token: &'a str, now: Timestamp) -> Self {
        ScriptCall::Unban { now, token }
    }

    /// The call's keys and arguments, in the order `engine.lua` reads them (its header
    /// describes the same layout).
    pub(crate) fn invocation<'s>(&self, script: &'s Script) -> ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        match self {
            ScriptCall::Event {
                now,
                at,
                want_rates,
                token,
                name,
                rule,
                count_horizon,
                horizon,
                nonce,
                members_cap,
                family,
                offence_memory,
                tiers,
                distincts,
            } => {
                inv.key(keys::ban(token))
                    .key(keys::events(token, name))
                    .key(keys::members(token));
                for d in distincts {
                    inv.key(keys::distinct(token, name, d.attr));
                }
                for (i, t) in tiers.iter().enumerate() {
                    inv.key(keys::decision(t.effect, token, rule, i));
                }
                inv.key(keys::offences(token));
                inv.arg("event")
                    .arg(now.as_unix())
                    .arg(at.as_unix())
                    .arg(u8::from(*want_rates))
                    .arg(*count_horizon)
                    .arg(nonce.as_str())
                    .arg(enc(name).as_ref())
                    .arg(enc(token).as_ref())
                    .arg(*horizon)
                    .arg(tiers.len())
                    .arg(distincts.len())
                    .arg(*members_cap)
                    .arg(family.map_or(Cow::Borrowed(""), enc).as_ref())
                    .arg(*offence_memory);
                for t in tiers {
                    inv.arg(t.limit)
                        .arg(t.window)
                        .arg(t.distinct.map_or(0, |j| j + 1))
                        .arg(keys::effect_code(t.effect))
                        .arg(policy_code(t.policy))
                        .arg(t.duration)
                        .arg(t.escalate.0)
                        .arg(t.escalate.1)
                        .arg(t.escalate.2);
                }
                for d in distincts {
                    inv.arg(d.value).arg(d.horizon).arg(d.keep);
                }
            }
            ScriptCall::Fire {
                now,
                want_rates,
                token,
                name,
                rule,
                tier,
                limit,
                effect,
                duration,
                escalate,
                offence_memory,
                reason,
            } => {
                inv.key(keys::ban(token))
                    .key(keys::decision(*effect, token, rule, *tier))
                    .key(keys::events(token, name))
                    .key(keys::offences(token));
                inv.arg("fire")
                    .arg(now.as_unix())
                    .arg(u8::from(*want_rates))
                    .arg(enc(name).as_ref())
                    .arg(enc(token).as_ref())
                    .arg(*tier)
                    .arg(*limit)
                    .arg(keys::effect_code(*effect))
                    .arg(*duration)
                    .arg(enc(rule).as_ref())
                    .arg(escalate.0)
                    .arg(escalate.1)
                    .arg(escalate.2)
                    .arg(*offence_memory)
                    .arg(reason.map_or(Cow::Borrowed(""), enc).as_ref());
            }
            ScriptCall::End {
                now,
                finish,
                decision,
                alert,
            } => {
                let (measure, limit, window) = match alert {
                    Some((measure, limit, window)) => (measure.as_str(), *limit, *window),
                    None => (decision.as_str(), 0, 1),
                };
                inv.key(decision.as_str()).key(measure);
                inv.arg(if *finish { "finish" } else { "end" })
                    .arg(now.as_unix())
                    .arg(limit)
                    .arg(window);
            }
            ScriptCall::Unban { now, token } => {
                inv.key(keys::ban(token));
                inv.arg("unban").arg(now.as_unix());
            }
            ScriptCall::Restore {
                now,
                token,
                name,
                rule,
                tier,
                value,
                from,
                until,
                reason,
            } => {
                inv.key(keys::ban(token));
                inv.arg("restore")
                    .arg(now.as_unix())
                    .arg(enc(name).as_ref())
                    .arg(enc(rule).as_ref())
                    .arg(enc(token).as_ref())
                    .arg(*tier)
                    .arg(*value)
                    .arg(from.as_unix())
                    .arg(until.as_unix())
                    .arg(reason.map_or(Cow::Borrowed(""), enc).as_ref());
            }
        }
        inv
    }
}

fn policy_code(p: BanPolicy) -> u8 {
    match p {
        BanPolicy::AfterTrigger => 0,
        BanPolicy::AfterViolation => 1,
    }
}

/// What the script answers: a reply, or the event refused as the engine refuses it (then
/// nothing changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    Done(Reply),
    /// `{-1, 'too_many_members'}`: a new family member beyond [`MAX_MEMBERS`].
    TooManyMembers,
}

impl Answer {
    /// Reads an answer: the refusal's exact shape, else a [`Reply`] read strictly.
    pub(crate) fn parse(v: &Value) -> Result<Self, String> {
        if let Value::Array(items) = v {
            if let [Value::Int(-1), reason] = &items[..] {
                return match reason {
                    Value::BulkString(r) if r == b"too_many_members" => Ok(Answer::TooManyMembers),
                    other => Err(bad(format_args!("a refusal for {other:?}"))),
                };
            }
        }
        Reply::parse(v).map(Answer::Done)
    }
}

/// The script's answer: `{passed, rate_1m, rate_10m, rate_60m, until, records...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) passed: bool,
    pub(crate) rates: Rates,
    /// For `end`: the decision's new end when it goes on.
    pub(crate) until: Option<Timestamp>,
    pub(crate) records: Vec<Record>,
}

/// Why a reply cannot be read (the caller counts it as a protocol error).
fn bad(what: impl std::fmt::Display) -> String {
    format!("engine.lua answered {what}")
}

impl Reply {
    /// Reads an answer; anything but exactly the documented shape is an error.
    pub(crate) fn parse(v: &Value) -> Result<Self, String> {
        let Value::Array(items) = v else {
            return Err(bad(format_args!("{v:?} instead of an array")));
        };
        let int = |i: usize| -> Result<i64, String> {
            match items.get(i) {
                Some(Value::Int(n)) => Ok(*n),
                other => Err(bad(format_args!("{other:?} as item {i}, not an integer"))),
            }
        };
        let count = |i: usize| -> Result<u64, String> {
            u64::try_from(int(i)?).map_err(|_| bad(format_args!("a negative count as item {i}")))
        };
        let passed = match int(0)? {
            0 => false,
            1 => true,
            n => return Err(bad(format_args!("passed = {n}"))),
        };
        let until = match int(4)? {
            -1 => None,
            n if n >= 0 => Some(Timestamp::from_unix(n)),
            n => return Err(bad(format_args!("until = {n}"))),
        };
        let records = items
            .iter()
            .skip(5)
            .map(|item| match item {
                Value::BulkString(b) => std::str::from_utf8(b)
                    .map_err(|_| bad("a record that is not UTF-8"))
                    .and_then(Record::parse),
                Value::SimpleString(s) => Record::parse(s),
                other => Err(bad(format_args!("{other:?} as a record"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Reply {
            passed,
            rates: Rates {
                last_1m: count(1)?,
                last_10m: count(2)?,
                last_60m: count(3)?,
            },
            until,
            records,
        })
    }
}

/// A decision record as the script writes it: `VERB|at|token|metric|tier|value|from|until`
/// (token and metric escaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) at: Timestamp,
    pub(crate) change: Change,
    pub(crate) effect: Effect,
    pub(crate) token: Token,
    /// The metric as records name it (the member for a family), unescaped.
    pub(crate) metric: String,
    pub(crate) tier: usize,
    pub(crate) value: u64,
    pub(crate) from: Timestamp,
    pub(crate) until: Timestamp,
    /// A ban's operator's reason, unescaped.
    pub(crate) reason: Option<Arc<str>>,
}

impl Record {
    /// Reads one record; an unknown verb, a wrong field count or a field that is not a number
    /// where one belongs is an error.
    pub(crate) fn parse(r: &str) -> Result<Self, String> {
        let wrong = |why: &str| bad(format_args!("the record `{r}`: {why}"));
        let fields: Vec<&str> = r.split('|').collect();
        let [verb, at, token, metric, tier, value, from, until, reason] = fields[..] else {
            return Err(wrong("not 9 fields"));
        };
        let (effect, change) = match verb {
            "BAN" => (Effect::Block, Change::Start),
            "EXTEND" => (Effect::Block, Change::Extend),
            "UNBAN" => (Effect::Block, Change::End),
            "NOTIFY" => (Effect::Notify, Change::Start),
            "NOTIFY_EXTEND" => (Effect::Notify, Change::Extend),
            "NOTIFY_END" => (Effect::Notify, Change::End),
            "ALERT" => (Effect::Alert, Change::Start),
            "RECOVER" => (Effect::Alert, Change::End),
            _ => return Err(wrong("unknown verb")),
        };
        let time = |s: &str| {
            s.parse::<i64>()
                .map(Timestamp::from_unix)
                .map_err(|_| wrong("a time that is not a number"))
        };
        Ok(Record {
            at: time(at)?,
            change,
            effect,
            token: Token::new(&keys::dec(token)).ok_or_else(|| wrong("not a token"))?,
            metric: keys::dec(metric).into_owned(),
            tier: tier
                .parse()
                .map_err(|_| wrong("a tier that is not a number"))?,
            value: value
                .parse()
                .map_err(|_| wrong("a value that is not a number"))?,
            from: time(from)?,
            until: time(until)?,
            reason: (!reason.is_empty()).then(|| Arc::from(keys::dec(reason).as_ref())),
        })
    }

    /// The decision, its metric named by `name` (the rule's own `Arc` when it can be).
    pub(crate) fn into_decision(self, name: impl FnOnce(&str) -> Arc<str>) -> DecisionEvent {
        DecisionEvent {
            at: self.at,
            change: self.change,
            effect: self.effect,
            token: self.token,
            metric: name(&self.metric),
            tier: self.tier,
            value: self.value,
            from: self.from,
            until: self.until,
            reason: self.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(items: Vec<Value>) -> Result<Reply, String> {
        Reply::parse(&Value::Array(items))
    }

    fn head() -> Vec<Value> {
        vec![
            Value::Int(0),
            Value::Int(1),
            Value::Int(2),
            Value::Int(3),
            Value::Int(-1),
        ]
    }

    fn is_protocol(r: Result<impl std::fmt::Debug, String>) -> bool {
        r.is_err()
    }

    #[test]
    fn a_well_formed_reply_is_read_whole() {
        let mut items = head();
        items.push(Value::BulkString(
            b"NOTIFY_EXTEND|5|a%7Cb|detect%3Alogin|1|3|2|40|".to_vec(),
        ));
        let r = reply(items).unwrap();
        assert!(!r.passed);
        assert_eq!(
            r.rates,
            Rates {
                last_1m: 1,
                last_10m: 2,
                last_60m: 3
            }
        );
        assert_eq!(r.until, None);
        assert_eq!(
            r.records,
            [Record {
                at: Timestamp::from_unix(5),
                change: Change::Extend,
                effect: Effect::Notify,
                token: Token::new("a|b").unwrap(),
                metric: "detect:login".to_owned(),
                tier: 1,
                value: 3,
                from: Timestamp::from_unix(2),
                until: Timestamp::from_unix(40),
                reason: None,
            }]
        );
        let mut items = head();
        items.push(Value::BulkString(
            b"BAN|5|a|manual|0|0|5|65|ticket %7C42".to_vec(),
        ));
        let r = reply(items).unwrap();
        assert_eq!(r.records[0].reason.as_deref(), Some("ticket |42"));
    }

    #[test]
    fn every_verb_reads_back_as_the_decision_names_it() {
        for effect in [Effect::Block, Effect::Notify, Effect::Alert] {
            for change in [Change::Start, Change::Extend, Change::End] {
                let d = DecisionEvent {
                    at: Timestamp::from_unix(1),
                    change,
                    effect,
                    token: Token::new("t").unwrap(),
                    metric: Arc::from("m"),
                    tier: 0,
                    value: 1,
                    from: Timestamp::from_unix(1),
                    until: Timestamp::from_unix(2),
                    reason: None,
                };
                let parsed = Record::parse(&format!("{}|1|t|m|0|1|1|2|", d.verb()));
                if (effect, change) == (Effect::Alert, Change::Extend) {
                    // The script never extends an alert: its end follows the traffic.
                    assert!(is_protocol(parsed));
                } else {
                    assert_eq!(parsed.unwrap().into_decision(|m| Arc::from(m)), d);
                }
            }
        }
    }

    #[test]
    fn a_refusal_is_read_only_in_its_exact_shape() {
        let refusal = |reason: Value| Answer::parse(&Value::Array(vec![Value::Int(-1), reason]));
        assert_eq!(
            refusal(Value::BulkString(b"too_many_members".to_vec())),
            Ok(Answer::TooManyMembers)
        );
        assert!(is_protocol(refusal(Value::BulkString(b"other".to_vec()))));
        assert!(is_protocol(refusal(Value::Int(0))));
        assert!(is_protocol(Answer::parse(&Value::Array(vec![Value::Int(
            -1
        )]))));
        assert!(matches!(
            Answer::parse(&Value::Array(head())),
            Ok(Answer::Done(_))
        ));
    }

    #[test]
    fn anything_else_is_a_protocol_error_not_an_outage() {
        let record = |r: &str| {
            let mut items = head();
            items.push(Value::BulkString(r.as_bytes().to_vec()));
            reply(items)
        };
        // Unknown verbs, field counts, numbers that are not.
        for r in [
            "BANNED|1|t|m|0|1|1|2|",
            "|1|t|m|0|1|1|2|",
            "BAN|1|t|m|0|1|1|2",
            "BAN|1|t|m|0|1|1|2||0",
            "BAN|x|t|m|0|1|1|2|",
            "BAN|1|t|m|-1|1|1|2|",
            "BAN|1|t|m|0|-1|1|2|",
            "BAN|1|t|m|0|1|1.5|2|",
            "BAN|1||m|0|1|1|2|",
        ] {
            assert!(is_protocol(record(r)), "{r}");
        }
        assert!(is_protocol(reply(vec![Value::Int(1)])));
        assert!(is_protocol(Reply::parse(&Value::Int(1))));
        assert!(is_protocol(Reply::parse(&Value::Nil)));
        let mut items = head();
        items[0] = Value::Int(2);
        assert!(is_protocol(reply(items)), "passed is 0 or 1");
        let mut items = head();
        items[2] = Value::Int(-2);
        assert!(is_protocol(reply(items)), "a rate is a count");
        let mut items = head();
        items[4] = Value::Int(-7);
        assert!(is_protocol(reply(items)), "until is a time or -1");
        let mut items = head();
        items[1] = Value::BulkString(b"1".to_vec());
        assert!(is_protocol(reply(items)), "numbers are integers");
        let mut items = head();
        items.push(Value::Int(3));
        assert!(is_protocol(reply(items)), "records are strings");
        let mut items = head();
        items.push(Value::BulkString(vec![b'B', b'A', b'N', b'|', 0xff]));
        assert!(is_protocol(reply(items)), "records are UTF-8");
    }
}
