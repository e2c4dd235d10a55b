//! The key layout: every key, channel and deadline-index member the store writes, and the
//! escaping that keeps client-chosen names inside their own keys (docs/scale-out.md, "Key
//! layout", describes the same; keep them in step).

use std::borrow::Cow;

use banhammer_core::{DecisionEvent, Effect};

/// The sorted set of active decisions by end (one slot of its own: `{deadlines}`).
pub(crate) const DEADLINES: &str = "bh:{deadlines}";
/// The counter behind the deadline members' SEQ, in the index's slot.
pub(crate) const DEADLINE_SEQ: &str = "bh:{deadlines}:seq";
/// The store's epoch: written by the first node that finds it missing; a store that lost
/// its state (restarted without persistence) has none, or a new one.
pub(crate) const EPOCH: &str = "bh:epoch";
/// Where nodes tell each other of bans: `token|until` (until 0 for an unban).
pub const BAN_CHANNEL: &str = "bh:bans";

/// The key `bh:{TOKEN}:rest`; the token is escaped, so its hash tag is always the whole token
/// and all of a token's keys share one cluster slot.
fn key(token: &str, rest: &str) -> String {
    format!("bh:{{{}}}:{rest}", enc(token))
}

/// The token's ban (a hash; one per token, whatever metric started it).
pub(crate) fn ban(token: &str) -> String {
    key(token, "ban")
}

/// `bh:{TOKEN}:off`: when the token's recent bans started, for tiers that escalate.
pub(crate) fn offences(token: &str) -> String {
    key(token, "off")
}

/// The family members `token` counts, and when it was last seen (a hash; only kept when the
/// rules have a family).
pub(crate) fn members(token: &str) -> String {
    key(token, "members")
}

/// The events of `metric` (the family member for a family) counted for `token`: a sorted set
/// by second.
pub(crate) fn events(token: &str, metric: &str) -> String {
    key(token, &format!("w:{}", enc(metric)))
}

/// A `distinct(attr)` set of `metric` for `token`: value → the second it was last seen.
pub(crate) fn distinct(token: &str, metric: &str, attr: &str) -> String {
    key(token, &format!("d:{}:{}", enc(metric), enc(attr)))
}

/// A notice (or, for `global`, an alert) episode: one per token and rule, so `rule` is the
/// rule's own name (`detect:*` for every member of a family), as the engine keys its episodes.
pub(crate) fn episode(token: &str, rule: &str, tier: usize) -> String {
    key(token, &format!("ep:{}:{tier}", enc(rule)))
}

/// Where a decision of `effect` lives: the token's ban, or its rule's episode.
pub(crate) fn decision(effect: Effect, token: &str, rule: &str, tier: usize) -> String {
    match effect {
        Effect::Block => ban(token),
        Effect::Notify | Effect::Alert => episode(token, rule, tier),
    }
}

/// Escapes the characters that give keys, script records and index members their structure
/// (`%`, `{`, `}`, `:`, `|`), so that no token or metric a client chooses can reach another
/// token's keys or break a record apart.
pub(crate) fn enc(s: &str) -> Cow<'_, str> {
    const SPECIAL: &[u8] = b"%{}:|";
    if !s.bytes().any(|b| SPECIAL.contains(&b)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '%' | '{' | '}' | ':' | '|' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The inverse of [`enc`] (a `%` not followed by two hex digits is kept as it is).
pub(crate) fn dec(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(h)) => {
                out.push(h);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The code an effect has in index members and script arguments.
pub(crate) fn effect_code(e: Effect) -> u8 {
    match e {
        Effect::Block => 0,
        Effect::Notify => 1,
        Effect::Alert => 2,
    }
}

/// The effect of a code; `None` for any other.
pub(crate) fn effect_of(code: &str) -> Option<Effect> {
    match code {
        "0" => Some(Effect::Block),
        "1" => Some(Effect::Notify),
        "2" => Some(Effect::Alert),
        _ => None,
    }
}

/// An entry of the deadline index: `SEQ|EFFECT|TOKEN|METRIC|TIER` (SEQ is drawn by the index
/// script; token and metric escaped; METRIC as records name it, the member for a family). One
/// format, written by `RedisStore::register` and read by the sweep, the ban listing and the
/// unban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadlineMember {
    pub(crate) effect: Effect,
    pub(crate) token: String,
    pub(crate) metric: String,
    pub(crate) tier: usize,
}

impl DeadlineMember {
    /// The entry of a decision that just started.
    pub(crate) fn of(d: &DecisionEvent) -> Self {
        DeadlineMember {
            effect: d.effect,
            token: d.token.as_str().to_owned(),
            metric: d.metric.to_string(),
            tier: d.tier,
        }
    }

    /// The member without its SEQ, as the index script receives it.
    pub(crate) fn unsequenced(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            effect_code(self.effect),
            enc(&self.token),
            enc(&self.metric),
            self.tier
        )
    }

    /// Reads a member as the index holds it; `None` for anything else.
    pub(crate) fn parse(member: &str) -> Option<Self> {
        let mut p = member.split('|');
        let (_seq, effect, token, metric, tier) =
            (p.next()?, p.next()?, p.next()?, p.next()?, p.next()?);
        if p.next().is_some() {
            return None;
        }
        Some(DeadlineMember {
            effect: effect_of(effect)?,
            token: dec(token).into_owned(),
            metric: dec(metric).into_owned(),
            tier: tier.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_tokens_cannot_reach_other_keys() {
        assert_eq!(enc("10.0.0.1"), "10.0.0.1");
        assert_eq!(enc("2001:db8::1"), "2001%3Adb8%3A%3A1");
        // The attack the scale-out review found: these two used to share a key.
        assert_ne!(events("v}:w:f:x", "f"), events("v", "f:x}:ban"));
        assert_ne!(ban("a}:ban"), events("a", "ban"));
        assert_eq!(ban("a}b"), "bh:{a%7Db}:ban");
        assert_eq!(episode("t", "detect:*", 1), "bh:{t}:ep:detect%3A*:1");
        assert_eq!(distinct("t", "m", "e:x"), "bh:{t}:d:m:e%3Ax");
        for s in ["", "a|b", "%", "%%41", "{x}", "é:ü|%7"] {
            assert_eq!(dec(&enc(s)), s);
        }
        assert_eq!(dec("100%"), "100%");
        assert_eq!(dec("%4"), "%4");
    }

    #[test]
    fn a_deadline_member_reads_back_as_written() {
        let m = DeadlineMember {
            effect: Effect::Notify,
            token: "a|b:{c}".to_owned(),
            metric: "detect:login".to_owned(),
            tier: 1,
        };
        let stored = format!("{:020}|{}", 7, m.unsequenced());
        assert_eq!(DeadlineMember::parse(&stored), Some(m));
        for bad in [
            "00000000000000000007|0|x",
            "00000000000000000007|3|x|m|0",
            "00000000000000000007|0|x|m|-1",
            "00000000000000000007|0|x|m|0|extra",
        ] {
            assert_eq!(DeadlineMember::parse(bad), None, "{bad}");
        }
    }
}
