//! Prometheus metrics: requests by route and status, latency, decisions, bans, tokens,
//! connections. No label ever holds a token or an address (unbounded cardinality).

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The service's metrics and their registry.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    decisions: Family<DecisionLabels, Counter>,
    active_bans: Gauge,
    tracked_tokens: Gauge,
    evictions: Counter,
    action_records: Family<OutcomeLabels, Counter>,
    store_up: Gauge,
    store_errors: Counter,
    store_short_circuited: Counter,
    fail_policy: Counter,
    background_dropped: Counter,
    evictions_at_stake: Counter,
    decisions_pending: Gauge,
    decision_store_failures: Counter,
    decisions_lost: Counter,
    windows_saved: Counter,
    windows_save_failures: Counter,
    store_protocol_errors: Counter,
    firewall_failures: Counter,
    connections: Gauge,
    consoles: Gauge,
    connections_closed: Family<ReasonLabels, Counter>,
}

/// Registers `metric` under `name` and returns it: a metric is a shared handle, so the one
/// kept and the one registered are the same.
fn registered<M: Metric + Clone>(r: &mut Registry, name: &str, help: &str, metric: M) -> M {
    r.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// The metrics of a service; the shared store's (`store_up`, its errors) only when
    /// `shared_store`: a node without one has no store to be up or down.
    pub(crate) fn new(shared_store: bool) -> Self {
        let mut r = Registry::with_prefix("banhammer");
        let mut store_registry = Registry::default();
        let store = if shared_store {
            &mut r
        } else {
            &mut store_registry
        };
        let store_up = registered(
            store,
            "store_up",
            "1 while the shared store (Redis) answers, 0 during an outage",
            Gauge::default(),
        );
        let store_errors = registered(
            store,
            "store_errors",
            "Calls to the shared store that failed or timed out",
            Counter::default(),
        );
        let store_short_circuited = registered(
            store,
            "store_short_circuited",
            "Calls to the shared store skipped by the open circuit breaker",
            Counter::default(),
        );
        let store_protocol_errors = registered(
            store,
            "store_protocol_errors",
            "Answers of the shared store this node could not understand (not outages)",
            Counter::default(),
        );
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
        });
        Metrics {
            requests: registered(
                &mut r,
                "http_requests",
                "HTTP requests by route, method and status",
                Family::default(),
            ),
            latency: registered(
                &mut r,
                "http_request_duration_seconds",
                "Time to answer, by route",
                latency,
            ),
            decisions: registered(
                &mut r,
                "decisions",
                "Decisions started or ended since start, by kind",
                Family::default(),
            ),
            active_bans: registered(&mut r, "active_bans", "Tokens banned now", Gauge::default()),
            tracked_tokens: registered(
                &mut r,
                "tracked_tokens",
                "Tokens whose windows are in memory",
                Gauge::default(),
            ),
            evictions: registered(
                &mut r,
                "evictions",
                "Tokens evicted by the max_tokens cap since start",
                Counter::default(),
            ),
            action_records: registered(
                &mut r,
                "action_records",
                "Action records (files, webhooks) delivered, dropped (queue full) or failed",
                Family::default(),
            ),
            store_up,
            store_errors,
            store_short_circuited,
            fail_policy: registered(
                &mut r,
                "fail_policy_answers",
                "Events answered by their rule's fail policy while the shared store was \
                 unavailable",
                Counter::default(),
            ),
            background_dropped: registered(
                &mut r,
                "background_dropped",
                "Events of known-banned tokens answered (not passed) but not counted: too \
                 many were counting in the background already",
                Counter::default(),
            ),
            evictions_at_stake: registered(
                &mut r,
                "evictions_at_stake",
                "Evictions (max_tokens) of tokens that still had counts inside a window: a \
                 rising figure means the cap is too small for the traffic, or a flood fills it",
                Counter::default(),
            ),
            decisions_pending: registered(
                &mut r,
                "decisions_pending",
                "Decisions the decision log has not stored yet (its disk refuses writes); they \
                 are retried every second",
                Gauge::default(),
            ),
            decision_store_failures: registered(
                &mut r,
                "decision_store_failures",
                "Commits of the decision log that failed (a full disk, an I/O error)",
                Counter::default(),
            ),
            decisions_lost: registered(
                &mut r,
                "decisions_lost",
                "Decisions dropped because too many waited for a decision log that refused \
                 writes",
                Counter::default(),
            ),
            windows_saved: registered(
                &mut r,
                "windows_saved",
                "Token windows saved so that a restart keeps their counts",
                Counter::default(),
            ),
            windows_save_failures: registered(
                &mut r,
                "windows_save_failures",
                "Saves of token windows the decision log refused",
                Counter::default(),
            ),
            store_protocol_errors,
            firewall_failures: registered(
                &mut r,
                "firewall_failures",
                "Ban changes the firewall refused or was not given (a ban, extend or unban \
                 command that failed, a refused nftables transaction); each is logged, the \
                 first ones with exit status and stderr",
                Counter::default(),
            ),
            connections: registered(
                &mut r,
                "http_connections",
                "HTTP connections open now",
                Gauge::default(),
            ),
            consoles: registered(
                &mut r,
                "consoles_open",
                "Live web consoles (event streams) open now",
                Gauge::default(),
            ),
            connections_closed: registered(
                &mut r,
                "http_connections_closed",
                "HTTP connections closed by the server's limits: idle_timeout, evicted (idle, \
                 to make room at the cap), peer_limit and full (refused at once)",
                Family::default(),
            ),
            registry: r,
        }
    }
}

