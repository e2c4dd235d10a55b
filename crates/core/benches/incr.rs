//! Benchmarks of `incr` against baselines run in the same process: the `governor` keyed
//! limiter (approximate GCRA, the usual Rust choice) and a naive `Mutex<HashMap<_, Vec<_>>>`
//! sliding log (exact, what one writes first). One rule over 100k tokens on one and two
//! threads, skewed traffic, and the seed specification's example configuration; then per-call
//! latency percentiles of `Engine::incr`. The engine also runs with foldhash (hashbrown's
//! default) for its token-keyed maps against its own SipHash-1-3 (docs/security.md),
//! and on a flood of new tokens at its `max_tokens` cap, where every event evicts one.
//!
//! Fake clocks move one second per round of tokens, inside the loop (one atomic add per 100k
//! calls), so that every round is the same steady state: each token sees one event per second,
//! below the limit. Benchmarks measure wall time by nature, so they may read the system clock.
#![allow(
    clippy::disallowed_methods,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::collections::HashMap;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use banhammer_core::{Engine, ManualClock, Rates, Ruleset, Seconds, SharedEngine, Timestamp};
use banhammer_testkit::rules::{block, build, builder, metric, notify, ruleset_with_rates};
use criterion::{criterion_group, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

const TOKENS: usize = 100_000;
/// The hasher the engine does not use for its token-keyed maps, for comparison.
type Foldhash = hashbrown::DefaultHashBuilder;
const FOLD: &str = "Engine, foldhash";
const AT_CAP: &str = "Engine, new tokens at the cap";
const HALF: usize = TOKENS / 2;
const START: i64 = 1_700_000_000;

fn tokens() -> Vec<String> {
    (0..TOKENS)
        .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
        .collect()
}

/// Short runs: the whole command finishes in a few minutes on two cores.
fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group.throughput(Throughput::Elements(1));
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(30);
}

/// One rule: 100 requests in 60 s bans for 600 s.
fn one_rule() -> Arc<Ruleset> {
    one_rule_capped(None)
}

/// The same, tracking at most `cap` tokens (the default otherwise).
fn one_rule_capped(cap: Option<usize>) -> Arc<Ruleset> {
    build(
        builder([metric("request", [block(100, 60, 600)])])
            .max_tokens(cap.and_then(NonZeroUsize::new)),
    )
}

/// The seed example: `login_failed` (10/h ban 1 h, 100/h notify 1 day), `login_successful`
/// (10/min notify 1 h), rates on.
fn seed_example() -> Arc<Ruleset> {
    ruleset_with_rates([
        metric(
            "login_failed",
            [block(10, 3600, 3600), notify(100, 3600, 86_400)],
        ),
        metric("login_successful", [notify(10, 60, 3600)]),
    ])
}

/// The naive exact sliding log: every timestamp of every key in a vector.
#[derive(Default)]
struct NaiveLog {
    map: Mutex<HashMap<String, Vec<u64>>>,
}

impl NaiveLog {
    /// Prunes the key's log to the window, appends `now`, and says whether it is under `limit`.
    fn incr(&self, key: &str, now: u64, window: u64, limit: usize) -> bool {
        let mut map = self.map.lock().unwrap();
        let log = map.entry(key.to_owned()).or_default();
        log.retain(|&t| t + window > now);
        log.push(now);
        log.len() < limit
    }
}

/// The seed example written the naive way: an hour of timestamps per token and metric,
/// every count a scan, bans and notices in maps.
#[derive(Default)]
struct NaiveSeed {
    logs: HashMap<(String, u8), Vec<u64>>,
    bans: HashMap<String, u64>,
    notices: HashMap<(String, u8), u64>,
}

impl NaiveSeed {
    fn incr(&mut self, key: &str, failed: bool, now: u64) -> (bool, Rates) {
        let metric = u8::from(!failed);
        let log = self.logs.entry((key.to_owned(), metric)).or_default();
        log.retain(|&t| t + 3600 > now);
        log.push(now);
        let within = |w: u64| log.iter().filter(|&&t| t + w > now).count() as u64;
        let rates = Rates {
            last_1m: within(60),
            last_10m: within(600),
            last_60m: log.len() as u64,
        };
        let mut notify = |tier: u8, duration: u64| {
            let until = self.notices.entry((key.to_owned(), tier)).or_insert(0);
            *until = (*until).max(now + duration);
        };
        if failed {
            if rates.last_60m >= 10 {
                let until = self.bans.entry(key.to_owned()).or_insert(0);
                *until = (*until).max(now + 3600);
            }
            if rates.last_60m >= 100 {
                notify(0, 86_400);
            }
        } else if rates.last_1m >= 10 {
            notify(1, 3600);
        }
        let passed = self.bans.get(key).is_none_or(|&until| until <= now);
        (passed, rates)
    }
}

