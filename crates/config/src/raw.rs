//! What the user typed: serde structures mirroring the TOML, unknown fields refused.
//!
//! Field doc comments here are the reference text of `docs/configuration.md`.

use std::fmt;

use serde::de::{self, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// `[engine]`: engine-wide options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEngine {
    /// Keep `token_rate_1m/10m/60m` for every metric (costs an hour of events per token).
    /// Default `false`.
    #[serde(default)]
    pub(crate) rates: bool,
    /// Cap on tracked tokens; past it the token with the least at stake among the least
    /// recently seen is evicted (its ban, if any, is kept; docs/semantics.md, "Memory").
    /// Default `1000000` (about 210 MB with one event per token; more per second of events
    /// and per metric).
    #[serde(default)]
    pub(crate) max_tokens: Option<Spanned<u64>>,
}

/// `[actions.record_local]` / `[actions.report_central]`: where a recording action writes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRecordAction {
    /// Append one JSON line per call to this file. Without it the action only counts.
    #[serde(default)]
    pub(crate) path: Option<String>,
    /// `report_central` only, under `banhammer serve`: POST each decision as JSON to this
    /// `http://` or `https://` URL (retried with backoff; a bounded queue drops and counts
    /// what it cannot hold).
    #[serde(default)]
    pub(crate) url: Option<toml::Spanned<String>>,
}

/// `[actions]`: settings of the built-in actions.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawActions {
    /// `record_local`.
    #[serde(default)]
    pub(crate) record_local: Option<RawRecordAction>,
    /// `report_central` (records like `record_local` until a webhook is configured).
    #[serde(default)]
    pub(crate) report_central: Option<RawRecordAction>,
}

/// One `[[metrics.NAME.thresholds]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawThreshold {
    /// The limit. Token-scope thresholds hold when the measure reaches it (≥); global-scope
    /// alerts fire when the measure exceeds it (>). At least 1. Required.
    #[serde(default)]
    pub(crate) limit: Option<Spanned<u64>>,
    /// The window: seconds as an integer, or a duration such as `"90s"`, `"10m"`, `"1h"`.
    /// Required.
    #[serde(default)]
    pub(crate) window: Option<Spanned<RawDuration>>,
    /// What is measured: `"count"` (default), `"distinct(ATTR)"` or `"sum(ATTR)"`.
    #[serde(default)]
    pub(crate) kind: Option<Spanned<String>>,
    /// Actions run when the decision starts: `block_local` makes it a ban, `record_local` and
    /// `report_central` only record. `action` is accepted too, as in the seed API.
    #[serde(default, alias = "action")]
    pub(crate) actions: Option<Spanned<Vec<Spanned<String>>>>,
    /// How long the decision lasts after the threshold holds. Required except for alerts.
    #[serde(default)]
    pub(crate) action_duration: Option<Spanned<RawDuration>>,
    /// `"after_trigger"` (default) or `"after_violation"`.
    #[serde(default)]
    pub(crate) policy: Option<Spanned<String>>,
    /// Run the actions again on every further event of the metric while the decision lasts.
    #[serde(default)]
    pub(crate) repeat_actions: bool,
    /// With the Redis store, what to answer while Redis cannot be reached: `"fail_open"`
    /// (pass; default) or `"fail_closed"` (deny). Bans already known to the node still hold.
    #[serde(default)]
    pub(crate) on_store_error: Option<Spanned<String>>,
    /// Longer bans for repeat offenders (a `block_local` tier only): the n-th ban of a token
    /// within `memory` lasts `action_duration × factor^(n−1)`, at most `max`.
    #[serde(default)]
    pub(crate) escalate: Option<Spanned<RawEscalation>>,
}

/// `escalate = { factor = 2, max = "1w", memory = "1d" }`, as typed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEscalation {
    /// What each earlier ban within `memory` multiplies the duration by. Default 2.
    #[serde(default)]
    pub(crate) factor: Option<Spanned<u32>>,
    /// The longest a ban gets. Required.
    #[serde(default)]
    pub(crate) max: Option<Spanned<RawDuration>>,
    /// How long a ban counts as an earlier offence. Required.
    #[serde(default)]
    pub(crate) memory: Option<Spanned<RawDuration>>,
}

/// A duration as typed: integer seconds or a humantime string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawDuration {
    Secs(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("seconds as an integer, or a duration such as \"10m\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDuration, E> {
                Ok(RawDuration::Secs(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawDuration, E> {
                Ok(RawDuration::Secs(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

impl RawDuration {
    /// Whole seconds, or why not.
    pub(crate) fn seconds(&self) -> Result<u64, String> {
        match self {
            RawDuration::Secs(s) => {
                u64::try_from(*s).map_err(|_| format!("must not be negative, got {s}"))
            }
            RawDuration::Text(t) => {
                let d = humantime::parse_duration(t)
                    .map_err(|e| format!("`{t}` is not a duration ({e})"))?;
                if d.subsec_nanos() != 0 {
                    return Err(format!("`{t}` is not a whole number of seconds"));
                }
                Ok(d.as_secs())
            }
        }
    }
}
