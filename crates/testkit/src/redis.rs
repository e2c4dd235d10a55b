//! Real `redis-server` processes for tests: one server (plain, or TLS-only with a throwaway CA
//! made by the `openssl` CLI), or a three-master cluster, on free loopback ports, killed when
//! dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait;

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `redis-server` on 127.0.0.1, killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    /// The CA that signed its certificate, if it speaks only TLS.
    ca: Option<PathBuf>,
}

/// Whether a Redis server on `port` answers `PING` (listening is not enough: a server that
/// accepts connections may still be loading).
fn answers_ping(port: u16) -> bool {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let timeout = Some(Duration::from_secs(1));
    if conn.set_read_timeout(timeout).is_err() || conn.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    conn.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

impl RedisServer {
    /// Starts one with no persistence.
    pub fn start() -> Self {
        RedisServer::start_with(&[])
    }

    /// Starts one with extra `redis-server` arguments (`--cluster-enabled yes`, …).
    pub fn start_with(extra: &[&str]) -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("banhammer-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for redis");
        let mut s = RedisServer {
            child: None,
            port,
            dir,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            ca: None,
        };
        s.spawn();
        s
    }

    /// Starts one that speaks only TLS (`--port 0 --tls-port`), its certificate for
    /// 127.0.0.1 signed by a CA of its own ([`RedisServer::ca`]); clients need no certificate.
    pub fn start_tls() -> Self {
        RedisServer::start_tls_with(None, &[])
    }

    /// [`RedisServer::start_tls`], its certificate signed by the CA of `ca_of` (a TLS server)
    /// if given, with extra `redis-server` arguments.
    fn start_tls_with(ca_of: Option<&RedisServer>, extra: &[&str]) -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("banhammer-redis-tls-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for redis");
        let ca_dir = ca_of.map(|s| s.dir.clone());
        let ca = make_certificates(&dir, ca_dir.as_deref());
        let file = |name: &str| dir.join(name).display().to_string();
        let mut args = vec![
            "--tls-port".to_owned(),
            port.to_string(),
            "--tls-cert-file".to_owned(),
            file("server.pem"),
            "--tls-key-file".to_owned(),
            file("server.key"),
            "--tls-ca-cert-file".to_owned(),
            ca.display().to_string(),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut s = RedisServer {
            child: None,
            port,
            dir,
            extra: args,
            ca: Some(ca),
        };
        s.spawn();
        s
    }

    /// The PEM file of the CA that signed its certificate (a TLS server only).
    pub fn ca(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// `redis-cli`'s arguments to reach it.
    fn cli_args(&self) -> Vec<String> {
        let mut args = vec!["-p".to_owned(), self.port.to_string()];
        if let Some(ca) = &self.ca {
            args.extend(["--tls".to_owned(), "--cacert".to_owned()]);
            args.push(ca.display().to_string());
        }
        args
    }

    /// Whether it answers `PING`.
    fn answers(&self) -> bool {
        if self.ca.is_none() {
            return answers_ping(self.port);
        }
        // Over TLS, redis-cli speaks the handshake.
        Command::new("redis-cli")
            .args(self.cli_args())
            .arg("PING")
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"PONG"))
    }

    fn spawn(&mut self) {
        // A TLS server listens on no plain port: its port is the TLS one.
        let plain_port = if self.ca.is_some() { 0 } else { self.port };
        let child = Command::new("redis-server")
            .args([
                "--port",
                &plain_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--dir", &self.dir.display().to_string()])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (apt-get install redis-server; CI installs it)");
        let port = self.port;
        self.child = Some(child);
        wait::until(
            &format!("redis-server answering PING on port {port}"),
            || {
                if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                    panic!("redis-server on port {port} exited ({status}) before it answered");
                }
                self.answers()
            },
        );
    }

    /// Its URL (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against it with `args` (`["SET", "k", "v"]`); panics unless it
    /// succeeds, and returns what it printed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(self.cli_args())
            .args(args)
            .output()
            .expect("redis-cli runs");
        assert!(out.status.success(), "redis-cli {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kills it (SIGKILL), as an outage would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty; returns once it answers `PING`.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

/// Writes a server certificate for 127.0.0.1 (`server.pem`, `server.key`) into `dir`, signed by
/// the CA in `ca_dir` or else by a throwaway CA written into `dir` (`ca.pem`), with the
/// `openssl` CLI; returns the CA's path.
fn make_certificates(dir: &Path, ca_dir: Option<&Path>) -> PathBuf {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs (apt-get install openssl; scripts/test installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca_dir = ca_dir.unwrap_or(dir);
    let (ca, ca_key) = (ca_dir.join("ca.pem"), ca_dir.join("ca.key"));
    if !ca.exists() {
        openssl(
            &[
                // A name of its own: another test server's CA must not pass for its issuer.
                &[
                    "req",
                    "-x509",
                    "-days",
                    "2",
                    "-subj",
                    &format!(
                        "/CN=banhammer test CA {}",
                        dir.file_name().unwrap_or_default().display()
                    ),
                ][..],
                &key,
                &["-keyout", "ca.key", "-out", "ca.pem"],
                &["-addext", "basicConstraints=critical,CA:TRUE"],
                &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ]
            .concat(),
        );
    }
    openssl(
        &[
            &["req", "-subj", "/CN=127.0.0.1"][..],
            &key,
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n",
    )
    .expect("the extensions file");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        &ca.display().to_string(),
        "-CAkey",
        &ca_key.display().to_string(),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    ca
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What makes a server a cluster node.
const CLUSTER_ARGS: [&str; 4] = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"];

/// A Redis Cluster of three masters on 127.0.0.1, stopped when dropped.
#[derive(Debug)]
pub struct RedisCluster {
    /// The masters.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three `cluster-enabled` servers and joins them with `redis-cli --cluster create`.
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| RedisServer::start_with(&CLUSTER_ARGS))
            .collect();
        RedisCluster::join(nodes)
    }

    /// [`RedisCluster::start`] speaking only TLS, the cluster bus included; every node's
    /// certificate signed by one throwaway CA ([`RedisCluster::ca`]).
    pub fn start_tls() -> Self {
        let args = [&CLUSTER_ARGS[..], &["--tls-cluster", "yes"]].concat();
        let first = RedisServer::start_tls_with(None, &args);
        let mut nodes: Vec<RedisServer> = (0..2)
            .map(|_| RedisServer::start_tls_with(Some(&first), &args))
            .collect();
        nodes.insert(0, first);
        RedisCluster::join(nodes)
    }

    fn join(nodes: Vec<RedisServer>) -> Self {
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut tls = Vec::new();
        if let Some(ca) = nodes[0].ca() {
            tls = vec![
                "--tls".to_owned(),
                "--cacert".to_owned(),
                ca.display().to_string(),
            ];
        }
        let status = Command::new("redis-cli")
            .args(&tls)
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(status.success(), "redis-cli --cluster create failed");
        // Every node must report the cluster ok; joining takes a few seconds.
        for n in &nodes {
            let what = format!("cluster_state:ok on the node at port {}", n.port);
            wait::within(Duration::from_secs(20), &what, || {
                n.cli(&["cluster", "info"])
                    .contains("cluster_state:ok")
                    .then_some(())
            });
        }
        RedisCluster { nodes }
    }

    /// Its URL for banhammer (`redis+cluster://h1:p1,h2:p2,h3:p3`, `rediss+cluster://…` over
    /// TLS).
    pub fn url(&self) -> String {
        let addrs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let scheme = if self.ca().is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}+cluster://{}", addrs.join(","))
    }

    /// The CA that signed every node's certificate (a TLS cluster only).
    pub fn ca(&self) -> Option<&Path> {
        self.nodes.first().and_then(RedisServer::ca)
    }
}
