//! `banhammer monitor`: HTTP traffic from packets or logs, shown every interval, with alerts.

mod capture;
mod say;
mod sources;
mod tui;

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use banhammer_core::{Clock, Seconds, SystemClock, Timestamp};
use banhammer_monitor::{
    alert_line, no_traffic_line, render_plain, to_json, App, MonitorConfig, Observation, Output,
    PerSecond,
};

use banhammer_http::ConsoleMode;
use sources::{Source, SourceState};

/// `--web`: the console and what it was last sent.
struct Web {
    feed: crate::console::WebFeed,
    /// The clock and alert count last sent: the page is told at most once per second of the
    /// monitor's clock, and at once for an alert.
    last: Option<(Timestamp, usize)>,
}

impl Web {
    /// Sends `app`'s state to the pages if its clock moved or an alert came since last time.
    fn publish(&mut self, app: &App) {
        let key = (app.now(), app.alerts().len());
        if self.last != Some(key) {
            self.last = Some(key);
            self.feed.send(banhammer_monitor::to_web_json(app));
        }
    }
}

/// Command-line choices for `monitor`.
#[derive(Debug, Clone)]
// Without the `capture` feature nothing reads the packet options.
#[cfg_attr(not(feature = "capture"), allow(dead_code))]
pub(crate) struct MonitorOptions {
    pub(crate) interface: String,
    /// `--filter`; live capture has a default, a file is read whole without one.
    pub(crate) filter: Option<String>,
    pub(crate) pcap: Option<PathBuf>,
    pub(crate) log: Option<PathBuf>,
    pub(crate) log_format: String,
    pub(crate) replay: bool,
    /// With `--replay`: how far behind the newest line a line may be and still be counted
    /// in order (`--max-delay`; default 60 s).
    pub(crate) max_delay: Option<banhammer_core::Seconds>,
    pub(crate) interval: u64,
    pub(crate) threshold: PerSecond,
    pub(crate) top: usize,
    pub(crate) plain: bool,
    pub(crate) json: bool,
    /// Stop after this many seconds of the monitor's clock (tests, benchmarks).
    pub(crate) duration: Option<u64>,
    /// `--web ADDR`: also serve the live web console there.
    pub(crate) web: Option<std::net::SocketAddr>,
}

/// How results are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Plain,
    Json,
    Tui,
}

/// Seconds a live source waits for late observations before counting a second.
const LIVE_LAG: u64 = 1;
/// Seconds a replay waits, in event time, for lines that come out of order.
const REPLAY_LAG: u64 = 5;

