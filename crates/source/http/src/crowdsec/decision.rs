//! A ban as a CrowdSec decision: which tokens are an address or a range (only those reach
//! bouncers), the decision's fields as CrowdSec's local API writes them (stable id, scope,
//! value, scenario, the time left in Go's duration format), and the filters bouncers send.

use std::collections::HashMap;
use std::net::IpAddr;

use banhammer_core::{DecisionView, Effect, Timestamp, Token};
use ipnet::IpNet;
use serde::Serialize;
use utoipa::ToSchema;

/// `origin` of every decision: bouncers may filter on it (`origins=banhammer`).
pub(crate) const ORIGIN: &str = "banhammer";
/// `type` of every decision: banhammer's bans are CrowdSec's `ban` remediation.
const BAN: &str = "ban";
/// Words read from one comma-separated filter: the matching work per ban stays bounded
/// whatever a (keyed) client sends.
const MAX_WORDS: usize = 64;

/// What a decision applies to, as CrowdSec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// One address.
    Ip,
    /// A network (`2001:db8::/64`).
    Range,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::Ip => "Ip",
            Scope::Range => "Range",
        }
    }
}

/// One active ban as a bouncer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Offer {
    /// Stable for the ban: the same on every pull and every node.
    pub(crate) id: u64,
    pub(crate) scope: Scope,
    /// The address or network, as bouncers key it (`192.0.2.1`, `2001:db8::/64`).
    pub(crate) value: String,
    /// What `ip=`/`range=` queries are matched against.
    pub(crate) net: IpNet,
    pub(crate) until: Timestamp,
    /// The rule that carried the ban: `{metric}/tier-{tier}`, or `manual` for a ban by hand.
    pub(crate) scenario: String,
}

impl Offer {
    /// `ban` on `token` as a decision, if the token is an address or a network.
    pub(crate) fn of(token: &str, ban: &DecisionView) -> Option<Offer> {
        let (scope, net) = target(token)?;
        let value = match scope {
            Scope::Ip => net.addr().to_string(),
            Scope::Range => net.to_string(),
        };
        Some(Offer {
            id: ban_id(token, ban.from),
            scope,
            value,
            net,
            until: ban.until,
            scenario: if ban.is_manual() {
                // Made by hand (`banhammer ban`), as CrowdSec's own `cscli decisions add`.
                "manual".to_owned()
            } else {
                format!("{}/tier-{}", ban.metric, ban.tier)
            },
        })
    }

    /// The decision as sent, with the time left at `now`.
    pub(crate) fn decision(&self, now: Timestamp) -> Decision {
        self.with_duration(go_duration(self.until.since(now).get()))
    }

    /// The decision as sent in `deleted`: no time left.
    pub(crate) fn ended(&self) -> Decision {
        self.with_duration(go_duration(0))
    }

    fn with_duration(&self, duration: String) -> Decision {
        Decision {
            id: self.id,
            origin: ORIGIN,
            kind: BAN,
            scope: self.scope.name(),
            value: self.value.clone(),
            duration,
            scenario: self.scenario.clone(),
        }
    }
}

/// A decision as CrowdSec's local API writes it for bouncers.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Stable for one ban (a ban that ends and starts again is another id).
    id: u64,
    /// Always `banhammer`.
    origin: &'static str,
    /// Always `ban`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// `Ip` or `Range`.
    scope: &'static str,
    /// The address, or the network in CIDR notation.
    value: String,
    /// Time left, in Go's format (`3h59m58s`); `0s` in `deleted`.
    duration: String,
    /// The rule that carried the ban: `{metric}/tier-{tier}`, or `manual` for a ban by hand.
    scenario: String,
}

/// The scope and network of `token` when it is an address or a network: a network of one
/// address is that address, an IPv4-mapped address is the IPv4 one, host bits are dropped.
fn target(token: &str) -> Option<(Scope, IpNet)> {
    let net = match token.parse::<IpAddr>() {
        Ok(ip) => IpNet::from(ip.to_canonical()),
        Err(_) => token.parse::<IpNet>().ok()?.trunc(),
    };
    if net.prefix_len() == net.max_prefix_len() {
        Some((Scope::Ip, IpNet::from(net.addr().to_canonical())))
    } else {
        Some((Scope::Range, net))
    }
}

