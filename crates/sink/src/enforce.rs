//! Enforcement: what keeps a firewall in step with the bans. [`Enforcer`] is told of every
//! committed ban change and reconciled with the active bans; [`CommandSink`] runs the
//! configured commands for it.

use std::collections::HashSet;

use banhammer_core::{Change, DecisionEvent, DecisionView, Effect, Seconds, Timestamp, Token};

use crate::{CommandRunner, Escaped, Target};

/// A firewall kept in step with the bans. The caller tells it of every ban change once the
/// change is committed (watch after its SQLite step, serve on a thread of its own), and
/// reconciles it with every active ban at start and whenever changes may have been missed.
/// Only tokens that are addresses or prefixes ([`Target`]) reach the firewall.
pub trait Enforcer: Send {
    /// Applies a burst of committed decisions, in order: bans start, are extended (the ban's
    /// remaining time is then `until - at`) and end; other decisions are ignored.
    fn apply(&mut self, decisions: &[DecisionEvent]);

    /// Makes the firewall hold `bans`, every ban active at `now` (each until its `until`).
    fn reconcile(&mut self, bans: &[(Token, DecisionView)], now: Timestamp);

    /// Collects the work that has finished since (a command's exit), so that its failure is
    /// logged and counted without waiting for the next change.
    fn poll(&mut self) {}

    /// Waits for the work it still has running (at shutdown, or to count its failures).
    fn wait(&mut self) {}

    /// Firewall calls that failed so far (a command's non-zero exit, a refused transaction).
    fn failures(&self) -> u64;
}

/// The ban changes of a burst that a firewall needs, in order: an extension followed by any
/// later change of the same token is left out (that change carries it further or ends it).
pub(crate) fn ban_changes(decisions: &[DecisionEvent]) -> Vec<&DecisionEvent> {
    let mut later: HashSet<&str> = HashSet::new();
    let mut kept: Vec<&DecisionEvent> = decisions
        .iter()
        .rev()
        .filter(|d| d.effect == Effect::Block)
        .filter(|d| {
            let first_seen = later.insert(d.token.as_str());
            d.change != Change::Extend || first_seen
        })
        .collect();
    kept.reverse();
    kept
}

/// How long a ban starting or extended at `at` has to run: at least a second (a firewall
/// timeout of zero means "never" to some).
pub(crate) fn remaining(until: Timestamp, at: Timestamp) -> Seconds {
    Seconds::new(until.since(at).get().max(1))
}

/// Reads tokens as [`Target`]s; the first one that is not an address is logged, the rest only
/// counted (a rule on user ids would log every ban otherwise).
#[derive(Debug, Default)]
pub(crate) struct Targets {
    skipped: u64,
}

impl Targets {
    /// `token` as a target, or `None` (logged the first time) if it is not an address.
    pub(crate) fn of(&mut self, token: &str) -> Option<Target> {
        let target = Target::parse(token);
        if target.is_none() {
            self.skipped += 1;
            if self.skipped == 1 {
                tracing::info!(token = %Escaped(token), "A ban of a token that is not an IP address or prefix (at least /16 for IPv4, /32 for IPv6) makes no firewall change; further ones are not logged.");
            }
        }
        target
    }
}

/// The words of a command for one ban change, given the values of its placeholders (`ip`,
/// `token`, `family`, `prefix`, `duration`, `until`, `at`, `rule`, `tier`, `value`, `verb`).
/// The configuration owns the template and checks its placeholders; the sink only fills it,
/// so that it depends on no configuration format.
pub type CommandLine = Box<dyn Fn(&[(&str, &str)]) -> Vec<String> + Send + Sync>;

/// Commands run at once at most: a slow firewall command slows the caller down instead of
/// piling up processes.
const MAX_RUNNING: usize = 16;

