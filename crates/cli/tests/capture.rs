//! Drives `banhammer monitor` on real packets: a live capture on `lo` while a real client talks
//! to a real server, and the pcap file `tcpdump` wrote of the same traffic. Needs root (or
//! CAP_NET_RAW), as CI has: without it the test fails rather than skips.
// Built with the binary's `capture` feature, as scripts/test does.
#![cfg(feature = "capture")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;

use banhammer_testkit::wait;
use serde_json::Value;

const SECTIONS: [&str; 4] = ["/api/user", "/api/help", "/report", "/pages/create"];
/// Sent by hand, each head in two segments.
const SPLIT: usize = 40;
/// Sent by reqwest, an ordinary HTTP client.
const CLIENT: usize = 12;
const REQUESTS: usize = SPLIT + CLIENT;

/// A keep-alive HTTP/1.1 server answering `200 ok` to each request until the client closes;
/// it tells `requests` each request line as it arrives.
fn serve(listener: TcpListener, requests: &mpsc::Sender<String>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { return };
        let requests = requests.clone();
        thread::spawn(move || {
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line.starts_with("GET ") {
                    // Nobody listens once the split requests are sent.
                    let _ = requests.send(line.clone());
                }
                if line == "\r\n"
                    && writer
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .is_err()
                {
                    return;
                }
            }
        });
    }
}

/// Waits until the child says on stderr that it is capturing (its line contains `ready`).
fn wait_for(child: &mut Child, ready: &str) -> BufReader<std::process::ChildStderr> {
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert_ne!(
            stderr.read_line(&mut line).unwrap(),
            0,
            "exited before it was capturing"
        );
        if line.contains(ready) {
            return stderr;
        }
    }
}

/// Sums every report's interval: requests, responses and hits per section.
fn totals(stdout: &str) -> (u64, u64, BTreeMap<String, u64>) {
    let (mut requests, mut responses, mut sections) = (0, 0, BTreeMap::new());
    for line in stdout.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["type"] != "report" {
            continue;
        }
        requests += v["interval"]["requests"].as_u64().unwrap();
        responses += v["interval"]["responses"].as_u64().unwrap();
        for s in v["interval"]["top_sections"].as_array().unwrap() {
            *sections
                .entry(s[0].as_str().unwrap().to_owned())
                .or_default() += s[1].as_u64().unwrap();
        }
    }
    (requests, responses, sections)
}

fn expected_sections(port: u16) -> BTreeMap<String, u64> {
    let mut want = BTreeMap::new();
    for i in 0..REQUESTS {
        let path = SECTIONS[i % SECTIONS.len()];
        let first = path[1..].split('/').next().unwrap();
        *want.entry(format!("127.0.0.1:{port}/{first}")).or_default() += 1;
    }
    want
}

/// Sends the requests: over 4 keep-alive connections with each head in two segments, then
/// through reqwest.
fn send_requests(port: u16, requests: &mpsc::Receiver<String>) {
    send_split(port, requests);
    let client = reqwest::blocking::Client::new();
    for i in SPLIT..REQUESTS {
        let path = SECTIONS[i % SECTIONS.len()];
        let r = client
            .get(format!("http://127.0.0.1:{port}{path}?n={i}"))
            .send()
            .unwrap();
        assert_eq!(r.text().unwrap(), "ok");
    }
}

/// Each head in two segments: the second part is written only once the server has received
/// the first (its request line), so the two cannot leave in one segment.
fn send_split(port: u16, requests: &mpsc::Receiver<String>) {
    let mut conns: Vec<TcpStream> = (0..4)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_nodelay(true).unwrap();
            s
        })
        .collect();
    for i in 0..SPLIT {
        let conn = &mut conns[i % 4];
        let path = SECTIONS[i % SECTIONS.len()];
        let request_line = format!("GET {path}?n={i} HTTP/1.1\r\n");
        conn.write_all(format!("{request_line}Host: 127.0.0.1:").as_bytes())
            .unwrap();
        let received = requests
            .recv_timeout(wait::PATIENCE)
            .unwrap_or_else(|_| panic!("the server never received request {i}'s first segment"));
        assert_eq!(received, request_line);
        conn.write_all(format!("{port}\r\nUser-Agent: test\r\n\r\n").as_bytes())
            .unwrap();
        let mut answer = [0u8; 40];
        let mut got = 0;
        while got < answer.len() {
            let n = conn.read(&mut answer[got..]).unwrap();
            assert_ne!(n, 0);
            got += n;
        }
        assert!(answer.ends_with(b"ok"));
    }
}

fn monitor_pcap(pcap: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_banhammer"))
        .args(["monitor", "--json", "--interval", "1", "--pcap"])
        .arg(pcap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn monitor_counts_every_request_on_lo_live_and_from_tcpdumps_file() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (requests, received) = mpsc::channel();
    thread::spawn(move || serve(listener, &requests));
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("lo.pcap");
    let filter = format!("tcp port {port}");

    let mut monitor = Command::new(env!("CARGO_BIN_EXE_banhammer"))
        .args(["monitor", "--interface", "lo", "--filter", &filter])
        .args(["--json", "--interval", "1", "--duration", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _monitor_stderr = wait_for(&mut monitor, "capturing on lo");
    let mut tcpdump = Command::new("tcpdump")
        .args(["-i", "lo", "-U", "-w"])
        .arg(&pcap)
        .arg(&filter)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump is installed by scripts/test");
    let _tcpdump_stderr = wait_for(&mut tcpdump, "listening on lo");

    send_requests(port, &received);

    let mut stdout = String::new();
    monitor
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(monitor.wait().unwrap().success());
    // SIGTERM: tcpdump flushes and closes the file.
    Command::new("kill")
        .args(["-TERM", &tcpdump.id().to_string()])
        .status()
        .unwrap();
    tcpdump.wait().unwrap();

    let (requests, responses, sections) = totals(&stdout);
    assert_eq!(requests, REQUESTS as u64, "live: {stdout}");
    assert_eq!(responses, REQUESTS as u64, "live: {stdout}");
    assert_eq!(sections, expected_sections(port), "live");
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(last["packets"].as_u64().unwrap() >= 2 * REQUESTS as u64);
    assert_eq!(last["drops"], 0);

    let replayed = monitor_pcap(&pcap);
    let (requests, responses, sections) = totals(&replayed);
    assert_eq!(requests, REQUESTS as u64, "pcap: {replayed}");
    assert_eq!(responses, REQUESTS as u64, "pcap: {replayed}");
    assert_eq!(sections, expected_sections(port), "pcap");
}

#[test]
fn a_missing_pcap_file_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_banhammer"))
        .args(["monitor", "--plain", "--pcap", "/nonexistent/x.pcap"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/x.pcap"), "{stderr}");
}
