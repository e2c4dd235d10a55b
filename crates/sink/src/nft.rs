//! `Nftables`: the built-in enforcement. banhammer's own table holds an IPv4 and an IPv6 set
//! (`flags interval, timeout`) and, if asked, a chain on the input hook that drops their
//! sources. Each element carries its ban's remaining time as its kernel timeout, so a ban ends
//! on time even if banhammer is gone; each burst of changes is one `nft -f -` transaction.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use banhammer_core::{Change, DecisionEvent, DecisionView, Effect, Seconds, Timestamp, Token};

use crate::command::{Captured, FailureLog, Outcome};
use crate::enforce::{ban_changes, remaining, Targets};
use crate::{Enforcer, Target};

/// The longest kernel timeout given, 3660 days: longer than any ban a rule can make (ten
/// years); a ban carried further by extensions is refreshed long before then.
const MAX_TIMEOUT: u64 = 3660 * 86_400;

/// How long one `nft` call may take before it is killed.
const NFT_PATIENCE: Duration = Duration::from_secs(30);

/// Elements written per `add element` statement in a reconcile.
const ELEMENTS_PER_LINE: usize = 256;

/// Where banhammer keeps its bans in nftables (always an `inet` table: one chain there sees
/// IPv4 and IPv6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftSettings {
    /// The `nft` program.
    pub program: PathBuf,
    /// The table's name (family `inet`).
    pub table: String,
    /// The set of banned IPv4 addresses and prefixes.
    pub ipv4_set: String,
    /// The set of banned IPv6 addresses and prefixes.
    pub ipv6_set: String,
    /// A chain to create on the input hook, dropping both sets' sources; `None` when the
    /// user's own rules (in this table) use the sets.
    pub drop_chain: Option<String>,
}

/// Whether `name` can be written in an nft script as it is: a letter, then letters, digits
/// and `_`, at most 64 bytes. Names come from the configuration; this keeps them from ever
/// carrying script syntax.
pub fn is_nft_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 64
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One element's wanted state.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// In the set, timing out after this long (added, or its timeout replaced).
    Put(Target, Seconds),
    /// Not in the set.
    Remove(Target),
}

impl Op {
    fn target(&self) -> Target {
        match self {
            Op::Put(t, _) | Op::Remove(t) => *t,
        }
    }
}

/// The native nftables enforcement: see the module documentation.
#[derive(Debug)]
pub struct Nftables {
    settings: NftSettings,
    targets: Targets,
    failures: FailureLog,
}

impl Nftables {
    /// Enforcement into the table and sets of `settings`; an error if a name is not a plain
    /// nft identifier ([`is_nft_name`]).
    pub fn new(settings: NftSettings) -> Result<Self, String> {
        let names = [
            Some(&settings.table),
            Some(&settings.ipv4_set),
            Some(&settings.ipv6_set),
            settings.drop_chain.as_ref(),
        ];
        if let Some(bad) = names.into_iter().flatten().find(|n| !is_nft_name(n)) {
            return Err(format!(
                "`{bad}` is not an nftables name (a letter, then letters, digits and `_`)"
            ));
        }
        Ok(Nftables {
            settings,
            targets: Targets::default(),
            failures: FailureLog::default(),
        })
    }

    fn set_of(&self, target: Target) -> &str {
        if target.is_ipv4() {
            &self.settings.ipv4_set
        } else {
            &self.settings.ipv6_set
        }
    }

    /// The table, its sets and the drop chain, written so that running it again changes
    /// nothing but the chain's rules (replaced whole): every transaction starts with it, so a
    /// ruleset flushed under banhammer gets its structure back with the next change.
    fn structure(&self) -> String {
        let s = &self.settings;
        let t = &s.table;
        let mut out = format!(
            "add table inet {t}\n\
             add set inet {t} {} {{ type ipv4_addr; flags interval, timeout; }}\n\
             add set inet {t} {} {{ type ipv6_addr; flags interval, timeout; }}\n",
            s.ipv4_set, s.ipv6_set
        );
        if let Some(c) = &s.drop_chain {
            let _ = write!(
                out,
                "add chain inet {t} {c} {{ type filter hook input priority -10; policy accept; }}\n\
                 flush chain inet {t} {c}\n\
                 add rule inet {t} {c} ip saddr @{} drop\n\
                 add rule inet {t} {c} ip6 saddr @{} drop\n",
                s.ipv4_set, s.ipv6_set
            );
        }
        out
    }

