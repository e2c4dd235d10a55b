//! `banhammer ban`, `unban` and `bans`: an operator acting on decisions by hand, as with
//! `fail2ban-client set JAIL banip|unbanip` and `cscli decisions add|delete|list`.
//!
//! Against a running `serve`, through its admin routes (`--server URL`, the bearer token from
//! `--token` or `BANHAMMER_ADMIN_TOKEN`). Against a running `watch`, through its state file
//! (`--db FILE`): the command is queued there, the watcher applies it at its next step (a
//! quarter of a second by default), stores it and runs its sinks for it, and writes the
//! outcome, which this command waits for. `bans --db` reads either's file directly.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use banhammer_core::{Clock, Seconds, SystemClock, Timestamp};
use banhammer_http::{
    AdminClient, BanDuration, BanEntry, BanOutcome, BanRequest, BansResponse, ClientError,
    LogEntry, Origin,
};
use banhammer_sink::escape;
use banhammer_store_sqlite::{
    Command, CommandOutcome, CommandStatus, DecisionStore, StoredDecision,
};

/// The environment variable the admin token is read from when `--token` is not given.
const TOKEN_VAR: &str = "BANHAMMER_ADMIN_TOKEN";

/// How often a queued command's outcome is looked for.
const POLL: Duration = Duration::from_millis(100);

/// Where an operator's command goes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Target {
    /// A running `banhammer serve`, by its base URL (`http://127.0.0.1:8080`): its admin
    /// routes.
    #[arg(long, value_name = "URL", conflicts_with = "db")]
    pub(crate) server: Option<String>,
    /// With --server: the admin token (default: the BANHAMMER_ADMIN_TOKEN variable, which
    /// keeps it out of the process list).
    #[arg(long = "token", value_name = "TOKEN", requires = "server")]
    pub(crate) admin_token: Option<String>,
    /// The SQLite file of a `banhammer watch` (its `--state`): `ban` and `unban` queue the
    /// command there and wait for the watcher to apply it. `bans` reads the file of a
    /// `watch` or a `serve` directly.
    #[arg(long, value_name = "FILE")]
    pub(crate) db: Option<PathBuf>,
    /// With --db: how long to wait for the watcher to apply the command (seconds, or e.g.
    /// `30s`). If none does, the command stays queued for the next watcher on the file.
    #[arg(long, value_name = "DURATION", default_value = "10", value_parser = duration)]
    pub(crate) wait: Seconds,
}

/// A duration as the configuration reads one (`3600`, `1h`, `1h 30m`, `1d`).
pub(crate) fn duration(text: &str) -> Result<Seconds, String> {
    banhammer_config::parse_duration(text)
}

/// Where to send the command, or the error that says how to name it.
enum Place<'a> {
    Server(AdminClient),
    Db(&'a Path),
}

impl Target {
    fn place(&self) -> anyhow::Result<Place<'_>> {
        match (&self.server, &self.db) {
            (Some(url), _) => {
                let token = self
                    .admin_token
                    .clone()
                    .or_else(|| std::env::var(TOKEN_VAR).ok().filter(|t| !t.is_empty()));
                Ok(Place::Server(AdminClient::new(url, token)?))
            }
            (None, Some(db)) => Ok(Place::Db(db)),
            (None, None) => Err(anyhow!(
                "say where: --server URL (a running `banhammer serve`) or --db FILE (the \
                 state file of a running `banhammer watch`)"
            )),
        }
    }
}

/// One call to a running `serve`, on a runtime of its own; a refused admin token says where
/// the token comes from.
fn block_on<T>(
    f: impl std::future::Future<Output = Result<T, ClientError>>,
) -> anyhow::Result<Result<T, ClientError>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match rt.block_on(f) {
        Err(e @ ClientError::Refused { status: 401, .. }) => Err(anyhow!(
            "{e} (give it with --token or the {TOKEN_VAR} variable)"
        )),
        other => Ok(other),
    }
}

