//! `banhammer replay`: access logs through the engine in event time, decisions on stdout.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use banhammer_accesslog::{
    input, BoundedLines, LineEvents, Note, ReportPolicy, TokenLine, MAX_LINE,
};
use banhammer_core::{Engine, ManualClock, Seconds, Timestamp};
use banhammer_sink::{write_decision, DecisionFormat};
use indicatif::{ProgressBar, ProgressStyle};

use crate::setup;

/// Malformed (and late) lines reported in full; after that only counted.
const MAX_REPORTED: u64 = 10;

/// A counted line waiting to be put in order: its file (an index into the origins), its
/// number there, and what it counts.
type Waiting = (usize, u64, TokenLine);

/// Replays `files` in order (`-` is standard input; `.gz` is read as gzip).
#[allow(clippy::print_stderr)] // malformed lines and the summary are reported on stderr
pub(crate) fn run(
    config: &Path,
    files: &[PathBuf],
    format: DecisionFormat,
    max_delay: Option<Seconds>,
) -> anyhow::Result<ExitCode> {
    let (config, log_format) = setup::load_accesslog(config, max_delay)?;
    let rules = setup::ruleset(&config)?;
    let engine = Engine::new(
        Arc::new(rules),
        ManualClock::new(Timestamp::from_unix(i64::MIN)),
    );
    let rules = Arc::clone(engine.rules());
    let events = LineEvents::new(&config.accesslog, &rules);
    for metric in events.unfed(&rules) {
        eprintln!("warning: {}", setup::unfed_warning(metric));
    }
    let stdout = io::stdout();
    let mut counter = Counter {
        engine,
        out: BufWriter::with_capacity(64 * 1024, stdout.lock()),
        format,
        origins: Vec::with_capacity(files.len()),
        bans: 0,
    };
    let tty = io::stderr().is_terminal();
    #[allow(clippy::disallowed_methods)] // wall time for the lines/s figure only, never decisions
    let started = std::time::Instant::now();
    let policy = ReportPolicy::first(MAX_REPORTED);
    let mut pipeline = setup::line_pipeline(&config, log_format, "", policy);
    // Lines are counted in time order, within max_delay: what comes out is what the same log
    // sorted by time gives.
    let mut reorder = setup::reorder::<Waiting>(&config);

    for (file, path) in files.iter().enumerate() {
        let origin = path.display().to_string();
        let input = input::open(path).with_context(|| format!("opening {origin}"))?;
        let bar = progress_bar(tty, input.size, &origin);
        let report = |n: &Note<'_>| bar.suspend(|| eprintln!("{n}"));
        pipeline.set_origin(origin.as_str());
        counter.origins.push(origin);
        let mut lines = BoundedLines::new(input.reader, MAX_LINE);
        let mut number = 0u64;
        while let Some(line) = lines
            .next_line()
            .with_context(|| format!("reading {}", counter.origins[file]))?
        {
            number += 1;
            let counted = pipeline.events(number, line, &events, report);
            if number.is_multiple_of(65_536) {
                bar.set_position(input.read.load(Ordering::Relaxed));
                bar.set_message(format!("{} lines", pipeline.lines()));
            }
            let Some(counted) = counted else { continue };
            let time = counted.time();
            let item = (file, number, counted);
            if let Some(late) = pipeline.order(&mut reorder, number, time, item, report) {
                counter.count(&late)?;
            }
            while let Some((_, waiting)) = reorder.pop() {
                counter.count(&waiting)?;
            }
        }
        bar.finish_and_clear();
    }
    reorder.flush();
    while let Some((_, waiting)) = reorder.pop() {
        counter.count(&waiting)?;
    }
    for d in &counter.engine.finish() {
        write_decision(&mut counter.out, d, format)?;
    }
    counter.out.flush()?;
    if pipeline.unreported() > 0 {
        eprintln!("… and {} more malformed line(s)", pipeline.unreported());
    }
    if pipeline.unreported_late() > 0 {
        eprintln!("… and {} more late line(s)", pipeline.unreported_late());
    }
    if reorder.early() > 0 {
        eprintln!(
            "warning: {}",
            setup::early_warning(&config, reorder.early())
        );
    }
    if tty {
        #[allow(clippy::disallowed_methods)]
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        eprintln!(
            "{} lines ({} malformed, {} skipped, {} ignored, {} late), {} bans, {:.0} lines/s",
            pipeline.lines(),
            pipeline.malformed(),
            pipeline.skipped(),
            pipeline.ignored(),
            pipeline.late(),
            counter.bans,
            pipeline.lines() as f64 / secs
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Counts lines in the engine and writes the decisions they bring.
struct Counter<W: Write> {
    engine: Engine<ManualClock>,
    out: W,
    format: DecisionFormat,
    /// The files' names, for errors about a line counted after its file was read.
    origins: Vec<String>,
    bans: u64,
}

impl<W: Write> Counter<W> {
    fn count(&mut self, (file, number, line): &Waiting) -> anyhow::Result<()> {
        for event in line.events() {
            let verdict = self.engine.observe(&event, false).map_err(|e| {
                let origin = self.origins.get(*file).map_or("", String::as_str);
                anyhow!("{origin}:{number}: {e}")
            })?;
            self.engine.rules().run_actions(&verdict.actions);
            for d in &verdict.decisions {
                self.bans += u64::from(d.verb() == "BAN");
                write_decision(&mut self.out, d, self.format)?;
            }
        }
        Ok(())
    }
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
