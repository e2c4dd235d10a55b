//! Parsing combined-format lines: our parser against the usual regular expression, in the
//! same run, on the challenge log's real lines.

use banhammer_accesslog::{parse, LogFormat};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use regex::bytes::Regex;

fn lines() -> Vec<Vec<u8>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../tests/data/access-head-3739.log"
    );
    let text = std::fs::read(path).unwrap();
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn combined(c: &mut Criterion) {
    let lines = lines();
    let mut group = c.benchmark_group("parse_combined_line");
    group.throughput(Throughput::Elements(1));
    let format = LogFormat::combined();
    let mut i = 0;
    group.bench_function(BenchmarkId::new("banhammer", "parse"), |b| {
        b.iter(|| {
            i = (i + 1) % lines.len();
            parse(&lines[i], &format).map(|l| l.time).ok()
        });
    });
    // The regular expression most tools use for the combined format, with the time still to
    // be turned into a timestamp by the caller (so it does less work than we do).
    let re = Regex::new(
        r#"^(\S+) (\S+) (\S+) \[([^\]]+)\] "([^"]*)" (\d{3}|-) (\d+|-)(?: "([^"]*)" "([^"]*)")?$"#,
    )
    .unwrap();
    let mut i = 0;
    group.bench_function(BenchmarkId::new("regex", "captures"), |b| {
        b.iter(|| {
            i = (i + 1) % lines.len();
            re.captures(&lines[i]).map(|c| c.get(4).map(|m| m.end()))
        });
    });
    group.finish();
}

criterion_group!(benches, combined);
criterion_main!(benches);
