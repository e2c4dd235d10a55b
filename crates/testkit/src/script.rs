//! Event scripts: a test's events, fires and unbans in one line of text, in the notation of
//! docs/semantics.md's worked examples and of `banhammer eval`'s input.
//!
//! Steps are separated by commas (or newlines); each is one of
//!
//! - `T TOKEN [METRIC] [ATTR=VALUE…]`: an event of `METRIC` (default [`DEFAULT_METRIC`]) for
//!   `TOKEN` at unix second `T`; a third word with `=` in it is an attribute, not a metric;
//! - `T fire TOKEN METRIC TIER`: fires tier `TIER` of `METRIC` for `TOKEN` (the seed API's
//!   `now`);
//! - `T unban TOKEN`: an operator's unban;
//! - `T ban TOKEN SECONDS`: an operator's ban by hand for `SECONDS`.
//!
//! ```
//! use banhammer_testkit::script::{event_lines, parse, Step};
//!
//! let steps = parse("0 a, 1 b login email=x, 2 fire a m 1, 3 unban a, 4 ban a 60");
//! assert_eq!(steps[0], Step::event(0, "a", "m", &[]));
//! assert_eq!(steps[1], Step::event(1, "b", "login", &[("email", "x")]));
//! assert_eq!(steps[2].to_string(), "2 fire a m 1");
//! assert_eq!(steps[4], Step::ban(4, "a", 60));
//! assert_eq!(event_lines("0 a, 1 a"), "0 a m\n1 a m\n");
//! ```

use std::fmt;

/// The metric of an event whose script names none.
pub const DEFAULT_METRIC: &str = "m";

/// One step of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An event of `metric` for `token` at `at`, with its attributes in order.
    Event {
        /// Unix seconds.
        at: i64,
        /// Who.
        token: String,
        /// What.
        metric: String,
        /// `(name, value)` pairs.
        attrs: Vec<(String, String)>,
    },
    /// Fires `tier` of `metric` for `token`.
    Fire {
        /// Unix seconds.
        at: i64,
        /// Who.
        token: String,
        /// The metric (or family member).
        metric: String,
        /// The tier's index.
        tier: usize,
    },
    /// Ends `token`'s ban.
    Unban {
        /// Unix seconds.
        at: i64,
        /// Who.
        token: String,
    },
    /// Bans `token` by hand for `secs` seconds.
    Ban {
        /// Unix seconds.
        at: i64,
        /// Who.
        token: String,
        /// How long.
        secs: u64,
    },
}

impl Step {
    /// An event step.
    pub fn event(at: i64, token: &str, metric: &str, attrs: &[(&str, &str)]) -> Step {
        Step::Event {
            at,
            token: token.to_owned(),
            metric: metric.to_owned(),
            attrs: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// A fire step.
    pub fn fire(at: i64, token: &str, metric: &str, tier: usize) -> Step {
        Step::Fire {
            at,
            token: token.to_owned(),
            metric: metric.to_owned(),
            tier,
        }
    }

    /// An unban step.
    pub fn unban(at: i64, token: &str) -> Step {
        Step::Unban {
            at,
            token: token.to_owned(),
        }
    }

    /// A ban-by-hand step.
    pub fn ban(at: i64, token: &str, secs: u64) -> Step {
        Step::Ban {
            at,
            token: token.to_owned(),
            secs,
        }
    }

    /// When it happens.
    pub fn at(&self) -> i64 {
        match self {
            Step::Event { at, .. }
            | Step::Fire { at, .. }
            | Step::Unban { at, .. }
            | Step::Ban { at, .. } => *at,
        }
    }

    /// Whose it is.
    pub fn token(&self) -> &str {
        match self {
            Step::Event { token, .. }
            | Step::Fire { token, .. }
            | Step::Unban { token, .. }
            | Step::Ban { token, .. } => token,
        }
    }
}

/// The step in the script's notation, the metric always written (so an event is a line of
/// `banhammer eval`'s input).
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Event {
                at,
                token,
                metric,
                attrs,
            } => {
                write!(f, "{at} {token} {metric}")?;
                attrs.iter().try_for_each(|(k, v)| write!(f, " {k}={v}"))
            }
            Step::Fire {
                at,
                token,
                metric,
                tier,
            } => write!(f, "{at} fire {token} {metric} {tier}"),
            Step::Unban { at, token } => write!(f, "{at} unban {token}"),
            Step::Ban { at, token, secs } => write!(f, "{at} ban {token} {secs}"),
        }
    }
}

/// Parses a script; panics on a step it cannot read, naming it.
pub fn parse(script: &str) -> Vec<Step> {
    script
        .split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| parse_step(item).unwrap_or_else(|| panic!("not a script step: `{item}`")))
        .collect()
}

fn parse_step(item: &str) -> Option<Step> {
    let words: Vec<&str> = item.split_whitespace().collect();
    let at = words.first()?.parse().ok()?;
    let step = match words[1..] {
        ["fire", token, metric, tier] => Step::fire(at, token, metric, tier.parse().ok()?),
        ["unban", token] => Step::unban(at, token),
        ["ban", token, secs] => Step::ban(at, token, secs.parse().ok()?),
        [token, ref rest @ ..] => {
            let (metric, attrs) = match rest {
                [metric, attrs @ ..] if !metric.contains('=') => (*metric, attrs),
                attrs => (DEFAULT_METRIC, attrs),
            };
            let attrs: Vec<(&str, &str)> = attrs
                .iter()
                .map(|kv| kv.split_once('='))
                .collect::<Option<_>>()?;
            Step::event(at, token, metric, &attrs)
        }
        [] => return None,
    };
    Some(step)
}

/// The script as `banhammer eval` reads it: one step a line, every metric written out.
pub fn event_lines(script: &str) -> String {
    parse(script).iter().map(|s| format!("{s}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_step_reads_and_writes_back() {
        let text = "0 a m, 1 b login email=x ip=1, 2 fire c detect:login 1, 3 unban c, 4 ban c 60";
        let steps = parse(text);
        assert_eq!(
            steps,
            [
                Step::event(0, "a", "m", &[]),
                Step::event(1, "b", "login", &[("email", "x"), ("ip", "1")]),
                Step::fire(2, "c", "detect:login", 1),
                Step::unban(3, "c"),
                Step::ban(4, "c", 60),
            ]
        );
        let written: Vec<String> = steps.iter().map(ToString::to_string).collect();
        assert_eq!(written.join(", "), text);
    }

    #[test]
    fn the_metric_defaults_to_m_even_before_attributes() {
        assert_eq!(
            parse("5 a\n6 a email=x"),
            [
                Step::event(5, "a", "m", &[]),
                Step::event(6, "a", "m", &[("email", "x")])
            ]
        );
    }

    #[test]
    #[should_panic(expected = "not a script step: `x a`")]
    fn a_step_without_a_time_is_refused() {
        parse("0 a, x a");
    }

    #[test]
    #[should_panic(expected = "not a script step: `1 a m b`")]
    fn an_attribute_without_a_value_is_refused() {
        parse("1 a m b");
    }
}
