//! banhammer-config: reads the TOML configuration strictly and turns it into a core `Ruleset`.
//!
//! Parsing is two-staged (ripgrep's low/high args): `raw` holds what the user typed, checked
//! by serde with unknown fields refused; [`Config`] holds only validated values. Every
//! problem is collected with its file, line, column and field, and all are returned at once.

mod accesslog;
mod error;
mod raw;
mod serve;
mod watch;

use std::convert::Infallible;
use std::num::{NonZeroU64, NonZeroUsize};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use banhammer_core::{
    metric_matches, Action, BanPolicy, Effect, Kind, MetricRule, NamedNoop, RuleError, Ruleset,
    Scope, Seconds, Threshold, Window,
};
use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

pub use accesslog::{AccessLogSettings, LineMatcher, Located, PathTest};
use error::Source;
pub use error::{ConfigError, ConfigErrors};
use raw::{RawActions, RawDuration, RawEngine, RawThreshold};
pub use serve::{DetectSettings, Env, ProcessEnv, ServeSettings, TokenFrom};
pub use watch::{CommandTemplate, WatchSettings, PLACEHOLDERS};

/// The built-in actions a configuration may name.
pub const BUILTIN_ACTIONS: [&str; 3] = ["block_local", "record_local", "report_central"];

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
    /// `[detect]`: the credential-stuffing detector (with environment overrides).
    pub detect: DetectSettings,
    /// Where each metric was written, to place what the core refuses in [`Config::ruleset`].
    places: MetricPlaces,
}

/// `[engine]`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineSettings {
    /// Keep 1m/10m/60m rates.
    pub rates: bool,
    /// Cap on tracked tokens.
    pub max_tokens: Option<NonZeroUsize>,
}

/// `[actions]`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionSettings {
    /// Where `record_local` appends JSON lines, if anywhere.
    pub record_local_path: Option<String>,
    /// Where `report_central` appends JSON lines, if anywhere.
    pub report_central_path: Option<String>,
    /// Where `report_central` posts decisions under `banhammer serve`, if anywhere.
    pub report_central_url: Option<String>,
}

/// One metric, validated: the core's rule with its actions still by name.
pub type MetricSpec = MetricRule<String>;

/// One threshold, validated: the core's threshold with its actions still by name. Its effect
/// is derived: `global` scope alerts; `block_local` blocks; else the decision only notifies.
pub type ThresholdSpec = Threshold<String>;

