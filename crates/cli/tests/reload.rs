//! SIGHUP reloads the configuration of the real `serve` and `watch` processes (issue 16): the
//! process lives on, a new metric works, an unchanged one keeps its counts and bans, a broken
//! file keeps the running configuration and logs each problem, and `watch` opens its record
//! files again (logrotate's `postrotate`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use banhammer_testkit::wait;
use serde_json::Value;

mod logs;

/// Sends `signal` (`HUP`, `TERM`) to `child` with the `kill` command.
fn send(child: &Child, signal: &str) {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap()
        .success());
}

/// A running `banhammer serve` with its stderr collected; killed when dropped.
struct Serve {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
}

impl Serve {
    fn start(config: &Path, db: &Path) -> Serve {
        let mut child = logs::bin()
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .arg("--db")
            .arg(db)
            .env("RUST_LOG", "info")
            .env_remove("BANHAMMER_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = BufReader::new(child.stderr.take().unwrap());
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in stderr.lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line.trim().rsplit(' ').next().unwrap().to_owned();
        assert!(base.starts_with("http://"), "serve did not start: {line}");
        Serve { child, base, log }
    }

    /// Waits until the log holds `what` `times` times in all.
    fn wait_for_log(&mut self, what: &str, times: usize) -> String {
        wait::for_some(&format!("serve logging {what:?} {times} times"), || {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("serve exited ({status}): {}", self.log.lock().unwrap());
            }
            let log = self.log.lock().unwrap();
            (log.matches(what).count() >= times).then(|| log.clone())
        })
    }

    /// `POST /v1/incr`: the status and the body.
    fn incr(&self, token: &str, metric: &str) -> (u16, Value) {
        let r = reqwest::blocking::Client::new()
            .post(format!("{}/v1/incr?rates=true", self.base))
            .json(&serde_json::json!({"token": token, "metric": metric}))
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A configuration with metric `kept` (3 in an hour bans for an hour) and `extra`.
fn serve_config(path: &Path, extra: &str) {
    let text = format!(
        "[metrics.kept]\n[[metrics.kept.thresholds]]\nlimit = 3\nwindow = 3600\n\
         actions = [\"block_local\"]\naction_duration = 3600\n{extra}"
    );
    std::fs::write(path, text).unwrap();
}

const ADDED: &str = "[metrics.added]\n[[metrics.added.thresholds]]\nlimit = 2\nwindow = 60\n\
                     actions = [\"block_local\"]\naction_duration = 60\n";

#[test]
fn sighup_reloads_serve_keeping_counts_and_bans_and_refuses_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let (config, db) = (dir.path().join("b.toml"), dir.path().join("d.sqlite"));
    serve_config(&config, "");
    let mut serve = Serve::start(&config, &db);
    // Two of three for one token; another banned.
    for _ in 0..2 {
        assert_eq!(serve.incr("192.0.2.1", "kept").0, 200);
    }
    for _ in 0..3 {
        serve.incr("192.0.2.2", "kept");
    }
    assert_eq!(serve.incr("192.0.2.2", "kept").1["passed"], false);
    assert_eq!(serve.incr("192.0.2.1", "added").0, 422, "not defined yet");

    serve_config(&config, ADDED);
    send(&serve.child, "HUP");
    serve.wait_for_log("Configuration reloaded.", 1);
    assert!(serve.child.try_wait().unwrap().is_none(), "serve lives on");
    let (status, body) = serve.incr("192.0.2.1", "added");
    assert_eq!((status, &body["passed"]), (200, &Value::Bool(true)));
    // The third event of the unchanged metric bans: the first two were kept.
    let (_, third) = serve.incr("192.0.2.1", "kept");
    assert_eq!(third["passed"], false, "{third}");
    assert_eq!(third["stats"]["token_rate_60m"], 3, "{third}");
    let (_, banned) = serve.incr("192.0.2.2", "kept");
    assert_eq!(
        banned["passed"], false,
        "the ban made before the reload holds"
    );

    // A broken file: every problem logged with its place, the running rules kept.
    std::fs::write(
        &config,
        "[engine]\nrate = true\n[metrics.m]\n[[metrics.m.thresholds]]\nlimit = -1\nwindow = 10\n",
    )
    .unwrap();
    send(&serve.child, "HUP");
    let log = serve.wait_for_log("Configuration not reloaded", 1);
    let name = config.display().to_string();
    assert!(log.contains(&format!("{name}:2:1")), "{log}");
    assert!(log.contains(&format!("{name}:5:9")), "{log}");
    assert_eq!(serve.incr("192.0.2.3", "added").0, 200, "{log}");
    assert_eq!(serve.incr("192.0.2.3", "m").0, 422);

    send(&serve.child, "TERM");
    assert!(serve.child.wait().unwrap().success());
}

#[test]
fn sighup_reloads_watch_and_reopens_a_rotated_record_file() {
    let dir = tempfile::tempdir().unwrap();
    let (config, log, csv) = (
        dir.path().join("w.toml"),
        dir.path().join("access.log"),
        dir.path().join("record.csv"),
    );
    let write_config = |limit: u32| {
        let text = format!(
            "[watch]\nstate = \"{}\"\ncsv = \"{}\"\npoll_interval_ms = 20\n\
             [metrics.request]\n[[metrics.request.thresholds]]\nlimit = 3\nwindow = 600\n\
             actions = [\"block_local\"]\naction_duration = 600\n\
             [metrics.other]\n[[metrics.other.thresholds]]\nlimit = {limit}\nwindow = 60\n\
             actions = [\"record_local\"]\naction_duration = 60\n",
            dir.path().join("state.sqlite").display(),
            csv.display()
        );
        std::fs::write(&config, text).unwrap();
    };
    write_config(100);
    let line = |ip: &str, s: u32| {
        format!("{ip} - - [01/Jan/2019:00:00:{s:02} +0800] \"GET / HTTP/1.1\" 200 1 \"\" \"\"\n")
    };
    let first: String = [("10.0.0.1", 1), ("10.0.0.1", 2)]
        .iter()
        .chain(&[("10.0.0.2", 3), ("10.0.0.2", 4), ("10.0.0.2", 5)])
        .map(|(ip, s)| line(ip, *s))
        .collect();
    std::fs::write(&log, first).unwrap();
    let mut watch = logs::Watch::start(
        &config,
        &log,
        &["--clock", "event", "--max-delay", "0", "--from-start"],
    );
    assert_eq!(logs::wait_for_lines(&csv, 1), ["1546272005,BAN,10.0.0.2"]);
    // logrotate: the record file moved away, then SIGHUP (with a changed configuration).
    std::fs::rename(&csv, dir.path().join("record.csv.1")).unwrap();
    write_config(50);
    send(&watch.child, "HUP");
    watch.wait_for_log("Configuration reloaded.");
    assert!(watch.child.try_wait().unwrap().is_none(), "watch lives on");
    // The third line of 10.0.0.1 bans it: its first two were kept; the record is a new file.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line("10.0.0.1", 6).as_bytes()))
        .unwrap();
    assert_eq!(logs::wait_for_lines(&csv, 1), ["1546272006,BAN,10.0.0.1"]);

    // A broken file: logged, and the watcher follows on with the running configuration.
    std::fs::write(&config, "[metrics.request]\nlimit = \"x\"\n").unwrap();
    send(&watch.child, "HUP");
    let logged = watch.wait_for_log("Configuration not reloaded");
    assert!(
        logged.contains(&format!("{}:2", config.display())),
        "{logged}"
    );
    let _ = &mut watch;
    let stopped = watch.stop();
    assert!(stopped.contains("Stopped."), "{stopped}");
}
