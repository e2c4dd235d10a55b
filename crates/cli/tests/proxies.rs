//! The forward-auth check (`GET /v1/check`) behind the real reverse proxies it is written for:
//! Debian's `nginx` (`auth_request`) and `caddy` (`forward_auth`), each started by the test on
//! a free loopback port in front of its own static files, asking the real `banhammer serve`
//! (started by the test) about every request. The proxy sets `X-Forwarded-For` from its peer,
//! so the test has several clients by binding its sockets to 127.0.0.2, .3, … (loopback
//! accepts any 127/8 source). Every child is killed when the test ends, failed or not.
//!
//! The proxy configurations are the ones `docs/enforcement-proxies.md` shows, plus what a
//! test needs to run them privately (pid, logs and temporary files in the test's folder).

use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use banhammer_testkit::{free_port, wait};
use reqwest::blocking::Client;
use reqwest::StatusCode;

mod common;

/// `request`: the 3rd within 60 s bans for 60 s; `login` (named by the proxy per location):
/// the 2nd. The proxies on 127.0.0.1 are trusted; 127.0.0.4 is allow-listed.
const RULES: &str = r#"
[metrics.request]
[[metrics.request.thresholds]]
limit = 3
window = 60
actions = ["block_local"]
action_duration = 60

[metrics.login]
[[metrics.login.thresholds]]
limit = 2
window = 60
actions = ["block_local"]
action_duration = 60

[serve]
trusted_proxies = ["127.0.0.1"]
allow = ["127.0.0.4"]

[serve.check]
metrics = ["login"]
"#;

/// A child process killed (and reaped) when dropped, so that a failing test leaves nothing.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A proxy in front of static files, asking banhammer about each request.
struct Stack {
    /// The proxy's base URL.
    base: String,
    /// Where the proxy's logs are, to show when it fails.
    dir: tempfile::TempDir,
    // Dropped in this order: the proxy, then banhammer.
    _proxy: Killed,
    _banhammer: Killed,
}

/// Starts `banhammer serve` with [`RULES`] and `banned_status`; returns it and its port.
fn banhammer(dir: &Path, banned_status: u16) -> (Killed, u16) {
    let config = dir.join("banhammer.toml");
    std::fs::write(&config, format!("{RULES}banned_status = {banned_status}\n")).unwrap();
    let db = dir.join("decisions.sqlite");
    let (child, url) = common::start_serve(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--db".as_ref(),
        db.as_os_str(),
    ]);
    let port = url.rsplit(':').next().unwrap().parse().unwrap();
    (Killed(child), port)
}

/// The static files the proxies serve: `/index.html`, `/plain/index.html`, `/login/index.html`.
fn site(dir: &Path) -> std::path::PathBuf {
    let www = dir.join("www");
    for sub in ["", "plain", "login"] {
        std::fs::create_dir_all(www.join(sub)).unwrap();
        std::fs::write(www.join(sub).join("index.html"), "upstream\n").unwrap();
    }
    www
}