/// `banhammer ban TOKEN --for DURATION [--reason TEXT]`.
pub(crate) fn ban(
    target: &Target,
    token: &str,
    duration: Seconds,
    reason: Option<&str>,
) -> anyhow::Result<ExitCode> {
    match target.place()? {
        Place::Server(client) => {
            let request = BanRequest {
                token: token.to_owned(),
                duration: BanDuration::Seconds(duration.get()),
                reason: reason.map(str::to_owned),
            };
            let answer = match block_on(client.ban(&request))? {
                Ok(answer) => answer,
                // The allow list: a refusal to report, not a failure to reach the service.
                Err(ClientError::Refused {
                    status: 409,
                    message,
                }) => {
                    return report(&CommandOutcome {
                        status: CommandStatus::Refused,
                        token: token.to_owned(),
                        until: None,
                        detail: Some(message),
                    })
                }
                Err(e) => return Err(e.into()),
            };
            let b = &answer.ban;
            let status = match answer.outcome {
                BanOutcome::Banned => CommandStatus::Banned,
                BanOutcome::Extended => CommandStatus::Extended,
                BanOutcome::Unchanged => CommandStatus::Unchanged,
            };
            report(&CommandOutcome {
                status,
                token: b.token.clone(),
                until: Some(Timestamp::from_unix(b.until)),
                detail: None,
            })
        }
        Place::Db(db) => queued(
            target,
            db,
            &Command::Ban {
                token: token.to_owned(),
                duration,
                reason: reason.map(str::to_owned),
            },
        ),
    }
}

/// `banhammer unban TOKEN`.
pub(crate) fn unban(target: &Target, token: &str) -> anyhow::Result<ExitCode> {
    match target.place()? {
        Place::Server(client) => {
            let outcome = match block_on(client.unban(token))?? {
                Some(u) => CommandOutcome {
                    status: CommandStatus::Unbanned,
                    token: u.token,
                    until: Some(Timestamp::from_unix(u.unbanned_at)),
                    detail: None,
                },
                None => CommandOutcome {
                    status: CommandStatus::NotBanned,
                    token: token.to_owned(),
                    until: None,
                    detail: None,
                },
            };
            report(&outcome)
        }
        Place::Db(db) => queued(
            target,
            db,
            &Command::Unban {
                token: token.to_owned(),
            },
        ),
    }
}

/// Queues `command` in the watcher's file and waits for its outcome.
#[allow(clippy::print_stderr)] // the command's own report
fn queued(target: &Target, db: &Path, command: &Command) -> anyhow::Result<ExitCode> {
    let mut store = open_existing(db)?;
    let id = store
        .queue_command(command)
        .with_context(|| format!("queueing the command in {}", db.display()))?;
    // Counted in polls rather than read from a clock: the wait only bounds how long to look.
    let polls = target.wait.get().saturating_mul(10).max(1);
    for _ in 0..polls {
        if let Some(outcome) = store.command_outcome(id)? {
            store.forget_command(id)?;
            return report(&outcome);
        }
        std::thread::sleep(POLL);
    }
    eprintln!(
        "banhammer: no watcher applied the command within {}: is `banhammer watch` running \
         with this state file ({})? It stays queued for the next watcher on it.",
        target.wait,
        db.display()
    );
    Ok(ExitCode::from(1))
}

/// Prints what a ban or an unban did; exit code 1 when it was refused or there was no ban
/// to end.
fn report(o: &CommandOutcome) -> anyhow::Result<ExitCode> {
    let now = SystemClock.now();
    let token = escape(&o.token);
    let until = |o: &CommandOutcome| {
        o.until.map_or_else(String::new, |u| {
            format!("until {} ({} left)", time(u), left(u, now))
        })
    };
    let (line, ok) = match o.status {
        CommandStatus::Banned => (format!("banned {token} {}", until(o)), true),
        CommandStatus::Extended => (
            format!("{token} was banned already; its ban now lasts {}", until(o)),
            true,
        ),
        CommandStatus::Unchanged => (
            format!(
                "{token} is banned further already, {}: nothing changed",
                until(o)
            ),
            true,
        ),
        CommandStatus::Unbanned => (format!("unbanned {token}"), true),
        CommandStatus::NotBanned => (format!("{token} is not banned"), false),
        CommandStatus::Refused => (
            format!(
                "refused: {}",
                escape(o.detail.as_deref().unwrap_or("no reason given"))
            ),
            false,
        ),
    };
    emit(format!("{line}\n").as_bytes())?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// How `banhammer bans` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ListFormat {
    /// Aligned columns, times in UTC, what is left of each ban.
    Table,
    /// The JSON of `GET /v1/bans` (`--all`: an array of log rows).
    Json,
}

