//! What every subcommand sets up the same way: the configuration, its log format, the
//! built-in actions and the rule set. Subcommands share these through here, never through
//! each other.

use std::fmt::Display;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use banhammer_accesslog::LogFormat;
use banhammer_config::{Config, ConfigError};
use banhammer_core::{Action, NamedNoop, Ruleset};
use banhammer_sink::builtin_action;

/// Loads and validates the configuration at `path`; the error lists every located problem.
pub(crate) fn load_config(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow!("{e}"))
}

/// The configuration at `path` and its `[accesslog] format`, for the access-log commands.
pub(crate) fn load_accesslog(path: &Path) -> anyhow::Result<(Config, LogFormat)> {
    let config = load_config(path)?;
    let format = log_format(&config).map_err(|e| anyhow!("{e}"))?;
    Ok((config, format))
}

/// The `[accesslog] format` of `config`. The format is the access-log parser's to judge, but
/// its error points into the configuration file, so that `check` reports it with its line.
pub(crate) fn log_format(config: &Config) -> Result<LogFormat, ConfigError> {
    LogFormat::from_setting(&config.accesslog.format.value)
        .map_err(|why| config.accesslog.format.error(why.to_string()))
}

/// Builds the built-in actions that `[actions]` configures (`record_local`,
/// `report_central`, each opening its file once); any other name does nothing.
pub(crate) fn builtin_actions(config: &Config) -> anyhow::Result<impl Fn(&str) -> Arc<dyn Action>> {
    let open = |name: &str, path: &Option<String>| -> anyhow::Result<Arc<dyn Action>> {
        builtin_action(name, path.as_deref().map(Path::new))
            .with_context(|| format!("opening the {name} file"))
    };
    let record = open("record_local", &config.actions.record_local_path)?;
    let report = open("report_central", &config.actions.report_central_path)?;
    Ok(move |name: &str| -> Arc<dyn Action> {
        match name {
            "record_local" => Arc::clone(&record),
            "report_central" => Arc::clone(&report),
            other => Arc::new(NamedNoop(other.to_owned())),
        }
    })
}

/// The rule set of `config`, with the built-in actions.
pub(crate) fn ruleset(config: &Config) -> anyhow::Result<Ruleset> {
    config
        .ruleset(&builtin_actions(config)?)
        .map_err(|e| invalid_rules(e.0))
}

/// Rule-set problems as one error, each problem on its own line in words (their Debug form
/// was unreadable for the user).
pub(crate) fn invalid_rules<E: Display>(problems: impl IntoIterator<Item = E>) -> anyhow::Error {
    let mut text = String::from("invalid rules:");
    for p in problems {
        text.push_str(&format!("\n  {p}"));
    }
    anyhow!(text)
}

#[cfg(test)]
mod tests {
    use banhammer_core::RuleError;

    use super::*;

    #[test]
    fn invalid_rules_lists_each_problem_on_its_own_line_in_words() {
        let err = invalid_rules([
            RuleError::DuplicateMetric("login".into()),
            RuleError::ZeroDuration {
                metric: "m".into(),
                tier: 1,
            },
        ]);
        assert_eq!(
            format!("{err:#}"),
            "invalid rules:\n  metric `login` is defined twice\n  \
             metric `m` tier 1: action_duration must be at least 1 second"
        );
    }
}
