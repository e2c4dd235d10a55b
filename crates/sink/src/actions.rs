//! The built-in actions: `block_local`, `record_local`, `report_central`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use banhammer_core::{Action, ActionCall, NamedNoop};
use serde::Serialize;

use crate::escape::write_json;

/// An action that appends one JSON line per call to a file (`record_local`, and
/// `report_central` until a webhook is configured), or only counts when it has no file.
#[derive(Debug)]
pub struct RecordFile {
    name: String,
    /// A std mutex: the write is short and never crosses an `.await`.
    file: Option<Mutex<File>>,
    calls: AtomicU64,
    failures: AtomicU64,
}

#[derive(Serialize)]
struct CallJson<'a> {
    action: &'a str,
    at: i64,
    token: &'a str,
    duration: u64,
    metric: &'a str,
    window: u64,
    limit: u64,
    tier: usize,
    repeat: bool,
}

impl RecordFile {
    /// A recording action named `name`, appending to `path` if given.
    pub fn open(name: &str, path: Option<&Path>) -> io::Result<Self> {
        let file = path
            .map(|p| OpenOptions::new().create(true).append(true).open(p))
            .transpose()?
            .map(Mutex::new);
        Ok(RecordFile {
            name: name.to_owned(),
            file,
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// How many times it ran.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// How many writes failed (the disk is full, the file went away).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

impl Action for RecordFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn call(&self, c: &ActionCall<'_>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let Some(file) = &self.file else { return };
        let json = CallJson {
            action: &self.name,
            at: c.at.as_unix(),
            token: c.token,
            duration: c.duration.get(),
            metric: c.metric,
            window: c.window.secs(),
            limit: c.limit,
            tier: c.tier,
            repeat: c.repeat,
        };
        let mut line = Vec::new();
        if write_json(&mut line, &json).is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
        line.push(b'\n');
        // One write per line keeps lines whole when several processes append.
        let ok = file
            .lock()
            .map(|mut f| f.write_all(&line).is_ok())
            .unwrap_or(false);
        if !ok {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The built-in action called `name`: `block_local` (the decision itself blocks; the action
/// does nothing more), or a [`RecordFile`] for `record_local` / `report_central`.
pub fn builtin_action(name: &str, path: Option<&Path>) -> io::Result<Arc<dyn Action>> {
    Ok(match name {
        "record_local" | "report_central" => Arc::new(RecordFile::open(name, path)?),
        other => Arc::new(NamedNoop(other.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use banhammer_core::{Effect, Seconds, Timestamp, Window};

    use super::*;

    #[test]
    fn record_file_appends_one_json_line_per_call() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.jsonl");
        let action = RecordFile::open("record_local", Some(&path)).unwrap();
        let call = ActionCall {
            token: "1.2.3.4",
            duration: Seconds::new(3600),
            metric: "login_successful",
            window: Window::from_secs(60).unwrap(),
            limit: 10,
            tier: 0,
            at: Timestamp::from_unix(5),
            effect: Effect::Notify,
            repeat: false,
        };
        action.call(&call);
        action.call(&call);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["token"], "1.2.3.4");
        assert_eq!(lines[0]["duration"], 3600);
        assert_eq!(lines[0]["window"], 60);
        assert_eq!(action.calls(), 2);
        assert_eq!(action.failures(), 0);
    }
}
