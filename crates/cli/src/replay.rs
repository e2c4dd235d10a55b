//! `banhammer replay`: access logs through the engine in event time, decisions on stdout.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use banhammer_accesslog::{input, BoundedLines, LineEvents, LinePipeline, ReportPolicy, MAX_LINE};
use banhammer_core::{Engine, ManualClock, Timestamp};
use banhammer_sink::{write_decision, DecisionFormat};
use indicatif::{ProgressBar, ProgressStyle};

use crate::setup;

/// Malformed lines reported in full; after that only counted.
const MAX_REPORTED: u64 = 10;

/// Replays `files` in order (`-` is standard input; `.gz` is read as gzip).
#[allow(clippy::print_stderr)] // malformed lines and the summary are reported on stderr
pub(crate) fn run(
    config: &Path,
    files: &[PathBuf],
    format: DecisionFormat,
) -> anyhow::Result<ExitCode> {
    let (config, log_format) = setup::load_accesslog(config)?;
    let rules = setup::ruleset(&config)?;
    let mut engine = Engine::new(
        Arc::new(rules),
        ManualClock::new(Timestamp::from_unix(i64::MIN)),
    );
    let rules = Arc::clone(engine.rules());
    let events = LineEvents::new(&config.accesslog, &rules);
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let tty = io::stderr().is_terminal();
    #[allow(clippy::disallowed_methods)] // wall time for the lines/s figure only, never decisions
    let started = std::time::Instant::now();
    let mut pipeline = LinePipeline::new(log_format, "", ReportPolicy::first(MAX_REPORTED));
    let mut bans = 0u64;

    for path in files {
        let origin = path.display().to_string();
        let input = input::open(path).with_context(|| format!("opening {origin}"))?;
        let bar = progress_bar(tty, input.size, &origin);
        pipeline.set_origin(origin.as_str());
        let mut lines = BoundedLines::new(input.reader, MAX_LINE);
        let mut number = 0u64;
        while let Some(line) = lines
            .next_line()
            .with_context(|| format!("reading {origin}"))?
        {
            number += 1;
            let counted = pipeline.events(number, line, &events, |m| {
                bar.suspend(|| eprintln!("{m}"));
            });
            if number.is_multiple_of(65_536) {
                bar.set_position(input.read.load(Ordering::Relaxed));
                bar.set_message(format!("{} lines", pipeline.lines()));
            }
            let Some(counted) = counted else { continue };
            for event in counted.events() {
                let verdict = engine
                    .observe(&event, false)
                    .map_err(|e| anyhow!("{origin}:{number}: {e}"))?;
                rules.run_actions(&verdict.actions);
                for d in &verdict.decisions {
                    bans += u64::from(d.verb() == "BAN");
                    write_decision(&mut out, d, format)?;
                }
            }
        }
        bar.finish_and_clear();
    }
    for d in &engine.finish() {
        write_decision(&mut out, d, format)?;
    }
    out.flush()?;
    if pipeline.unreported() > 0 {
        eprintln!("… and {} more malformed line(s)", pipeline.unreported());
    }
    if tty {
        #[allow(clippy::disallowed_methods)]
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        eprintln!(
            "{} lines ({} malformed, {} ignored), {} bans, {:.0} lines/s",
            pipeline.lines(),
            pipeline.malformed(),
            pipeline.ignored(),
            bans,
            pipeline.lines() as f64 / secs
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(tty: bool, size: Option<u64>, origin: &str) -> ProgressBar {
    if !tty {
        return ProgressBar::hidden();
    }
    let bar = match size {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner(),
    };
    bar.set_prefix(origin.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