impl Config {
    /// Reads and validates the file at `path` (the environment is not consulted).
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::load_with_env(path, &std::collections::HashMap::new())
    }

    /// Reads and validates the file at `path`; settings that may come from the environment
    /// (`[detect]`, the admin token) are read from `env`, which wins over the file.
    pub fn load_with_env(path: &Path, env: &dyn Env) -> Result<Config, ConfigErrors> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                origin: origin.clone(),
                line: 0,
                column: 0,
                field: String::new(),
                message: format!("cannot read: {e}"),
            }])
        })?;
        Config::parse_with_env(&text, &origin, env)
    }

    /// Validates configuration `text`; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
        Config::parse_with_env(text, origin, &std::collections::HashMap::new())
    }

    /// [`Config::parse`], reading environment overrides from `env`.
    pub fn parse_with_env(text: &str, origin: &str, env: &dyn Env) -> Result<Config, ConfigErrors> {
        let src = Source { origin, text };
        let mut cx = Cx {
            src: &src,
            errors: Vec::new(),
            metric_refs: Vec::new(),
        };
        let (root, syntax) = DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            let errors = syntax
                .iter()
                .map(|e| src.error(e.span(), "", e.message().to_owned()))
                .collect();
            return Err(ConfigErrors(errors));
        }
        let mut engine = EngineSettings::default();
        let mut actions = ActionSettings::default();
        let mut metrics = Vec::new();
        let mut places = MetricPlaces {
            origin: origin.to_owned(),
            metrics: Vec::new(),
        };
        let mut accesslog = AccessLogSettings::default();
        let mut watch = WatchSettings::default();
        let mut serve = ServeSettings::default();
        let mut detect_value = None;
        for (key, value) in root.get_ref() {
            match key.get_ref().as_ref() {
                "engine" => {
                    if let Some(raw) = cx.de::<RawEngine>("engine", value) {
                        engine = cx.engine(raw);
                    }
                }
                "actions" => {
                    if let Some(raw) = cx.de::<RawActions>("actions", value) {
                        actions = cx.actions(raw);
                    }
                }
                "serve" => {
                    if let Some(s) = cx.serve(value) {
                        serve = s;
                    }
                }
                "detect" => detect_value = Some(value),
                "metrics" => cx.metrics(value, &mut metrics, &mut places.metrics),
                "accesslog" => {
                    if let Some(a) = cx.accesslog(value) {
                        accesslog = a;
                    }
                }
                "watch" => {
                    if let Some(w) = cx.watch(value) {
                        watch = w;
                    }
                }
                other => cx.push(
                    Some(key.span()),
                    other,
                    "unknown section, expected one of `engine`, `actions`, `metrics`, `accesslog`, \
                     `watch`, `serve`, `detect`",
                ),
            }
        }
        for (name, span, field) in std::mem::take(&mut cx.metric_refs) {
            if !metrics.iter().any(|m| metric_matches(&m.name, &name)) {
                cx.push(
                    Some(span),
                    &field,
                    format!("metric `{name}` is not defined in [metrics]"),
                );
            }
        }
        let detect = cx.detect(detect_value, env);
        if let Some(token) = env.var("BANHAMMER_ADMIN_TOKEN").filter(|t| !t.is_empty()) {
            serve.admin_token = Some(token);
        }
        let config = Config {
            engine,
            actions,
            metrics,
            accesslog,
            watch,
            serve,
            detect,
            places,
        };
        if cx.errors.is_empty() {
            // What the core refuses, located at the metric or threshold it is about.
            if let Err(errs) = config.ruleset(&|name| Arc::new(NamedNoop(name.to_owned()))) {
                cx.errors.extend(errs.0);
            }
        }
        if cx.errors.is_empty() {
            Ok(config)
        } else {
            cx.errors.sort_by_key(|e| (e.line, e.column));
            Err(ConfigErrors(cx.errors))
        }
    }

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
            .max_tokens(self.engine.max_tokens);
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

/// Where the metrics and their thresholds were written (line, column), kept with the
/// [`Config`] so that the core's errors name their place even after the file is read.
#[derive(Debug, Clone, Default)]
struct MetricPlaces {
    origin: String,
    metrics: Vec<MetricPlace>,
}

/// Where one metric's name and each of its thresholds were written.
#[derive(Debug, Clone)]
struct MetricPlace {
    name: String,
    at: (usize, usize),
    thresholds: Vec<(usize, usize)>,
}

impl MetricPlaces {
    /// The core's complaint as `file:line:column: metrics.NAME…: why`; a metric written
    /// nowhere (the detector's) has no line.
    fn error(&self, e: &RuleError) -> ConfigError {
        let (metric, tier) = match e {
            RuleError::ScopeEffect { metric, tier, .. }
            | RuleError::ZeroDuration { metric, tier }
            | RuleError::DistinctTooLarge { metric, tier, .. }
            | RuleError::EmptyAttr { metric, tier } => (Some(metric), Some(*tier)),
            RuleError::DuplicateMetric(metric) | RuleError::BadMetricName(metric) => {
                (Some(metric), None)
            }
            _ => (None, None),
        };
        let place = metric.and_then(|name| self.metrics.iter().find(|m| m.name == *name));
        let (field, at) = match (metric, tier) {
            (None, _) => (String::new(), None),
            (Some(name), Some(t)) => (
                format!("metrics.{name}.thresholds[{t}]"),
                place.and_then(|m| m.thresholds.get(t).copied()),
            ),
            (Some(name), None) => (format!("metrics.{name}"), place.map(|m| m.at)),
        };
        let (line, column) = at.unwrap_or((0, 0));
        ConfigError {
            origin: self.origin.clone(),
            line,
            column,
            field,
            message: e.to_string(),
        }
    }
}