/// The ban's id: FNV-1a of its token and start, cut to 53 bits so that JavaScript bouncers
/// read it exactly. Derived, not stored, so every node (Redis) and every restart agrees.
fn ban_id(token: &str, from: Timestamp) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = token
        .bytes()
        .chain([0xff])
        .chain(from.as_unix().to_le_bytes());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h & ((1 << 53) - 1)).max(1)
}

/// `secs` as Go's `time.Duration.String()` writes it: `0s`, `59s`, `1m0s`, `3h59m58s`.
pub(crate) fn go_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// The query string's parameters, the first value of each name counting (as CrowdSec reads
/// them).
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Parameters from `pairs` in query-string order.
    pub(crate) fn new(pairs: Vec<(String, String)>) -> Self {
        Params(pairs)
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a bouncer asks for, as CrowdSec's local API reads it: `scopes`/`scope`, `origins`,
/// `scenarios_containing`, `scenarios_not_containing`, `type`, `value`, `ip`/`range` with
/// `contains`. Other parameters are ignored, as CrowdSec ignores them.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    /// Scope names (any case); `None`: `ip` and `range`, every decision here.
    scopes: Option<Vec<String>>,
    origins: Option<Vec<String>>,
    /// Lower-cased; a decision matches one of them.
    containing: Option<Vec<String>>,
    /// Lower-cased; a decision matches none of them.
    not_containing: Vec<String>,
    kind: Option<String>,
    value: Option<String>,
    /// `ip=`/`range=`: decisions containing it, or with `contains=false` contained in it.
    target: Option<(IpNet, bool)>,
}

impl Filter {
    /// The filter `params` ask for; an address or range that does not parse, or a
    /// `contains` that is not a boolean, is the error's message.
    pub(crate) fn parse(params: &Params) -> Result<Filter, String> {
        let words = |name: &str, lower: bool| {
            params.get(name).map(|v| {
                v.split(',')
                    .take(MAX_WORDS)
                    .map(|w| {
                        if lower {
                            w.to_lowercase()
                        } else {
                            w.to_owned()
                        }
                    })
                    .collect::<Vec<_>>()
            })
        };
        let contains = match params.get("contains") {
            None => true,
            Some(v) => go_bool(v).ok_or_else(|| format!("invalid contains value: `{v}`"))?,
        };
        let target = match params.get("ip").or_else(|| params.get("range")) {
            None => None,
            Some(v) => {
                let net = match v.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip.to_canonical()),
                    Err(_) => v
                        .parse::<IpNet>()
                        .map_err(|_| format!("`{}` is not an IP address or range", cut(v)))?
                        .trunc(),
                };
                Some((net, contains))
            }
        };
        Ok(Filter {
            scopes: words("scopes", false).or_else(|| words("scope", false)),
            origins: words("origins", false),
            containing: words("scenarios_containing", true),
            not_containing: words("scenarios_not_containing", true).unwrap_or_default(),
            kind: params.get("type").map(str::to_owned),
            value: params.get("value").map(str::to_owned),
            target,
        })
    }

    /// Whether `offer` is asked for.
    fn matches(&self, offer: &Offer) -> bool {
        let scope = offer.scope.name();
        // Lower-cased only when a scenario filter is there to read it.
        let scenario = if self.containing.is_some() || !self.not_containing.is_empty() {
            offer.scenario.to_lowercase()
        } else {
            String::new()
        };
        self.scopes
            .as_ref()
            .is_none_or(|s| s.iter().any(|s| s.eq_ignore_ascii_case(scope)))
            && self
                .origins
                .as_ref()
                .is_none_or(|o| o.iter().any(|o| o == ORIGIN))
            && self
                .containing
                .as_ref()
                .is_none_or(|c| c.iter().any(|w| scenario.contains(w.as_str())))
            && !self
                .not_containing
                .iter()
                .any(|w| scenario.contains(w.as_str()))
            && self.kind.as_deref().is_none_or(|k| k == BAN)
            && self.value.as_deref().is_none_or(|v| v == offer.value)
            && self.target.is_none_or(|(net, contains)| {
                if contains {
                    offer.net.contains(&net)
                } else {
                    net.contains(&offer.net)
                }
            })
    }
}

