//! Issue 16 (operability) through the real binary: every HTTP error is the documented JSON,
//! `/openapi.json` passes a real OpenAPI validator, logs carry no colour off a terminal (and
//! JSON when asked), `/metrics` speaks both exposition formats, misconfiguration is said out
//! loud. (`rediss://`, Redis over TLS, is tested in `tls.rs`.)

use std::process::Child;

use serde_json::Value;

mod common;
mod logs;

/// A `serve` on the default configuration, killed when dropped.
struct Serve {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Serve {
    fn start() -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("d.sqlite");
        let (child, base) = common::start_serve(&["--db".as_ref(), db.as_os_str()]);
        Serve {
            child,
            base,
            _dir: dir,
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every error answer: its status, and a JSON body `{"error": "…"}` with a message.
#[test]
fn every_error_is_the_documented_json() {
    let serve = Serve::start();
    let client = reqwest::blocking::Client::new();
    let url = |path: &str| format!("{}{path}", serve.base);
    let cases = [
        (client.get(url("/no/such/route")), 404),
        (client.get(url("/v1/incr")), 405),
        (client.delete(url("/healthz")), 405),
        (client.get(url("/v1/status?limit=abc")), 400),
        (client.get(url("/v1/status?limit=0")), 400),
        (client.get(url("/v1/status?limit=1001")), 400),
        (
            client
                .post(url("/v1/incr?rates=maybe"))
                .json(&serde_json::json!({"token": "t", "metric": "m"})),
            400,
        ),
    ];
    for (request, status) in cases {
        let request = request.build().unwrap();
        let what = format!("{} {}", request.method(), request.url());
        let response = client.execute(request).unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(kind, "application/json", "{what}");
        if status == 405 {
            assert!(response.headers().contains_key("allow"), "{what}");
        }
        let body: Value = response.json().unwrap();
        let message = body["error"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{what}: {body}");
    }
    let ok: Value = client
        .get(url("/v1/status?limit=1000"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(ok["items"].is_array(), "{ok}");
}

/// The Python venv `scripts/test` keeps under `target/` (`BANHAMMER_PYVENV` elsewhere), with
/// `openapi-spec-validator` installed in it.
fn validator() -> std::path::PathBuf {
    let venv = std::env::var_os("BANHAMMER_PYVENV").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/pyvenv"),
        std::path::PathBuf::from,
    );
    let bin = venv.join("bin/openapi-spec-validator");
    assert!(
        bin.exists(),
        "{} is missing: scripts/test installs openapi-spec-validator into that venv",
        bin.display()
    );
    bin
}

/// Runs the validator on `doc`: whether it passed, and what it said.
fn validate(doc: &Value, dir: &std::path::Path) -> (bool, String) {
    let file = dir.join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    let out = std::process::Command::new(validator())
        .arg(&file)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

#[test]
fn the_served_openapi_document_passes_openapi_spec_validator() {
    let serve = Serve::start();
    let doc: Value = reqwest::blocking::get(format!("{}/openapi.json", serve.base))
        .unwrap()
        .json()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (valid, said) = validate(&doc, dir.path());
    assert!(valid, "{said}");
    // The validator does refuse what the issue found: a response without a description, a
    // query parameter declared in the path.
    let mut broken = doc.clone();
    broken["paths"]["/healthz"]["get"]["responses"]["200"]
        .as_object_mut()
        .unwrap()
        .remove("description");
    assert!(
        !validate(&broken, dir.path()).0,
        "a response needs a description"
    );
    let mut broken = doc;
    let params = broken["paths"]["/v1/status"]["get"]["parameters"]
        .as_array_mut()
        .unwrap();
    assert!(params.iter().any(|p| p["in"] == "query"));
    for p in params.iter_mut() {
        p["in"] = "path".into();
        p["required"] = true.into();
    }
    assert!(
        !validate(&broken, dir.path()).0,
        "cursor is not in the path"
    );
}

/// `serve` on a port already taken, with `args`: it logs its start (bans and counts read
/// back) and stops; what it wrote to stderr. `through_terminal` runs it under `script`, whose
/// pseudo-terminal is its stderr.
fn serve_logs(args: &[&str], env: &[(&str, &str)], through_terminal: bool) -> String {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut line = vec![
        env!("CARGO_BIN_EXE_banhammer").to_owned(),
        "serve".into(),
        "--listen".into(),
        taken.local_addr().unwrap().to_string(),
        "--db".into(),
        dir.path().join("d.sqlite").display().to_string(),
    ];
    line.extend(args.iter().map(|a| (*a).to_owned()));
    let mut cmd = if through_terminal {
        let mut c = std::process::Command::new("script");
        c.args(["-qec", &line.join(" "), "/dev/null"]);
        c
    } else {
        let mut c = std::process::Command::new(&line[0]);
        c.args(&line[1..]);
        c
    };
    cmd.env("RUST_LOG", "info").env_remove("NO_COLOR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "the port is taken");
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

#[test]
fn logs_are_coloured_only_on_a_terminal_and_json_when_asked() {
    const ESC: char = '\u{1b}';
    let piped = serve_logs(&[], &[], false);
    assert!(piped.contains("Bans read back."), "{piped}");
    assert!(!piped.contains(ESC), "no colour codes in a pipe: {piped:?}");
    let terminal = serve_logs(&[], &[], true);
    assert!(terminal.contains(ESC), "colour on a terminal: {terminal:?}");
    let no_color = serve_logs(&[], &[("NO_COLOR", "1")], true);
    assert!(no_color.contains("Bans read back."), "{no_color}");
    assert!(!no_color.contains(ESC), "NO_COLOR: {no_color:?}");
    let json = serve_logs(&["--log-format", "json"], &[], false);
    let events: Vec<Value> = json
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["fields"]["message"] == "Bans read back."
                && e["level"] == "INFO"
                && e["fields"]["restored"] == 0),
        "{json}"
    );
}

/// `text` parsed by the Python `prometheus_client` parser of `format` (`classic`, or
/// `openmetrics`, which is strict): each family's name and type, or the parser's error.
fn parse_metrics(text: &str, format: &str) -> Result<Vec<(String, String)>, String> {
    let python = validator().with_file_name("python");
    let module = match format {
        "classic" => "prometheus_client.parser",
        _ => "prometheus_client.openmetrics.parser",
    };
    let script = format!(
        "import sys, json\nfrom {module} import text_string_to_metric_families as parse\n\
         print(json.dumps([[f.name, f.type] for f in parse(sys.stdin.read())]))"
    );
    let mut child = std::process::Command::new(python)
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

/// `GET url` with `accept`: the content type and the body.
fn scrape(url: &str, accept: Option<&str>) -> (String, String) {
    let mut request = reqwest::blocking::Client::new().get(url);
    if let Some(a) = accept {
        request = request.header("accept", a);
    }
    let r = request.send().unwrap();
    assert_eq!(r.status(), 200);
    let kind = r.headers()["content-type"].to_str().unwrap().to_owned();
    (kind, r.text().unwrap())
}

/// What Prometheus 2.x sends.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Checks a classic scrape: every family typed (a counter's samples under its own name), the
/// counters among them, and each family's series in label order.
fn check_classic(text: &str, counters: &[&str]) {
    let families = parse_metrics(text, "classic").unwrap();
    for (name, kind) in &families {
        assert_ne!(kind, "unknown", "{name} is untyped:\n{text}");
    }
    for c in counters {
        assert!(
            families.iter().any(|(n, k)| n == c && k == "counter"),
            "{c} is a counter: {families:?}"
        );
    }
    let decisions: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("banhammer_decisions_total{"))
        .collect();
    assert_eq!(decisions.len(), 4, "{text}");
    let mut sorted = decisions.clone();
    sorted.sort_unstable();
    assert_eq!(decisions, sorted, "series in a stable order");
}

#[test]
fn serve_metrics_are_classic_text_unless_openmetrics_is_asked_for() {
    let serve = Serve::start();
    let url = format!("{}/metrics", serve.base);
    let _ = scrape(&format!("{}/healthz", serve.base), None);
    let (kind, text) = scrape(&url, None);
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    check_classic(&text, &["banhammer_http_requests", "banhammer_decisions"]);
    assert!(
        !text.contains("banhammer_store_up"),
        "no shared store, no store_up:\n{text}"
    );
    let (kind, text) = scrape(&url, Some(PROMETHEUS_ACCEPT));
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let families = parse_metrics(&text, "openmetrics").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(families.contains(&("banhammer_http_requests".into(), "counter".into())));
    // The strict parser does refuse classic text as OpenMetrics (no `# EOF`).
    let (_, classic) = scrape(&url, Some("text/plain"));
    assert!(parse_metrics(&classic, "openmetrics").is_err());
}

#[test]
fn watch_serves_the_same_metrics_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (config, log, csv) = (
        dir.path().join("w.toml"),
        dir.path().join("access.log"),
        dir.path().join("record.csv"),
    );
    std::fs::write(
        &config,
        format!(
            "[watch]\nstate = \"{}\"\ncsv = \"{}\"\npoll_interval_ms = 20\n\
             [metrics.request]\n[[metrics.request.thresholds]]\nlimit = 2\nwindow = 600\n\
             actions = [\"block_local\"]\naction_duration = 600\n",
            dir.path().join("state.sqlite").display(),
            csv.display()
        ),
    )
    .unwrap();
    let lines: String = (1..=2)
        .map(|s| {
            format!(
                "10.0.0.9 - - [01/Jan/2019:00:00:0{s} +0800] \"GET / HTTP/1.1\" 200 1 \"\" \"\"\n"
            )
        })
        .collect();
    std::fs::write(&log, lines).unwrap();
    let watch = logs::Watch::start(
        &config,
        &log,
        &[
            "--clock",
            "event",
            "--max-delay",
            "0",
            "--from-start",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    logs::wait_for_lines(&csv, 1);
    let said = watch.wait_for_log("Metrics at ");
    let url = said
        .split("Metrics at ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .trim_end_matches('.')
        .to_owned();
    let text = banhammer_testkit::wait::for_some("watch's metrics counting the ban", || {
        let (_, text) = scrape(&url, None);
        text.contains("banhammer_decisions_total{decision=\"ban\"} 1")
            .then_some(text)
    });
    check_classic(&text, &["banhammer_decisions", "banhammer_evictions"]);
    assert!(text.contains("banhammer_active_bans 1"), "{text}");
    let (kind, text) = scrape(&url, Some(PROMETHEUS_ACCEPT));
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    parse_metrics(&text, "openmetrics").unwrap_or_else(|e| panic!("{e}\n{text}"));
    watch.stop();
}

#[test]
fn a_missing_log_is_said_to_be_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.log");
    let config = dir.path().join("w.toml");
    std::fs::write(
        &config,
        format!(
            "[watch]\nstate = \"{}\"\n[metrics.request]\n[[metrics.request.thresholds]]\n\
             limit = 2\nwindow = 60\nactions = [\"block_local\"]\naction_duration = 60\n",
            dir.path().join("state.sqlite").display()
        ),
    )
    .unwrap();
    let watch = logs::Watch::start(&config, &missing, &[]);
    let said = watch.wait_for_log("waiting for it to appear");
    assert!(said.contains("missing.log"), "{said}");
    watch.stop();
    let monitor = logs::bin()
        .args(["monitor", "--plain", "--duration", "1", "--log"])
        .arg(&missing)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&monitor.stderr);
    assert!(
        said.contains("missing.log: no such file yet: waiting for it to appear."),
        "{said}"
    );
}
