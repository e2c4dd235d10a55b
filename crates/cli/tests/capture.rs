//! Drives `banhammer monitor` on real packets: a live capture on `lo` while a real client talks
//! to a real server, and the pcap file `tcpdump` wrote of the same traffic (needs root or
//! CAP_NET_RAW, as CI has: without it that test fails rather than skips); and pcap files built
//! here that look like real captures (`trace::Trace`): odd request lines a scanner sends,
//! filters, truncated files, IPv4-mapped clients.
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

mod trace;
use trace::{Conn, Trace};

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

/// Writes `trace` (its first `cut` bytes, if given) to `trace.pcap` in a scratch folder and
/// runs `banhammer monitor --json --pcap` on it with `args`: its JSON lines, stderr and exit
/// status.
fn monitor_trace(
    trace: &Trace,
    cut: Option<usize>,
    args: &[&str],
) -> (Vec<Value>, String, std::process::ExitStatus) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trace.pcap");
    trace.write(&file, cut);
    let out = Command::new(env!("CARGO_BIN_EXE_banhammer"))
        .args(["monitor", "--json", "--pcap"])
        .arg(&file)
        .args(args)
        .output()
        .unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, String::from_utf8(out.stderr).unwrap(), out.status)
}

/// The last report's totals.
fn last_total(lines: &[Value]) -> &Value {
    &lines
        .iter()
        .rev()
        .find(|l| l["type"] == "report")
        .expect("a report")["total"]
}

const T0: i64 = 1_700_000_000;

