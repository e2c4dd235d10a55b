//! Parsing combined-format lines: our parser against the usual regular expression, in the
//! same run, on the challenge log's real lines and on typical nginx lines (referer, browser
//! user agent, query strings, some IPv6 and escapes); and what putting lines back in order
//! costs a line, next to that.

use std::hint::black_box;

use banhammer_accesslog::{parse, LogFormat, Reorder, DEFAULT_MAX_BUFFERED, DEFAULT_MAX_DELAY};
use banhammer_core::Timestamp;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use regex::bytes::Regex;

/// The challenge log: short lines, empty referer and agent.
fn challenge() -> Vec<Vec<u8>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../tests/data/access-head-3739.log"
    );
    std::fs::read(path)
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Lines as a public nginx site writes them (about 230 bytes each).
fn nginx() -> Vec<Vec<u8>> {
    const AGENTS: [&str; 4] = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        "python-requests/2.31.0",
        r"Mozilla/5.0 \x22zgrab\x22 (compatible; +https://example.com/bot)",
    ];
    (0..1000u32)
        .map(|i| {
            let client = if i % 5 == 0 {
                format!("2001:db8::{:x}", i)
            } else {
                format!("198.51.{}.{}", i % 200, i % 251)
            };
            let target = if i % 3 == 0 {
                format!("/products/{i}?utm_source=news&ref=home")
            } else {
                format!("/static/app.{i}.js")
            };
            format!(
                r#"{client} - - [12/Feb/2024:10:{:02}:{:02} +0100] "GET {target} HTTP/1.1" 200 {} "https://www.example.com/" "{}""#,
                i / 60 % 60,
                i % 60,
                1000 + i * 7,
                AGENTS[i as usize % AGENTS.len()],
            )
            .into_bytes()
        })
        .collect()
}

fn combined(c: &mut Criterion) {
    // The regular expression most tools use for the combined format. Its captures leave the
    // address, time and numbers still to be converted, so it does less work than we do.
    let re = Regex::new(
        r#"^(\S+) (\S+) (\S+) \[([^\]]+)\] "([^"]*)" (\d{3}|-) (\d+|-)(?: "([^"]*)" "([^"]*)")?$"#,
    )
    .unwrap();
    let format = LogFormat::Combined;
    let mut group = c.benchmark_group("parse_combined_line");
    group.throughput(Throughput::Elements(1));
    for (input, lines) in [("challenge", challenge()), ("nginx", nginx())] {
        assert!(lines.iter().all(|l| parse(l, &format).is_ok()));
        assert!(lines.iter().all(|l| re.is_match(l)));
        group.bench_with_input(BenchmarkId::new("banhammer", input), &lines, |b, lines| {
            let mut i = 0;
            b.iter(|| {
                i = if i + 1 == lines.len() { 0 } else { i + 1 };
                parse(black_box(&lines[i]), &format).map(|l| l.time).ok()
            });
        });
        group.bench_with_input(BenchmarkId::new("regex", input), &lines, |b, lines| {
            let mut i = 0;
            b.iter(|| {
                i = if i + 1 == lines.len() { 0 } else { i + 1 };
                re.captures(black_box(&lines[i]))
                    .map(|c| c.get(4).map(|m| m.end()))
            });
        });
    }
    group.finish();
}

/// One line through the reorder stage (a push, then what is due): 20 lines a second, each
/// written up to 30 s late, items the size of a counted line (a token and one metric).
fn reorder(c: &mut Criterion) {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut times: Vec<(i64, usize)> = (0..100_000usize)
        .map(|i| {
            let t = i64::try_from(i / 20).unwrap();
            (t + i64::try_from(next() % 31).unwrap(), i)
        })
        .collect();
    times.sort_unstable();
    let times: Vec<i64> = times
        .iter()
        .map(|&(_, i)| i64::try_from(i / 20).unwrap())
        .collect();
    let mut group = c.benchmark_group("reorder");
    group.throughput(Throughput::Elements(1));
    group.bench_function("push_pop", |b| {
        let mut r = Reorder::new(DEFAULT_MAX_DELAY, DEFAULT_MAX_BUFFERED);
        let metric: std::sync::Arc<str> = std::sync::Arc::from("request");
        let (mut i, mut base) = (0, 0);
        b.iter(|| {
            let t = Timestamp::from_unix(base + times[i]);
            let item = (
                String::from("198.51.100.7"),
                vec![std::sync::Arc::clone(&metric)],
            );
            let late = r.push(t, item).err().map(|l| l.time);
            let mut out = 0;
            while let Some((t, _)) = r.pop() {
                out += t.as_unix();
            }
            i += 1;
            if i == times.len() {
                // Start the sequence again later, in order after the last pass.
                (i, base) = (0, base + 100_000);
            }
            black_box((late, out))
        });
    });
    group.finish();
}

criterion_group!(benches, combined, reorder);
criterion_main!(benches);