/// `banhammer bans`: the active bans of a running `serve` or of a state file, or with `--all`
/// a file's decision log (its latest `limit` rows).
pub(crate) fn list(
    target: &Target,
    all: bool,
    limit: usize,
    format: ListFormat,
) -> anyhow::Result<ExitCode> {
    let now = SystemClock.now();
    let bans = match target.place()? {
        Place::Server(_) if all => {
            return Err(anyhow!(
                "--all reads a decision log: give its file with --db (serve's `[serve] db`)"
            ));
        }
        Place::Server(client) => block_on(client.bans())??,
        Place::Db(db) => {
            let store = open_existing(db)?;
            if all {
                let rows = store.history(None, limit)?;
                print_log(&rows, format)?;
                return Ok(ExitCode::SUCCESS);
            }
            store
                .active_bans(now)?
                .iter()
                .map(|b| entry(b, now))
                .collect()
        }
    };
    print_bans(&bans, now, format)?;
    Ok(ExitCode::SUCCESS)
}

/// A stored active ban as the API lists one.
fn entry(b: &StoredDecision, now: Timestamp) -> BanEntry {
    BanEntry {
        token: b.token.clone(),
        origin: if b.is_manual() {
            Origin::Manual
        } else {
            Origin::Rule
        },
        rule: b.rule.clone(),
        tier: b.tier,
        value: b.value,
        from: b.from.as_unix(),
        until: b.until.as_unix(),
        remaining: u64::try_from(b.until.as_unix().saturating_sub(now.as_unix())).unwrap_or(0),
        reason: b.reason.clone(),
    }
}

fn open_existing(db: &Path) -> anyhow::Result<DecisionStore> {
    if !db.exists() {
        return Err(anyhow!("{}: no such state file", db.display()));
    }
    DecisionStore::open(db).with_context(|| format!("opening {}", db.display()))
}

/// Active bans as a table or as JSON.
fn print_bans(bans: &[BanEntry], now: Timestamp, format: ListFormat) -> anyhow::Result<()> {
    let mut out = Vec::new();
    bans_text(&mut out, bans, now, format)?;
    emit(&out)
}

fn bans_text(
    out: &mut Vec<u8>,
    bans: &[BanEntry],
    now: Timestamp,
    format: ListFormat,
) -> anyhow::Result<()> {
    if format == ListFormat::Json {
        let all = BansResponse {
            bans: bans.to_vec(),
        };
        writeln!(out, "{}", all.to_json())?;
        return Ok(());
    }
    if bans.is_empty() {
        writeln!(out, "no active bans")?;
        return Ok(());
    }
    // Tokens, rule names of families and reasons are others' text: escaped, so that a row
    // stays one row and the terminal gets no escape sequence.
    let rows: Vec<[String; 7]> = bans
        .iter()
        .map(|b| {
            let (origin, rule) = match b.origin {
                Origin::Manual => ("manual", "-".to_owned()),
                Origin::Rule => ("rule", format!("{} tier {}", escape(&b.rule), b.tier)),
            };
            let until = Timestamp::from_unix(b.until);
            [
                escape(&b.token).to_string(),
                origin.to_owned(),
                rule,
                time(Timestamp::from_unix(b.from)),
                time(until),
                left(until, now),
                b.reason
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), |r| escape(r).to_string()),
            ]
        })
        .collect();
    table(
        out,
        [
            "TOKEN", "ORIGIN", "RULE", "SINCE", "UNTIL", "LEFT", "REASON",
        ],
        &rows,
    )
}