/// The walk over the document: collects errors instead of stopping at the first.
pub(crate) struct Cx<'s> {
    pub(crate) src: &'s Source<'s>,
    pub(crate) errors: Vec<ConfigError>,
    /// Metrics named outside `[metrics]` (matchers), checked once all metrics are known.
    pub(crate) metric_refs: Vec<(String, Range<usize>, String)>,
}

impl Cx<'_> {
    pub(crate) fn push(
        &mut self,
        span: Option<Range<usize>>,
        field: &str,
        message: impl Into<String>,
    ) {
        self.errors.push(self.src.error(span, field, message));
    }

    /// Deserializes one value; on failure records the error against the key it is under.
    pub(crate) fn de<T: DeserializeOwned>(
        &mut self,
        field: &str,
        value: &Spanned<DeValue<'_>>,
    ) -> Option<T> {
        match self.de_partial(field, value) {
            (Some(v), removed) if removed.is_empty() => Some(v),
            _ => None,
        }
    }

    /// Like [`Cx::de`], but reads on past bad fields: serde stops at a table's first bad field,
    /// so the field is taken out (and reported) and the table read again. Returns what could
    /// be read and the fields taken out, so later checks do not report them missing.
    fn de_partial<T: DeserializeOwned>(
        &mut self,
        field: &str,
        value: &Spanned<DeValue<'_>>,
    ) -> (Option<T>, Vec<String>) {
        let mut value = value.clone();
        let mut removed: Vec<String> = Vec::new();
        loop {
            let e = match T::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(v) => return (Some(v), removed),
                Err(e) => e,
            };
            let span = e.span().unwrap_or_else(|| value.span());
            let key = value
                .get_ref()
                .as_table()
                .and_then(|t| key_at(t, &span))
                .map(str::to_owned);
            let path = key
                .as_ref()
                .map_or_else(|| field.to_owned(), |k| format!("{field}.{k}"));
            self.push(Some(span), &path, e.message().to_owned());
            let table_span = value.span();
            let (Some(key), DeValue::Table(table)) = (key, value.get_mut()) else {
                return (None, removed);
            };
            let mut rest = DeTable::new();
            for (k, v) in std::mem::take(table) {
                if k.get_ref().as_ref() != key {
                    rest.insert(k, v);
                }
            }
            removed.push(key);
            value = Spanned::new(table_span, DeValue::Table(rest));
        }
    }

    fn actions(&mut self, raw: RawActions) -> ActionSettings {
        let url = raw
            .report_central
            .as_ref()
            .and_then(|r| r.url.as_ref())
            .and_then(|u| {
                let text = u.get_ref();
                if text.starts_with("http://") || text.starts_with("https://") {
                    Some(text.clone())
                } else {
                    self.push(
                        Some(u.span()),
                        "actions.report_central.url",
                        format!("`{text}` is not an http:// or https:// URL"),
                    );
                    None
                }
            });
        ActionSettings {
            record_local_path: raw.record_local.and_then(|r| r.path),
            report_central_path: raw.report_central.and_then(|r| r.path),
            report_central_url: url,
        }
    }

    fn engine(&mut self, raw: RawEngine) -> EngineSettings {
        let max_tokens = raw.max_tokens.and_then(|cap| {
            let n = usize::try_from(*cap.get_ref())
                .ok()
                .and_then(NonZeroUsize::new);
            if n.is_none() {
                self.push(Some(cap.span()), "engine.max_tokens", "must be at least 1");
            }
            n
        });
        EngineSettings {
            rates: raw.rates,
            max_tokens,
        }
    }

    fn metrics(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        out: &mut Vec<MetricSpec>,
        places: &mut Vec<MetricPlace>,
    ) {
        let Some(table) = value.get_ref().as_table() else {
            self.push(Some(value.span()), "metrics", "must be a table of metrics");
            return;
        };
        for (name, metric) in table {
            let name_str = name.get_ref().as_ref();
            let field = format!("metrics.{name_str}");
            let Some(mt) = metric.get_ref().as_table() else {
                self.push(Some(metric.span()), &field, "must be a table");
                continue;
            };
            let mut scope = Scope::Token;
            let mut thresholds = Vec::new();
            let mut threshold_spans = Vec::new();
            for (key, v) in mt {
                match key.get_ref().as_ref() {
                    "scope" => match v.get_ref().as_str() {
                        Some("token") => scope = Scope::Token,
                        Some("global") => scope = Scope::Global,
                        _ => self.push(
                            Some(v.span()),
                            &format!("{field}.scope"),
                            "must be \"token\" or \"global\"",
                        ),
                    },
                    "thresholds" => {
                        let Some(items) = v.get_ref().as_array() else {
                            self.push(
                                Some(v.span()),
                                &format!("{field}.thresholds"),
                                "must be an array of tables ([[metrics.NAME.thresholds]])",
                            );
                            continue;
                        };
                        for (i, item) in items.iter().enumerate() {
                            let tfield = format!("{field}.thresholds[{i}]");
                            threshold_spans.push(self.src.locate(item.span().start));
                            if let (Some(raw), removed) =
                                self.de_partial::<RawThreshold>(&tfield, item)
                            {
                                thresholds.push((tfield, raw, removed, item.span()));
                            }
                        }
                    }
                    other => self.push(
                        Some(key.span()),
                        &format!("{field}.{other}"),
                        "unknown field, expected `scope` or `thresholds`",
                    ),
                }
            }
            let thresholds = thresholds
                .into_iter()
                .filter_map(|(tfield, raw, removed, span)| {
                    self.threshold(&tfield, raw, scope, &removed, span)
                })
                .collect();
            places.push(MetricPlace {
                name: name_str.to_owned(),
                at: self.src.locate(name.span().start),
                thresholds: threshold_spans,
            });
            out.push(MetricSpec {
                name: name_str.into(),
                scope,
                thresholds,
            });
        }
    }

    fn threshold(
        &mut self,
        field: &str,
        raw: RawThreshold,
        scope: Scope,
        removed: &[String],
        span: Range<usize>,
    ) -> Option<ThresholdSpec> {
        let before = self.errors.len();
        // A field already reported (and taken out) is not reported missing as well.
        let required = |cx: &mut Self, name: &str, why: &str| {
            if !removed.iter().any(|r| r == name) {
                cx.push(
                    Some(span.clone()),
                    &format!("{field}.{name}"),
                    format!("is required ({why})"),
                );
            }
        };
        let limit = match &raw.limit {
            Some(l) => {
                let n = NonZeroU64::new(*l.get_ref());
                if n.is_none() {
                    self.push(
                        Some(l.span()),
                        &format!("{field}.limit"),
                        "must be at least 1",
                    );
                }
                n
            }
            None => {
                required(
                    self,
                    "limit",
                    "how much of the measure triggers the threshold",
                );
                None
            }
        };
        let window = match &raw.window {
            Some(w) => self.duration(&format!("{field}.window"), w).and_then(|s| {
                let win = Window::from_secs(s);
                if win.is_none() {
                    self.push(
                        Some(w.span()),
                        &format!("{field}.window"),
                        "must be at least 1 second",
                    );
                }
                win
            }),
            None => {
                required(self, "window", "how far back the measure looks");
                None
            }
        };
        let kind = match &raw.kind {
            None => Some(Kind::Count),
            Some(k) => {
                let parsed = parse_kind(k.get_ref());
                if parsed.is_none() {
                    self.push(
                        Some(k.span()),
                        &format!("{field}.kind"),
                        format!(
                            "`{}` is not a kind, expected \"count\", \"distinct(ATTR)\" or \"sum(ATTR)\"",
                            k.get_ref()
                        ),
                    );
                }
                parsed
            }
        };
        let policy = match raw
            .policy
            .as_ref()
            .map(|p| (p.get_ref().as_str(), p.span()))
        {
            None | Some(("after_trigger", _)) => BanPolicy::AfterTrigger,
            Some(("after_violation", _)) => BanPolicy::AfterViolation,
            Some((other, span)) => {
                self.push(
                    Some(span),
                    &format!("{field}.policy"),
                    format!("`{other}` is not a policy, expected \"after_trigger\" or \"after_violation\""),
                );
                BanPolicy::AfterTrigger
            }
        };
        let mut actions = Vec::new();
        if let Some(list) = &raw.actions {
            for a in list.get_ref() {
                let name = a.get_ref();
                if BUILTIN_ACTIONS.contains(&name.as_str()) {
                    actions.push(name.clone());
                } else {
                    self.push(
                        Some(a.span()),
                        &format!("{field}.actions"),
                        format!(
                            "unknown action `{name}`, expected one of {}",
                            BUILTIN_ACTIONS.join(", ")
                        ),
                    );
                }
            }
        }
        let fail_closed = match raw
            .on_store_error
            .as_ref()
            .map(|p| (p.get_ref().as_str(), p.span()))
        {
            None | Some(("fail_open", _)) => false,
            Some(("fail_closed", _)) => true,
            Some((other, span)) => {
                self.push(
                    Some(span),
                    &format!("{field}.on_store_error"),
                    format!("`{other}` is not \"fail_open\" or \"fail_closed\""),
                );
                false
            }
        };
        let blocks = actions.iter().any(|a| a == "block_local");
        let effect = match scope {
            Scope::Global => {
                if blocks {
                    self.push(
                        raw.actions.as_ref().map(Spanned::span),
                        &format!("{field}.actions"),
                        "a global-scope metric alerts; it cannot block_local every token",
                    );
                }
                Effect::Alert
            }
            Scope::Token if blocks => Effect::Block,
            Scope::Token => Effect::Notify,
        };
        let action_duration = match &raw.action_duration {
            Some(d) => self
                .duration(&format!("{field}.action_duration"), d)
                .map(Seconds::new),
            None if effect == Effect::Alert => Some(Seconds::ZERO),
            None => {
                required(self, "action_duration", "how long the decision lasts");
                None
            }
        };
        if self.errors.len() > before {
            return None;
        }
        Some(ThresholdSpec {
            limit: limit?,
            window: window?,
            kind: kind?,
            effect,
            policy,
            action_duration: action_duration?,
            actions,
            repeat_actions: raw.repeat_actions,
            fail_closed,
        })
    }

    fn duration(&mut self, field: &str, raw: &Spanned<RawDuration>) -> Option<u64> {
        match raw.get_ref().seconds() {
            Ok(s) => Some(s),
            Err(why) => {
                self.push(Some(raw.span()), field, why);
                None
            }
        }
    }
}

/// `count`, `distinct(ATTR)` or `sum(ATTR)`.
fn parse_kind(text: &str) -> Option<Kind> {
    let text = text.trim();
    if text == "count" {
        return Some(Kind::Count);
    }
    let (name, rest) = text.split_once('(')?;
    let attr = rest.strip_suffix(')')?.trim();
    let valid = !attr.is_empty()
        && attr
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if !valid {
        return None;
    }
    match name.trim() {
        "distinct" => Some(Kind::Distinct(attr.into())),
        "sum" => Some(Kind::Sum(attr.into())),
        _ => None,
    }
}

/// The key whose key or value text contains `span`, to name the field of a serde error.
fn key_at<'a>(table: &'a DeTable<'_>, span: &Range<usize>) -> Option<&'a str> {
    table.iter().find_map(|(k, v)| {
        let inside = |r: Range<usize>| r.start <= span.start && span.start < r.end.max(r.start + 1);
        (inside(k.span()) || inside(v.span())).then(|| k.get_ref().as_ref())
    })
}

#[cfg(test)]
mod tests;
