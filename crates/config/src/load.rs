//! Reading a configuration: the file, the walk over its sections, and the checks that need
//! every section (metrics named elsewhere, what the core refuses).

use std::path::Path;
use std::sync::Arc;

use banhammer_core::{metric_matches, NamedNoop, MAX_MEMBERS, MAX_NAME_LEN};
use toml::de::DeTable;

use crate::context::Cx;
use crate::error::Source;
use crate::metrics::MetricPlaces;
use crate::raw::{RawActions, RawEngine};
use crate::{
    AccessLogSettings, ActionSettings, Config, ConfigError, ConfigErrors, EngineSettings, Env,
    ServeSettings, WatchSettings,
};

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
        let mut nftables = None;
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
                "nftables" => nftables = cx.nftables(value),
                other => cx.push(
                    Some(key.span()),
                    other,
                    "unknown section, expected one of `engine`, `actions`, `metrics`, `accesslog`, \
                     `watch`, `serve`, `nftables`, `detect`",
                ),
            }
        }
        // Members of one family that lines may count as: a token counts at most MAX_MEMBERS
        // of them, so more would make the engine refuse lines at run time.
        let mut members: Vec<(&str, Vec<String>)> = Vec::new();
        for (name, span, field) in std::mem::take(&mut cx.metric_refs) {
            if name.len() > MAX_NAME_LEN {
                // The engine would refuse every event of it (a family member this long).
                let mut shown = name.len().min(64);
                while !name.is_char_boundary(shown) {
                    shown -= 1;
                }
                cx.push(
                    Some(span),
                    &field,
                    format!(
                        "metric name `{}` is longer than {MAX_NAME_LEN} bytes",
                        &name[..shown]
                    ),
                );
                continue;
            }
            let Some(m) = metrics.iter().find(|m| metric_matches(&m.name, &name)) else {
                cx.push(
                    Some(span),
                    &field,
                    format!("metric `{name}` is not defined in [metrics]"),
                );
                continue;
            };
            if !m.is_family() {
                continue;
            }
            let family = match members.iter().position(|(f, _)| *f == &*m.name) {
                Some(i) => &mut members[i].1,
                None => {
                    members.push((&m.name, Vec::new()));
                    &mut members.last_mut().expect("just pushed").1
                }
            };
            if !family.contains(&name) {
                family.push(name);
                if family.len() == MAX_MEMBERS + 1 {
                    cx.push(
                        Some(span),
                        &field,
                        format!(
                            "`{}` is the {}th member of family `{}` that lines count as; a \
                             token counts at most {MAX_MEMBERS} members of a family",
                            family[MAX_MEMBERS],
                            MAX_MEMBERS + 1,
                            m.name
                        ),
                    );
                }
            }
        }
        let detect = cx.detect(detect_value, env);
        match env.var("BANHAMMER_ADMIN_TOKEN") {
            Some(token) if token.trim().is_empty() => cx.push(
                None,
                "BANHAMMER_ADMIN_TOKEN",
                "is set but empty: an empty token protects nothing (unset it, or give a token)",
            ),
            Some(token) => serve.admin_token = Some(token),
            None => {}
        }
        let config = Config {
            engine,
            actions,
            metrics,
            accesslog,
            watch,
            serve,
            nftables,
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
}
