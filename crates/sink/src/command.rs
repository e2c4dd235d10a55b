//! Running firewall programs (a `ban_command`, `nft -f -`) without a shell: each one's exit
//! status and the start of its stderr are kept, and failures are logged, the first few in full
//! and then only counted, so that a firewall that refuses everything cannot flood the log.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use crate::Escaped;

/// Bytes of a program's stderr kept for the log; the rest is read and dropped (a program must
/// never block on a full pipe, and its output must not grow memory).
const MAX_STDERR: usize = 2048;

/// How long the end of a program's stderr is waited for once it has exited: only a background
/// process it left holding the pipe makes this wait at all.
const STDERR_GRACE: Duration = Duration::from_secs(1);

/// How long a command is waited for when the caller must wait (16 running, an earlier command
/// for the same address, shutdown) before it is killed: a hung firewall command must not stop
/// banhammer from enforcing the rest.
const COMMAND_PATIENCE: Duration = Duration::from_secs(30);

/// Failures logged in full before they are only counted, ...
const LOGGED_IN_FULL: u64 = 10;
/// ... and then one line, with the count, every this many.
const LOG_EVERY: u64 = 100;

/// How a program ended: its exit status (or why it could not run) and the start of its stderr.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) status: io::Result<ExitStatus>,
    pub(crate) stderr: String,
}

impl Outcome {
    pub(crate) fn success(&self) -> bool {
        self.status.as_ref().is_ok_and(ExitStatus::success)
    }

    /// A program that could not be started.
    pub(crate) fn not_started(e: io::Error) -> Self {
        Outcome {
            status: Err(e),
            stderr: String::new(),
        }
    }

    /// `exit status: 1`, `signal: 9 (SIGKILL)`, or why it did not run.
    fn status_text(&self) -> String {
        match &self.status {
            Ok(s) => s.to_string(),
            Err(e) => format!("not run: {e}"),
        }
    }
}

/// A started program whose stderr a thread of its own reads (bounded), so that the program
/// never blocks on the pipe and the caller can poll it.
pub(crate) struct Captured {
    child: Child,
    stderr: Receiver<Vec<u8>>,
}

impl Captured {
    /// Starts `command` with its stderr captured (stdin and stdout as the command sets them).
    pub(crate) fn spawn(command: &mut Command) -> io::Result<Captured> {
        let mut child = command.stderr(Stdio::piped()).spawn()?;
        let (tx, rx) = mpsc::sync_channel(1);
        if let Some(mut pipe) = child.stderr.take() {
            // If the thread cannot start, the pipe closes with it: the program's writes to
            // stderr fail, which it survives; the outcome then has no stderr.
            let _ = std::thread::Builder::new()
                .name("banhammer-stderr".to_owned())
                .spawn(move || {
                    let mut kept = Vec::new();
                    let mut buf = [0u8; 1024];
                    loop {
                        match pipe.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let room = MAX_STDERR.saturating_sub(kept.len());
                                kept.extend_from_slice(&buf[..n.min(room)]);
                            }
                        }
                    }
                    let _ = tx.send(kept);
                });
        }
        Ok(Captured { child, stderr: rx })
    }

    /// Writes `input` to the program's stdin (piped by the caller) and closes it.
    pub(crate) fn feed(&mut self, input: &[u8]) -> io::Result<()> {
        match self.child.stdin.take() {
            Some(mut stdin) => stdin.write_all(input),
            None => Ok(()),
        }
    }

    /// The outcome if the program has exited.
    fn try_finish(&mut self) -> Option<Outcome> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(self.outcome(Ok(status))),
            Ok(None) => None,
            Err(e) => Some(self.outcome(Err(e))),
        }
    }

    /// Waits for the program for at most `patience` (its stderr closing marks its end), then
    /// kills it: a hung firewall call must not hold banhammer up for ever.
    pub(crate) fn finish_within(mut self, patience: Duration) -> Outcome {
        let stderr = match self.stderr.recv_timeout(patience) {
            Ok(bytes) => text(&bytes),
            Err(RecvTimeoutError::Disconnected) => String::new(),
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                format!("killed after {patience:?}")
            }
        };
        let status = self.child.wait();
        Outcome { status, stderr }
    }

    fn outcome(&mut self, status: io::Result<ExitStatus>) -> Outcome {
        let stderr = self
            .stderr
            .recv_timeout(STDERR_GRACE)
            .map(|b| text(&b))
            .unwrap_or_default();
        Outcome { status, stderr }
    }
}

