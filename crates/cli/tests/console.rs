//! The live web console in a real browser: headless Chromium driven through chromedriver
//! (WebDriver, with fantoccini) against the real `banhammer serve` and `banhammer monitor
//! --web`. A ban made over the API shows within a second; the unban button works with the
//! admin token and is refused without it (and the API agrees both times); search, sort and
//! the countdown; dark, light and a phone's width; a restart of the service is followed by a
//! clean reconnect; the monitor's alert banner comes and goes with the alert; and the browser
//! logs no error but the refusals the test asks for.
//!
//! Screenshots are taken every run; with `BANHAMMER_SCREENSHOTS=DIR` they are also saved
//! there (docs/console/ holds the committed ones: `BANHAMMER_SCREENSHOTS=docs/console`).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[allow(
    dead_code,
    reason = "this test starts serve its own way (spawn_serve), not start_serve"
)]
mod common;

use banhammer_core::Clock;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::time::Instant;

const TOKEN: &str = "s3cret";

/// How long a page may take to show what the test waits for (far longer than it takes).
const PATIENCE: Duration = Duration::from_secs(15);

/// A child process killed when the test ends, whatever happens.
struct Killed(Child);

impl Killed {
    /// Stops it as an operator would (SIGTERM), and waits for it to exit.
    fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exited = self.0.wait().unwrap();
        assert!(exited.success(), "{exited}");
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver on a free port, once it says it is ready.
async fn chromedriver() -> (Killed, String) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is installed (scripts/test installs chromium-driver)");
    let url = format!("http://127.0.0.1:{port}");
    let child = Killed(child);
    let http = reqwest::Client::new();
    eventually(PATIENCE, "chromedriver ready", || async {
        let r = http.get(format!("{url}/status")).send().await.ok()?;
        let v: Value = r.json().await.ok()?;
        (v["value"]["ready"] == true).then_some(())
    })
    .await;
    (child, url)
}

/// A headless Chromium session that keeps the browser's console log.
async fn browser(driver: &str) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--window-size=1280,1000", "--lang=en-US"]}),
    );
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("a Chromium session")
}

/// chromedriver's own commands (the browser log, DevTools), beside the WebDriver ones.
async fn driver_call(driver: &str, c: &Client, path: &str, body: Value) -> Value {
    let id = c.session_id().await.unwrap().unwrap();
    let r = reqwest::Client::new()
        .post(format!("{driver}/session/{id}/{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    r.json::<Value>().await.unwrap()["value"].take()
}

/// The browser's console entries since the last call.
async fn console_log(driver: &str, c: &Client) -> Vec<Value> {
    let v = driver_call(driver, c, "se/log", json!({"type": "browser"})).await;
    v.as_array().cloned().unwrap_or_default()
}

/// Fails on any console entry but the refused requests the test made on purpose (Chromium
/// logs a 401 answer to `fetch` as a network error).
fn assert_clean(entries: &[Value]) {
    for e in entries {
        let message = e["message"].as_str().unwrap_or_default();
        let refused = message.contains("status of 401");
        assert!(
            refused || e["level"] != "SEVERE" && e["level"] != "WARNING",
            "the browser logged: {e}"
        );
    }
}

async fn prefer_dark(driver: &str, c: &Client, dark: bool) {
    driver_call(
        driver,
        c,
        "goog/cdp/execute",
        json!({"cmd": "Emulation.setEmulatedMedia", "params": {"features": [
            {"name": "prefers-color-scheme", "value": if dark { "dark" } else { "light" }}]}}),
    )
    .await;
}

/// Takes a screenshot (a PNG), saved as `name` when screenshots are asked for.
async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    if let Some(dir) = std::env::var_os("BANHAMMER_SCREENSHOTS") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }
}

