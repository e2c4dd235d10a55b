//! The `banhammer` command: wiring only; the work is in the library crates.

mod check;
mod eval;
mod lines;
mod script;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// banhammer: counts events per token over exact sliding windows and bans, alerts, reports.
#[derive(Debug, Parser)]
#[command(name = "banhammer", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs an event script through the engine and prints each decision in time order.
    ///
    /// One event a line: `<unix_seconds> <token> <metric> [attr=value ...]`; blank lines and
    /// `#` comments are ignored. At the end of input the clock stops at the last event and
    /// pending ends (UNBAN, RECOVER) are printed. Exit code 1 if any line was malformed.
    Eval {
        /// The configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// The event script; standard input if absent or `-`.
        file: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
    },
    /// Validates a configuration file and reports every problem with its line.
    Check {
        /// The configuration file (TOML).
        config: PathBuf,
    },
}

/// How decisions are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// `<unix_seconds>,<VERB>,<token>`.
    Csv,
    /// One JSON object per line, with rule, tier, value, from and until.
    Jsonl,
}

impl From<Format> for banhammer_sink::DecisionFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Csv => banhammer_sink::DecisionFormat::Csv,
            Format::Jsonl => banhammer_sink::DecisionFormat::Jsonl,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Eval {
            config,
            file,
            format,
        } => eval::run(&config, file.as_deref(), format.into()),
        Command::Check { config } => check::run(&config),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            #[allow(clippy::print_stderr)] // the command's own error report
            {
                eprintln!("banhammer: {e:#}");
            }
            ExitCode::from(2)
        }
    }
}
