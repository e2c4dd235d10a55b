//! Enforcement through the real binary: the ban, extend and unban commands of `serve` (the
//! time left, `{family}` and `{prefix}`, failures logged and counted, active bans re-applied
//! at a restart), and native nftables for `serve` and `watch` in network namespaces of the
//! test's own: a server in one, clients with two addresses in the other, joined by a veth
//! pair. A banned address cannot connect while the other can; after the unban both can; after
//! `kill -9` the kernel timeout still ends the ban; a restart refills a set flushed meanwhile.
//! Needs root, `ip` and `nft` (iproute2, nftables: `scripts/test` installs them).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use banhammer_testkit::wait;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_banhammer")
}

/// A `banhammer serve` child, its stderr (the log) in a file; killed when dropped.
struct Serve {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Serve {
    /// Starts `prefix… banhammer serve --config CONFIG --db DB --listen LISTEN` and returns once
    /// it listens.
    fn start(prefix: &[&str], config: &Path, db: &Path, listen: &str, log: &Path) -> Serve {
        let (program, pre) = match prefix.split_first() {
            Some((p, rest)) => (*p, rest.to_vec()),
            None => (bin(), Vec::new()),
        };
        let mut cmd = Command::new(program);
        cmd.args(pre);
        if !prefix.is_empty() {
            cmd.arg(bin());
        }
        let mut child = cmd
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--db")
            .arg(db)
            .args(["--listen", listen])
            .env_remove("BANHAMMER_ADMIN_TOKEN")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line.trim().rsplit(' ').next().unwrap_or("").to_owned();
        assert!(
            base.starts_with("http://"),
            "serve did not start: {line}{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        Serve {
            child,
            base,
            log: log.to_owned(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: nothing is cleaned up or flushed.
    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Rules: tier 0 bans for 600 s, tier 1 for 7200 s (firing it on a banned token extends the
/// ban), tier 2 for 4 s (the kill -9 test), all fired through `POST /v1/now`.
fn rules() -> &'static str {
    "[metrics.m]\n\
     [[metrics.m.thresholds]]\nlimit = 1000\nwindow = 10\nactions = [\"block_local\"]\naction_duration = 600\n\
     [[metrics.m.thresholds]]\nlimit = 2000\nwindow = 10\nactions = [\"block_local\"]\naction_duration = 7200\n\
     [[metrics.m.thresholds]]\nlimit = 3000\nwindow = 10\nactions = [\"block_local\"]\naction_duration = 4\n"
}

/// An executable shell script at `dir/name`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn fire(client: &reqwest::blocking::Client, base: &str, token: &str, tier: usize) {
    let r = client
        .post(format!("{base}/v1/now"))
        .json(&serde_json::json!({"token": token, "metric": "m", "threshold": tier}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The value of an unlabelled counter in `/metrics`.
fn metric(client: &reqwest::blocking::Client, base: &str, name: &str) -> Option<u64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .ok()?
        .text()
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn serve_runs_a_command_on_ban_extend_and_unban_with_family_prefix_and_time_left() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("commands.txt");
    let record = script(
        dir.path(),
        "record.sh",
        &format!("echo \"$*\" >> {}", out.display()),
    );
    let r = record.display();
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "{}[serve]\nban_command = \"{r} ban {{family}} {{ip}} {{prefix}} {{duration}}\"\n\
             extend_command = \"{r} extend {{family}} {{ip}} {{prefix}} {{duration}}\"\n\
             unban_command = \"{r} unban {{family}} {{ip}} {{prefix}} {{token}}\"\n",
            rules()
        ),
    )
    .unwrap();
    let serve = Serve::start(
        &[],
        &config,
        &dir.path().join("db.sqlite"),
        "127.0.0.1:0",
        &dir.path().join("log"),
    );
    let client = reqwest::blocking::Client::new();
    let base = serve.base.clone();
    fire(&client, &base, "192.0.2.7", 0);
    wait::until("the ban command", || lines(&out).len() == 1);
    fire(&client, &base, "2001:db8:1:2::/64", 0);
    wait::until("the IPv6 ban command", || lines(&out).len() == 2);
    // A user id is no address: nothing runs for it.
    fire(&client, &base, "alice", 0);
    fire(&client, &base, "192.0.2.7", 1);
    wait::until("the extend command", || lines(&out).len() == 3);
    let r = client
        .delete(format!("{base}/v1/bans/192.0.2.7"))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    wait::until("the unban command", || lines(&out).len() == 4);
    let ran = lines(&out);
    assert_eq!(ran[0], "ban ip 192.0.2.7 32 600");
    assert_eq!(ran[1], "ban ip6 2001:db8:1:2:: 64 600");
    // Extended to 7200 s from the firing, a second or so later at most.
    let left: u64 = ran[2]
        .strip_prefix("extend ip 192.0.2.7 32 ")
        .unwrap_or_else(|| panic!("{ran:?}"))
        .parse()
        .unwrap();
    assert!((7195..=7200).contains(&left), "{ran:?}");
    assert_eq!(ran[3], "unban ip 192.0.2.7 32 192.0.2.7");
    assert_eq!(
        metric(&client, &base, "banhammer_firewall_failures_total"),
        Some(0)
    );
}

#[test]
fn a_failing_command_is_logged_with_its_status_and_stderr_a_few_times_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let fail = script(
        dir.path(),
        "fail.sh",
        "echo \"Error: Could not process rule: Address family not supported ($1)\" >&2; exit 4",
    );
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "{}[serve]\nban_command = \"{} {{family}}\"\n",
            rules(),
            fail.display()
        ),
    )
    .unwrap();
    let serve = Serve::start(
        &[],
        &config,
        &dir.path().join("db.sqlite"),
        "127.0.0.1:0",
        &dir.path().join("log"),
    );
    let client = reqwest::blocking::Client::new();
    for i in 0..30 {
        fire(&client, &serve.base, &format!("2001:db8:{i}::/64"), 0);
    }
    wait::until("30 failures in /metrics", || {
        metric(&client, &serve.base, "banhammer_firewall_failures_total") == Some(30)
    });
    let log = serve.log();
    let logged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Firewall call failed"))
        .collect();
    // The first ten in full, then one per hundred: a firewall refusing everything does not
    // flood the log.
    assert_eq!(logged.len(), 10, "{log}");
    assert!(logged[0].contains("exit status: 4"), "{}", logged[0]);
    assert!(
        logged[0].contains("Address family not supported (ip6)"),
        "{}",
        logged[0]
    );
    assert!(logged[9].contains("further failures are logged one in 100"));
}

#[test]
fn a_restart_runs_the_ban_command_again_for_each_active_ban_with_its_time_left() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("commands.txt");
    let record = script(
        dir.path(),
        "record.sh",
        &format!("echo \"$*\" >> {}", out.display()),
    );
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "{}[serve]\nban_command = \"{} {{verb}} {{ip}} {{duration}}\"\n",
            rules(),
            record.display()
        ),
    )
    .unwrap();
    let db = dir.path().join("db.sqlite");
    let serve = Serve::start(&[], &config, &db, "127.0.0.1:0", &dir.path().join("log"));
    let client = reqwest::blocking::Client::new();
    fire(&client, &serve.base, "198.51.100.9", 0);
    wait::until("the ban command", || lines(&out).len() == 1);
    serve.kill9();
    let _again = Serve::start(&[], &config, &db, "127.0.0.1:0", &dir.path().join("log2"));
    wait::until("the ban command again at start", || lines(&out).len() == 2);
    let ran = lines(&out);
    assert_eq!(ran[0], "BAN 198.51.100.9 600");
    let left: u64 = ran[1]
        .strip_prefix("BAN 198.51.100.9 ")
        .unwrap_or_else(|| panic!("{ran:?}"))
        .parse()
        .unwrap();
    assert!((590..=600).contains(&left), "{ran:?}");
}