/// The kept stderr as one trimmed text (invalid UTF-8 replaced; shown escaped when logged).
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

/// Counts the ban changes that failed firewall calls left undone, and logs the calls with
/// their exit status and stderr: each while fewer than [`LOGGED_IN_FULL`] changes failed,
/// then one whenever the count passes a multiple of [`LOG_EVERY`], with the count.
#[derive(Debug, Default)]
pub(crate) struct FailureLog {
    count: u64,
}

impl FailureLog {
    /// Records one failed call of `program` (for `target`, if it was about one) that left
    /// `changes` ban changes undone (they are what is counted).
    pub(crate) fn failed(
        &mut self,
        program: &str,
        target: Option<&str>,
        outcome: &Outcome,
        changes: u64,
    ) {
        let before = self.count;
        self.count += changes;
        let n = self.count;
        // Logged while few, then whenever the count passes a multiple of LOG_EVERY.
        if before >= LOGGED_IN_FULL && before / LOG_EVERY == n / LOG_EVERY {
            return;
        }
        // Program, target and stderr are shown escaped: none may forge a log line.
        tracing::warn!(
            program = %Escaped(program),
            target = %Escaped(target.unwrap_or("-")),
            status = %outcome.status_text(),
            stderr = %Escaped(&outcome.stderr),
            failures = n,
            "Firewall call failed{}.",
            if before < LOGGED_IN_FULL && n >= LOGGED_IN_FULL {
                format!("; further failures are logged one in {LOG_EVERY}")
            } else {
                String::new()
            }
        );
    }

    /// Failures so far.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }
}

/// A running command and the target it is about (its commands run in order).
struct Running {
    key: Option<String>,
    program: String,
    process: Captured,
}

/// Starts commands and reaps them later, with at most `max_running` at once: a slow firewall
/// command slows the caller down instead of piling up processes. Commands for one key (a
/// token) run one after the other, so that an unban never overtakes its ban.
#[derive(Default)]
pub struct CommandRunner {
    running: VecDeque<Running>,
    max_running: usize,
    started: u64,
    failures: FailureLog,
}

impl std::fmt::Debug for CommandRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandRunner")
            .field("running", &self.running.len())
            .field("started", &self.started)
            .field("failed", &self.failures.count())
            .finish()
    }
}

impl CommandRunner {
    /// A runner allowing `max_running` commands at once (at least one).
    pub fn new(max_running: usize) -> Self {
        CommandRunner {
            max_running: max_running.max(1),
            ..CommandRunner::default()
        }
    }

    /// Starts `argv[0]` with the rest as its arguments. No shell: each word is one argument.
    pub fn run(&mut self, argv: &[String]) -> io::Result<()> {
        self.run_keyed(None, argv)
    }