/// A decision log as a table or as JSON.
fn print_log(rows: &[StoredDecision], format: ListFormat) -> anyhow::Result<()> {
    let mut out = Vec::new();
    log_text(&mut out, rows, format)?;
    emit(&out)
}

fn log_text(out: &mut Vec<u8>, rows: &[StoredDecision], format: ListFormat) -> anyhow::Result<()> {
    if format == ListFormat::Json {
        let entries: Vec<LogEntry> = rows
            .iter()
            .map(|r| LogEntry {
                at: r.at.as_unix(),
                verb: r.verb.clone(),
                token: r.token.clone(),
                rule: r.rule.clone(),
                tier: r.tier,
                value: r.value,
                from: r.from.as_unix(),
                until: r.until.as_unix(),
                reason: r.reason.clone(),
            })
            .collect();
        writeln!(out, "{}", LogEntry::to_json(&entries))?;
        return Ok(());
    }
    let rows: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                time(r.at),
                escape(&r.verb).to_string(),
                escape(&r.token).to_string(),
                if r.is_manual() {
                    "manual".to_owned()
                } else {
                    format!("{} tier {}", escape(&r.rule), r.tier)
                },
                time(r.until),
                r.reason
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), |x| escape(x).to_string()),
            ]
        })
        .collect();
    table(
        out,
        ["AT", "VERB", "TOKEN", "RULE", "UNTIL", "REASON"],
        &rows,
    )
}

/// Writes `bytes` to standard output; a reader that went away (`| head`) is no failure.
#[allow(clippy::print_stdout)] // the command's output
fn emit(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn table<const N: usize>(
    out: &mut impl Write,
    head: [&str; N],
    rows: &[[String; N]],
) -> anyhow::Result<()> {
    let mut widths = head.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: [&str; N]| -> std::io::Result<()> {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(head)?;
    for row in rows {
        line(std::array::from_fn(|i| row[i].as_str()))?;
    }
    Ok(())
}

/// A time in UTC, to the second: `2026-11-27T02:42:05Z`.
fn time(t: Timestamp) -> String {
    match u64::try_from(t.as_unix()) {
        Ok(secs) => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
        }
        Err(_) => t.to_string(),
    }
}

/// What is left until `until`, at most two units: `59m 58s`, `2h 5m`, `3d 4h`, `0s`.
fn left(until: Timestamp, now: Timestamp) -> String {
    let secs = u64::try_from(until.as_unix().saturating_sub(now.as_unix())).unwrap_or(0);
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = secs;
    for (size, name) in units {
        if rest >= size || (parts.is_empty() && size == 1) {
            parts.push(format!("{}{name}", rest / size));
            rest %= size;
        } else if !parts.is_empty() {
            // A zero in the middle still counts as a unit shown (`2h 0m`).
            parts.push(format!("0{name}"));
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_left_shows_two_units_at_most() {
        let at = |s: i64| Timestamp::from_unix(s);
        assert_eq!(left(at(3598), at(0)), "59m 58s");
        assert_eq!(left(at(7200), at(0)), "2h 0m");
        assert_eq!(left(at(7500), at(0)), "2h 5m");
        assert_eq!(left(at(90_061), at(0)), "1d 1h");
        assert_eq!(left(at(42), at(0)), "42s");
        assert_eq!(left(at(0), at(10)), "0s");
    }

    #[test]
    fn times_are_utc_to_the_second() {
        assert_eq!(
            time(Timestamp::from_unix(1_700_000_000)),
            "2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn a_table_aligns_its_columns_and_leaves_the_last_unpadded() {
        let mut out = Vec::new();
        table(
            &mut out,
            ["A", "BB", "C"],
            &[["xyz".into(), "1".into(), "end".into()]],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A    BB  C\nxyz  1   end\n"
        );
    }
}