fn governor_limiter() -> DefaultKeyedRateLimiter<String> {
    // 100 per minute; governor's clock is its own (monotonic), not ours.
    RateLimiter::keyed(Quota::per_minute(NonZeroU32::new(100).unwrap()))
}

fn single_thread(c: &mut Criterion) {
    let keys = tokens();
    let mut group = c.benchmark_group("incr_1rule_100k_tokens_1thread");
    configure(&mut group);

    let _engine: Engine<_> = bench_engine(&mut group, "Engine", one_rule(), &in_turn(&keys));

    let gov = governor_limiter();
    let mut i = 0usize;
    group.bench_function(BenchmarkId::new("governor", "keyed"), |b| {
        b.iter(|| {
            i = (i + 1) % TOKENS;
            gov.check_key(&keys[i]).is_ok()
        });
    });

    let naive = NaiveLog::default();
    let (mut i, mut now) = (0usize, START as u64);
    group.bench_function(BenchmarkId::new("naive", "Mutex<HashMap<Vec>>"), |b| {
        b.iter(|| {
            i += 1;
            if i == TOKENS {
                i = 0;
                now += 1;
            }
            naive.incr(&keys[i], now, 60, 100)
        });
    });

    // Variants come after the baselines, which then run in the same state as they always did
    // (a larger heap made governor faster, which skewed the ratio). First the engine with the
    // faster hasher it does not use for token-keyed maps: foldhash, not DoS-resistant against
    // an attacker who learns its seed (docs/security.md).
    let fold: Engine<_, Foldhash> = bench_engine(&mut group, FOLD, one_rule(), &in_turn(&keys));
    drop(fold);

    // A flood of new tokens at the cap: every event evicts, each evicted token still at stake
    // (an event inside the window), so each eviction weighs the whole sample.
    let flood: Vec<String> = (0..10 * TOKENS)
        .map(|i| format!("172.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    let capped = one_rule_capped(Some(TOKENS));
    let _capped: Engine<_> = bench_engine(&mut group, AT_CAP, capped, &in_turn(&flood));

    group.finish();
}

/// Which token each call of a benchmark sends: `keys[pick(i)]` for the `i`-th call, `i` counting
/// from 1 and back to 0 at `cycle`.
struct Traffic<'a, F> {
    keys: &'a [String],
    cycle: usize,
    pick: F,
}

/// `keys` in turn.
fn in_turn(keys: &[String]) -> Traffic<'_, impl Fn(usize) -> usize> {
    Traffic {
        keys,
        cycle: keys.len(),
        pick: |i| i,
    }
}

/// Benches `incr` as `name` on an engine of `rules` whose token-keyed maps hash with `S`, the
/// clock one second further per 100k calls. The engine is returned, so that the caller decides
/// how long its memory stays (the baselines must run in the heap they always ran in).
fn bench_engine<S: std::hash::BuildHasher + Default>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    rules: Arc<Ruleset>,
    traffic: &Traffic<'_, impl Fn(usize) -> usize>,
) -> Engine<ManualClock, S> {
    let clock = ManualClock::new(Timestamp::from_unix(START));
    let mut engine = Engine::with_hasher(rules, clock.clone());
    let mut i = 0usize;
    group.bench_function(BenchmarkId::new("banhammer", name), |b| {
        b.iter(|| {
            i += 1;
            if i == traffic.cycle {
                i = 0;
            }
            if i.is_multiple_of(TOKENS) {
                clock.advance(Seconds::new(1));
            }
            let key = &traffic.keys[(traffic.pick)(i)];
            engine.incr(key, "request").unwrap().passed
        });
    });
    engine
}

/// Runs `op(thread, i)` for `i` in `0..iters / 2` on each of two threads; returns the wall
/// time, so that criterion reports the time per operation of both threads together.
fn two_threads(iters: u64, op: impl Fn(usize, usize) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2 {
            let op = &op;
            s.spawn(move || {
                for i in 0..(iters / 2) as usize {
                    op(t, i);
                }
            });
        }
    });
    start.elapsed()
}

