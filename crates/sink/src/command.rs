//! Running a command per decision (e.g. `nft add element …`) without a shell.

use std::collections::VecDeque;
use std::io;
use std::process::{Child, Command, Stdio};

/// Starts commands and reaps them later, with at most `max_running` at once: a slow firewall
/// command slows the watcher down instead of piling up processes.
#[derive(Debug)]
pub struct CommandRunner {
    running: VecDeque<Child>,
    max_running: usize,
    started: u64,
    failed: u64,
}

impl CommandRunner {
    /// A runner allowing `max_running` commands at once (at least one).
    pub fn new(max_running: usize) -> Self {
        CommandRunner {
            running: VecDeque::new(),
            max_running: max_running.max(1),
            started: 0,
            failed: 0,
        }
    }

    /// Starts `argv[0]` with the rest as its arguments. No shell: each word is one argument.
    pub fn run(&mut self, argv: &[String]) -> io::Result<()> {
        let Some((program, args)) = argv.split_first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
        };
        self.reap();
        while self.running.len() >= self.max_running {
            if let Some(mut oldest) = self.running.pop_front() {
                self.count(oldest.wait());
            }
        }
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn();
        match child {
            Ok(c) => {
                self.started += 1;
                self.running.push_back(c);
                Ok(())
            }
            Err(e) => {
                self.failed += 1;
                Err(e)
            }
        }
    }

    /// Collects the commands that have finished.
    pub fn reap(&mut self) {
        let mut still = VecDeque::with_capacity(self.running.len());
        while let Some(mut c) = self.running.pop_front() {
            match c.try_wait() {
                Ok(Some(status)) => self.count(Ok(status)),
                Ok(None) => still.push_back(c),
                Err(e) => self.count(Err(e)),
            }
        }
        self.running = still;
    }

    /// Waits for every running command.
    pub fn wait_all(&mut self) {
        while let Some(mut c) = self.running.pop_front() {
            self.count(c.wait());
        }
    }

    fn count(&mut self, r: io::Result<std::process::ExitStatus>) {
        if !r.is_ok_and(|s| s.success()) {
            self.failed += 1;
        }
    }

    /// Commands started.
    pub fn started(&self) -> u64 {
        self.started
    }

    /// Commands that could not start or exited unsuccessfully.
    pub fn failed(&self) -> u64 {
        self.failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_each_word_as_one_argument_without_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut r = CommandRunner::new(2);
        // If a shell ran this, `;` would start a second command and create `pwned`.
        let script = format!("printf '%s\\n' \"$1\" > {}", out.display());
        let argv: Vec<String> = ["sh", "-c", &script, "sh", "1.2.3.4; touch pwned"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        r.run(&argv).unwrap();
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

    use std::path::Path;
}