/// Polls `check` until it gives a value, for at most `patience`.
async fn eventually<T, F>(patience: Duration, what: &str, mut check: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + patience;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never happened (waited {patience:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap()
}

async fn text_of(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

async fn conn_state(c: &Client) -> String {
    js(c, "return document.getElementById('conn').dataset.state")
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn wait_live(c: &Client) {
    eventually(PATIENCE, "the console's stream is live", || async {
        (conn_state(c).await == "live").then_some(())
    })
    .await;
}

async fn give_token(c: &Client, token: &str) {
    let input = c.find(Locator::Id("token-input")).await.unwrap();
    input.send_keys(token).await.unwrap();
    c.find(Locator::Id("token-save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

fn row(token: &str) -> String {
    format!("#ban-table tbody tr[data-token=\"{token}\"]")
}

async fn has_row(c: &Client, token: &str) -> bool {
    c.find(Locator::Css(&row(token))).await.is_ok()
}

async fn ban_rows(c: &Client) -> Vec<String> {
    js(
        c,
        "return [...document.querySelectorAll('#ban-table tbody tr')].map(r => r.dataset.token)",
    )
    .await
    .as_array()
    .unwrap()
    .iter()
    .map(|v| v.as_str().unwrap().to_owned())
    .collect()
}

/// `banhammer serve` with the seed example, an admin token and its own database.
fn serve(db: &Path, listen: &str) -> (Killed, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_banhammer"));
    cmd.args(["serve", "--listen", listen, "--config"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/banhammer.toml"))
        .arg("--db")
        .arg(db)
        .env("BANHAMMER_ADMIN_TOKEN", TOKEN);
    let (child, url) = common::spawn_serve(cmd);
    (Killed(child), url)
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn fire(&self, token: &str) {
        let r = self
            .http
            .post(format!("{}/v1/now", self.base))
            .bearer_auth(TOKEN)
            .json(&json!({"token": token, "metric": "login_failed", "threshold": 0}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    async fn incr(&self, token: &str, metric: &str) {
        self.http
            .post(format!("{}/v1/incr", self.base))
            .json(&json!({"token": token, "metric": metric}))
            .send()
            .await
            .unwrap();
    }

    async fn banned(&self, token: &str) -> bool {
        let r = self
            .http
            .get(format!("{}/v1/bans/{token}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => true,
            404 => false,
            s => panic!("GET /v1/bans/{token}: {s}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serve_console_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("decisions.sqlite");
    let (service, base) = serve(&db, "127.0.0.1:0");
    let api = Api {
        base: base.clone(),
        http: reqwest::Client::new(),
    };
    // Something to look at: traffic on two metrics, and two bans made before the page opens.
    for i in 0..40 {
        api.incr(&format!("192.0.2.{}", i % 7), "login_failed")
            .await;
        api.incr(&format!("198.51.100.{}", i % 3), "page_view")
            .await;
    }
    api.fire("203.0.113.9").await;
    api.fire("198.51.100.77").await;

    let (_driver, driver) = chromedriver().await;
    let c = browser(&driver).await;
    c.goto(&format!("{base}/ui")).await.unwrap();
    // No token yet: the page asks for one and shows nothing of the service.
    eventually(PATIENCE, "the page asks for the token", || async {
        (conn_state(&c).await == "denied").then_some(())
    })
    .await;
    assert!(ban_rows(&c).await.is_empty());
    give_token(&c, TOKEN).await;
    wait_live(&c).await;
    eventually(PATIENCE, "the earlier bans are listed", || async {
        (has_row(&c, "203.0.113.9").await && has_row(&c, "198.51.100.77").await).then_some(())
    })
    .await;
    // The token stays in this tab's sessionStorage, nowhere else.
    assert_eq!(
        js(&c, "return sessionStorage.getItem('banhammer.adminToken')").await,
        TOKEN
    );
    assert_eq!(js(&c, "return localStorage.length").await, 0);

    // A ban made over the API shows within a second.
    api.fire("203.0.113.50").await;
    let answered = Instant::now();
    eventually(
        Duration::from_secs(1),
        "the new ban in the table",
        || async { has_row(&c, "203.0.113.50").await.then_some(()) },
    )
    .await;
    let shown_after = answered.elapsed();
    assert!(shown_after < Duration::from_secs(1), "{shown_after:?}");

    // Ends in: counts down.
    let countdown = format!("{} td.countdown", row("203.0.113.50"));
    let first = text_of(&c, &countdown).await.unwrap();
    assert!(
        first.starts_with("59m") || first.starts_with("1h"),
        "{first}"
    );
    eventually(PATIENCE, "the countdown moves", || async {
        text_of(&c, &countdown).await.filter(|t| *t != first)
    })
    .await;

    // Search and sort.
    c.find(Locator::Id("ban-search"))
        .await
        .unwrap()
        .send_keys("203.0.113")
        .await
        .unwrap();
    let mut shown = ban_rows(&c).await;
    shown.sort();
    assert_eq!(shown, ["203.0.113.50", "203.0.113.9"]);
    js(&c, "const s = document.getElementById('ban-search'); s.value = ''; s.dispatchEvent(new Event('input')); return 0").await;
    c.find(Locator::Css("#ban-table th[data-sort=token]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let by_token = ban_rows(&c).await;
    let mut sorted = by_token.clone();
    sorted.sort();
    assert_eq!(by_token, sorted, "ascending by token");
    assert_eq!(by_token.len(), 3);

    // Rates and the decision log have what the service did.
    eventually(PATIENCE, "rates for both metrics", || async {
        let n = js(
            &c,
            "return document.querySelectorAll('#rate-list .rate').length",
        )
        .await;
        (n.as_u64() >= Some(2)).then_some(())
    })
    .await;
    eventually(PATIENCE, "the busiest tokens", || async {
        let n = js(
            &c,
            "return document.querySelectorAll('#busy-table tbody tr').length",
        )
        .await;
        (n.as_u64() > Some(0)).then_some(())
    })
    .await;
    let log_rows = js(
        &c,
        "return document.querySelectorAll('#log-table tbody tr').length",
    )
    .await;
    assert_eq!(log_rows, 3, "three BANs in the log");
    let bars = js(
        &c,
        "return document.querySelectorAll('#timeline-chart rect.ban').length",
    )
    .await;
    assert!(bars.as_u64() >= Some(1), "the timeline shows the bans");

    screenshot(&c, "serve-light.png").await;
    let light_bg = js(&c, "return getComputedStyle(document.body).backgroundColor").await;
    prefer_dark(&driver, &c, true).await;
    let dark_bg = js(&c, "return getComputedStyle(document.body).backgroundColor").await;
    assert_ne!(
        light_bg, dark_bg,
        "prefers-color-scheme: dark has its own colours"
    );
    screenshot(&c, "serve-dark.png").await;
    prefer_dark(&driver, &c, false).await;
    c.set_window_size(390, 844).await.unwrap();
    eventually(PATIENCE, "the page fits a phone's width", || async {
        let fits = js(
            &c,
            "return document.documentElement.scrollWidth <= window.innerWidth",
        )
        .await;
        (fits == true).then_some(())
    })
    .await;
    screenshot(&c, "serve-phone.png").await;
    c.set_window_size(1280, 1000).await.unwrap();

    // Without the token the unban button is refused, and the ban stands.
    c.find(Locator::Id("token-forget"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let unban = format!("{} button", row("203.0.113.50"));
    c.find(Locator::Css(&unban))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually(PATIENCE, "the refusal is shown", || async {
        text_of(&c, "#message").await.filter(|t| t.contains("401"))
    })
    .await;
    assert!(
        api.banned("203.0.113.50").await,
        "the API still has the ban"
    );
    assert!(has_row(&c, "203.0.113.50").await);

    // With it, the ban ends and the API agrees.
    give_token(&c, TOKEN).await;
    wait_live(&c).await;
    c.find(Locator::Css(&unban))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually(PATIENCE, "the row goes", || async {
        (!has_row(&c, "203.0.113.50").await).then_some(())
    })
    .await;
    assert!(!api.banned("203.0.113.50").await, "the API agrees");
    eventually(PATIENCE, "the UNBAN in the log", || async {
        let verbs = js(&c, "return [...document.querySelectorAll('#log-table tbody tr td:nth-child(2)')].map(t => t.textContent)").await;
        verbs
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "UNBAN")
            .then_some(())
    })
    .await;

    // The ban-by-hand form bans through POST /v1/bans, with the reason typed.
    c.find(Locator::Id("ban-token"))
        .await
        .unwrap()
        .send_keys("203.0.113.77")
        .await
        .unwrap();
    c.find(Locator::Id("ban-reason"))
        .await
        .unwrap()
        .send_keys("seen in the console")
        .await
        .unwrap();
    c.find(Locator::Id("ban-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually(PATIENCE, "the ban made by hand", || async {
        has_row(&c, "203.0.113.77").await.then_some(())
    })
    .await;
    assert!(api.banned("203.0.113.77").await);
    let ban: Value = api
        .http
        .get(format!("{}/v1/bans/203.0.113.77", api.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ban["origin"], "manual", "{ban}");
    assert_eq!(ban["reason"], "seen in the console", "{ban}");

    // A restart: the page reconnects by itself and shows the restarted service's state.
    let port = base.rsplit(':').next().unwrap().to_owned();
    // SIGTERM: open streams end cleanly (a killed service would cut them off mid-chunk,
    // which the browser logs as a network error).
    service.terminate();
    eventually(PATIENCE, "the page sees the service gone", || async {
        (conn_state(&c).await == "down").then_some(())
    })
    .await;
    let (_service, again) = serve(&db, &format!("127.0.0.1:{port}"));
    assert_eq!(again, base);
    wait_live(&c).await;
    api.fire("203.0.113.88").await;
    eventually(PATIENCE, "a ban after the restart", || async {
        has_row(&c, "203.0.113.88").await.then_some(())
    })
    .await;
    assert!(
        has_row(&c, "203.0.113.77").await,
        "bans read back at restart"
    );

    assert_clean(&console_log(&driver, &c).await);
    c.close().await.unwrap();
}

/// Appends CSV log lines: `n` requests now, to a few sections, some failing.
fn requests_now(log: &Path, n: usize) {
    let now = banhammer_core::SystemClock.now().as_unix();
    let sections = ["/api/user", "/api/help", "/report", "/pages/create"];
    let mut f = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    for i in 0..n {
        let status = if i % 7 == 0 {
            503
        } else if i % 5 == 0 {
            404
        } else {
            200
        };
        writeln!(
            f,
            "\"10.0.0.{}\",\"-\",\"apache\",{now},\"GET {} HTTP/1.0\",{status},1000",
            i % 5 + 1,
            sections[i % sections.len()]
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_console_shows_and_clears_the_alert() {
    let dir = tempfile::tempdir().unwrap();
    let log: PathBuf = dir.path().join("access.csv");
    std::fs::write(
        &log,
        "\"remotehost\",\"rfc931\",\"authuser\",\"date\",\"request\",\"status\",\"bytes\"\n",
    )
    .unwrap();
    // An alert above 0.05 requests/s over 2 minutes: more than 6 requests. Sections are a
    // path's first segment: /api, /report, /pages.
    let mut child = Command::new(env!("CARGO_BIN_EXE_banhammer"))
        .args(["monitor", "--log"])
        .arg(&log)
        .args(["--log-format", "csv", "--plain", "--interval", "10"])
        .args(["--threshold", "0.05", "--web", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let _monitor = Killed(child);
    let mut lines = stderr.lines();
    let base = loop {
        let line = lines.next().expect("the console's address").unwrap();
        if let Some(url) = line.strip_prefix("banhammer monitor: console on ") {
            break url.trim_end_matches("/ui").to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));

    let (_driver, driver) = chromedriver().await;
    let c = browser(&driver).await;
    c.goto(&format!("{base}/ui")).await.unwrap();
    wait_live(&c).await;
    let banner_shown = || async {
        js(&c, "return !document.getElementById('alert-banner').hidden")
            .await
            .as_bool()
            .unwrap()
    };
    assert!(!banner_shown().await);
    // Four batches, each read by the monitor (the page counts it) before the next is written.
    let counted = || async {
        js(
            &c,
            "const d = [...document.querySelectorAll('#traffic-stats div')]\
               .find((e) => e.textContent.endsWith('requests since start'));\
             return d ? Number(d.querySelector('strong').textContent) : 0",
        )
        .await
        .as_u64()
        .unwrap_or(0)
    };
    for batch in 1..=4u64 {
        requests_now(&log, 5);
        eventually(PATIENCE, "the batch being counted", || async {
            (counted().await >= batch * 5).then_some(())
        })
        .await;
    }
    eventually(PATIENCE, "the alert banner", || async {
        banner_shown().await.then_some(())
    })
    .await;
    let banner = text_of(&c, "#alert-banner").await.unwrap();
    assert!(
        banner.starts_with("High traffic generated an alert - hits = "),
        "{banner}"
    );
    eventually(PATIENCE, "sections and status classes", || async {
        let sections = js(
            &c,
            "return document.querySelectorAll('#section-table tbody tr').length",
        )
        .await;
        let classes = js(
            &c,
            "return document.querySelectorAll('#status-bars .row').length",
        )
        .await;
        (sections.as_u64() == Some(3) && classes.as_u64() == Some(6)).then_some(())
    })
    .await;
    screenshot(&c, "monitor-alert.png").await;
    prefer_dark(&driver, &c, true).await;
    screenshot(&c, "monitor-alert-dark.png").await;
    prefer_dark(&driver, &c, false).await;
    // The alert ends when two minutes hold 6 requests or fewer: 2 minutes after the burst.
    eventually(Duration::from_secs(180), "the banner clears", || async {
        (!banner_shown().await).then_some(())
    })
    .await;
    let history = js(
        &c,
        "return [...document.querySelectorAll('#alert-table tbody tr')].map(r => r.textContent)",
    )
    .await;
    let history: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(history.len(), 2, "{history:?}");
    assert!(
        history[0].contains("recovered"),
        "latest first: {history:?}"
    );
    assert!(history[1].contains("generated an alert"), "{history:?}");
    assert_clean(&console_log(&driver, &c).await);
    c.close().await.unwrap();
}

/// `[01/Dec/2026:05:20:00 +0000]`'s inside for unix time `t` (UTC).
fn clf_time(t: i64) -> String {
    // Days to a civil date (H. Hinnant's algorithm).
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let names = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        names[usize::try_from(month - 1).unwrap()],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[test]
fn clf_time_formats_a_known_instant() {
    assert_eq!(clf_time(1_549_573_860), "07/Feb/2019:21:11:00 +0000");
    assert_eq!(clf_time(951_782_400), "29/Feb/2000:00:00:00 +0000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_console_lists_its_bans_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(&log, "").unwrap();
    let config = dir.path().join("watch.toml");
    std::fs::write(
        &config,
        format!(
            "[accesslog]\nformat = \"combined\"\n\n[metrics.request]\n[[metrics.request.thresholds]]\n\
             limit = 5\nwindow = 60\nactions = [\"block_local\"]\naction_duration = 600\n\n\
             [watch]\nstate = \"{}\"\npoll_interval_ms = 20\n",
            dir.path().join("state.sqlite").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_banhammer"))
        .args(["watch", "--config"])
        .arg(&config)
        .arg(&log)
        .args(["--from-start", "--http", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let _watch = Killed(child);
    let mut lines = stderr.lines();
    let base = loop {
        let line = lines.next().expect("the console's address").unwrap();
        if let Some(url) = line.strip_prefix("banhammer watch: console on ") {
            break url.trim_end_matches("/ui").to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));

    let (_driver, driver) = chromedriver().await;
    let c = browser(&driver).await;
    c.goto(&format!("{base}/ui")).await.unwrap();
    wait_live(&c).await;
    // Read only: no token box, no ban form.
    let hidden = js(
        &c,
        "return ['auth', 'ban-form', 'rates'].map(id => getComputedStyle(document.getElementById(id)).display)",
    )
    .await;
    assert_eq!(hidden, json!(["none", "none", "none"]));
    let now = banhammer_core::SystemClock.now().as_unix();
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    for _ in 0..6 {
        writeln!(
            f,
            "203.0.113.5 - - [{}] \"GET /login HTTP/1.1\" 200 10 \"-\" \"curl\"",
            clf_time(now)
        )
        .unwrap();
    }
    drop(f);
    eventually(PATIENCE, "watch's ban in the table", || async {
        has_row(&c, "203.0.113.5").await.then_some(())
    })
    .await;
    assert!(
        c.find(Locator::Css(&format!("{} button", row("203.0.113.5"))))
            .await
            .is_err(),
        "no unban button: watch has no admin API"
    );
    let verbs = js(&c, "return [...document.querySelectorAll('#log-table tbody tr td:nth-child(2)')].map(t => t.textContent)").await;
    assert_eq!(verbs, json!(["BAN"]));
    screenshot(&c, "watch.png").await;
    assert_clean(&console_log(&driver, &c).await);
    c.close().await.unwrap();
}