/// Counts and times every request under its route pattern (never its concrete path).
pub(crate) async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let start = tokio::time::Instant::now();
    let response = next.run(req).await;
    let m = state.metrics();
    m.requests
        .get_or_create(&RouteLabels {
            route: route.clone(),
            method,
            status: response.status().as_u16(),
        })
        .inc();
    m.latency
        .get_or_create(&LatencyLabels { route })
        .observe(start.elapsed().as_secs_f64());
    response
}

/// Brings `c` up to `total`: the runtime keeps the totals, and counters here follow them at
/// each scrape.
fn catch_up(c: &Counter, total: u64) {
    c.inc_by(total.saturating_sub(c.get()));
}

/// [`catch_up`] for each `(label, total)` of a labelled family.
fn catch_up_each<'a, L: Clone + std::hash::Hash + Eq>(
    family: &Family<L, Counter>,
    totals: impl IntoIterator<Item = (&'static str, &'a AtomicU64)>,
    labels: impl Fn(&'static str) -> L,
) {
    for (label, total) in totals {
        catch_up(
            &family.get_or_create(&labels(label)),
            total.load(Ordering::Relaxed),
        );
    }
}

/// `GET /metrics`: Prometheus' classic text format, or OpenMetrics when `Accept` asks for it.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus' text format 0.0.4, or OpenMetrics 1.0.0 when the Accept header asks for it",
        content(("text/plain"), ("application/openmetrics-text")))))]
pub(crate) async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let m = state.metrics();
    let rt = state.runtime();
    let c = rt.engine_counters();
    let set = |g: &Gauge, v: usize| {
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
    };
    let d = rt.counters();
    set(&m.tracked_tokens, c.tracked_tokens);
    set(&m.active_bans, rt.active_bans().await.unwrap_or(0));
    if let Some(h) = rt.store_health() {
        m.store_up.set(i64::from(h.up));
        catch_up(&m.store_errors, h.errors);
        catch_up(&m.store_short_circuited, h.short_circuited);
        catch_up(&m.store_protocol_errors, h.protocol_errors);
    }
    let w = rt.writer_health();
    set(&m.decisions_pending, w.pending());
    catch_up(&m.decision_store_failures, w.failures());
    catch_up(&m.decisions_lost, w.lost());
    let (saved, failed) = w.windows();
    catch_up(&m.windows_saved, saved);
    catch_up(&m.windows_save_failures, failed);
    catch_up(
        &m.fail_policy,
        d.fail_policy_answers.load(Ordering::Relaxed),
    );
    catch_up(
        &m.firewall_failures,
        d.firewall_failures.load(Ordering::Relaxed),
    );
    catch_up(&m.evictions, c.evictions);
    catch_up(&m.evictions_at_stake, c.evictions_at_stake);
    catch_up(
        &m.background_dropped,
        d.background_dropped.load(Ordering::Relaxed),
    );
    m.consoles
        .set(i64::try_from(state.consoles().open()).unwrap_or(i64::MAX));
    let conns = state.conn_stats();
    m.connections
        .set(i64::try_from(conns.open.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
    catch_up_each(
        &m.connections_closed,
        [
            ("idle_timeout", &conns.idle_closed),
            ("evicted", &conns.evicted),
            ("peer_limit", &conns.peer_refused),
            ("full", &conns.full_refused),
        ],
        |reason| ReasonLabels { reason },
    );
    catch_up_each(
        &m.decisions,
        [
            ("ban", &d.bans),
            ("unban", &d.unbans),
            ("alert", &d.alerts),
            ("notice", &d.notices),
        ],
        |decision| DecisionLabels { decision },
    );
    if let Some(q) = state.action_queue() {
        let c = q.counters();
        catch_up_each(
            &m.action_records,
            [
                ("delivered", &c.delivered),
                ("dropped", &c.dropped),
                ("failed", &c.failed),
            ],
            |outcome| OutcomeLabels { outcome },
        );
    }
    crate::exposition::respond(&m.registry, &headers)
}