#[test]
fn request_lines_a_server_answers_count_whatever_their_version() {
    let server = "192.0.2.80:80";
    let mut t = Trace::new(T0);
    // A web server that ignores CONNECT and serves its page, on a keep-alive connection.
    let mut a = Conn::open(&mut t, "198.51.100.1:40001", server);
    a.send(&mut t, b"GET / HTTP/1.1\r\nHost: site\r\n\r\n")
        .answer(&mut t, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        .send(
            &mut t,
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        )
        .answer(&mut t, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        .send(&mut t, b"GET /after HTTP/1.1\r\nHost: site\r\n\r\n")
        .answer(&mut t, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        .close(&mut t);
    // Malformed versions: answered 400, and the server closes.
    for (port, line) in [(40002, "GET / HTTP/1."), (40003, "GET /x HTTP/1.0.8")] {
        let client = format!("198.51.100.1:{port}");
        Conn::open(&mut t, &client, server)
            .send(&mut t, format!("{line}\r\nHost: site\r\n\r\n").as_bytes())
            .answer(
                &mut t,
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad",
            )
            .close(&mut t);
    }
    // HTTP/0.9 after a keep-alive exchange: answered with the bare page.
    Conn::open(&mut t, "198.51.100.1:40004", server)
        .send(&mut t, b"GET /a HTTP/1.1\r\nHost: site\r\n\r\n")
        .answer(&mut t, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .send(&mut t, b"GET /\r\n\r\n")
        .answer(&mut t, b"<html>hello</html>\n")
        .close(&mut t);
    // A proxy probe without a version.
    Conn::open(&mut t, "198.51.100.1:40005", server)
        .send(&mut t, b"CONNECT example.com:443\r\n\r\n")
        .answer(
            &mut t,
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .close(&mut t);
    let (lines, stderr, status) = monitor_trace(&t, None, &[]);
    assert!(status.success(), "{stderr}");
    let total = last_total(&lines);
    // Wireshark (`tshark -z http,tree`) counts the same 8 requests and 7 responses.
    assert_eq!(total["requests"], 8, "{total}");
    assert_eq!(total["responses"], 7, "{total}");
    assert_eq!(
        total["methods"],
        serde_json::json!([["GET", 6], ["CONNECT", 2]]),
        "{total}"
    );
    assert_eq!(total["status_classes"]["4xx"], 3);
    assert!(
        total["top_sections"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["example.com:443/", 2])),
        "a CONNECT's target is its host: {total}"
    );
    let rate = total["error_rate"].as_f64().unwrap();
    assert!((rate - 3.0 / 7.0).abs() < 1e-9, "{rate}");
}

#[test]
fn the_alert_says_the_hits_of_the_whole_second_it_fired_in() {
    // 1,000 requests in one second, pipelined over 10 connections, then quiet until the
    // alert recovers; `--threshold 1` alerts at more than 120 in 2 minutes.
    let mut t = Trace::new(T0);
    let mut conns: Vec<Conn> = (0..10)
        .map(|i| Conn::open(&mut t, &format!("198.51.100.{i}:40000"), "192.0.2.80:80"))
        .collect();
    t.at(T0 + 5);
    for i in 0..1000 {
        conns[i % 10].send(&mut t, b"GET /a/b HTTP/1.1\r\nHost: site\r\n\r\n");
    }
    t.at(T0 + 130);
    conns[0].send(&mut t, b"GET /late HTTP/1.1\r\nHost: site\r\n\r\n");
    let (lines, stderr, status) = monitor_trace(&t, None, &["--threshold", "1"]);
    assert!(status.success(), "{stderr}");
    let alerts: Vec<&Value> = lines
        .iter()
        .filter(|l| l["type"] == "alert" || l["type"] == "recovered")
        .collect();
    assert_eq!(alerts.len(), 2, "{lines:?}");
    assert_eq!(
        alerts[0]["message"],
        "High traffic generated an alert - hits = 1000, triggered at 2023-11-14T22:13:25Z"
    );
    assert_eq!(
        alerts[1]["message"],
        "High traffic alert recovered - hits = 0, recovered at 2023-11-14T22:15:25Z"
    );
}

#[test]
fn a_filter_applies_to_a_pcap_file_and_without_one_the_file_is_read_whole() {
    let mut t = Trace::new(T0);
    for (port, path) in [(80, "/web"), (9000, "/api"), (9000, "/api")] {
        Conn::open(&mut t, "198.51.100.1:40000", &format!("192.0.2.80:{port}"))
            .send(
                &mut t,
                format!("GET {path} HTTP/1.1\r\nHost: site\r\n\r\n").as_bytes(),
            )
            .answer(&mut t, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .close(&mut t);
    }
    let requests = |filter: Option<&str>| {
        let args = filter.map(|f| vec!["--filter", f]).unwrap_or_default();
        let (lines, stderr, status) = monitor_trace(&t, None, &args);
        assert!(status.success(), "{stderr}");
        last_total(&lines)["requests"].as_u64()
    };
    assert_eq!(requests(Some("tcp port 9000")), Some(2));
    assert_eq!(requests(Some("tcp port 80")), Some(1));
    assert_eq!(requests(None), Some(3), "no --filter: the whole file");

    let (lines, stderr, status) = monitor_trace(&t, None, &["--filter", "tcp port"]);
    assert!(!status.success() && lines.is_empty());
    assert!(
        stderr.contains("bad capture filter \"tcp port\""),
        "{stderr}"
    );
}

#[test]
fn a_truncated_pcap_reports_what_came_before_the_cut_then_fails() {
    let mut t = Trace::new(T0);
    Conn::open(&mut t, "198.51.100.1:40001", "192.0.2.80:80")
        .send(&mut t, b"GET /a HTTP/1.1\r\nHost: site\r\n\r\n")
        .answer(&mut t, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    t.at(T0 + 12);
    let mut b = Conn::open(&mut t, "198.51.100.1:40002", "192.0.2.80:80");
    b.send(&mut t, b"GET /b HTTP/1.1\r\nHost: site\r\n\r\n")
        .answer(
            &mut t,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        );
    t.at(T0 + 15);
    // The file ends 20 bytes into this packet, as when tcpdump is killed or a disk fills.
    let cut = t.len() + 16 + 20;
    b.send(&mut t, b"GET /c HTTP/1.1\r\nHost: site\r\n\r\n");
    let (lines, stderr, status) = monitor_trace(&t, Some(cut), &[]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("trace.pcap") && stderr.contains("truncated"),
        "{stderr}"
    );
    let reports: Vec<(i64, i64, u64)> = lines
        .iter()
        .filter(|l| l["type"] == "report")
        .map(|l| {
            (
                l["from"].as_i64().unwrap() - T0,
                l["to"].as_i64().unwrap() - T0,
                l["interval"]["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(reports, [(0, 10, 1), (10, 13, 1)], "{lines:?}");
    let total = last_total(&lines);
    assert_eq!(
        (&total["requests"], &total["responses"]),
        (&2.into(), &2.into())
    );
    assert_eq!(total["status_classes"]["4xx"], 1);
}

#[test]
fn an_ipv4_mapped_client_is_counted_as_its_ipv4_address() {
    // A dual-stack proxy in front of the server: the same client once over IPv4, once as an
    // IPv4-mapped IPv6 address, and a real IPv6 client.
    let mut t = Trace::new(T0);
    for (client, server) in [
        ("203.0.113.9:40001", "192.0.2.80:80"),
        ("[::ffff:203.0.113.9]:40002", "[::ffff:192.0.2.80]:80"),
        ("[2001:db8::9]:40003", "[2001:db8::80]:80"),
    ] {
        Conn::open(&mut t, client, server)
            .send(&mut t, b"GET /a HTTP/1.1\r\nHost: site\r\n\r\n")
            .answer(&mut t, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .close(&mut t);
    }
    let (lines, stderr, status) = monitor_trace(&t, None, &[]);
    assert!(status.success(), "{stderr}");
    let total = last_total(&lines);
    assert_eq!(total["requests"], 3);
    assert_eq!(total["unique_clients"], 2, "{total}");
    assert_eq!(
        total["top_clients"],
        serde_json::json!([["203.0.113.9", 2], ["2001:db8::9", 1]])
    );
}