/// The active bans that `filter` asks for, one decision per value: where bans on several
/// tokens name one value (`192.0.2.1` and `192.0.2.1/32`), the one that ends last (a bouncer
/// keeps one entry per value, and must keep it as long as any of them lasts).
pub(crate) fn offers(
    bans: &[(Token, DecisionView)],
    now: Timestamp,
    filter: &Filter,
) -> HashMap<String, Offer> {
    let mut out: HashMap<String, Offer> = HashMap::new();
    for (token, ban) in bans {
        if ban.effect != Effect::Block || ban.until <= now {
            continue;
        }
        let Some(offer) = Offer::of(token.as_str(), ban) else {
            continue;
        };
        if !filter.matches(&offer) {
            continue;
        }
        let rank = |o: &Offer| (o.until, std::cmp::Reverse(o.id));
        if out
            .get(&offer.value)
            .is_none_or(|kept| rank(&offer) > rank(kept))
        {
            out.insert(offer.value.clone(), offer);
        }
    }
    out
}

/// Go's `strconv.ParseBool`.
fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Untrusted text quoted in an answer, cut short.
fn cut(s: &str) -> &str {
    crate::v1::cut(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_writes_them() {
        let cases = [
            (0, "0s"),
            (59, "59s"),
            (60, "1m0s"),
            (61, "1m1s"),
            (3600, "1h0m0s"),
            (14_398, "3h59m58s"),
            (86_400 * 3650, "87600h0m0s"),
        ];
        for (secs, text) in cases {
            assert_eq!(go_duration(secs), text);
        }
    }

    #[test]
    fn addresses_and_networks_are_targets_other_tokens_not() {
        let t = |s: &str| target(s).map(|(scope, net)| (scope, net.to_string()));
        assert_eq!(t("192.0.2.1"), Some((Scope::Ip, "192.0.2.1/32".into())));
        assert_eq!(
            t("::ffff:192.0.2.1"),
            Some((Scope::Ip, "192.0.2.1/32".into()))
        );
        assert_eq!(
            t("2001:DB8::1"),
            Some((Scope::Ip, "2001:db8::1/128".into()))
        );
        assert_eq!(t("192.0.2.1/32"), Some((Scope::Ip, "192.0.2.1/32".into())));
        assert_eq!(
            t("2001:db8:1:2::/64"),
            Some((Scope::Range, "2001:db8:1:2::/64".into()))
        );
        assert_eq!(t("10.1.2.3/8"), Some((Scope::Range, "10.0.0.0/8".into())));
        for other in [
            "alice",
            "example.com",
            "",
            "1.2.3",
            "[::1]",
            "1.2.3.4/33",
            "1.2.3.4 ",
        ] {
            assert_eq!(t(other), None, "{other}");
        }
    }

    #[test]
    fn ids_are_stable_per_ban_and_fit_javascript() {
        let t = Timestamp::from_unix(1_700_000_000);
        assert_eq!(ban_id("192.0.2.1", t), ban_id("192.0.2.1", t));
        assert_ne!(ban_id("192.0.2.1", t), ban_id("192.0.2.2", t));
        assert_ne!(
            ban_id("192.0.2.1", t),
            ban_id("192.0.2.1", Timestamp::from_unix(1_700_000_001))
        );
        assert!(ban_id("192.0.2.1", t) < 1 << 53);
    }

    #[test]
    fn contains_is_read_as_go_reads_a_bool() {
        let p = |q: &[(&str, &str)]| {
            Params::new(
                q.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        assert!(Filter::parse(&p(&[("ip", "192.0.2.1"), ("contains", "F")])).is_ok());
        assert_eq!(
            Filter::parse(&p(&[("contains", "maybe")])).unwrap_err(),
            "invalid contains value: `maybe`"
        );
        assert_eq!(
            Filter::parse(&p(&[("range", "300.1.2.3/8")])).unwrap_err(),
            "`300.1.2.3/8` is not an IP address or range"
        );
    }
}