/// Waits until `child` accepts connections on 127.0.0.1:`port`; fails with `log` if it exits.
fn wait_listening(child: &mut Killed, port: u16, what: &str, log: &Path) {
    wait::until(&format!("{what} listening on {port}"), || {
        if let Ok(Some(status)) = child.0.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} exited ({status}):\n{log}");
        }
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// nginx: `/` answers a ban with 429 and `Retry-After` (`error_page` to a named location),
/// `/plain/` with the 403 banhammer gives, `/login/` counts as `login`.
fn nginx() -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let (bh, bh_port) = banhammer(dir.path(), 403);
    let www = site(dir.path());
    let port = free_port();
    let d = dir.path().display();
    let conf = format!(
        r#"# A test's private nginx: one process, everything in the test's folder.
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;

    upstream banhammer {{
        server 127.0.0.1:{bh_port};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        root {www};

        location / {{
            auth_request /_banhammer;
            auth_request_set $banhammer_retry $upstream_http_retry_after;
            error_page 403 = @banned;
        }}
        location /plain/ {{
            auth_request /_banhammer;
        }}
        location /login/ {{
            auth_request /_banhammer_login;
            auth_request_set $banhammer_retry $upstream_http_retry_after;
            error_page 403 = @banned;
        }}

        location = /_banhammer {{
            internal;
            proxy_pass http://banhammer/v1/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location = /_banhammer_login {{
            internal;
            proxy_pass http://banhammer/v1/check/login;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location @banned {{
            add_header Retry-After $banhammer_retry always;
            return 429 "Too Many Requests\n";
        }}
    }}
}}
"#,
        www = www.display()
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let mut proxy = Killed(
        Command::new("nginx")
            .arg("-c")
            .arg(&path)
            .args(["-p", &d.to_string(), "-e", &format!("{d}/error.log")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx runs (apt-get install nginx; scripts/test installs it)"),
    );
    wait_listening(&mut proxy, port, "nginx", &dir.path().join("error.log"));
    Stack {
        base: format!("http://127.0.0.1:{port}"),
        dir,
        _proxy: proxy,
        _banhammer: bh,
    }
}

/// Caddy: banhammer answers a ban with 429 and `Retry-After`, and Caddy passes banhammer's
/// refusal on as it is; `/login/*` counts as `login`.
fn caddy() -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let (bh, bh_port) = banhammer(dir.path(), 429);
    let www = site(dir.path());
    let port = free_port();
    let conf = format!(
        r#"{{
    admin off
    auto_https off
}}

