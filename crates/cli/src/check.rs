//! `banhammer check CONFIG`: validate a configuration and list every problem.

use std::path::Path;
use std::process::ExitCode;

use banhammer_config::{Config, ConfigErrors};

use crate::setup;

/// Prints `CONFIG: ok (…)` and exits 0, or every problem on stderr and exits 1.
#[allow(clippy::print_stdout, clippy::print_stderr)] // reporting is the command's job
pub(crate) fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let checked = Config::load(path).and_then(|config| match setup::log_format(&config) {
        Ok(_) => Ok(config),
        Err(located) => Err(ConfigErrors(vec![located])),
    });
    match checked {
        Ok(config) => {
            let thresholds: usize = config.metrics.iter().map(|m| m.thresholds.len()).sum();
            println!(
                "{}: ok ({} metrics, {} thresholds)",
                path.display(),
                config.metrics.len(),
                thresholds
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} problem(s)", path.display(), errors.0.len());
            Ok(ExitCode::from(1))
        }
    }
}
