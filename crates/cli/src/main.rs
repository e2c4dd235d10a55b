//! The `banhammer` command: wiring only; the work is in the library crates.

mod check;
mod console;
mod eval;
mod manual;
mod monitor;
mod operator;
mod replay;
mod script;
mod serve;
mod setup;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use banhammer_config::AccessLogSettings;
use banhammer_core::Seconds;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

/// mimalloc: the service allocates per request, and glibc's malloc showed up at 12% of a
/// loaded server's profile (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Decide on this Redis store (`redis://…`, `redis+cluster://…`, `rediss` for TLS)
        /// instead of in memory, to compare the two. It must be a scratch instance: every key on it is deleted first.
        #[arg(long, value_name = "URL")]
        scratch_store: Option<String>,
    },
    /// Validates a configuration file and reports every problem with its line.
    Check {
        /// The configuration file (TOML).
        config: PathBuf,
    },
    /// Replays access logs in event time and prints `<unix_seconds>,BAN|UNBAN,<ip>` lines.
    ///
    /// The clock is the newest line's time; at the end of input it stops and pending UNBANs
    /// are printed. Lines are counted in time order: a line may be logged up to --max-delay
    /// behind the newest. Plain or gzip files, or `-` for standard input. Malformed and late
    /// lines are reported on stderr as `file:line: why`; malformed ones are skipped.
    Replay {
        /// The configuration file (TOML), with `[accesslog]` and `[metrics]`.
        #[arg(long, short)]
        config: PathBuf,
        /// Log files, oldest first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
        /// How far behind the newest line a line may be logged and still be counted in order
        /// (overrides `[accesslog] max_delay`, default 60 s): seconds, or e.g. `2m`.
        #[arg(long, value_name = "DURATION", value_parser = max_delay)]
        max_delay: Option<Seconds>,
    },
    /// Serves the engine over HTTP, with the credential-stuffing detector `PUT /detect`.
    ///
    /// Without a configuration it runs the detector alone, on the embedded default: state in
    /// memory, decisions in a SQLite file. Prints the address it listens on; stops on SIGTERM or
    /// SIGINT after the requests in flight are answered.
    Serve {
        /// The configuration file (TOML). Optional.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Address to listen on (overrides `[serve] listen`; port 0 picks a free one).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// The SQLite decision store (overrides `[serve] db`).
        #[arg(long)]
        db: Option<PathBuf>,
        /// Share the state with other nodes through Redis: `redis://host:port` or
        /// `redis+cluster://h1:p1,h2:p2,…`, `rediss://…` or `rediss+cluster://…` over TLS
        /// (overrides `[serve] store`).
        #[arg(long)]
        store: Option<String>,
        /// With TLS, the PEM file of the CA that signs the Redis servers' certificates
        /// (overrides `[serve] store_ca`; default: the system's roots).
        #[arg(long)]
        store_ca: Option<PathBuf>,
        /// Serve the admin routes without a token on a non-loopback address (sets
        /// `[serve] insecure_open_admin`). Without it, serve refuses to start there.
        #[arg(long)]
        insecure_open_admin: bool,
        /// How logs are written to stderr.
        #[arg(long, value_enum, default_value_t = LogOutput::Text)]
        log_format: LogOutput,
    },
    /// Watches HTTP traffic: busiest sections and statistics every interval, and an alert when
    /// traffic stays high.
    ///
    /// Sources: live capture (default; needs root or CAP_NET_RAW), a pcap file (--pcap), or an
    /// access log (--log, followed like `tail -F`, or replayed in event time with --replay).
    /// A terminal UI on a terminal (quit with q), plain reports otherwise (or --plain), or JSON
    /// lines (--json).
    Monitor {
        /// Interface to capture on.
        #[arg(long, short, default_value = "any")]
        interface: String,
        /// BPF filter (tcpdump syntax) for the packets read: live, "tcp port 80 or tcp port
        /// 8080" unless given; a pcap file is read whole unless given.
        #[arg(long, conflicts_with = "log")]
        filter: Option<String>,
        /// Read packets from this pcap or pcapng file instead, in packet time.
        #[arg(long, conflicts_with = "log")]
        pcap: Option<PathBuf>,
        /// Read an access log instead.
        #[arg(long)]
        log: Option<PathBuf>,
        /// The log's format: common, combined, csv, or an nginx log_format string; `auto` reads
        /// a log whose first line is the CSV export's header as csv, any other as combined.
        #[arg(long, default_value = "auto")]
        log_format: String,
        /// Replay the log from its start in event time instead of following it.
        #[arg(long, requires = "log")]
        replay: bool,
        /// With --replay: how far behind the newest line a line may be logged and still be
        /// counted in order (default 60 s): seconds, or e.g. `2m`.
        #[arg(long, value_name = "DURATION", value_parser = max_delay, requires = "replay")]
        max_delay: Option<Seconds>,
        /// Seconds between reports.
        #[arg(long, default_value_t = 10)]
        interval: u64,
        /// Alert when requests over 2 minutes average more than this many per second (a
        /// decimal such as 0.5; at least 0.008334, more than one request in 2 minutes).
        #[arg(long, default_value = "10")]
        threshold: banhammer_monitor::PerSecond,
        /// Rows in top lists.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Plain text reports even on a terminal.
        #[arg(long)]
        plain: bool,
        /// JSON lines: one per report and per alert.
        #[arg(long, conflicts_with = "plain")]
        json: bool,
        /// Stop after this many seconds of the monitor's clock.
        #[arg(long)]
        duration: Option<u64>,
        /// Also serve the live web console (traffic, requests/s, alerts) on this address, e.g.
        /// 127.0.0.1:8081; its page has no login, so keep it on loopback (docs/console.md).
        #[arg(long, value_name = "ADDR")]
        web: Option<std::net::SocketAddr>,
    },
    /// Lists the active bans: since when, until when, what is left, who started each (a
    /// rule or an operator) and why.
    ///
    /// From a running `serve` (--server URL, its admin API) or from the SQLite file of a
    /// `watch` or a `serve` (--db FILE). With --all, the file's decision log instead.
    Bans {
        #[command(flatten)]
        target: operator::Target,
        /// The decision log instead of the active bans (--db only).
        #[arg(long)]
        all: bool,
        /// With --all: the latest this many log rows.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Output format.
        #[arg(long, value_enum, default_value_t = operator::ListFormat::Table)]
        format: operator::ListFormat,
    },
    /// Bans a token or client address by hand for a while, with a reason, in a running
    /// `serve` (--server URL) or `watch` (--db FILE, its state file).
    ///
    /// An address is banned as its client is counted: an IPv6 address by its network at
    /// `ipv6_prefix` (/64 unless configured). A banned token's ban is carried further if this
    /// reaches further, never shortened. The ban is stored like any other (it survives a
    /// restart, and counts as an offence for tiers that escalate); `watch` runs its sinks for
    /// it. Refused for clients of the allow list (`[serve] allow`, `[accesslog] ignore`).
    Ban {
        /// The token or client address.
        token: String,
        /// How long: seconds, or a duration such as 1h, 30m, 1d, "1h 30m".
        #[arg(long = "for", value_name = "DURATION", value_parser = operator::duration)]
        duration: Seconds,
        /// Why: kept with the ban and shown by `banhammer bans`.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        target: operator::Target,
    },
    /// Ends a token's ban now, in a running `serve` (--server URL) or `watch` (--db FILE).
    ///
    /// Exit code 1 if it was not banned.
    Unban {
        /// The token or client address.
        token: String,
        #[command(flatten)]
        target: operator::Target,
    },
    /// Follows an access log like `tail -F` and sends each decision to the configured sinks.
    ///
    /// Survives rotation (rename or copy-truncate) and a file that does not exist yet. Active
    /// bans and the read position are kept in a SQLite state file, so a restart neither
    /// forgets a ban nor counts a line twice. Stops on SIGTERM or SIGINT.
    Watch {
        /// The configuration file (TOML), with `[accesslog]`, `[metrics]` and `[watch]`.
        #[arg(long, short)]
        config: PathBuf,
        /// The log file to follow.
        file: PathBuf,
        /// Where time comes from: the wall clock, or the newest line's time.
        #[arg(long, value_enum, default_value_t = watch::ClockKind::Wall)]
        clock: watch::ClockKind,
        /// With `--clock event`: how far behind the newest line a line may be logged and still
        /// be counted in order (overrides `[accesslog] max_delay`, default 60 s).
        #[arg(long, value_name = "DURATION", value_parser = max_delay)]
        max_delay: Option<Seconds>,
        /// Read the file from its start (by default only new lines, like `tail -F`).
        #[arg(long)]
        from_start: bool,
        /// The SQLite state file (overrides `[watch] state`).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Append CSV records here (overrides `[watch] csv`).
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Append JSON-lines records here (overrides `[watch] jsonl`).
        #[arg(long)]
        jsonl: Option<PathBuf>,
        /// Serve Prometheus metrics (decisions, bans, tokens) at http://ADDR/metrics.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<std::net::SocketAddr>,
        /// How logs are written to stderr.
        #[arg(long, value_enum, default_value_t = LogOutput::Text)]
        log_format: LogOutput,
        /// Also serve the live web console (bans and decisions, read only) on this address,
        /// e.g. 127.0.0.1:8082; it has no login, so keep it on loopback (docs/console.md).
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
    },
    /// Prints a shell completion script (bash, zsh, fish, elvish, powershell) to standard
    /// output, e.g. `banhammer completions bash > /etc/bash_completion.d/banhammer`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Writes man pages (banhammer.1 and one per subcommand, banhammer-serve.1 …) into a
    /// directory, e.g. `banhammer man /usr/local/share/man/man1`.
    Man {
        /// The directory (created if missing).
        dir: PathBuf,
    },
}

