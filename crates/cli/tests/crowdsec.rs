//! CrowdSec bouncer compatibility end to end ("Bans that block" issue, part 4): the real
//! `banhammer serve` and the real `crowdsec-firewall-bouncer` (nftables mode, pulling every
//! second) in a network namespace, two client addresses in a second one, the two joined by a
//! veth pair. A ban made through banhammer's API drops that client's packets in the kernel
//! within the bouncer's interval while the other client still connects; an extension reaches
//! the kernel's timeout; an unban lets the client through again. Nothing touches the
//! machine's own network: every rule lives in the namespaces, deleted at the end (also when
//! the test fails). Needs root, `ip` (iproute2), `nft` (nftables) and the bouncer, as
//! scripts/test installs them: without them the test fails rather than skips.
//!
//! On Redis (no namespaces needed), a bouncer pulling from one node gets the bans made on
//! another, with the id that node gives them too.
//!
//! The test process stays in the machine's namespace; what must happen inside one (listen,
//! connect from a client address, call banhammer on the namespace's loopback) is done by an
//! agent: this same test binary started under `ip netns exec`, see [`namespace_agent`].

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use banhammer_testkit::wait;
use serde_json::Value;

mod common;

/// Set in an agent's environment.
const AGENT: &str = "BANHAMMER_CROWDSEC_AGENT";
/// What an agent's answers start with (the test harness prints its own words too).
const REPLY: &str = "agent> ";
const ADMIN_TOKEN: &str = "admin-token-for-the-crowdsec-test";
const BOUNCER_KEY: &str = "bouncer-key-0123456789abcdef0123";
/// The server namespace's end of the veth pair; the tiny TCP server listens there.
const SERVER: &str = "10.213.7.1";
/// The client that gets banned, and the one that does not.
const BANNED: &str = "10.213.7.2";
const BYSTANDER: &str = "10.213.7.3";
const PORT: u16 = 7070;
/// How long a probe waits for the server's greeting: a dropped SYN never gets one.
const PROBE_TIMEOUT: Duration = Duration::from_millis(400);

/// The namespaces and every process in them; dropping it kills the processes, then deletes
/// the namespaces (with their veth pair and nftables tables), also when the test panics.
struct Lab {
    namespaces: Vec<String>,
    processes: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Lab {
    /// Two fresh namespaces `bh-cs-<random>-srv` and `-cli`, joined by a veth pair, with the
    /// server address on one side and both client addresses on the other.
    fn new() -> Lab {
        let random = RandomState::new().hash_one(std::process::id()) as u32;
        let mut lab = Lab {
            namespaces: Vec::new(),
            processes: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        let (srv, cli) = (
            format!("bh-cs-{random:08x}-srv"),
            format!("bh-cs-{random:08x}-cli"),
        );
        for ns in [&srv, &cli] {
            ip(&["netns", "add", ns]);
            lab.namespaces.push(ns.clone());
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "link", "add", "veth0", "netns", &srv, "type", "veth", "peer", "name", "veth1",
            "netns", &cli,
        ]);
        ip(&[
            "-n",
            &srv,
            "addr",
            "add",
            &format!("{SERVER}/24"),
            "dev",
            "veth0",
        ]);
        for client in [BANNED, BYSTANDER] {
            ip(&[
                "-n",
                &cli,
                "addr",
                "add",
                &format!("{client}/24"),
                "dev",
                "veth1",
            ]);
        }
        ip(&["-n", &srv, "link", "set", "veth0", "up"]);
        ip(&["-n", &cli, "link", "set", "veth1", "up"]);
        lab
    }

    fn server_ns(&self) -> &str {
        &self.namespaces[0]
    }

    fn client_ns(&self) -> &str {
        &self.namespaces[1]
    }

    /// `program args` inside namespace `ns`, its stderr (and stdout unless `piped_stdout`) in
    /// `log` under the test's folder; kept to be killed at the end.
    fn spawn(&mut self, ns: &str, program: &Path, args: &[&str], log: &str) -> &mut Child {
        let log = File::create(self.dir.path().join(log)).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `ip netns exec` ({e}): is iproute2 installed?"));
        self.processes.push(child);
        self.processes.last_mut().unwrap()
    }

    /// `banhammer serve` on the server namespace's loopback; its base URL.
    fn start_banhammer(&mut self) -> String {
        let config = self.dir.path().join("banhammer.toml");
        std::fs::write(&config, banhammer_config()).unwrap();
        let db = self.dir.path().join("decisions.sqlite");
        let ns = self.server_ns().to_owned();
        // Its first line says where it listens: read it from the log once written.
        let log = self.dir.path().join("banhammer.log");
        let args = [
            "serve",
            "--config",
            path(&config),
            "--listen",
            "127.0.0.1:0",
            "--db",
            path(&db),
        ];
        let child = self.spawn(
            &ns,
            Path::new(env!("CARGO_BIN_EXE_banhammer")),
            &args,
            "banhammer.log",
        );
        wait::for_some("banhammer serve listening", || {
            assert!(
                child.try_wait().unwrap().is_none(),
                "banhammer serve exited"
            );
            let text = std::fs::read_to_string(&log).ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("banhammer serve: listening on "))
                .map(str::to_owned)
        })
    }

