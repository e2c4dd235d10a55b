//! `banhammer watch`: follows an access log live and sends each decision to the sinks.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use banhammer_accesslog::{
    input, Fingerprint, Follower, LineEvents, LinePipeline, LogFormat, Note, Position, Reorder,
    ReportPolicy, TokenLine, MAX_LINE,
};
use banhammer_config::Config;
use banhammer_core::{
    Clock, DecisionEvent, DecisionView, Effect, Engine, ManualClock, Seconds, SystemClock,
    Timestamp, Token,
};
use banhammer_sink::{DecisionFile, DecisionFormat, DecisionSinks, Escaped};
use banhammer_store_sqlite::{DecisionStore, FilePosition, StoredDecision};

use crate::setup;

mod metrics;
use metrics::WatchMetrics;

/// Bytes read from the log per step, so ticks and persistence interleave with a long backlog.
const STEP_BUDGET: usize = 4 * 1024 * 1024;
/// Malformed (and late) lines logged in full; after that only counted, ...
const MAX_REPORTED: u64 = 10;
/// ... but every this many still logged, so that a watch running for weeks keeps saying that
/// its log has junk.
const REPORT_EVERY: u64 = 1000;

/// Where the engine's time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ClockKind {
    /// Wall-clock time: UNBANs happen on time even when no line arrives.
    Wall,
    /// The newest line's time, lines put in time order within `max_delay` (as `replay`
    /// does: for comparing with it, and for tests).
    Event,
}

/// Command-line choices for `watch`.
#[derive(Debug, Clone)]
pub(crate) struct WatchOptions {
    pub(crate) file: PathBuf,
    pub(crate) clock: ClockKind,
    /// Overrides `[accesslog] max_delay` (event time only).
    pub(crate) max_delay: Option<Seconds>,
    pub(crate) from_start: bool,
    pub(crate) state: Option<PathBuf>,
    pub(crate) csv: Option<PathBuf>,
    pub(crate) jsonl: Option<PathBuf>,
    /// Serve the metrics on this address.
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,
    /// `--http ADDR`: also serve the web console (bans and decisions, read only) there.
    pub(crate) http: Option<std::net::SocketAddr>,
}

/// Decisions kept for the console: the latest, as the decision log lists them.
const CONSOLE_LOG: usize = 2000;

/// `--http`: the console and the latest decisions it shows.
struct Console {
    feed: crate::console::WebFeed,
    log: VecDeque<StoredDecision>,
}

