//! `banhammer check CONFIG`: validate a configuration and list every problem.

use std::path::Path;
use std::process::ExitCode;

use banhammer_config::Config;

/// Prints `CONFIG: ok (…)` and exits 0, or every problem on stderr and exits 1.
#[allow(clippy::print_stdout, clippy::print_stderr)] // reporting is the command's job
pub(crate) fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let checked = Config::load(path).and_then(|config| {
        // The log format is the access-log parser's to judge; its error points into the file.
        match banhammer_accesslog::LogFormat::from_setting(&config.accesslog.format.value) {
            Ok(_) => Ok(config),
            Err(why) => Err(banhammer_config::ConfigErrors(vec![config
                .accesslog
                .format
                .error(why.to_string())])),
        }
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