fn two_thread(c: &mut Criterion) {
    let keys = tokens();
    let mut group = c.benchmark_group("incr_1rule_100k_tokens_2threads");
    configure(&mut group);
    // Each thread works on its own half of the tokens, as a load balancer would spread them;
    // thread 0 moves the shared fake clock one second per round of its half.
    let key = |t: usize, i: usize| &keys[t * HALF + i % HALF];

    let clock = ManualClock::new(Timestamp::from_unix(START));
    let shared = SharedEngine::new(one_rule(), &clock, NonZeroUsize::new(64).unwrap());
    group.bench_function(
        BenchmarkId::new("banhammer", "SharedEngine(64 shards)"),
        |b| {
            b.iter_custom(|iters| {
                two_threads(iters, |t, i| {
                    if t == 0 && i % HALF == 0 {
                        clock.advance(Seconds::new(1));
                    }
                    let _ = shared.incr(key(t, i), "request");
                })
            });
        },
    );

    let gov = governor_limiter();
    group.bench_function(BenchmarkId::new("governor", "keyed"), |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |t, i| {
                let _ = gov.check_key(key(t, i));
            })
        });
    });

    let naive = NaiveLog::default();
    let now = AtomicU64::new(START as u64);
    group.bench_function(BenchmarkId::new("naive", "Mutex<HashMap<Vec>>"), |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |t, i| {
                if t == 0 && i % HALF == 0 {
                    now.fetch_add(1, Ordering::Relaxed);
                }
                let _ = naive.incr(key(t, i), now.load(Ordering::Relaxed), 60, 100);
            })
        });
    });
    group.finish();
}

fn seed_config(c: &mut Criterion) {
    let keys = tokens();
    let mut group = c.benchmark_group("incr_seed_example_config");
    configure(&mut group);
    // Three failures for every success, as a login form under attack sees; the clock moves
    // 7 s per round, so failing tokens are banned after ten rounds and stay banned.
    let failed = |i: usize| !i.is_multiple_of(4);

    let clock = ManualClock::new(Timestamp::from_unix(START));
    let mut engine = Engine::new(seed_example(), clock.clone());
    let mut i = 0usize;
    group.bench_function(BenchmarkId::new("banhammer", "rates on, 3 tiers"), |b| {
        b.iter(|| {
            i += 1;
            if i == TOKENS {
                i = 0;
                clock.advance(Seconds::new(7));
            }
            let metric = if failed(i) {
                "login_failed"
            } else {
                "login_successful"
            };
            let v = engine.incr(&keys[i], metric).unwrap();
            (v.passed, v.rates)
        });
    });

    let mut naive = NaiveSeed::default();
    let (mut i, mut now) = (0usize, START as u64);
    group.bench_function(BenchmarkId::new("naive", "HashMap<Vec> + ban maps"), |b| {
        b.iter(|| {
            i += 1;
            if i == TOKENS {
                i = 0;
                now += 7;
            }
            naive.incr(&keys[i], failed(i), now)
        });
    });
    group.finish();
}

/// Token indices skewed like real traffic: a few addresses send most requests (u³ of a
/// uniform u puts half of all events on the first 12.5% of tokens).
fn skewed(n: usize) -> Vec<usize> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            ((u * u * u) * TOKENS as f64) as usize % TOKENS
        })
        .collect()
}

fn single_thread_skewed(c: &mut Criterion) {
    let keys = tokens();
    let order = skewed(1 << 20);
    let mut group = c.benchmark_group("incr_1rule_100k_tokens_skewed_1thread");
    configure(&mut group);
    let traffic = Traffic {
        keys: &keys,
        cycle: order.len(),
        pick: |i: usize| order[i],
    };
    let _engine: Engine<_> = bench_engine(&mut group, "Engine", one_rule(), &traffic);
    let gov = governor_limiter();
    let mut i = 0usize;
    group.bench_function(BenchmarkId::new("governor", "keyed"), |b| {
        b.iter(|| {
            i = (i + 1) & ((1 << 20) - 1);
            gov.check_key(&keys[order[i]]).is_ok()
        });
    });
    let naive = NaiveLog::default();
    let (mut i, mut now) = (0usize, START as u64);
    group.bench_function(BenchmarkId::new("naive", "Mutex<HashMap<Vec>>"), |b| {
        b.iter(|| {
            i = (i + 1) & ((1 << 20) - 1);
            if i % TOKENS == 0 {
                now += 1;
            }
            naive.incr(&keys[order[i]], now, 60, 100)
        });
    });
    // After the baselines, as in `single_thread`.
    let _fold: Engine<_, Foldhash> = bench_engine(&mut group, FOLD, one_rule(), &traffic);
    group.finish();
}