/// Runs until SIGTERM or SIGINT; SIGHUP reloads the configuration (see [`reload`]).
pub(crate) fn run(config: &Path, opts: &WatchOptions) -> anyhow::Result<ExitCode> {
    let path = config;
    let (config, format) = load(path, opts)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let hangup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hangup))
        .context("installing signal handlers")?;
    let signals = Signals {
        stop: &stop,
        hangup: &hangup,
    };
    match opts.clock {
        ClockKind::Wall => follow(path, (config, format), opts, SystemClock, None, &signals)?,
        ClockKind::Event => {
            let clock = ManualClock::new(Timestamp::from_unix(i64::MIN));
            let loaded = (config, format);
            follow(path, loaded, opts, clock.clone(), Some(clock), &signals)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The flags the signal handlers set.
struct Signals<'a> {
    /// SIGTERM or SIGINT.
    stop: &'a AtomicBool,
    /// SIGHUP.
    hangup: &'a AtomicBool,
}

/// The configuration file with the command line's overrides, as `watch` runs it.
fn load(path: &Path, opts: &WatchOptions) -> anyhow::Result<(Config, LogFormat)> {
    let (mut config, format) = setup::load_accesslog(path, opts.max_delay)?;
    if let Some(s) = &opts.state {
        config.watch.state.clone_from(s);
    }
    if opts.csv.is_some() {
        config.watch.csv.clone_from(&opts.csv);
    }
    if opts.jsonl.is_some() {
        config.watch.jsonl.clone_from(&opts.jsonl);
    }
    Ok((config, format))
}

/// Follows the file until stopped, reloading the configuration on each SIGHUP.
fn follow<C: Clock + Clone>(
    path: &Path,
    (config, format): (Config, LogFormat),
    opts: &WatchOptions,
    clock: C,
    event_clock: Option<ManualClock>,
    signals: &Signals<'_>,
) -> anyhow::Result<()> {
    let poll = config.watch.poll_interval;
    let sleep = |d: Duration| std::thread::sleep(d);
    let metrics = opts.metrics_listen.map(WatchMetrics::serve).transpose()?;
    let mut w = Watcher::new(config, format, opts, clock.clone(), event_clock.clone())?;
    w.metrics.clone_from(&metrics);
    loop {
        w.run(signals.stop, signals.hangup, poll, sleep)?;
        if signals.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        signals.hangup.store(false, Ordering::Relaxed);
        if let Some(new) = reload(&mut w, path, opts, &clock, event_clock.as_ref())? {
            w = new;
            w.metrics.clone_from(&metrics);
        }
    }
}

/// SIGHUP: reads the configuration again and, if it is valid, follows on with it.
///
/// Like a restart without missing a line: the running watcher counts the lines waiting to be
/// put in order, commits, and lets its commands finish; a new one built from the file reads
/// back the bans, counts and read position from the state file, and opens the sinks again
/// (so a record file that logrotate moved away is created anew). A file with problems changes
/// nothing: each problem is logged, and the running watcher goes on.
fn reload<C: Clock + Clone>(
    w: &mut Watcher<C>,
    path: &Path,
    opts: &WatchOptions,
    clock: &C,
    event_clock: Option<&ManualClock>,
) -> anyhow::Result<Option<Watcher<C>>> {
    tracing::info!("Reloading the configuration.");
    let (config, format) = match load(path, opts) {
        Ok(loaded) => loaded,
        Err(e) => {
            setup::not_reloaded(&e);
            return Ok(None);
        }
    };
    w.finish()?;
    w.sinks.wait();
    match Watcher::new(config, format, opts, clock.clone(), event_clock.cloned()) {
        Ok(new) => {
            tracing::info!("Configuration reloaded.");
            Ok(Some(new))
        }
        Err(e) => {
            setup::not_reloaded(&e);
            Ok(None)
        }
    }
}

/// The sinks `[watch]` configures: the CSV and JSON-lines records, the ban, extend and unban
/// commands, and `[nftables]`.
fn open_sinks(config: &Config) -> anyhow::Result<DecisionSinks> {
    let settings = &config.watch;
    let mut files = Vec::new();
    for (path, format) in [
        (&settings.csv, DecisionFormat::Csv),
        (&settings.jsonl, DecisionFormat::Jsonl),
    ] {
        if let Some(p) = path {
            let file = DecisionFile::append(p, format)
                .with_context(|| format!("opening {}", Escaped(p.display())))?;
            files.push(file);
        }
    }
    let enforcers = setup::enforcers(
        config,
        &settings.ban_command,
        &settings.extend_command,
        &settings.unban_command,
    )?;
    Ok(DecisionSinks::new(files, enforcers))
}

/// The watch loop's state: one followed file, one engine, the state file and the sinks.
pub(crate) struct Watcher<C: Clock> {
    config: Config,
    /// Parses the followed lines, and counts and reports the malformed ones.
    pipeline: LinePipeline,
    engine: Engine<C>,
    /// Set when the clock follows line time.
    event_clock: Option<ManualClock>,
    /// In event time, lines wait here to be counted in time order. Lines still waiting when
    /// watch is killed are lost (their read position is saved); a clean stop counts them.
    reorder: Option<Reorder<TokenLine>>,
    /// Lines counted early (a full reorder buffer) when that was last logged.
    early_logged: u64,
    follower: Follower,
    key: String,
    store: DecisionStore,
    sinks: DecisionSinks,
    /// With `--metrics-listen`.
    metrics: Option<WatchMetrics>,
    console: Option<Console>,
}

impl<C: Clock> Watcher<C> {
    /// Opens the state, restores its bans (closing those that ended meanwhile) and the read
    /// position, and opens the sinks.
    pub(crate) fn new(
        config: Config,
        format: LogFormat,
        opts: &WatchOptions,
        clock: C,
        event_clock: Option<ManualClock>,
    ) -> anyhow::Result<Self> {
        let rules = setup::ruleset(&config)?;
        let mut engine = Engine::new(Arc::new(rules), clock);
        let mut store = DecisionStore::open(&config.watch.state).with_context(|| {
            let state = Escaped(config.watch.state.display());
            format!("opening the state file {state}")
        })?;
        let mut sinks = open_sinks(&config)?;
        let key = std::fs::canonicalize(&opts.file)
            .unwrap_or_else(|_| opts.file.clone())
            .display()
            .to_string();
        // On the wall clock, bans that ended while nothing ran are closed now and their UNBANs
        // sent. On line time the engine starts at the beginning of time: nothing has ended
        // yet, every ban comes back and ends when the lines' time reaches it.
        // Repeat offenders first: a restored ban keeps the offences before it.
        if let Some(memory) = engine.rules().offence_memory() {
            for (token, at) in store.ban_starts(engine.time().minus(memory))? {
                engine.restore_offence(&token, at);
            }
        }
        let back = store.read_back(engine.time())?;
        sinks.emit(&back.ended)?;
        back.restore(|ban| engine.restore_ban(ban));
        // Outcomes nobody read (the command that queued them gave up) are not kept.
        store.forget_finished_commands()?;
        // The firewall may have lost what it held while watch was stopped (a reboot, a
        // reload): every active ban goes back with its time left. On line time there is no
        // "now" the kernel shares, so only the changes themselves are applied.
        if event_clock.is_none() {
            let bans: Vec<(Token, DecisionView)> = engine
                .decisions()
                .filter(|(_, v)| v.effect == Effect::Block)
                .map(|(t, v)| (t.clone(), v))
                .collect();
            sinks.reconcile(&bans, engine.time());
        }
        // And the counts, saved with the read position: a restart neither counts a line twice
        // nor forgets what the lines it read counted.
        let horizon = engine.rules().horizon();
        for w in store.load_windows(engine.time().minus(horizon))? {
            if let Err(e) = engine.restore_windows(&w) {
                tracing::debug!(metric = %Escaped(&w.metric), error = %Escaped(&e), "A saved window does not fit the rules; skipped.");
            }
        }
        engine.track_changed_windows(true);
        let saved = store.position(&key)?.map(|p| Position {
            dev: p.dev,
            ino: p.ino,
            offset: p.offset,
            head: Fingerprint {
                len: p.head_len,
                hash: p.head_hash,
            },
        });
        let mut follower = Follower::resume(&opts.file, MAX_LINE, saved);
        if saved.is_none() && !opts.from_start {
            follower = follower.from_end();
        }
        let events = LineEvents::new(&config.accesslog, engine.rules());
        for metric in events.unfed(engine.rules()) {
            tracing::warn!("{}.", setup::unfed_warning(metric));
        }
        let mut pipeline = setup::line_pipeline(
            &config,
            format,
            &opts.file.display().to_string(),
            ReportPolicy::first(MAX_REPORTED).then_every(REPORT_EVERY),
        );
        // Reading may start mid-file (from its end, or a saved position): the format is chosen
        // from the file's first lines, if the file is there yet; if not, from the first line read.
        if config.accesslog.format_is_default() {
            let head = input::head_lines(&opts.file, |number, line| {
                pipeline.detect_format(number, line, &mut log_note)
            });
            if let Err(e) = head {
                tracing::warn!(file = %Escaped(opts.file.display()), error = %Escaped(&e), "Cannot read the file's first lines to choose its format.");
            }
        }
        let reorder = event_clock.as_ref().map(|_| setup::reorder(&config));
        // Paths, lines and notices are shown escaped: a name or a line must not forge a log line.
        tracing::info!(file = %Escaped(opts.file.display()), state = %Escaped(config.watch.state.display()), "Watching.");
        if !opts.file.exists() {
            // Else "Watching." is all a mistyped name would get.
            tracing::warn!(file = %Escaped(opts.file.display()), "No such file yet: waiting for it to appear.");
        }
        let console = match opts.http {
            Some(addr) => {
                let feed = crate::console::WebFeed::start(
                    addr,
                    banhammer_http::ConsoleMode::Watch,
                    "watch",
                    "--http",
                )?;
                let log: VecDeque<StoredDecision> = store.history(None, CONSOLE_LOG)?.into();
                feed.send(banhammer_http::watch_state_json(
                    engine.time(),
                    engine.decisions(),
                    log.iter(),
                ));
                Some(Console { feed, log })
            }
            None => None,
        };
        Ok(Watcher {
            console,
            config,
            pipeline,
            engine,
            event_clock,
            reorder,
            early_logged: 0,
            follower,
            key,
            store,
            sinks,
            metrics: None,
        })
    }

    /// Reads what is new, counts it, ends what is due, stores and emits the decisions.
    /// Returns true if more input is already waiting.
    pub(crate) fn step(&mut self) -> anyhow::Result<bool> {
        let mut lines = Vec::new();
        let more = self
            .follower
            .poll(&mut lines, STEP_BUDGET)
            .with_context(|| format!("reading {}", Escaped(self.follower.path().display())))?;
        for notice in self.follower.take_notices() {
            let (file, notice) = (Escaped(self.follower.path().display()), Escaped(&notice));
            if notice.0.may_lose_lines() {
                tracing::warn!(%file, "{notice}");
            } else {
                tracing::info!(%file, "{notice}");
            }
        }
        let mut decisions = Vec::new();
        let events = LineEvents::new(&self.config.accesslog, self.engine.rules());
        for line in &lines {
            let (number, line) = line.numbered();
            let Some(counted) = self.pipeline.events(number, line, &events, log_note) else {
                continue;
            };
            let Some(reorder) = &mut self.reorder else {
                count(&mut self.engine, None, &counted, &mut decisions);
                continue;
            };
            let clock = self.event_clock.as_ref();
            let time = counted.time();
            if let Some(late) = self
                .pipeline
                .order(reorder, number, time, counted, log_note)
            {
                count(&mut self.engine, clock, &late, &mut decisions);
            }
            while let Some((_, waiting)) = reorder.pop() {
                count(&mut self.engine, clock, &waiting, &mut decisions);
            }
        }
        if let (Some(reorder), Some(clock)) = (&self.reorder, &self.event_clock) {
            // Every line before the floor is counted (or will be late): time has reached it.
            if let Some(floor) = reorder.floor() {
                if floor > clock.now() {
                    clock.set(floor);
                }
            }
            if reorder.early() > self.early_logged.saturating_mul(2) {
                // Logged once, then each time the count doubles: a flood must not flood the log.
                self.early_logged = reorder.early();
                let early = setup::early_warning(&self.config, self.early_logged);
                tracing::warn!("{early}.");
            }
        }
        // Operators' bans and unbans (`banhammer ban --db`), with the lines' decisions.
        let commands = self.store.waiting_commands()?;
        let outcomes = control::apply(
            &mut self.engine,
            &self.config.accesslog,
            commands,
            &mut decisions,
        );
        self.commit(!lines.is_empty(), decisions)?;
        for (id, outcome) in &outcomes {
            self.store.finish_command(*id, outcome)?;
        }
        Ok(more)
    }

    /// Counts the lines still waiting to be put in order (a clean stop: nothing follows them
    /// that they could have come after), and commits what they decide.
    fn finish(&mut self) -> anyhow::Result<()> {
        let Some(reorder) = &mut self.reorder else {
            return Ok(());
        };
        if reorder.is_empty() {
            return Ok(());
        }
        reorder.flush();
        let mut decisions = Vec::new();
        while let Some((_, waiting)) = reorder.pop() {
            count(
                &mut self.engine,
                self.event_clock.as_ref(),
                &waiting,
                &mut decisions,
            );
        }
        self.commit(true, decisions)
    }

    /// Ends what is due, then stores the decisions, the read position and the changed
    /// windows, and sends the decisions to the sinks.
    fn commit(&mut self, read: bool, mut decisions: Vec<DecisionEvent>) -> anyhow::Result<()> {
        decisions.extend(self.engine.tick());
        let position = self.follower.position().map(|p| {
            (
                self.key.as_str(),
                FilePosition {
                    dev: p.dev,
                    ino: p.ino,
                    offset: p.offset,
                    head_len: p.head.len,
                    head_hash: p.head.hash,
                },
            )
        });
        let windows = self.engine.take_changed_windows();
        if read || !decisions.is_empty() || !windows.is_empty() {
            // On disk before anything else hears of it, in one transaction: a crash now loses
            // neither the ban, nor the place in the file, nor what the lines read counted.
            let forget = self.engine.time().minus(self.engine.rules().horizon());
            self.store
                .record_step(&decisions, position, &windows, Some(forget))?;
        }
        self.sinks.emit(&decisions)?;
        if let Some(m) = &mut self.metrics {
            m.record(&decisions, &self.engine.counters());
        }
        self.tell_console(&decisions);
        Ok(())
    }

    /// Sends the bans and the latest decisions to the console when something was decided.
    fn tell_console(&mut self, decisions: &[DecisionEvent]) {
        let Some(console) = self.console.as_mut() else {
            return;
        };
        let records: Vec<&DecisionEvent> = decisions.iter().filter(|d| d.is_record()).collect();
        if records.is_empty() {
            return;
        }
        for d in records {
            console.log.push_back(StoredDecision {
                at: d.at,
                verb: d.verb().to_owned(),
                token: d.token.to_string(),
                rule: d.metric.to_string(),
                tier: d.tier,
                value: d.value,
                from: d.from,
                until: d.until,
                reason: d.reason.as_deref().map(str::to_owned),
            });
        }
        while console.log.len() > CONSOLE_LOG {
            console.log.pop_front();
        }
        console.feed.send(banhammer_http::watch_state_json(
            self.engine.time(),
            self.engine.decisions(),
            console.log.iter(),
        ));
    }

    /// Steps until `stop` (then finishes: counts what waits, lets commands end) or `hangup`
    /// is set, waiting `poll` between steps when nothing is waiting.
    pub(crate) fn run(
        &mut self,
        stop: &AtomicBool,
        hangup: &AtomicBool,
        poll: Duration,
        sleep: impl Fn(Duration),
    ) -> anyhow::Result<()> {
        while !stop.load(Ordering::Relaxed) {
            if hangup.load(Ordering::Relaxed) {
                return Ok(());
            }
            if !self.step()? {
                sleep(poll);
            }
        }
        self.finish()?;
        self.sinks.wait();
        tracing::info!("Stopped.");
        Ok(())
    }
}

/// Counts one line's events; on line time, the clock first moves up to the line's time.
fn count<C: Clock>(
    engine: &mut Engine<C>,
    event_clock: Option<&ManualClock>,
    line: &TokenLine,
    decisions: &mut Vec<DecisionEvent>,
) {
    if let Some(c) = event_clock {
        if line.time() > c.now() {
            c.set(line.time());
        }
    }
    for event in line.events() {
        match engine.observe(&event, false) {
            Ok(v) => {
                engine.rules().run_actions(&v.actions);
                decisions.extend(v.decisions);
            }
            Err(e) => tracing::warn!(error = %Escaped(&e), "Event refused."),
        }
    }
}

/// Logs what the line pipeline reports, escaped: a line must not forge a log line.
fn log_note(note: &Note<'_>) {
    match note {
        Note::Malformed(m) => tracing::warn!(malformed = m.count, "{}", Escaped(m)),
        Note::Late(l) => tracing::warn!(late = l.count, "{}", Escaped(l)),
        Note::Format(f) => tracing::info!("{}", Escaped(f)),
    }
}

mod control;
#[cfg(test)]
mod tests;