/// `--max-delay`'s value, read as `[accesslog] max_delay` is.
fn max_delay(text: &str) -> Result<Seconds, String> {
    AccessLogSettings::parse_max_delay(text)
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

/// How `serve` and `watch` write their logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogOutput {
    /// One line of text per event; coloured only on a terminal, and never with `NO_COLOR`.
    Text,
    /// One JSON object per line (timestamp, level, target, fields), for log shippers.
    Json,
}

/// Logs go to stderr; `RUST_LOG` filters them (default `info`). Colour codes only reach a
/// terminal: a file, a pipe or journald gets plain text.
fn init_logging(output: LogOutput) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match output {
        LogOutput::Json => builder.json().init(),
        LogOutput::Text => {
            // no-color.org: set and not empty.
            let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
            builder
                .with_ansi(std::io::stderr().is_terminal() && !no_color)
                .init();
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
            scratch_store,
        } => eval::run(
            &config,
            file.as_deref(),
            format.into(),
            scratch_store.as_deref(),
        ),
        Command::Check { config } => check::run(&config),
        Command::Replay {
            config,
            files,
            format,
            max_delay,
        } => replay::run(&config, &files, format.into(), max_delay),
        Command::Serve {
            config,
            listen,
            db,
            store,
            store_ca,
            insecure_open_admin,
            log_format,
        } => {
            init_logging(log_format);
            serve::run(&serve::ServeOptions {
                config,
                listen,
                db,
                store,
                store_ca,
                insecure_open_admin,
            })
        }
        Command::Bans {
            target,
            all,
            limit,
            format,
        } => operator::list(&target, all, limit, format),
        Command::Ban {
            token,
            duration,
            reason,
            target,
        } => operator::ban(&target, &token, duration, reason.as_deref()),
        Command::Unban { token, target } => operator::unban(&target, &token),
        Command::Completions { shell } => manual::completions(Cli::command(), shell),
        Command::Man { dir } => manual::man_pages(Cli::command(), &dir),
        Command::Monitor {
            interface,
            filter,
            pcap,
            log,
            log_format,
            replay,
            max_delay,
            interval,
            threshold,
            top,
            plain,
            json,
            duration,
            web,
        } => monitor::run(&monitor::MonitorOptions {
            interface,
            filter,
            pcap,
            log,
            log_format,
            replay,
            max_delay,
            interval,
            threshold,
            top,
            plain,
            json,
            duration,
            web,
        }),
        Command::Watch {
            config,
            file,
            clock,
            max_delay,
            from_start,
            state,
            csv,
            jsonl,
            metrics_listen,
            log_format,
            http,
        } => {
            init_logging(log_format);
            let opts = watch::WatchOptions {
                file,
                clock,
                max_delay,
                from_start,
                state,
                csv,
                jsonl,
                metrics_listen,
                http,
            };
            watch::run(&config, &opts)
        }
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