    /// The statements that bring one element to its wanted state whether or not it is in the
    /// set now: adding an element already there leaves its timeout as it was on kernels before
    /// 6.12, and deleting one that is not there fails the transaction, so each element is
    /// added, deleted, and (for `Put`) added again with its timeout, in one transaction.
    fn write_op(&self, out: &mut String, op: Op) {
        let (t, target) = (&self.settings.table, op.target());
        let set = self.set_of(target);
        let timeout = match op {
            Op::Put(_, left) => nft_time(left),
            Op::Remove(_) => nft_time(Seconds::new(1)),
        };
        let _ = writeln!(
            out,
            "add element inet {t} {set} {{ {target} timeout {timeout} }}\n\
             delete element inet {t} {set} {{ {target} }}"
        );
        if let Op::Put(..) = op {
            let _ = writeln!(
                out,
                "add element inet {t} {set} {{ {target} timeout {timeout} }}"
            );
        }
    }

    /// Runs `script` as one transaction.
    fn run(&self, script: &str) -> Outcome {
        let spawned = Captured::spawn(
            Command::new(&self.settings.program)
                .args(["-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null()),
        );
        match spawned {
            Ok(mut nft) => {
                // A write error means nft stopped reading: its outcome says why.
                let _ = nft.feed(script.as_bytes());
                nft.finish_within(NFT_PATIENCE)
            }
            Err(e) => Outcome::not_started(e),
        }
    }

    fn program(&self) -> String {
        self.settings.program.display().to_string()
    }

    /// Applies `ops` after `prelude` in one transaction. If the kernel refuses it, the
    /// structure alone is tried, and then the elements in halves until each refused one is
    /// found and logged: one bad element (an interval overlapping another) must not keep the
    /// others out. Costs one call when all goes well, about 2·k·log n for k refused of n.
    fn transaction(&mut self, prelude: &str, ops: &[Op]) {
        let mut script = prelude.to_owned();
        for op in ops {
            self.write_op(&mut script, *op);
        }
        let outcome = self.run(&script);
        if outcome.success() {
            return;
        }
        let changes = ops.len().max(1) as u64;
        if outcome.status.is_err() || ops.is_empty() {
            // nft did not run at all, or there is nothing to split: nothing to learn from
            // trying again piece by piece.
            self.failures
                .failed(&self.program(), None, &outcome, changes);
            return;
        }
        let structure = self.structure();
        let alone = self.run(&structure);
        if !alone.success() {
            self.failures.failed(&self.program(), None, &alone, changes);
            return;
        }
        tracing::debug!(
            changes,
            "nft refused a transaction; applying it in parts to find the element it refuses."
        );
        self.halves(&structure, ops);
    }

    fn halves(&mut self, structure: &str, ops: &[Op]) {
        if ops.is_empty() {
            return;
        }
        let mut script = structure.to_owned();
        for op in ops {
            self.write_op(&mut script, *op);
        }
        let outcome = self.run(&script);
        if outcome.success() {
            return;
        }
        if let [op] = ops {
            let target = op.target().to_string();
            self.failures
                .failed(&self.program(), Some(&target), &outcome, 1);
            return;
        }
        let (a, b) = ops.split_at(ops.len() / 2);
        self.halves(structure, a);
        self.halves(structure, b);
    }
}

/// A duration as nft writes it, `83d8h` (a plain `7200000000s` is refused past some size).
fn nft_time(d: Seconds) -> String {
    let s = d.get().clamp(1, MAX_TIMEOUT);
    let parts = [
        (s / 86_400, 'd'),
        (s % 86_400 / 3600, 'h'),
        (s % 3600 / 60, 'm'),
        (s % 60, 's'),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
}

impl Enforcer for Nftables {
    fn apply(&mut self, decisions: &[DecisionEvent]) {
        // The last change of each element in the burst is its wanted state.
        let mut ops: Vec<Op> = Vec::new();
        let mut index: HashMap<Target, usize> = HashMap::new();
        for d in ban_changes(decisions) {
            let Some(target) = self.targets.of(d.token.as_str()) else {
                continue;
            };
            let op = match d.change {
                Change::Start | Change::Extend => Op::Put(target, remaining(d.until, d.at)),
                Change::End => Op::Remove(target),
            };
            match index.get(&target) {
                Some(&i) => ops[i] = op,
                None => {
                    index.insert(target, ops.len());
                    ops.push(op);
                }
            }
        }
        if !ops.is_empty() {
            self.transaction(&self.structure(), &ops);
        }
    }

    fn reconcile(&mut self, bans: &[(Token, DecisionView)], now: Timestamp) {
        // Each element once, with the furthest end of the bans it stands for.
        let mut wanted: HashMap<Target, Timestamp> = HashMap::new();
        for (token, view) in bans {
            if view.effect != Effect::Block || view.until <= now {
                continue;
            }
            let Some(target) = self.targets.of(token.as_str()) else {
                continue;
            };
            let until = wanted.entry(target).or_insert(view.until);
            *until = (*until).max(view.until);
        }
        let mut wanted: Vec<(Target, Timestamp)> = wanted.into_iter().collect();
        wanted.sort();
        // Flushed and filled in one transaction: what banhammer no longer holds goes, what
        // it holds is there with its time left, and no packet sees the set in between.
        let t = &self.settings.table;
        let mut script = self.structure();
        let _ = writeln!(
            script,
            "flush set inet {t} {}\nflush set inet {t} {}",
            self.settings.ipv4_set, self.settings.ipv6_set
        );
        for family in [true, false] {
            let mine: Vec<&(Target, Timestamp)> = wanted
                .iter()
                .filter(|(target, _)| target.is_ipv4() == family)
                .collect();
            for line in mine.chunks(ELEMENTS_PER_LINE) {
                let set = self.set_of(line[0].0);
                let elements: Vec<String> = line
                    .iter()
                    .map(|(target, until)| {
                        format!("{target} timeout {}", nft_time(remaining(*until, now)))
                    })
                    .collect();
                let _ = writeln!(
                    script,
                    "add element inet {t} {set} {{ {} }}",
                    elements.join(", ")
                );
            }
        }
        let outcome = self.run(&script);
        if outcome.success() {
            tracing::info!(bans = wanted.len(), table = %t, "nftables reconciled.");
            return;
        }
        // Refused: flush on its own, then the elements as separate changes (found one by one
        // if need be).
        let ops: Vec<Op> = wanted
            .iter()
            .map(|(target, until)| Op::Put(*target, remaining(*until, now)))
            .collect();
        let mut flush = self.structure();
        let _ = writeln!(
            flush,
            "flush set inet {t} {}\nflush set inet {t} {}",
            self.settings.ipv4_set, self.settings.ipv6_set
        );
        self.transaction(&flush, &[]);
        self.transaction(&self.structure(), &ops);
    }

    fn failures(&self) -> u64 {
        self.failures.count()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::sync::Arc;

    use super::*;

    fn decision(at: i64, change: Change, token: &str, until: i64) -> DecisionEvent {
        DecisionEvent {
            at: Timestamp::from_unix(at),
            change,
            effect: Effect::Block,
            token: Token::new(token).unwrap(),
            metric: Arc::from("request"),
            tier: 0,
            value: 3,
            from: Timestamp::from_unix(1000),
            until: Timestamp::from_unix(until),
            reason: None,
        }
    }

    /// An `nft` stand-in that appends each script it is given to `scripts` (then `---`), and
    /// refuses any script naming 10.9.9.9.
    fn fake_nft(dir: &Path) -> (PathBuf, PathBuf) {
        let (program, scripts) = (dir.join("nft"), dir.join("scripts"));
        let body = format!(
            "#!/bin/sh\nin=$(cat)\nprintf '%s\\n---\\n' \"$in\" >> {}\n\
             case \"$in\" in *10.9.9.9*) echo 'Error: interval overlaps' >&2; exit 1;; esac\n",
            scripts.display()
        );
        std::fs::write(&program, body).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        (program, scripts)
    }

    fn sink(program: PathBuf) -> Nftables {
        Nftables::new(NftSettings {
            program,
            table: "banhammer".into(),
            ipv4_set: "banned4".into(),
            ipv6_set: "banned6".into(),
            drop_chain: Some("input".into()),
        })
        .unwrap()
    }

    fn scripts(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .split("---\n")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The script's lines past the structure (table, sets, chain).
    fn changes(script: &str) -> Vec<&str> {
        script
            .lines()
            .filter(|l| l.contains("element") || l.starts_with("flush set"))
            .collect()
    }

    #[test]
    fn a_burst_is_one_transaction_with_each_elements_last_state() {
        let dir = tempfile::tempdir().unwrap();
        let (program, out) = fake_nft(dir.path());
        let mut nft = sink(program);
        nft.apply(&[
            decision(1000, Change::Start, "10.0.0.1", 1003),
            decision(1000, Change::Start, "2001:db8:1:2::/64", 8400),
            decision(1001, Change::Extend, "10.0.0.1", 8201),
            decision(1002, Change::Start, "10.0.0.2", 1010),
            decision(1003, Change::End, "10.0.0.2", 1003),
            decision(1003, Change::Start, "user-42", 2000),
        ]);
        let all = scripts(&out);
        assert_eq!(all.len(), 1, "{all:?}");
        assert!(all[0].starts_with(
            "add table inet banhammer\n\
             add set inet banhammer banned4 { type ipv4_addr; flags interval, timeout; }\n\
             add set inet banhammer banned6 { type ipv6_addr; flags interval, timeout; }\n\
             add chain inet banhammer input { type filter hook input priority -10; policy accept; }\n\
             flush chain inet banhammer input\n\
             add rule inet banhammer input ip saddr @banned4 drop\n\
             add rule inet banhammer input ip6 saddr @banned6 drop\n"
        ));
        assert_eq!(
            changes(&all[0]),
            [
                "add element inet banhammer banned4 { 10.0.0.1 timeout 2h }",
                "delete element inet banhammer banned4 { 10.0.0.1 }",
                "add element inet banhammer banned4 { 10.0.0.1 timeout 2h }",
                "add element inet banhammer banned6 { 2001:db8:1:2::/64 timeout 2h3m20s }",
                "delete element inet banhammer banned6 { 2001:db8:1:2::/64 }",
                "add element inet banhammer banned6 { 2001:db8:1:2::/64 timeout 2h3m20s }",
                "add element inet banhammer banned4 { 10.0.0.2 timeout 1s }",
                "delete element inet banhammer banned4 { 10.0.0.2 }",
            ]
        );
        assert_eq!(nft.failures(), 0);
    }

    #[test]
    fn reconcile_flushes_and_fills_the_sets_in_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let (program, out) = fake_nft(dir.path());
        let mut nft = sink(program);
        let view = |until: i64| DecisionView {
            effect: Effect::Block,
            metric: Arc::from("request"),
            tier: 0,
            value: 3,
            from: Timestamp::from_unix(0),
            until: Timestamp::from_unix(until),
            reason: None,
        };
        nft.reconcile(
            &[
                (Token::new("10.0.0.1").unwrap(), view(1060)),
                (Token::new("::ffff:10.0.0.1").unwrap(), view(1090)),
                (Token::new("2001:db8::1").unwrap(), view(1000 + 86_400 * 3)),
                (Token::new("10.0.0.3").unwrap(), view(999)),
            ],
            Timestamp::from_unix(1000),
        );
        let all = scripts(&out);
        assert_eq!(all.len(), 1);
        assert_eq!(
            changes(&all[0]),
            [
                "flush set inet banhammer banned4",
                "flush set inet banhammer banned6",
                "add element inet banhammer banned4 { 10.0.0.1 timeout 1m30s }",
                "add element inet banhammer banned6 { 2001:db8::1 timeout 3d }",
            ]
        );
    }

    #[test]
    fn a_refused_element_is_found_and_counted_and_the_others_still_go_in() {
        let dir = tempfile::tempdir().unwrap();
        let (program, out) = fake_nft(dir.path());
        let mut nft = sink(program);
        let burst: Vec<DecisionEvent> = (1..=6)
            .map(|i| decision(1000, Change::Start, &format!("10.{i}.0.1"), 1060))
            .chain([decision(1000, Change::Start, "10.9.9.9", 1060)])
            .collect();
        nft.apply(&burst);
        assert_eq!(nft.failures(), 1);
        let all = scripts(&out);
        // The burst, the structure alone, then halves down to the refused element.
        assert!(all.len() > 3 && all.len() <= 2 + 2 * 3 + 2, "{}", all.len());
        for i in 1..=6 {
            let element = format!("10.{i}.0.1 timeout");
            let accepted = all
                .iter()
                .filter(|s| !s.contains("10.9.9.9"))
                .any(|s| s.contains(&element));
            assert!(accepted, "10.{i}.0.1 never went in alone");
        }
    }

    #[test]
    fn a_missing_program_is_one_failure_per_change_not_a_search() {
        let mut nft = sink(PathBuf::from("/nonexistent/nft"));
        nft.apply(&[
            decision(1000, Change::Start, "10.0.0.1", 1060),
            decision(1000, Change::Start, "10.0.0.2", 1060),
        ]);
        assert_eq!(nft.failures(), 2);
    }

    #[test]
    fn durations_are_written_as_nft_reads_them() {
        let t = |s| nft_time(Seconds::new(s));
        assert_eq!(t(0), "1s");
        assert_eq!(t(3), "3s");
        assert_eq!(t(7200), "2h");
        assert_eq!(t(90_061), "1d1h1m1s");
        assert_eq!(t(u64::MAX), "3660d");
    }

    #[test]
    fn names_that_are_not_plain_identifiers_are_refused() {
        assert!(is_nft_name("banhammer"));
        assert!(is_nft_name("banned_4"));
        for bad in [
            "",
            "4ban",
            "ban-ned",
            "a b",
            "x;flush ruleset",
            "t}",
            &"a".repeat(65),
        ] {
            assert!(!is_nft_name(bad), "{bad:?}");
        }
        let mut s = NftSettings {
            program: PathBuf::from("nft"),
            table: "banhammer".into(),
            ipv4_set: "banned4".into(),
            ipv6_set: "banned6".into(),
            drop_chain: Some("in put".into()),
        };
        assert!(Nftables::new(s.clone()).unwrap_err().contains("`in put`"));
        s.drop_chain = None;
        assert!(Nftables::new(s).is_ok());
    }
}