pub(crate) fn run(opts: &MonitorOptions) -> anyhow::Result<ExitCode> {
    let config = MonitorConfig {
        interval: opts.interval.max(1),
        threshold: opts.threshold,
        window: 120,
        top: opts.top.max(1),
    };
    // The engine counts whole requests: a limit of 0 (once silently 1) is no threshold.
    if config.alert_limit().is_none() {
        anyhow::bail!(
            "--threshold {}: the alert fires when requests over 2 minutes average more than \
             this many per second, and it counts whole requests: the threshold must be at \
             least 1/120 (0.008334: more than one request in 2 minutes); 0.5 means more \
             than 60",
            opts.threshold
        );
    }
    let say = say::Say::default();
    say::init_logging(&say);
    let mut source = sources::open(opts, &say)?;
    // Started before the first poll so the page is up while the source warms up.
    let mut web = opts
        .web
        .map(|addr| {
            crate::console::WebFeed::start(addr, ConsoleMode::Monitor, "monitor", "--web")
                .map(|feed| Web { feed, last: None })
        })
        .transpose()?;
    let view = if opts.json {
        View::Json
    } else if opts.plain || !io::stdout().is_terminal() {
        View::Plain
    } else {
        View::Tui
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    match view {
        View::Tui => tui::run(&mut *source, config, opts, &stop, &say, web.as_mut()),
        View::Plain | View::Json => {
            print_loop(&mut *source, config, opts, view, &stop, web.as_mut())
        }
    }
}

/// The clock of a run: wall time for live sources, the newest observation for replays.
struct RunClock {
    live: bool,
    newest: Option<Timestamp>,
}

impl RunClock {
    fn observe(&mut self, obs: &Observation) {
        let t = obs.time();
        if self.newest.is_none_or(|n| t > n) {
            self.newest = Some(t);
        }
    }

    /// Up to where observations are counted.
    fn watermark(&self) -> Option<Timestamp> {
        if self.live {
            Some(SystemClock.now().minus(Seconds::new(LIVE_LAG)))
        } else {
            self.newest.map(|n| n.minus(Seconds::new(REPLAY_LAG)))
        }
    }

    fn start(&self) -> Timestamp {
        if self.live {
            SystemClock.now()
        } else {
            self.newest.unwrap_or(Timestamp::EPOCH)
        }
    }
}

/// How a run ended: its app (none if nothing was seen), and the source's error if reading
/// failed (a file cut short), reported after what was read before it.
struct Ended {
    app: Option<App>,
    failed: Option<anyhow::Error>,
}

impl Ended {
    /// The source's error, if any, now that its reports are out.
    fn result(self) -> anyhow::Result<ExitCode> {
        match self.failed {
            Some(e) => Err(e),
            None => Ok(ExitCode::SUCCESS),
        }
    }
}

/// Reads the source until it is done (replays), fails, or a signal comes (live), advancing
/// the app and handing every output to `emit`. A source that fails ends the run as the end
/// of its input does: what it gave before is counted and reported, then the error is
/// returned in [`Ended`].
fn drive(
    source: &mut dyn Source,
    config: MonitorConfig,
    opts: &MonitorOptions,
    stop: &AtomicBool,
    mut web: Option<&mut Web>,
    mut on_tick: impl FnMut(&App) -> anyhow::Result<bool>,
    mut emit: impl FnMut(&Output) -> anyhow::Result<()>,
) -> anyhow::Result<Ended> {
    let mut clock = RunClock {
        live: source.live(),
        newest: None,
    };
    let mut batch = Vec::new();
    let mut app: Option<App> = None;
    let mut failed = None;
    loop {
        batch.clear();
        let state = source.poll(&mut batch).unwrap_or_else(|e| {
            failed = Some(e);
            SourceState::Done
        });
        for obs in batch.drain(..) {
            clock.observe(&obs);
            let app = app.get_or_insert_with(|| App::new(config, clock.start()));
            app.observe(obs);
        }
        if app.is_none() && clock.live {
            app = Some(App::new(config, clock.start()));
        }
        let done = state == SourceState::Done || stop.load(Ordering::Relaxed);
        if let Some(app) = app.as_mut() {
            let (packets, drops) = source.counters();
            app.set_capture_counters(packets, drops);
            let mark = if done && !clock.live {
                // The input is over: count everything (the clock stops at the last one).
                clock.newest.unwrap_or(app.now())
            } else {
                clock.watermark().unwrap_or(app.now())
            };
            for o in app.advance(mark) {
                emit(&o)?;
            }
            if opts
                .duration
                .is_some_and(|d| app.now().since(app.start()).get() >= d)
            {
                finish(app, &mut emit)?;
                break;
            }
            if let Some(web) = web.as_deref_mut() {
                web.publish(app);
            }
            if !on_tick(app)? {
                break;
            }
        }
        if done {
            if let Some(app) = app.as_mut() {
                finish(app, &mut emit)?;
            }
            break;
        }
        if state == SourceState::Idle {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(Ended { app, failed })
}

/// The end of a run (input over, `--duration` reached, a signal): counts what is still
/// waiting and reports the interval in progress.
fn finish(
    app: &mut App,
    emit: &mut impl FnMut(&Output) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for o in app.finish() {
        emit(&o)?;
    }
    Ok(())
}

#[allow(clippy::print_stdout)] // reports are the command's output
fn print_loop(
    source: &mut dyn Source,
    config: MonitorConfig,
    opts: &MonitorOptions,
    view: View,
    stop: &AtomicBool,
    web: Option<&mut Web>,
) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout();
    let result = drive(
        source,
        config,
        opts,
        stop,
        web,
        |_| Ok(true),
        |o| {
            let mut out = stdout.lock();
            match (view, o) {
                (View::Json, o) => writeln!(out, "{}", to_json(o, config.top))?,
                (_, Output::Report(r)) => writeln!(out, "{}", render_plain(r, config.top))?,
                (_, Output::Alert(a)) => writeln!(out, "{}\n", alert_line(a))?,
                (_, Output::NoTraffic(q)) => writeln!(out, "{}\n", no_traffic_line(q))?,
            }
            out.flush()?;
            Ok(())
        },
    );
    match result {
        Ok(ended) => ended.result(),
        // The reader went away (`| head`): that is the end, not an error.
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e),
    }
}
