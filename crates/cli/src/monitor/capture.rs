//! Packet sources for the monitor: live capture on an interface and pcap files, through
//! banhammer-capture.

#[cfg(feature = "capture")]
pub(super) use pcap::open;

/// Without libpcap, a clear error instead of the capture.
#[cfg(not(feature = "capture"))]
pub(super) fn open(
    _opts: &super::MonitorOptions,
) -> anyhow::Result<Box<dyn super::sources::Source>> {
    anyhow::bail!(
        "this banhammer was built without packet capture: use --log FILE, or rebuild with \
         `cargo install --path crates/cli --features capture` (needs libpcap-dev)"
    )
}

#[cfg(feature = "capture")]
mod pcap {
    //! The libpcap sources.

    use std::path::PathBuf;

    use anyhow::Context;
    use banhammer_capture::{
        open_file, open_live, FileCapture, KernelStats, Limits, LiveCapture, Seen,
    };
    use banhammer_core::Timestamp;
    use banhammer_monitor::{Hit, Observation, Reply};

    use super::super::sources::{shown, Source, SourceState};
    use super::super::MonitorOptions;

    /// What a live capture keeps without `--filter`: the ports where HTTP is usually spoken.
    const LIVE_FILTER: &str = "tcp port 80 or tcp port 8080";

    /// Opens `--pcap FILE` when given (with `--filter` if given: a file is read whole
    /// otherwise), or a live capture on `--interface` with `--filter` or [`LIVE_FILTER`].
    pub(crate) fn open(opts: &MonitorOptions) -> anyhow::Result<Box<dyn Source>> {
        if let Some(path) = &opts.pcap {
            let mut capture = open_file(path, Limits::default())?;
            if let Some(filter) = &opts.filter {
                capture
                    .set_filter(filter)
                    .with_context(|| format!("monitor --pcap {}", path.display()))?;
            }
            return Ok(Box::new(PcapReplay {
                capture,
                path: path.clone(),
                seen: Vec::new(),
            }));
        }
        let filter = opts.filter.as_deref().unwrap_or(LIVE_FILTER);
        let capture = open_live(&opts.interface, filter, Limits::default())
            .with_context(|| format!("monitor --interface {}", opts.interface))?;
        // Tells the user (and tests) that packets are counted from now on; before a TUI takes
        // the screen, so it is seen only in plain and JSON modes.
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "banhammer monitor: capturing on {} (filter {:?}, link type {:?})",
                opts.interface,
                filter,
                capture.link_type()
            );
        }
        Ok(Box::new(LiveSource {
            capture,
            seen: Vec::new(),
            kernel: KernelStats::default(),
        }))
    }

    /// Whole seconds of a packet time in microseconds (floored, also before 1970).
    fn seconds(time_us: i64) -> Timestamp {
        Timestamp::from_unix(time_us.div_euclid(1_000_000))
    }

    /// A request or response seen on the wire as the monitor's observation. An IPv4-mapped
    /// client (`::ffff:203.0.113.9`, behind a dual-stack proxy or translator) is its IPv4
    /// address, so that one client is counted once whichever way it came.
    fn observation(seen: Seen) -> Observation {
        match seen {
            Seen::Request(r) => Observation::Request(Hit {
                time: seconds(r.time_us),
                client: r.client.to_canonical(),
                host: r.host.as_deref().map(shown),
                method: Some(shown(&r.method)),
                path: Some(shown(&r.target)),
            }),
            Seen::Response(r) => Observation::Response(Reply {
                time: seconds(r.time_us),
                status: r.status,
                bytes: r.bytes,
            }),
        }
    }

    /// A pcap or pcapng file, replayed in packet time.
    struct PcapReplay {
        capture: FileCapture,
        path: PathBuf,
        seen: Vec<Seen>,
    }

    impl Source for PcapReplay {
        fn poll(&mut self, out: &mut Vec<Observation>) -> anyhow::Result<SourceState> {
            let read = self.capture.next_batch(&mut self.seen);
            // What the packets before an error (a file cut short) completed still counts: the
            // run reports it before the error.
            out.extend(self.seen.drain(..).map(observation));
            let more = read.with_context(|| format!("monitor --pcap {}", self.path.display()))?;
            Ok(if more {
                SourceState::More
            } else {
                SourceState::Done
            })
        }

        fn live(&self) -> bool {
            false
        }

        fn counters(&self) -> (u64, u64) {
            (self.capture.counters().packets, 0)
        }
    }

    /// A live capture, in wall time.
    struct LiveSource {
        capture: LiveCapture,
        seen: Vec<Seen>,
        kernel: KernelStats,
    }

    impl Source for LiveSource {
        fn poll(&mut self, out: &mut Vec<Observation>) -> anyhow::Result<SourceState> {
            // Waits up to the capture's read timeout (100 ms) itself, so never idle here.
            self.capture.next_batch(&mut self.seen)?;
            out.extend(self.seen.drain(..).map(observation));
            self.kernel = self.capture.stats()?;
            Ok(SourceState::More)
        }

        fn live(&self) -> bool {
            true
        }

        fn counters(&self) -> (u64, u64) {
            // Packets we read (the kernel's own count sees each loopback packet twice, going out
            // and coming in), and every drop: ours (buffer full) and the interface's.
            (
                self.capture.counters().packets,
                self.kernel.dropped + self.kernel.if_dropped,
            )
        }
    }
}