http://127.0.0.1:{port} {{
    bind 127.0.0.1
    root * {www}

    @login path /login/*
    @other not path /login/*
    forward_auth @login 127.0.0.1:{bh_port} {{
        uri /v1/check/login
    }}
    forward_auth @other 127.0.0.1:{bh_port} {{
        uri /v1/check
    }}
    file_server
}}
"#,
        www = www.display()
    );
    let path = dir.path().join("Caddyfile");
    std::fs::write(&path, conf).unwrap();
    let log = dir.path().join("caddy.log");
    let mut proxy = Killed(
        Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&path)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("caddy runs (apt-get install caddy; scripts/test installs it)"),
    );
    wait_listening(&mut proxy, port, "caddy", &log);
    Stack {
        base: format!("http://127.0.0.1:{port}"),
        dir,
        _proxy: proxy,
        _banhammer: bh,
    }
}

/// What a client got: the status, `Retry-After` if any, the body.
#[derive(Debug)]
struct Got {
    status: StatusCode,
    retry_after: Option<u64>,
    body: String,
}

impl Stack {
    /// `GET path` from 127.0.0.`host`, with `headers`.
    fn get(&self, host: u8, path: &str, headers: &[(&str, &str)]) -> Got {
        self.send(host, reqwest::Method::GET, path, headers)
    }

    fn send(&self, host: u8, method: reqwest::Method, path: &str, headers: &[(&str, &str)]) -> Got {
        let client = Client::builder()
            .local_address(IpAddr::from([127, 0, 0, host]))
            .build()
            .unwrap();
        let mut req = client.request(method, format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req
            .send()
            .unwrap_or_else(|e| panic!("{path}: {e}\n{}", self.logs()));
        Got {
            status: r.status(),
            retry_after: r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse().ok()),
            body: r.text().unwrap_or_default(),
        }
    }

    /// Asserts that `n` requests from `host` to `path` pass to the static files.
    fn passes(&self, n: usize, host: u8, path: &str) {
        for i in 0..n {
            let got = self.get(host, path, &[]);
            assert_eq!(
                (got.status, got.body.as_str()),
                (StatusCode::OK, "upstream\n"),
                "request {i} from 127.0.0.{host} to {path}\n{}",
                self.logs()
            );
        }
    }

    /// The proxy's logs, to explain a failure.
    fn logs(&self) -> String {
        ["error.log", "caddy.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.dir.path().join(f)).ok())
            .collect()
    }
}

/// Asserts that `got` is a refusal with `status` and a `Retry-After` within the 60 s ban.
fn assert_refused(got: &Got, status: StatusCode) {
    assert_eq!(got.status, status, "{got:?}");
    assert!(
        got.retry_after.is_some_and(|s| (1..=60).contains(&s)),
        "Retry-After within the ban: {got:?}"
    );
}

/// Another client (127.0.0.3) is counted as itself and as `request` (limit 3), whatever it
/// sends: its own `X-Forwarded-For` naming the banned client, `X-Banhammer-Metric` and
/// `?metric=` naming `login` (limit 2, so the 2nd would be refused) are read by no one. Its
/// first two pass; its third, as `request`, is refused.
fn another_client_borrows_nothing(s: &Stack) {
    let borrowed = [
        ("x-forwarded-for", "127.0.0.2"),
        ("x-banhammer-metric", "login"),
    ];
    for i in 0..2 {
        let got = s.get(3, "/index.html?metric=login", &borrowed);
        assert_eq!(got.status, StatusCode::OK, "request {i}: {got:?}");
    }
    assert_refused(&s.get(3, "/index.html", &[]), StatusCode::TOO_MANY_REQUESTS);
}

#[test]
fn nginx_refuses_the_client_over_the_limit_and_no_other() {
    let s = nginx();
    s.passes(2, 2, "/index.html");
    assert_refused(&s.get(2, "/index.html", &[]), StatusCode::TOO_MANY_REQUESTS);
    let plain = s.get(2, "/plain/index.html", &[]);
    assert_eq!(plain.status, StatusCode::FORBIDDEN, "{plain:?}");
    let post = s.send(2, reqwest::Method::POST, "/index.html", &[]);
    assert_eq!(post.status, StatusCode::TOO_MANY_REQUESTS, "{post:?}");
    // The client's own X-Forwarded-For does not move it: nginx writes the peer.
    let spoofed = s.get(2, "/index.html", &[("x-forwarded-for", "198.51.100.1")]);
    assert_eq!(spoofed.status, StatusCode::TOO_MANY_REQUESTS, "{spoofed:?}");
    another_client_borrows_nothing(&s);
}

/// The allow-listed client (127.0.0.4) passes far past both limits.
fn never_blocks_the_allowed_client(s: &Stack) {
    s.passes(8, 4, "/index.html");
    s.passes(4, 4, "/login/index.html");
}

/// `/login/` counts as `login` (limit 2): the 2nd is refused, then the client is refused
/// everywhere (the ban is the client's, whatever the metric that made it); others pass.
fn counts_login_as_its_check_names_it(s: &Stack) {
    s.passes(1, 5, "/login/index.html");
    for path in ["/login/index.html", "/index.html"] {
        assert_refused(&s.get(5, path, &[]), StatusCode::TOO_MANY_REQUESTS);
    }
    s.passes(2, 6, "/index.html");
}

#[test]
fn nginx_never_blocks_an_allowed_client() {
    never_blocks_the_allowed_client(&nginx());
}

#[test]
fn nginx_counts_a_location_as_the_metric_its_check_url_names() {
    counts_login_as_its_check_names_it(&nginx());
}

#[test]
fn caddy_passes_429_and_retry_after_on_for_the_client_over_the_limit_only() {
    let s = caddy();
    s.passes(2, 2, "/index.html");
    let got = s.get(2, "/index.html", &[]);
    assert_refused(&got, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        got.body.contains("banned"),
        "banhammer's own answer: {got:?}"
    );
    // Caddy ignores a client's X-Forwarded-For and writes the peer.
    let spoofed = s.get(2, "/index.html", &[("x-forwarded-for", "198.51.100.1")]);
    assert_refused(&spoofed, StatusCode::TOO_MANY_REQUESTS);
    // Caddy passes the client's headers and (its `uri` having no query) its query string on
    // to the check: banhammer reads neither.
    another_client_borrows_nothing(&s);
}

#[test]
fn caddy_never_blocks_an_allowed_client() {
    never_blocks_the_allowed_client(&caddy());
}

#[test]
fn caddy_counts_a_path_as_the_metric_its_check_uri_names() {
    counts_login_as_its_check_names_it(&caddy());
}