    /// [`CommandRunner::run`], after any command still running for `key` has ended. A
    /// command that cannot start is logged and counted, and its error returned.
    pub fn run_keyed(&mut self, key: Option<&str>, argv: &[String]) -> io::Result<()> {
        let Some((program, args)) = argv.split_first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
        };
        self.reap();
        if let Some(key) = key {
            while let Some(i) = self
                .running
                .iter()
                .position(|r| r.key.as_deref() == Some(key))
            {
                if let Some(r) = self.running.remove(i) {
                    self.end(r.key, &r.program, r.process.finish_within(COMMAND_PATIENCE));
                }
            }
        }
        while self.running.len() >= self.max_running {
            if let Some(r) = self.running.pop_front() {
                self.end(r.key, &r.program, r.process.finish_within(COMMAND_PATIENCE));
            }
        }
        let spawned = Captured::spawn(
            Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
        );
        match spawned {
            Ok(process) => {
                self.started += 1;
                self.running.push_back(Running {
                    key: key.map(str::to_owned),
                    program: program.clone(),
                    process,
                });
                Ok(())
            }
            Err(e) => {
                let kind = e.kind();
                let text = e.to_string();
                self.end(key.map(str::to_owned), program, Outcome::not_started(e));
                Err(io::Error::new(kind, text))
            }
        }
    }

    /// Collects the commands that have finished.
    pub fn reap(&mut self) {
        let mut still = VecDeque::with_capacity(self.running.len());
        while let Some(mut r) = self.running.pop_front() {
            match r.process.try_finish() {
                Some(outcome) => self.end(r.key, &r.program, outcome),
                None => still.push_back(r),
            }
        }
        self.running = still;
    }

    /// Waits for every running command.
    pub fn wait_all(&mut self) {
        while let Some(r) = self.running.pop_front() {
            self.end(r.key, &r.program, r.process.finish_within(COMMAND_PATIENCE));
        }
    }

    fn end(&mut self, key: Option<String>, program: &str, outcome: Outcome) {
        if !outcome.success() {
            self.failures.failed(program, key.as_deref(), &outcome, 1);
        }
    }

    /// Commands started.
    pub fn started(&self) -> u64 {
        self.started
    }

    /// Commands that could not start or exited unsuccessfully.
    pub fn failed(&self) -> u64 {
        self.failures.count()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn words(argv: &[&str]) -> Vec<String> {
        argv.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn runs_each_word_as_one_argument_without_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut r = CommandRunner::new(2);
        // If a shell ran this, `;` would start a second command and create `pwned`.
        let script = format!("printf '%s\\n' \"$1\" > {}", out.display());
        r.run(&words(&["sh", "-c", &script, "sh", "1.2.3.4; touch pwned"]))
            .unwrap();
        r.wait_all();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "1.2.3.4; touch pwned\n"
        );
        assert!(!Path::new("pwned").exists());
        assert_eq!((r.started(), r.failed()), (1, 0));
    }

    #[test]
    fn counts_failures() {
        let mut r = CommandRunner::new(1);
        assert!(r.run(&["/nonexistent/command".to_owned()]).is_err());
        r.run(&["false".to_owned()]).unwrap();
        r.run(&["true".to_owned()]).unwrap(); // waits for `false` first: at most one at once
        r.wait_all();
        assert_eq!((r.started(), r.failed()), (2, 2));
    }

    #[test]
    fn commands_for_one_key_run_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut r = CommandRunner::new(16);
        // The first is slower than the second (it makes the race, the test waits on nothing):
        // without the key the second would finish first.
        let slow = format!("sleep 0.2; echo ban >> {}", out.display());
        let fast = format!("echo unban >> {}", out.display());
        r.run_keyed(Some("1.2.3.4"), &words(&["sh", "-c", &slow]))
            .unwrap();
        r.run_keyed(Some("1.2.3.4"), &words(&["sh", "-c", &fast]))
            .unwrap();
        r.wait_all();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "ban\nunban\n");
    }

    #[test]
    fn a_failure_keeps_its_status_and_the_start_of_its_stderr() {
        let process = Captured::spawn(
            Command::new("sh")
                .args([
                    "-c",
                    "echo 'Error: no such set' >&2; head -c 100000 /dev/zero >&2; exit 3",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
        )
        .unwrap();
        let outcome = process.finish_within(COMMAND_PATIENCE);
        assert!(!outcome.success());
        assert_eq!(outcome.status.as_ref().unwrap().code(), Some(3));
        assert!(
            outcome.stderr.starts_with("Error: no such set"),
            "{}",
            outcome.stderr
        );
        assert!(outcome.stderr.len() <= MAX_STDERR);
        assert_eq!(outcome.status_text(), "exit status: 3");
    }

    #[test]
    fn a_hung_program_is_killed_after_its_patience() {
        let process = Captured::spawn(
            Command::new("sleep")
                .arg("30")
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
        )
        .unwrap();
        let outcome = process.finish_within(Duration::from_millis(50));
        assert!(!outcome.success());
        assert!(
            outcome.stderr.starts_with("killed after"),
            "{}",
            outcome.stderr
        );
    }
}
