//! The monitor's sources behind one trait: access logs (replayed or followed), and packets
//! (live capture, pcap files) through the capture crate.

use std::path::Path;

use anyhow::{anyhow, Context};
use banhammer_accesslog::{
    input, parse, BoundedLine, BoundedLines, FollowedLine, Follower, LineError, LogFormat, MAX_LINE,
};
use banhammer_monitor::{Hit, Observation, Reply};

use super::MonitorOptions;

/// What a poll found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SourceState {
    /// Observations came and more may be waiting.
    More,
    /// Nothing for now.
    Idle,
    /// The input is over (replays).
    Done,
}

/// Something that yields HTTP observations.
pub(super) trait Source {
    /// Appends what is available now.
    fn poll(&mut self, out: &mut Vec<Observation>) -> anyhow::Result<SourceState>;
    /// Whether time is wall time (live) rather than the observations' own.
    fn live(&self) -> bool;
    /// Packets seen and dropped by the kernel (0 for logs).
    fn counters(&self) -> (u64, u64) {
        (0, 0)
    }
}

pub(super) fn open(opts: &MonitorOptions) -> anyhow::Result<Box<dyn Source>> {
    if let Some(log) = &opts.log {
        let format =
            LogFormat::from_setting(&opts.log_format).map_err(|e| anyhow!("--log-format: {e}"))?;
        return if opts.replay {
            Ok(Box::new(LogReplay::open(log, format)?))
        } else {
            Ok(Box::new(LogFollow {
                follower: Follower::new(log, MAX_LINE).from_end(),
                format,
                malformed: 0,
            }))
        };
    }
    super::capture::open(opts)
}

/// A parsed line as a request and, when it has a status, a response.
fn line_observations(
    bytes: &[u8],
    format: &LogFormat,
    out: &mut Vec<Observation>,
) -> Result<(), LineError> {
    let l = parse(bytes, format)?;
    out.push(Observation::Request(Hit {
        time: l.time,
        client: l.client,
        host: l.host.map(str::to_owned),
        method: l.method.map(str::to_owned),
        path: l.path.map(str::to_owned),
    }));
    if let Some(status) = l.status {
        out.push(Observation::Response(Reply {
            time: l.time,
            status,
            bytes: l.bytes,
        }));
    }
    Ok(())
}

/// Malformed lines reported in full; after that only counted.
const MAX_REPORTED: u64 = 10;

#[allow(clippy::print_stderr)] // malformed lines are reported on stderr
fn report(origin: &str, number: u64, why: &LineError, malformed: &mut u64) {
    if matches!(why, LineError::Header) {
        return;
    }
    *malformed += 1;
    if *malformed <= MAX_REPORTED {
        eprintln!("{origin}:{number}: {why}");
    }
}

/// A log read from its start, in event time.
struct LogReplay {
    origin: String,
    lines: BoundedLines<Box<dyn std::io::BufRead + Send>>,
    format: LogFormat,
    number: u64,
    malformed: u64,
}

impl LogReplay {
    fn open(path: &Path, format: LogFormat) -> anyhow::Result<Self> {
        let input = input::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(LogReplay {
            origin: path.display().to_string(),
            lines: BoundedLines::new(input.reader, MAX_LINE),
            format,
            number: 0,
            malformed: 0,
        })
    }
}

impl Source for LogReplay {
    fn poll(&mut self, out: &mut Vec<Observation>) -> anyhow::Result<SourceState> {
        for _ in 0..4096 {
            let Some(line) = self
                .lines
                .next_line()
                .with_context(|| format!("reading {}", self.origin))?
            else {
                return Ok(SourceState::Done);
            };
            self.number += 1;
            let result = match line {
                BoundedLine::Line(bytes) => line_observations(bytes, &self.format, out),
                BoundedLine::TooLong => Err(LineError::TooLong),
            };
            if let Err(why) = result {
                report(&self.origin, self.number, &why, &mut self.malformed);
            }
        }
        Ok(SourceState::More)
    }

    fn live(&self) -> bool {
        false
    }
}

/// A log followed like `tail -F`, in wall time.
struct LogFollow {
    follower: Follower,
    format: LogFormat,
    malformed: u64,
}

impl Source for LogFollow {
    fn poll(&mut self, out: &mut Vec<Observation>) -> anyhow::Result<SourceState> {
        let mut lines = Vec::new();
        let more = self.follower.poll(&mut lines, 1 << 20)?;
        let origin = self.follower.path().display().to_string();
        for line in &lines {
            let (number, result) = match line {
                FollowedLine::Line(n, bytes) => (*n, line_observations(bytes, &self.format, out)),
                FollowedLine::TooLong(n) => (*n, Err(LineError::TooLong)),
            };
            if let Err(why) = result {
                report(&origin, number, &why, &mut self.malformed);
            }
        }
        Ok(if more || !lines.is_empty() {
            SourceState::More
        } else {
            SourceState::Idle
        })
    }

    fn live(&self) -> bool {
        true
    }
}