/// Runs a command on every ban change: `ban` when a ban starts (and for each active ban at
/// reconcile), `extend` when it is extended (`{duration}` is then the time left), `unban`
/// when it ends. Only address and prefix tokens run one; `{ip}` is the address (host bits
/// cleared), `{prefix}` its length, `{family}` `ip` or `ip6`. Commands for one token run in
/// order, at most 16 at once.
pub struct CommandSink {
    ban: Option<CommandLine>,
    extend: Option<CommandLine>,
    unban: Option<CommandLine>,
    runner: CommandRunner,
    targets: Targets,
}

impl std::fmt::Debug for CommandSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSink")
            .field("ban", &self.ban.is_some())
            .field("extend", &self.extend.is_some())
            .field("unban", &self.unban.is_some())
            .field("runner", &self.runner)
            .finish()
    }
}

/// What a command is told about one ban change.
struct BanChange<'a> {
    token: &'a str,
    verb: &'static str,
    at: Timestamp,
    until: Timestamp,
    rule: &'a str,
    tier: usize,
    value: u64,
}

impl CommandSink {
    /// Runs `ban`, `extend` and `unban` (each optional) on the changes of their kind.
    pub fn new(
        ban: Option<CommandLine>,
        extend: Option<CommandLine>,
        unban: Option<CommandLine>,
    ) -> Self {
        CommandSink {
            ban,
            extend,
            unban,
            runner: CommandRunner::new(MAX_RUNNING),
            targets: Targets::default(),
        }
    }

    /// The commands run so far, with their failures.
    pub fn runner(&self) -> &CommandRunner {
        &self.runner
    }

    fn run(&mut self, which: Change, c: &BanChange<'_>) {
        let command = match which {
            Change::Start => &self.ban,
            Change::Extend => &self.extend,
            Change::End => &self.unban,
        };
        let Some(command) = command else { return };
        let Some(target) = self.targets.of(c.token) else {
            return;
        };
        let (ip, prefix) = (target.addr().to_string(), target.prefix().to_string());
        let duration = remaining(c.until, c.at).get().to_string();
        let (until, at, tier, value) = (
            c.until.to_string(),
            c.at.to_string(),
            c.tier.to_string(),
            c.value.to_string(),
        );
        let argv = command(&[
            ("ip", &ip),
            ("token", c.token),
            ("family", target.family()),
            ("prefix", &prefix),
            ("duration", &duration),
            ("until", &until),
            ("at", &at),
            ("rule", c.rule),
            ("tier", &tier),
            ("value", &value),
            ("verb", c.verb),
        ]);
        // Keyed by the target: two tokens for one address still run in order. A command that
        // cannot start is logged and counted by the runner.
        let _ = self.runner.run_keyed(Some(&target.to_string()), &argv);
    }
}

impl Enforcer for CommandSink {
    fn apply(&mut self, decisions: &[DecisionEvent]) {
        for d in ban_changes(decisions) {
            let change = BanChange {
                token: d.token.as_str(),
                verb: d.verb(),
                at: d.at,
                until: d.until,
                rule: &d.metric,
                tier: d.tier,
                value: d.value,
            };
            self.run(d.change, &change);
        }
        self.runner.reap();
    }

    fn reconcile(&mut self, bans: &[(Token, DecisionView)], now: Timestamp) {
        for (token, view) in bans {
            if view.effect != Effect::Block || view.until <= now {
                continue;
            }
            let change = BanChange {
                token: token.as_str(),
                verb: "BAN",
                at: now,
                until: view.until,
                rule: &view.metric,
                tier: view.tier,
                value: view.value,
            };
            self.run(Change::Start, &change);
        }
        self.runner.reap();
    }

    fn poll(&mut self) {
        self.runner.reap();
    }

    fn wait(&mut self) {
        self.runner.wait_all();
    }