    /// The real firewall bouncer, in nftables mode, pulling from `url` every second.
    fn start_bouncer(&mut self, url: &str) {
        let config = self.dir.path().join("bouncer.yaml");
        std::fs::write(&config, bouncer_config(url, self.dir.path())).unwrap();
        let ns = self.server_ns().to_owned();
        let program = Path::new("/usr/bin/crowdsec-firewall-bouncer");
        assert!(
            program.exists(),
            "crowdsec-firewall-bouncer is not installed (apt-get install --no-install-recommends crowdsec-firewall-bouncer)"
        );
        self.spawn(&ns, program, &["-c", path(&config)], "bouncer.log");
    }

    /// An agent in namespace `ns` (this binary, running [`namespace_agent`]).
    fn agent(&mut self, ns: &str) -> Agent {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "namespace_agent",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(AGENT, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let agent = Agent {
            to: child.stdin.take().unwrap(),
            from: BufReader::new(child.stdout.take().unwrap()),
        };
        self.processes.push(child);
        agent
    }

    /// The bouncer's set in the kernel: each element's address and timeout, seconds.
    fn blacklist(&self) -> Vec<(String, u64)> {
        let out = Command::new("ip")
            .args(["netns", "exec", self.server_ns()])
            .args([
                "nft",
                "-j",
                "list",
                "set",
                "ip",
                "crowdsec",
                "crowdsec-blacklists",
            ])
            .output()
            .unwrap();
        let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) else {
            return Vec::new();
        };
        let sets = v["nftables"].as_array().cloned().unwrap_or_default();
        sets.iter()
            .filter_map(|item| item["set"]["elem"].as_array())
            .flatten()
            .filter_map(|e| {
                let e = &e["elem"];
                Some((e["val"].as_str()?.to_owned(), e["timeout"].as_u64()?))
            })
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in &mut self.processes {
            let _ = p.kill();
            let _ = p.wait();
        }
        if std::thread::panicking() {
            #[allow(clippy::print_stderr)] // what the processes said, for whoever reads the failure
            for log in ["banhammer.log", "bouncer.log"] {
                let text = std::fs::read_to_string(self.dir.path().join(log)).unwrap_or_default();
                eprintln!("---- {log}\n{text}");
            }
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `ip args`, which must succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip ({e}): is iproute2 installed?"));
    assert!(
        out.status.success(),
        "ip {}: {} (the test needs root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Three failed logins within a minute ban for a minute (tier 0); tier 1, fired by hand,
/// bans for an hour: firing it on a banned client extends the ban.
fn banhammer_config() -> String {
    format!(
        r#"[serve]
admin_token = "{ADMIN_TOKEN}"
bouncer_api_keys = ["{BOUNCER_KEY}"]

[metrics.login_failed]
[[metrics.login_failed.thresholds]]
limit = 3
window = 60
actions = ["block_local"]
action_duration = 60

[[metrics.login_failed.thresholds]]
limit = 1000
window = 60
actions = ["block_local"]
action_duration = 3600
"#
    )
}

/// The firewall bouncer in the foreground, logging to stdout, its own table and chain.
fn bouncer_config(url: &str, dir: &Path) -> String {
    format!(
        r"mode: nftables
pid_dir: {dir}/
update_frequency: 1s
daemonize: false
log_mode: stdout
log_level: info
api_url: {url}/
api_key: {BOUNCER_KEY}
disable_ipv6: false
deny_action: DROP
deny_log: false
supported_decisions_types:
  - ban
blacklists_ipv4: crowdsec-blacklists
blacklists_ipv6: crowdsec6-blacklists
nftables:
  ipv4:
    enabled: true
    set-only: false
    table: crowdsec
    chain: crowdsec-chain
  ipv6:
    enabled: true
    set-only: false
    table: crowdsec6
    chain: crowdsec6-chain
prometheus:
  enabled: false
",
        dir = dir.display()
    )
}

/// A helper process inside a namespace, spoken to one line at a time.
struct Agent {
    to: ChildStdin,
    from: BufReader<ChildStdout>,
}

impl Agent {
    /// Sends `command`; its answer.
    fn ask(&mut self, command: &str) -> String {
        writeln!(self.to, "{command}").unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            assert_ne!(
                self.from.read_line(&mut line).unwrap(),
                0,
                "the agent exited on `{command}`"
            );
            // The harness may have printed `test namespace_agent ... ` before it.
            if let Some(at) = line.find(REPLY) {
                return line[at + REPLY.len()..].trim_end().to_owned();
            }
        }
    }

    /// Whether `client` gets the server's greeting.
    fn reaches(&mut self, client: &str) -> bool {
        self.ask(&format!("connect {client} {SERVER}:{PORT}")) == "ok"
    }

    /// An admin call to banhammer: status and body.
    fn call(&mut self, method: &str, url: &str, body: &str) -> String {
        self.ask(&format!("http {method} {url} {body}"))
    }
}

#[test]
fn a_ban_blocks_the_address_in_the_kernel_through_the_firewall_bouncer() {
    let mut lab = Lab::new();
    let (srv, cli) = (lab.server_ns().to_owned(), lab.client_ns().to_owned());
    let url = lab.start_banhammer();
    let mut server = lab.agent(&srv);
    assert_eq!(server.ask(&format!("listen {SERVER}:{PORT}")), "listening");
    let mut client = lab.agent(&cli);
    assert!(
        client.reaches(BANNED) && client.reaches(BYSTANDER),
        "both connect at first"
    );
    lab.start_bouncer(&url);

    // Three failed logins from BANNED: the third is refused, and the ban is made.
    let incr = format!("{url}/v1/incr");
    let login = format!(r#"{{"token": "{BANNED}", "metric": "login_failed"}}"#);
    for passed in [true, true, false] {
        assert_eq!(
            server.call("POST", &incr, &login),
            format!(r#"200 {{"passed":{passed}}}"#)
        );
    }
    wait::until("the banned client is dropped by the kernel", || {
        !client.reaches(BANNED)
    });
    assert!(
        client.reaches(BYSTANDER),
        "the other address still connects"
    );
    let set = lab.blacklist();
    assert!(
        matches!(set.as_slice(), [(ip, t)] if ip == BANNED && *t <= 60),
        "{set:?}"
    );

    // Tier 1 fired on the banned client extends its ban to an hour: the bouncer replaces the
    // kernel's element with the new timeout.
    let now = format!("{url}/v1/now");
    let fire = format!(r#"{{"token": "{BANNED}", "metric": "login_failed", "threshold": 1}}"#);
    assert!(server.call("POST", &now, &fire).starts_with("200 "));
    wait::until(
        "the kernel's timeout is the extended ban's",
        || matches!(lab.blacklist().as_slice(), [(ip, t)] if ip == BANNED && *t > 3000),
    );
    assert!(!client.reaches(BANNED));

    // The unban lets it through again.
    let unban = format!("{url}/v1/bans/{BANNED}");
    assert!(server.call("DELETE", &unban, "").starts_with("200 "));
    wait::until("the unbanned client connects again", || {
        client.reaches(BANNED)
    });
    assert!(client.reaches(BYSTANDER));
    assert_eq!(lab.blacklist(), []);
}

/// The stream on Redis, where bans are shared: a ban made on one node reaches a bouncer that
/// pulls from another, with the same id, and so does its unban.
#[test]
fn on_redis_a_bouncer_gets_the_bans_of_every_node_with_one_id() {
    let redis = banhammer_testkit::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("banhammer.toml");
    std::fs::write(&config, banhammer_config()).unwrap();
    let node = |name: &str| {
        let db = dir.path().join(format!("{name}.sqlite"));
        let (child, base) = common::start_serve(&[
            "--config".as_ref(),
            config.as_os_str(),
            "--db".as_ref(),
            db.as_os_str(),
            "--store".as_ref(),
            redis.url().as_ref(),
        ]);
        Killed(child, base)
    };
    let (a, b) = (node("a"), node("b"));
    let http = reqwest::blocking::Client::new();
    let admin = |method: reqwest::Method, path: &str, body: &str| {
        let r = http
            .request(method, format!("{}{path}", a.1))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    };
    let pull = |startup: bool| {
        let r = http
            .get(format!("{}/v1/decisions/stream?startup={startup}", b.1))
            .header("x-api-key", BOUNCER_KEY)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().unwrap()
    };
    assert_eq!(pull(true), serde_json::json!({"new": [], "deleted": []}));
    let fire = format!(r#"{{"token": "{BANNED}", "metric": "login_failed", "threshold": 1}}"#);
    admin(reqwest::Method::POST, "/v1/now", &fire);
    let given = wait::for_some("node b's stream gives node a's ban", || {
        let v = pull(false);
        v["new"].as_array().filter(|n| !n.is_empty()).cloned()
    });
    assert_eq!(given.len(), 1);
    assert_eq!(given[0]["value"], BANNED);
    assert_eq!(given[0]["scenario"], "login_failed/tier-1");
    // Node a tells the same id to a bouncer of its own.
    let r = http
        .get(format!("{}/v1/decisions?ip={BANNED}", a.1))
        .header("x-api-key", BOUNCER_KEY)
        .send()
        .unwrap();
    assert_eq!(r.json::<Value>().unwrap()[0]["id"], given[0]["id"]);
    admin(reqwest::Method::DELETE, &format!("/v1/bans/{BANNED}"), "");
    let gone = wait::for_some("node b's stream deletes it", || {
        let v = pull(false);
        v["deleted"].as_array().filter(|d| !d.is_empty()).cloned()
    });
    assert_eq!(gone[0]["id"], given[0]["id"]);
}

/// A `banhammer serve` process and its base URL; killed when dropped.
struct Killed(Child, String);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Not a test: the agent that [`Lab::agent`] starts inside a namespace (this binary, with
/// `BANHAMMER_CROWDSEC_AGENT` set). It reads commands from stdin and answers each on one line
/// starting with `agent> `: `listen ADDR` (a tiny TCP server greeting every connection),
/// `connect SRC DST` (`ok` when the greeting comes from `DST` to a socket bound to `SRC`),
/// `http METHOD URL [BODY]` (the status and body of an admin call). Without the variable it
/// returns at once.
#[test]
fn namespace_agent() {
    if std::env::var_os(AGENT).is_none() {
        return;
    }
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    let http = reqwest::blocking::Client::builder()
        .timeout(wait::PATIENCE)
        .build()
        .unwrap();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        let mut words = line.splitn(4, ' ');
        let answer = match (words.next(), words.next(), words.next()) {
            (Some("listen"), Some(addr), None) => {
                let listener = std::net::TcpListener::bind(addr).unwrap();
                std::thread::spawn(move || {
                    for mut conn in listener.incoming().flatten() {
                        let _ = conn.write_all(b"hi");
                    }
                });
                "listening".to_owned()
            }
            (Some("connect"), Some(src), Some(dst)) => match greeting(src, dst) {
                Ok(()) => "ok".to_owned(),
                Err(e) => format!("failed: {e}"),
            },
            (Some("http"), Some(method), Some(url)) => {
                let mut req = http
                    .request(method.parse().unwrap(), url)
                    .bearer_auth(ADMIN_TOKEN);
                if let Some(body) = words.next().filter(|b| !b.is_empty()) {
                    req = req
                        .header("content-type", "application/json")
                        .body(body.to_owned());
                }
                match req.send() {
                    Ok(r) => format!("{} {}", r.status().as_u16(), r.text().unwrap_or_default()),
                    Err(e) => format!("failed: {e}"),
                }
            }
            _ => format!("unknown command: {line}"),
        };
        writeln!(out, "{REPLY}{answer}").unwrap();
        out.flush().unwrap();
    }
    // Done when the test closes stdin: gone before the harness writes to the closed pipe.
    #[allow(clippy::exit)]
    std::process::exit(0);
}

/// Connects from `src` (any port) to `dst` and reads the server's greeting, within
/// [`PROBE_TIMEOUT`].
fn greeting(src: &str, dst: &str) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let src: IpAddr = src.parse().map_err(|e| format!("{e}"))?;
    let dst: SocketAddr = dst.parse().map_err(|e| format!("{e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket
            .bind(SocketAddr::new(src, 0))
            .map_err(|e| e.to_string())?;
        let greet = async {
            let mut stream = socket.connect(dst).await?;
            let mut hi = [0u8; 2];
            stream.read_exact(&mut hi).await?;
            Ok::<_, std::io::Error>(hi)
        };
        match tokio::time::timeout(PROBE_TIMEOUT, greet).await {
            Ok(Ok(hi)) if &hi == b"hi" => Ok(()),
            Ok(Ok(other)) => Err(format!("greeted with {other:?}")),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        }
    })
}
