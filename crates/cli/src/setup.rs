//! What every subcommand sets up the same way: the configuration, its log format, the
//! built-in actions and the rule set. Subcommands share these through here, never through
//! each other.

use std::fmt::Display;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use banhammer_accesslog::{LinePipeline, LogFormat, Reorder, ReportPolicy};
use banhammer_config::{CommandTemplate, Config, ConfigError};
use banhammer_core::{Action, NamedNoop, Ruleset, Seconds};
use banhammer_sink::{builtin_action, CommandLine, CommandSink, Enforcer, NftSettings, Nftables};

/// Loads and validates the configuration at `path`; the error lists every located problem.
pub(crate) fn load_config(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow!("{e}"))
}

/// The configuration at `path` and its `[accesslog] format`, for the access-log commands;
/// `--max-delay`, if given, overrides `[accesslog] max_delay`.
pub(crate) fn load_accesslog(
    path: &Path,
    max_delay: Option<Seconds>,
) -> anyhow::Result<(Config, LogFormat)> {
    let mut config = load_config(path)?;
    let format = log_format(&config).map_err(|e| anyhow!("{e}"))?;
    if let Some(d) = max_delay {
        config.accesslog.max_delay = d;
    }
    Ok((config, format))
}

/// The `[accesslog] format` of `config`. The format is the access-log parser's to judge, but
/// its error points into the configuration file, so that `check` reports it with its line.
/// The default (not written, or `auto`) is combined, until the first line says otherwise
/// ([`line_pipeline`]).
pub(crate) fn log_format(config: &Config) -> Result<LogFormat, ConfigError> {
    if config.accesslog.format_is_default() {
        return Ok(LogFormat::Combined);
    }
    LogFormat::from_setting(&config.accesslog.format.value)
        .map_err(|why| config.accesslog.format.error(why.to_string()))
}

/// The line pipeline of `replay` and `watch`: lines in `format` from `origin`, and when the
/// configuration left the format to its default, a CSV export's header line chooses csv.
pub(crate) fn line_pipeline(
    config: &Config,
    format: LogFormat,
    origin: &str,
    policy: ReportPolicy,
) -> LinePipeline {
    let pipeline = LinePipeline::new(format, origin, policy);
    if config.accesslog.format_is_default() {
        pipeline.detecting_format()
    } else {
        pipeline
    }
}

/// The reorder stage of the event-time modes, as `[accesslog]` bounds it.
pub(crate) fn reorder<T>(config: &Config) -> Reorder<T> {
    Reorder::new(
        config.accesslog.max_delay,
        config.accesslog.max_buffered_lines,
    )
}

/// The warning for a metric that no log line can feed (`LineEvents::unfed`).
pub(crate) fn unfed_warning(metric: &str) -> String {
    format!(
        "metric `{metric}` is fed by no [[accesslog.match]] nor the request_metric: \
         no log line counts for it"
    )
}

/// The warning for lines counted before their delay because the reorder buffer was full.
pub(crate) fn early_warning(config: &Config, early: u64) -> String {
    format!(
        "{early} line(s) counted before max_delay ({}) had passed: more than {} lines waited \
         to be put in order ([accesslog] max_buffered_lines)",
        config.accesslog.max_delay, config.accesslog.max_buffered_lines
    )
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

/// The enforcers that keep the firewall in step with the bans: the section's ban, extend and
/// unban commands (`[watch]` or `[serve]`), and `[nftables]` if it is there.
pub(crate) fn enforcers(
    config: &Config,
    ban: &Option<CommandTemplate>,
    extend: &Option<CommandTemplate>,
    unban: &Option<CommandTemplate>,
) -> anyhow::Result<Vec<Box<dyn Enforcer>>> {
    let mut out: Vec<Box<dyn Enforcer>> = Vec::new();
    if ban.is_some() || extend.is_some() || unban.is_some() {
        let line = |t: &Option<CommandTemplate>| {
            t.clone()
                .map(|t| -> CommandLine { Box::new(move |vars| t.render(vars)) })
        };
        out.push(Box::new(CommandSink::new(
            line(ban),
            line(extend),
            line(unban),
        )));
    }
    if let Some(n) = &config.nftables {
        let nft = Nftables::new(NftSettings {
            program: n.nft.clone(),
            table: n.table.clone(),
            ipv4_set: n.ipv4_set.clone(),
            ipv6_set: n.ipv6_set.clone(),
            drop_chain: n.drop.then(|| n.chain.clone()),
        })
        .map_err(|e| anyhow!("[nftables]: {e}"))?;
        out.push(Box::new(nft));
    }
    Ok(out)
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

/// Logs why a configuration reload (SIGHUP) was refused, one problem a line (a
/// configuration error lists each problem with its place); the running one goes on.
pub(crate) fn not_reloaded(e: &anyhow::Error) {
    for problem in format!("{e:#}").lines() {
        tracing::error!(problem = %banhammer_core::Escaped(problem), "Configuration problem.");
    }
    tracing::error!("Configuration not reloaded: the running one is kept.");
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
