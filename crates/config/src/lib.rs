//! banhammer-config: reads the TOML configuration strictly and turns it into a core `Ruleset`.
//!
//! Parsing is two-staged (ripgrep's low/high args): `raw` holds what the user typed, checked
//! by serde with unknown fields refused; [`Config`] holds only validated values. Every
//! problem is collected with its file, line, column and field, and all are returned at once.
//!
//! This file is the public face: [`Config`] and what it is made of. `load` reads a file and
//! walks its sections, `context` collects located errors along the way, and each section has
//! its own module (`engine`, `metrics`, `accesslog`, `watch`, `serve`, `nftables`).

mod accesslog;
mod clients;
mod context;
mod engine;
mod error;
mod load;
mod metrics;
mod nftables;
mod raw;
mod serve;
mod watch;

use std::convert::Infallible;
use std::num::NonZeroU64;
use std::sync::Arc;

use banhammer_core::{Action, Effect, Kind, Ruleset, Scope, Seconds, Window};

pub use accesslog::{AccessLogSettings, LineMatcher, Located, PathTest};
pub use clients::{nets_contain, nets_cover, ClientTokens};
pub use engine::{ActionSettings, EngineSettings, BUILTIN_ACTIONS};
pub use error::{ConfigError, ConfigErrors};
use metrics::MetricPlaces;
pub use metrics::{MetricSpec, ThresholdSpec};
pub use nftables::NftablesSettings;
pub use serve::{CheckSettings, DetectSettings, Env, ProcessEnv, ServeSettings, TokenFrom};
pub use watch::{CommandTemplate, WatchSettings, PLACEHOLDERS};

/// A duration as the configuration reads one: whole seconds (`90`) or a duration such as
/// `"2m"`, `"1h 30m"`, `"1d"` (as `--max-delay` and `banhammer ban --for` take it).
pub fn parse_duration(text: &str) -> Result<Seconds, String> {
    let raw = match text.trim().parse::<i64>() {
        Ok(secs) => raw::RawDuration::Secs(secs),
        Err(_) => raw::RawDuration::Text(text.trim().to_owned()),
    };
    raw.seconds().map(Seconds::new)
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Engine-wide options.
    pub engine: EngineSettings,
    /// Settings of the built-in actions.
    pub actions: ActionSettings,
    /// The metrics, in file order.
    pub metrics: Vec<MetricSpec>,
    /// `[accesslog]`: how access-log lines become events.
    pub accesslog: AccessLogSettings,
    /// `[watch]`: where `banhammer watch` keeps state and sends decisions.
    pub watch: WatchSettings,
    /// `[serve]`: the HTTP service.
    pub serve: ServeSettings,
    /// `[nftables]`: the built-in nftables enforcement of `watch` and `serve`, if the section
    /// is there.
    pub nftables: Option<NftablesSettings>,
    /// `[detect]`: the credential-stuffing detector (with environment overrides).
    pub detect: DetectSettings,
    /// Where each metric was written, to place what the core refuses in [`Config::ruleset`].
    places: MetricPlaces,
}

impl Config {
    /// Adds the credential-stuffing detector's rules (`detect:*`, from `[detect]`) unless the
    /// file defines that family itself. "More than N" is the (N+1)-th reaching its limit.
    pub fn add_detector(&mut self) {
        if self
            .metrics
            .iter()
            .any(|m| *m.name == *DetectSettings::FAMILY)
        {
            return;
        }
        let d = self.detect;
        let window = Window::from_secs(d.sample_period.max(1))
            .unwrap_or(Window::from_secs(1).expect("1 is not 0"));
        let tier = |limit: u64, kind: Kind| {
            let mut t = ThresholdSpec::new(
                NonZeroU64::new(limit.saturating_add(1)).unwrap_or(NonZeroU64::MIN),
                window,
                Effect::Block,
                Seconds::new(d.ip_ban_time.max(1)),
            );
            t.kind = kind;
            t.actions.push("block_local".to_owned());
            t
        };
        self.metrics.push(MetricSpec {
            name: DetectSettings::FAMILY.into(),
            scope: Scope::Token,
            thresholds: vec![
                tier(d.ip_requests_limit, Kind::Count),
                tier(d.ip_emails_limit, Kind::Distinct("email".into())),
            ],
        });
    }

    /// Builds the core rule set, asking `resolve` for the action behind each name. What the
    /// core refuses is placed where the metric or threshold was written, when it was.
    pub fn ruleset(
        &self,
        resolve: &dyn Fn(&str) -> Arc<dyn Action>,
    ) -> Result<Ruleset, ConfigErrors> {
        let mut b = Ruleset::builder()
            .rates(self.engine.rates)
            .max_tokens(Some(self.engine.max_tokens));
        for m in &self.metrics {
            let Ok(rule) = m
                .clone()
                .try_map_actions(|name| Ok::<_, Infallible>(resolve(&name)));
            b = b.metric(rule);
        }
        b.build()
            .map_err(|errs| ConfigErrors(errs.iter().map(|e| self.places.error(e)).collect()))
    }
}

#[cfg(test)]
mod tests;
