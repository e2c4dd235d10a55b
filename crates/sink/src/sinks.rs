//! `DecisionSinks`: everywhere a decision goes besides the store — the log, record files, and
//! the ban and unban commands.

use std::fmt;
use std::io;

use banhammer_core::{Change, DecisionEvent, Effect};

use crate::{CommandRunner, DecisionFile, Escaped};

/// The words of a command for one decision, given the values of its placeholders (`ip`,
/// `token`, `duration`, `until`, `at`, `rule`, `tier`, `value`, `verb`). The configuration
/// owns the template and checks its placeholders; the sink only fills it, so that it depends
/// on no configuration format.
pub type CommandLine = Box<dyn Fn(&[(&str, &str)]) -> Vec<String> + Send + Sync>;

/// Commands run at once at most: a slow firewall command slows the caller down instead of
/// piling up processes.
const MAX_RUNNING: usize = 16;

/// Sends each decision, in order, to the log, to the record files and to the command of its
/// kind (ban or unban).
pub struct DecisionSinks {
    files: Vec<DecisionFile>,
    ban_command: Option<CommandLine>,
    unban_command: Option<CommandLine>,
    commands: CommandRunner,
}

impl fmt::Debug for DecisionSinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionSinks")
            .field("files", &self.files)
            .field("ban_command", &self.ban_command.is_some())
            .field("unban_command", &self.unban_command.is_some())
            .field("commands", &self.commands)
            .finish()
    }
}

impl DecisionSinks {
    /// Sinks writing to `files` (each decision to each file, in order), running
    /// `ban_command` when a ban starts and `unban_command` when it ends.
    pub fn new(
        files: Vec<DecisionFile>,
        ban_command: Option<CommandLine>,
        unban_command: Option<CommandLine>,
    ) -> Self {
        DecisionSinks {
            files,
            ban_command,
            unban_command,
            commands: CommandRunner::new(MAX_RUNNING),
        }
    }

    /// Logs, records and runs the commands of `decisions`. The files are flushed once, at
    /// the end of the batch. A command that cannot start is logged, not returned: the
    /// decision stands whatever the firewall says.
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
            self.run_command(d);
        }
        for f in &mut self.files {
            f.flush()?;
        }
        self.commands.reap();
        Ok(())
    }

    /// Runs the command for `d`, if its kind has one.
    fn run_command(&mut self, d: &DecisionEvent) {
        let command = match (d.effect, d.change) {
            (Effect::Block, Change::Start) => self.ban_command.as_ref(),
            (Effect::Block, Change::End) => self.unban_command.as_ref(),
            _ => None,
        };
        let Some(command) = command else { return };
        let duration = d.until.since(d.at).get().to_string();
        let (until, at, tier, value) = (
            d.until.to_string(),
            d.at.to_string(),
            d.tier.to_string(),
            d.value.to_string(),
        );
        let argv = command(&[
            ("ip", d.token.as_str()),
            ("token", d.token.as_str()),
            ("duration", &duration),
            ("until", &until),
            ("at", &at),
            ("rule", &d.metric),
            ("tier", &tier),
            ("value", &value),
            ("verb", d.verb()),
        ]);
        if let Err(e) = self.commands.run(&argv) {
            let program = argv.first().map_or("", String::as_str);
            tracing::warn!(command = %Escaped(program), error = %e, "Command failed to start.");
        }
    }

    /// Waits for the commands still running (at shutdown, so that none is cut off).
    pub fn wait(&mut self) {
        self.commands.wait_all();
    }

    /// The commands run so far, with their failures.
    pub fn commands(&self) -> &CommandRunner {
        &self.commands
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use banhammer_core::{Timestamp, Token};

    use super::*;
    use crate::DecisionFormat;

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

    /// `sh -c` appending the command's arguments as one line to `out`.
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

    #[test]
    fn each_decision_goes_to_every_file_and_bans_to_their_commands() {
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
        let mut sinks = DecisionSinks::new(
            files,
            Some(appending(&out, &["verb", "ip", "duration", "rule"])),
            Some(appending(&out, &["verb", "token", "at"])),
        );
        // The extension is neither recorded nor commanded; the end is.
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
        assert_eq!(
            (sinks.commands().started(), sinks.commands().failed()),
            (2, 0)
        );
    }

    #[test]
    fn a_command_that_cannot_start_is_counted_and_the_records_still_written() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("record.csv");
        let files = vec![DecisionFile::append(&csv, DecisionFormat::Csv).unwrap()];
        let missing: CommandLine = Box::new(|_| vec!["/nonexistent/command".to_owned()]);
        let mut sinks = DecisionSinks::new(files, Some(missing), None);
        sinks.emit(&[decision(1000, Change::Start)]).unwrap();
        assert_eq!(std::fs::read_to_string(&csv).unwrap(), "1000,BAN,1.2.3.4\n");
        assert_eq!(sinks.commands().failed(), 1);
    }
}
