//! `banhammer eval`: an event script through the engine, decisions out in time order.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use banhammer_core::{Clock, DecisionEvent, Event, EventError, ManualClock, Ruleset, Timestamp};
use banhammer_runtime::{Backend, BackendError, MemoryBackend, RedisBackend, StoreUrl};
use banhammer_sink::{write_decision, DecisionFormat};

use crate::{script, setup};
use banhammer_accesslog::{BoundedLine, BoundedLines};

/// The longest event line read; longer lines are reported and skipped.
const MAX_LINE: usize = 64 * 1024;
/// Malformed lines reported in full; after that only counted.
const MAX_REPORTED: usize = 20;

/// Where the script's events are decided: a backend (in memory, or the Redis store with
/// `--scratch-store`) on a clock that follows event time, driven as a node would be: before
/// each event every decision due by then ends.
struct Decider {
    rt: tokio::runtime::Runtime,
    backend: Box<dyn Backend>,
    clock: ManualClock,
    rules: Arc<Ruleset>,
}

impl Decider {
    /// Decides in memory: one engine (one shard, so ends come in the engine's own order).
    fn memory(rules: Arc<Ruleset>) -> anyhow::Result<Self> {
        let clock = ManualClock::new(Timestamp::MIN);
        let backend = MemoryBackend::new(
            Arc::clone(&rules),
            Arc::new(clock.clone()),
            NonZeroUsize::MIN,
        );
        Ok(Decider {
            rt: current_thread()?,
            backend: Box::new(backend),
            clock,
            rules,
        })
    }

    /// Decides on the scratch store at `url`, after deleting everything on it.
    fn scratch_store(url: &str, rules: Arc<Ruleset>) -> anyhow::Result<Self> {
        let url: StoreUrl = url
            .parse()
            .map_err(|e: String| anyhow!("--scratch-store: {e}"))?;
        let clock = ManualClock::new(Timestamp::MIN);
        let rt = current_thread()?;
        let backend = rt.block_on(async {
            let backend = RedisBackend::connect(
                &url,
                Arc::clone(&rules),
                Arc::new(clock.clone()),
                std::time::Duration::from_secs(5),
            )
            .await?;
            backend.flush().await?;
            Ok::<_, BackendError>(backend)
        })?;
        Ok(Decider {
            rt,
            backend: Box::new(backend),
            clock,
            rules,
        })
    }

    /// The event's decisions, after the ends that came due before it. `Ok(Err(_))` is a
    /// refused event (reported as a bad line; it moves no clock); `Err(_)` a store that
    /// stopped answering.
    fn observe(
        &mut self,
        event: &Event<'_>,
    ) -> anyhow::Result<Result<Vec<DecisionEvent>, EventError>> {
        if let Err(why) = self.rules.resolve(event) {
            return Ok(Err(why));
        }
        if event.at > self.clock.now() {
            self.clock.set(event.at);
        }
        let (backend, rules) = (&self.backend, &self.rules);
        self.rt.block_on(async {
            let mut out = backend.sweep().await?.ends;
            match backend.observe(event, false).await {
                Ok(v) => {
                    rules.run_actions(&v.actions);
                    out.extend(v.decisions);
                }
                Err(BackendError::Event(why)) => return Ok(Err(why)),
                Err(e) => return Err(e.into()),
            }
            Ok(Ok(out))
        })
    }

    /// The input is over: the clock stops at the last event; the pending ends.
    fn finish(&mut self) -> anyhow::Result<Vec<DecisionEvent>> {
        Ok(self.rt.block_on(self.backend.finish())?)
    }
}

fn current_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Runs the script at `file` (stdin if `None` or `-`) under the configuration at `config`,
/// in memory or, with `scratch_store`, on that Redis (emptied first).
#[allow(clippy::print_stderr)] // malformed lines are reported on stderr by design
pub(crate) fn run(
    config: &Path,
    file: Option<&Path>,
    format: DecisionFormat,
    scratch_store: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let rules = setup::ruleset(&setup::load_config(config)?)?;
    let (origin, input): (String, Box<dyn BufRead>) = match file {
        None => ("<stdin>".into(), Box::new(io::stdin().lock())),
        Some(p) if p == Path::new("-") => ("<stdin>".into(), Box::new(io::stdin().lock())),
        Some(p) => {
            let f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
            (
                PathBuf::from(p).display().to_string(),
                Box::new(BufReader::new(f)),
            )
        }
    };
    // Event time drives the engine: the clock never runs ahead of the newest event.
    let mut decider = match scratch_store {
        None => Decider::memory(Arc::new(rules))?,
        Some(url) => Decider::scratch_store(url, Arc::new(rules))?,
    };
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut lines = BoundedLines::new(input, MAX_LINE);
    let mut number = 0usize;
    let mut malformed = 0usize;
    let mut report = |number: usize, why: &str| {
        malformed += 1;
        if malformed <= MAX_REPORTED {
            eprintln!("{origin}:{number}: {why}");
        }
    };
    while let Some(line) = lines
        .next_line()
        .with_context(|| format!("reading {origin}"))?
    {
        number += 1;
        let text = match line {
            BoundedLine::Line(bytes) => match std::str::from_utf8(bytes) {
                Ok(t) => t,
                Err(_) => {
                    report(number, "not UTF-8");
                    continue;
                }
            },
            BoundedLine::TooLong => {
                report(number, &format!("line longer than {MAX_LINE} bytes"));
                continue;
            }
        };
        let event = match script::parse(text) {
            Ok(Some(e)) => e,
            Ok(None) => continue,
            Err(why) => {
                report(number, &why);
                continue;
            }
        };
        let ev = Event::new(event.token, event.metric, event.at).with_attrs(&event.attrs);
        match decider.observe(&ev)? {
            Ok(decisions) => {
                for d in &decisions {
                    write_decision(&mut out, d, format)?;
                }
            }
            Err(why) => report(number, &why.to_string()),
        }
    }
    for d in &decider.finish()? {
        write_decision(&mut out, d, format)?;
    }
    out.flush()?;
    if malformed > MAX_REPORTED {
        eprintln!(
            "{origin}: … and {} more malformed line(s)",
            malformed - MAX_REPORTED
        );
    }
    if malformed > 0 {
        eprintln!("{origin}: {malformed} malformed line(s) skipped");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