/// Per-call latency percentiles of `Engine::incr` (criterion reports means of batches): each
/// call timed on its own with the cost of reading the clock around an empty call subtracted,
/// and, as a check on that subtraction, the mean per call of batches of 64 calls.
fn latency_percentiles() {
    const BATCH: usize = 64;
    let keys = tokens();
    let clock = ManualClock::new(Timestamp::from_unix(START));
    let mut engine = Engine::new(one_rule(), clock.clone());
    let mut i = 0usize;
    let mut incr = |engine: &mut Engine<ManualClock>| {
        i += 1;
        if i == TOKENS {
            i = 0;
            clock.advance(Seconds::new(1));
        }
        engine.incr(&keys[i], "request").unwrap().passed
    };
    // Warm up: every token seen once, the caches as in the steady state.
    for _ in 0..TOKENS {
        std::hint::black_box(incr(&mut engine));
    }
    let n = 2_000_000usize;
    let mut samples = Vec::with_capacity(n);
    let mut empty = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let passed = incr(&mut engine);
        let t1 = Instant::now();
        std::hint::black_box(passed);
        let t2 = Instant::now();
        std::hint::black_box(&engine);
        let t3 = Instant::now();
        samples.push((t1 - t0).as_nanos());
        empty.push((t3 - t2).as_nanos());
    }
    let mut batches = Vec::with_capacity(n / BATCH);
    for _ in 0..n / BATCH {
        let t0 = Instant::now();
        for _ in 0..BATCH {
            std::hint::black_box(incr(&mut engine));
        }
        batches.push(t0.elapsed().as_nanos() / BATCH as u128);
    }
    samples.sort_unstable();
    empty.sort_unstable();
    batches.sort_unstable();
    let pct = |v: &[u128], p: f64| v[((v.len() - 1) as f64 * p) as usize];
    let base = pct(&empty, 0.5);
    println!(
        "incr latency, 1 rule, 100k tokens round-robin: p50 {} ns, p90 {} ns, p99 {} ns \
         (per call, timer cost {} ns subtracted); batches of {BATCH}: p50 {} ns, p90 {} ns, \
         p99 {} ns per call",
        pct(&samples, 0.5).saturating_sub(base),
        pct(&samples, 0.9).saturating_sub(base),
        pct(&samples, 0.99).saturating_sub(base),
        base,
        pct(&batches, 0.5),
        pct(&batches, 0.9),
        pct(&batches, 0.99),
    );
}

/// One rule over 1k, 100k and 1M tokens round-robin, banhammer and governor, each built
/// from nothing: `bench/incr.sh` runs every contender of this group in a process of its own
/// (criterion's filter), in alternating order, so that neither inherits the other's heap
/// (governor built after the engine measured 2× slower, in the holes the engine left).
fn scale(c: &mut Criterion) {
    let filter = std::env::args().collect::<Vec<_>>().join(" ");
    let scaled = filter.contains("incr_scale");
    for (label, n) in [("1k", 1_000usize), ("100k", 100_000), ("1M", 1_000_000)] {
        if scaled && !filter.contains(&format!("incr_scale_{label}/")) {
            continue;
        }
        let mut group = c.benchmark_group(format!("incr_scale_{label}"));
        configure(&mut group);
        let keys: Vec<String> = (0..n)
            .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
            .collect();
        // Each contender only when asked for, or when nothing is filtered (a test run).
        let wanted = |who: &str| !scaled || filter.contains(who);
        if wanted("banhammer") {
            let clock = ManualClock::new(Timestamp::from_unix(START));
            let mut engine: Engine<_> = Engine::new(one_rule(), clock.clone());
            let mut i = 0usize;
            group.bench_function(BenchmarkId::new("banhammer", "Engine"), |b| {
                b.iter(|| {
                    i += 1;
                    if i == n {
                        i = 0;
                        clock.advance(Seconds::new(1));
                    }
                    engine.incr(&keys[i], "request").unwrap().passed
                });
            });
        }
        if wanted("governor") {
            let gov = governor_limiter();
            let mut i = 0usize;
            group.bench_function(BenchmarkId::new("governor", "keyed"), |b| {
                b.iter(|| {
                    i = (i + 1) % n;
                    gov.check_key(&keys[i]).is_ok()
                });
            });
        }
        group.finish();
    }
}

criterion_group!(
    benches,
    scale,
    single_thread,
    single_thread_skewed,
    two_thread,
    seed_config
);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo test --benches` runs each benchmark once as a test; the latency run is for
    // `cargo bench` only.
    if std::env::args().any(|a| a == "--bench") {
        latency_percentiles();
    }
}
