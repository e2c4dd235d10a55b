//! `banhammer replay`: access logs through the engine in event time, decisions on stdout.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use banhammer_accesslog::{input, parse, BoundedLine, BoundedLines, LineEvents, MAX_LINE};
use banhammer_core::{Engine, Event, ManualClock, Timestamp};
use banhammer_sink::{write_decision, DecisionFormat};
use indicatif::{ProgressBar, ProgressStyle};

use crate::setup;

/// Malformed lines reported in full; after that only counted.
const MAX_REPORTED: usize = 10;

/// What a replay saw.
#[derive(Debug, Default)]
struct Summary {
    lines: u64,
    malformed: u64,
    ignored: u64,
    bans: u64,
}

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
    let mut summary = Summary::default();

    for path in files {
        let origin = path.display().to_string();
        let input = input::open(path).with_context(|| format!("opening {origin}"))?;
        let bar = progress_bar(tty, input.size, &origin);
        let mut lines = BoundedLines::new(input.reader, MAX_LINE);
        let mut number = 0u64;
        while let Some(line) = lines
            .next_line()
            .with_context(|| format!("reading {origin}"))?
        {
            number += 1;
            summary.lines += 1;
            if number % 65_536 == 0 {
                bar.set_position(input.read.load(Ordering::Relaxed));
                bar.set_message(format!("{} lines", summary.lines));
            }
            let parsed = match line {
                BoundedLine::Line(bytes) => parse(bytes, &log_format),
                BoundedLine::TooLong => Err(banhammer_accesslog::LineError::TooLong),
            };
            let line = match parsed {
                Ok(l) => l,
                Err(banhammer_accesslog::LineError::Header) => continue,
                Err(why) => {
                    summary.malformed += 1;
                    if summary.malformed <= MAX_REPORTED as u64 {
                        bar.suspend(|| eprintln!("{origin}:{number}: {why}"));
                    }
                    continue;
                }
            };
            let Some(token) = events.token(&line) else {
                summary.ignored += 1;
                continue;
            };
            for metric in events.metrics(&line) {
                let verdict = engine
                    .observe(&Event::new(&token, metric, line.time), false)
                    .map_err(|e| anyhow!("{origin}:{number}: {e}"))?;
                rules.run_actions(&verdict.actions);
                for d in &verdict.decisions {
                    summary.bans += u64::from(d.verb() == "BAN");
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
    if summary.malformed > MAX_REPORTED as u64 {
        eprintln!(
            "… and {} more malformed line(s)",
            summary.malformed - MAX_REPORTED as u64
        );
    }
    if tty {
        #[allow(clippy::disallowed_methods)]
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        eprintln!(
            "{} lines ({} malformed, {} ignored), {} bans, {:.0} lines/s",
            summary.lines,
            summary.malformed,
            summary.ignored,
            summary.bans,
            summary.lines as f64 / secs
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