    fn failures(&self) -> u64 {
        self.runner.failed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    pub(crate) fn decision(at: i64, change: Change, token: &str, until: i64) -> DecisionEvent {
        DecisionEvent {
            at: Timestamp::from_unix(at),
            change,
            effect: Effect::Block,
            token: Token::new(token).unwrap(),
            metric: Arc::from("request"),
            tier: 0,
            value: 40,
            from: Timestamp::from_unix(1000),
            until: Timestamp::from_unix(until),
            reason: None,
        }
    }

    /// `sh -c` appending the named placeholders' values as one line to `out`.
    fn appending(out: &std::path::Path, names: &'static [&'static str]) -> CommandLine {
        let script = format!("printf '%s\\n' \"$*\" >> {}", out.display());
        Box::new(move |vars| {
            let mut argv = vec![
                "sh".to_owned(),
                "-c".to_owned(),
                script.clone(),
                "sh".into(),
            ];
            for name in names {
                let value = vars.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
                argv.push(value.unwrap_or("?").to_owned());
            }
            argv
        })
    }

    const ALL: &[&str] = &["verb", "ip", "family", "prefix", "duration", "token"];

    #[test]
    fn every_change_runs_its_command_with_the_time_left() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut sink = CommandSink::new(
            Some(appending(&out, ALL)),
            Some(appending(&out, ALL)),
            Some(appending(&out, ALL)),
        );
        sink.apply(&[
            decision(1000, Change::Start, "1.2.3.4", 1600),
            decision(1000, Change::Start, "2001:db8:1:2::/64", 1600),
            decision(1000, Change::Start, "alice", 1600),
        ]);
        // Of two extensions in one burst only the furthest runs.
        sink.apply(&[
            decision(1100, Change::Extend, "1.2.3.4", 1700),
            decision(1200, Change::Extend, "1.2.3.4", 8400),
        ]);
        sink.apply(&[decision(8400, Change::End, "1.2.3.4", 8400)]);
        sink.wait();
        // Commands are in order per address; two addresses' commands may interleave.
        let text = std::fs::read_to_string(&out).unwrap();
        let of = |addr: &str| -> Vec<&str> {
            text.lines()
                .filter(|l| l.split(' ').nth(1) == Some(addr))
                .collect()
        };
        assert_eq!(
            of("1.2.3.4"),
            [
                "BAN 1.2.3.4 ip 32 600 1.2.3.4",
                "EXTEND 1.2.3.4 ip 32 7200 1.2.3.4",
                "UNBAN 1.2.3.4 ip 32 1 1.2.3.4"
            ],
            "{text}"
        );
        assert_eq!(
            of("2001:db8:1:2::"),
            ["BAN 2001:db8:1:2:: ip6 64 600 2001:db8:1:2::/64"],
            "{text}"
        );
        assert_eq!(text.lines().count(), 4, "{text}");
        assert_eq!((sink.runner().started(), sink.failures()), (4, 0));
    }

    #[test]
    fn reconcile_runs_the_ban_command_for_each_active_ban_with_its_time_left() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut sink = CommandSink::new(Some(appending(&out, ALL)), None, None);
        let view = |until: i64| DecisionView {
            effect: Effect::Block,
            metric: Arc::from("request"),
            tier: 0,
            value: 3,
            from: Timestamp::from_unix(0),
            until: Timestamp::from_unix(until),
            reason: None,
        };
        let bans = [
            (Token::new("10.0.0.1").unwrap(), view(5000)),
            (Token::new("10.0.0.2").unwrap(), view(900)), // over already
            (Token::new("bob").unwrap(), view(5000)),
        ];
        sink.reconcile(&bans, Timestamp::from_unix(1000));
        sink.wait();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "BAN 10.0.0.1 ip 32 4000 10.0.0.1\n"
        );
    }

    #[test]
    fn a_failing_command_is_counted() {
        let failing: CommandLine = Box::new(|_| {
            [
                "sh",
                "-c",
                "echo 'Error: Could not process rule' >&2; exit 1",
            ]
            .map(str::to_owned)
            .to_vec()
        });
        let mut sink = CommandSink::new(Some(failing), None, None);
        sink.apply(&[decision(1000, Change::Start, "1.2.3.4", 1600)]);
        sink.wait();
        assert_eq!(sink.failures(), 1);
    }
}
