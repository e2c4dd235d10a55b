//! What the access-log tests share: the binary, the repository, and a running `watch` whose
//! log is read as it writes it.

// Each test file uses a part of this.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use banhammer_testkit::wait;

pub(crate) fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_banhammer"))
}

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(crate) fn text(out: &[u8]) -> String {
    String::from_utf8(out.to_vec()).unwrap()
}

/// A running `banhammer watch`, killed when dropped.
pub(crate) struct Watch {
    pub(crate) child: Child,
    /// What it has logged so far, read off its stderr by a thread (so that it never blocks on a
    /// full pipe).
    pub(crate) log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    /// Starts `watch` and returns once it says it is watching: its state is open, its bans and
    /// read position restored, and the log looked for (without `--from-start`, a log that
    /// exists now is read from its end, one that appears later from its start).
    pub(crate) fn start(config: &Path, log: &Path, extra: &[&str]) -> Watch {
        let mut child = bin()
            .arg("watch")
            .arg("--config")
            .arg(config)
            .arg(log)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let log = Arc::new(Mutex::new(String::new()));
        let reader = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in stderr.lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            })
        };
        let mut watch = Watch {
            child,
            log,
            reader: Some(reader),
        };
        wait::until("watch saying `Watching.`", || {
            if let Some(status) = watch.child.try_wait().unwrap() {
                panic!("watch exited ({status}): {}", watch.log.lock().unwrap());
            }
            watch.log.lock().unwrap().contains("Watching.")
        });
        watch
    }

    /// Waits until it has logged `what`; returns its log so far.
    pub(crate) fn wait_for_log(&self, what: &str) -> String {
        wait::for_some(&format!("watch logging {what:?}"), || {
            let log = self.log.lock().unwrap();
            log.contains(what).then(|| log.clone())
        })
    }

    /// Stops it with SIGTERM; returns what it logged.
    pub(crate) fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        let log = self.log.lock().unwrap().clone();
        assert!(status.success(), "watch exits cleanly on SIGTERM: {log}");
        log
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `path` holds `lines` lines (the watcher works in the background).
pub(crate) fn wait_for_lines(path: &Path, lines: usize) -> Vec<String> {
    let what = format!("{} reaching {lines} lines", path.display());
    wait::for_some(&what, || {
        let got: Vec<String> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        (got.len() >= lines).then_some(got)
    })
}
