//! `DecisionSinks`: everywhere a decision goes besides the store — the log, record files, and
//! the enforcers that keep a firewall in step (commands, nftables).

use std::fmt;
use std::io;

use banhammer_core::{DecisionEvent, DecisionView, Timestamp, Token};

use crate::{DecisionFile, Enforcer, Escaped};

/// Sends each decision, in order, to the log and to the record files, and each burst to the
/// enforcers (`watch` calls it once per step, after the step's SQLite commit).
pub struct DecisionSinks {
    files: Vec<DecisionFile>,
    enforcers: Vec<Box<dyn Enforcer>>,
}

impl fmt::Debug for DecisionSinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionSinks")
            .field("files", &self.files)
            .field("enforcers", &self.enforcers.len())
            .finish()
    }
}

impl DecisionSinks {
    /// Sinks writing to `files` (each decision to each file, in order) and telling
    /// `enforcers` of every ban change.
    pub fn new(files: Vec<DecisionFile>, enforcers: Vec<Box<dyn Enforcer>>) -> Self {
        DecisionSinks { files, enforcers }
    }

    /// Logs, records and enforces `decisions`. The files are flushed once, at the end of the
    /// batch. A firewall that refuses a change is logged, not returned: the decision stands
    /// whatever the firewall says.
    pub fn emit(&mut self, decisions: &[DecisionEvent]) -> io::Result<()> {
        for d in decisions {
            if d.is_record() {
                tracing::info!(token = %Escaped(&d.token), rule = %Escaped(&d.metric), tier = d.tier, value = d.value, until = %d.until, "{}.", d.verb());
            } else {
                tracing::debug!(token = %Escaped(&d.token), until = %d.until, "{}.", d.verb());
            }
            for f in &mut self.files {
                f.write(d)?;
            }
        }
        for f in &mut self.files {
            f.flush()?;
        }
        for e in &mut self.enforcers {
            if decisions.is_empty() {
                e.poll();
            } else {
                e.apply(decisions);
            }
        }
        Ok(())
    }

    /// Reconciles every enforcer with `bans`, the bans active at `now` (at start).
    pub fn reconcile(&mut self, bans: &[(Token, DecisionView)], now: Timestamp) {
        for e in &mut self.enforcers {
            e.reconcile(bans, now);
        }
    }

    /// Waits for the work still running (at shutdown, so that no command is cut off).
    pub fn wait(&mut self) {
        for e in &mut self.enforcers {
            e.wait();
        }
    }

    /// Firewall changes that failed so far, over every enforcer.
    pub fn failures(&self) -> u64 {
        self.enforcers.iter().map(|e| e.failures()).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use banhammer_core::{Change, Effect};

    use super::*;
    use crate::{CommandLine, CommandSink, DecisionFormat};

    fn decision(at: i64, change: Change) -> DecisionEvent {
        DecisionEvent {
            at: Timestamp::from_unix(at),
            change,
            effect: Effect::Block,
            token: Token::new("1.2.3.4").unwrap(),
            metric: Arc::from("request"),
            tier: 0,
            value: 40,
            from: Timestamp::from_unix(1000),
            until: Timestamp::from_unix(1600),
            reason: None,
        }
    }

    #[test]
    fn each_decision_goes_to_every_file_and_each_burst_to_the_enforcers() {
        let dir = tempfile::tempdir().unwrap();
        let (csv, jsonl, out) = (
            dir.path().join("record.csv"),
            dir.path().join("record.jsonl"),
            dir.path().join("commands"),
        );
        let files = vec![
            DecisionFile::append(&csv, DecisionFormat::Csv).unwrap(),
            DecisionFile::append(&jsonl, DecisionFormat::Jsonl).unwrap(),
        ];
        let script = format!("printf '%s\\n' \"$*\" >> {}", out.display());
        let appending = move |words: &'static [&'static str]| -> CommandLine {
            let script = script.clone();
            Box::new(move |vars| {
                let mut argv = vec!["sh".into(), "-c".into(), script.clone(), "sh".into()];
                for w in words {
                    let v = vars.iter().find(|(n, _)| n == w).map_or("?", |(_, v)| *v);
                    argv.push(v.to_owned());
                }
                argv
            })
        };
        let commands = CommandSink::new(
            Some(appending(&["verb", "ip", "duration", "rule"])),
            None,
            Some(appending(&["verb", "token", "at"])),
        );
        let mut sinks = DecisionSinks::new(files, vec![Box::new(commands)]);
        // The extension is not recorded (and has no command here); the end is.
        sinks
            .emit(&[
                decision(1000, Change::Start),
                decision(1100, Change::Extend),
            ])
            .unwrap();
        sinks.wait();
        sinks.emit(&[decision(1600, Change::End)]).unwrap();
        sinks.wait();
        assert_eq!(
            std::fs::read_to_string(&csv).unwrap(),
            "1000,BAN,1.2.3.4\n1600,UNBAN,1.2.3.4\n"
        );
        let json = std::fs::read_to_string(&jsonl).unwrap();
        assert_eq!(json.lines().count(), 2);
        assert!(
            json.starts_with("{\"at\":1000,\"decision\":\"BAN\""),
            "{json}"
        );
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "BAN 1.2.3.4 600 request\nUNBAN 1.2.3.4 1600\n"
        );
        assert_eq!(sinks.failures(), 0);
    }

    #[test]
    fn a_command_that_cannot_start_is_counted_and_the_records_still_written() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("record.csv");
        let files = vec![DecisionFile::append(&csv, DecisionFormat::Csv).unwrap()];
        let missing: CommandLine = Box::new(|_| vec!["/nonexistent/command".to_owned()]);
        let commands = CommandSink::new(Some(missing), None, None);
        let mut sinks = DecisionSinks::new(files, vec![Box::new(commands)]);
        sinks.emit(&[decision(1000, Change::Start)]).unwrap();
        assert_eq!(std::fs::read_to_string(&csv).unwrap(), "1000,BAN,1.2.3.4\n");
        assert_eq!(sinks.failures(), 1);
    }
}