// ---------------------------------------------------------------------------------------
// Native nftables, in network namespaces.

/// Two network namespaces joined by a veth pair: the server's (`10.99.0.1`, `fd99::1`) and
/// the clients' (`10.99.0.2`, `10.99.0.3`, `fd99::2`). Deleted when dropped, also when the
/// test fails.
struct Namespaces {
    server: String,
    clients: String,
}

const SERVER4: &str = "10.99.0.1";
const BANNED4: &str = "10.99.0.2";
const OTHER4: &str = "10.99.0.3";
const CLIENT6: &str = "fd99::2";
/// The port of the HTTP server the clients connect to.
const PORT: &str = "8000";

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Namespaces {
    fn new() -> Namespaces {
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ns = Namespaces {
            server: format!("bh-{id}-s"),
            clients: format!("bh-{id}-c"),
        };
        run("ip", &["netns", "add", &ns.server]);
        run("ip", &["netns", "add", &ns.clients]);
        // Made inside the namespaces: nothing appears in the machine's own, even for a moment.
        run(
            "ip",
            &[
                "link",
                "add",
                "veth0",
                "netns",
                &ns.server,
                "type",
                "veth",
                "peer",
                "name",
                "veth1",
                "netns",
                &ns.clients,
            ],
        );
        for (name, dev, addrs) in [
            (
                &ns.server,
                "veth0",
                &[&format!("{SERVER4}/24"), "fd99::1/64"][..],
            ),
            (
                &ns.clients,
                "veth1",
                &[
                    &format!("{BANNED4}/24"),
                    &format!("{OTHER4}/24"),
                    "fd99::2/64",
                ][..],
            ),
        ] {
            for addr in addrs {
                run(
                    "ip",
                    &["-n", name, "addr", "add", addr, "dev", dev, "nodad"],
                );
            }
            run("ip", &["-n", name, "link", "set", dev, "up"]);
            run("ip", &["-n", name, "link", "set", "lo", "up"]);
        }
        ns
    }

    /// `ip netns exec NS program args…`
    fn exec(ns: &str, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, program]);
        cmd
    }

    /// Whether a TCP connection from `src` (in the clients' namespace) to the server gets
    /// through within half a second (a dropped SYN is never answered).
    fn connects(&self, src: &str) -> bool {
        let dst = if src.contains(':') {
            "fd99::1"
        } else {
            SERVER4
        };
        let probe = "import socket, sys\n\
             src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])\n\
             s = socket.socket(socket.AF_INET6 if ':' in dst else socket.AF_INET)\n\
             s.settimeout(0.5)\n\
             s.bind((src, 0))\n\
             try:\n    s.connect((dst, port))\nexcept OSError:\n    sys.exit(1)\n";
        Self::exec(&self.clients, "python3")
            .args(["-c", probe, src, dst, PORT])
            .status()
            .unwrap()
            .success()
    }

    /// `nft ARGS` in the server's namespace; its output.
    fn nft(&self, args: &str) -> String {
        let out = Self::exec(&self.server, "nft")
            .args(args.split(' '))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nft {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A plain HTTP server in the server's namespace, on both families.
    fn http_server(&self, root: &Path) -> KillOnDrop {
        let mut child = Self::exec(&self.server, "python3")
            .args(["-m", "http.server", PORT, "--bind", "::", "--directory"])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait::until("the HTTP server answering", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the HTTP server exited: {status}");
            }
            self.connects(OTHER4)
        });
        KillOnDrop(child)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth end, its nftables and its addresses.
        for ns in [&self.server, &self.clients] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `POST`/`DELETE` to banhammer's API, on the loopback of the server's namespace.
fn api(ns: &Namespaces, method: &str, path: &str, body: &str) {
    let call = "import http.client, sys\n\
         c = http.client.HTTPConnection('127.0.0.1', 8080, timeout=5)\n\
         c.request(sys.argv[1], sys.argv[2], sys.argv[3] or None, {'Content-Type': 'application/json'})\n\
         r = c.getresponse()\n\
         sys.stdout.write(r.read().decode())\n\
         sys.exit(0 if r.status < 300 else 1)\n";
    let out = Namespaces::exec(&ns.server, "python3")
        .args(["-c", call, method, path, body])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{method} {path}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ban(ns: &Namespaces, token: &str, tier: usize) {
    let body = format!("{{\"token\": \"{token}\", \"metric\": \"m\", \"threshold\": {tier}}}");
    api(ns, "POST", "/v1/now", &body);
}

#[test]
fn serve_keeps_nftables_in_step_and_the_kernel_ends_bans_when_banhammer_is_gone() {
    let ns = Namespaces::new();
    let dir = tempfile::tempdir().unwrap();
    let _http = ns.http_server(dir.path());
    let config = dir.path().join("serve.toml");
    std::fs::write(&config, format!("{}[nftables]\n", rules())).unwrap();
    let db = dir.path().join("db.sqlite");
    let prefix = ["ip", "netns", "exec", &ns.server];
    let start = |log: &str| {
        Serve::start(
            &prefix,
            &config,
            &db,
            "127.0.0.1:8080",
            &dir.path().join(log),
        )
    };
    let serve = start("log1");
    assert!(ns.connects(BANNED4) && ns.connects(OTHER4) && ns.connects(CLIENT6));

    // A ban drops that address only, with the ban's time as the kernel timeout.
    ban(&ns, BANNED4, 0);
    wait::until("the banned address refused", || !ns.connects(BANNED4));
    assert!(ns.connects(OTHER4));
    let set = ns.nft("list set inet banhammer banned4");
    assert!(set.contains("10.99.0.2 timeout 10m"), "{set}");
    // An IPv6 /64 token goes to the IPv6 set, as a prefix.
    ban(&ns, "fd99::/64", 0);
    wait::until("the banned /64 refused", || !ns.connects(CLIENT6));
    assert!(ns
        .nft("list set inet banhammer banned6")
        .contains("fd99::/64"));
    assert!(ns.connects(OTHER4));

    // The unban lets it back.
    api(&ns, "DELETE", &format!("/v1/bans/{BANNED4}"), "");
    wait::until("the unbanned address connecting", || ns.connects(BANNED4));
    assert!(ns.connects(OTHER4));

    // A 4-second ban, then banhammer is killed: the kernel still ends the ban on time.
    ban(&ns, BANNED4, 2);
    wait::until("the short ban refusing", || !ns.connects(BANNED4));
    serve.kill9();
    assert!(!ns.connects(BANNED4), "the ban holds without banhammer");
    wait::until("the kernel timeout ending the ban", || ns.connects(BANNED4));

    // Meanwhile someone flushes the IPv6 set and puts in an element banhammer never made:
    // the restart puts back what banhammer holds and removes what it does not.
    ns.nft("flush set inet banhammer banned6");
    ns.nft("add element inet banhammer banned4 { 10.99.0.3 timeout 1h }");
    assert!(ns.connects(CLIENT6) && !ns.connects(OTHER4));
    let _serve = start("log2");
    wait::until("the /64 refused again after the restart", || {
        !ns.connects(CLIENT6)
    });
    wait::until("the stray element removed", || ns.connects(OTHER4));
    assert!(ns.connects(BANNED4));
}

#[test]
fn watch_bans_in_nftables_until_the_ban_ends() {
    let ns = Namespaces::new();
    let dir = tempfile::tempdir().unwrap();
    let _http = ns.http_server(dir.path());
    let log = dir.path().join("access.log");
    std::fs::write(&log, "").unwrap();
    let config = dir.path().join("watch.toml");
    std::fs::write(
        &config,
        format!(
            "[accesslog]\nformat = \"csv\"\n[watch]\nstate = \"{}\"\npoll_interval_ms = 20\n\
             [metrics.request]\n[[metrics.request.thresholds]]\nlimit = 3\nwindow = 60\n\
             actions = [\"block_local\"]\naction_duration = 3\n[nftables]\ntable = \"inet bhw\"\n",
            dir.path().join("state.sqlite").display()
        ),
    )
    .unwrap();
    let mut watch = KillOnDrop(
        Namespaces::exec(&ns.server, bin())
            .arg("watch")
            .arg("--config")
            .arg(&config)
            .arg(&log)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Started: the table is there (the reconcile at start made it).
    wait::until("the table made at start", || {
        Namespaces::exec(&ns.server, "nft")
            .args(["list", "table", "inet", "bhw"])
            .output()
            .unwrap()
            .status
            .success()
    });
    // On the wall clock a line counts at its own time, so it is written with the time now
    // (from date(1): test code reads no clock itself).
    let now = String::from_utf8(run("date", &["+%s"]).stdout).unwrap();
    let now = now.trim();
    let line = |ip: &str| format!("\"{ip}\",\"-\",\"-\",{now},\"GET / HTTP/1.1\",200,10\n");
    let lines: String = (0..3).map(|_| line(BANNED4)).collect();
    std::fs::write(&log, lines).unwrap();
    wait::until("the banned address refused", || !ns.connects(BANNED4));
    assert!(ns.connects(OTHER4));
    // The ban ends after 3 s; watch's unban removes it (the kernel timeout would too).
    wait::until("the address back after the ban", || ns.connects(BANNED4));
    assert!(ns.connects(OTHER4));
    assert!(!ns.nft("list set inet bhw banned4").contains(BANNED4));
    let _ = watch.0.kill();
    let mut err = String::new();
    if let Some(mut e) = watch.0.stderr.take() {
        let _ = watch.0.wait();
        let _ = e.read_to_string(&mut err);
    }
    assert!(!err.contains("Firewall call failed"), "{err}");
}
