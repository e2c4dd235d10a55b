//! Prometheus metrics: requests by route and status, latency, decisions, bans, tokens,
//! connections. No label ever holds a token or an address (unbounded cardinality).

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;

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
    connections: Gauge,
    connections_closed: Family<ReasonLabels, Counter>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("banhammer");
        let requests = Family::<RouteLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to answer, by route",
            latency.clone(),
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Decisions started or ended since start, by kind",
            decisions.clone(),
        );
        let active_bans = Gauge::default();
        registry.register("active_bans", "Tokens banned now", active_bans.clone());
        let tracked_tokens = Gauge::default();
        registry.register(
            "tracked_tokens",
            "Tokens whose windows are in memory",
            tracked_tokens.clone(),
        );
        let evictions = Counter::default();
        registry.register(
            "evictions",
            "Tokens evicted by the max_tokens cap since start",
            evictions.clone(),
        );
        let action_records = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "action_records",
            "Action records (files, webhooks) delivered, dropped (queue full) or failed",
            action_records.clone(),
        );
        let store_up = Gauge::default();
        registry.register(
            "store_up",
            "1 while the shared store (Redis) answers, 0 during an outage",
            store_up.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "store_errors",
            "Calls to the shared store that failed or timed out",
            store_errors.clone(),
        );
        let store_short_circuited = Counter::default();
        registry.register(
            "store_short_circuited",
            "Calls to the shared store skipped by the open circuit breaker",
            store_short_circuited.clone(),
        );
        let fail_policy = Counter::default();
        registry.register(
            "fail_policy_answers",
            "Events answered by their rule's fail policy while the shared store was unavailable",
            fail_policy.clone(),
        );
        let background_dropped = Counter::default();
        registry.register(
            "background_dropped",
            "Events of known-banned tokens answered (not passed) but not counted: too many \
             were counting in the background already",
            background_dropped.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "http_connections",
            "HTTP connections open now",
            connections.clone(),
        );
        let connections_closed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "http_connections_closed",
            "HTTP connections closed by the server's limits: idle_timeout, evicted (idle, to \
             make room at the cap), peer_limit and full (refused at once)",
            connections_closed.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            decisions,
            active_bans,
            tracked_tokens,
            evictions,
            action_records,
            store_up,
            store_errors,
            store_short_circuited,
            fail_policy,
            background_dropped,
            connections,
            connections_closed,
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

/// `GET /metrics`: Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn scrape(State(state): State<AppState>) -> Response {
    let m = state.metrics();
    let rt = state.runtime();
    let c = rt.engine_counters();
    let set = |g: &Gauge, v: usize| {
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
    };
    // The runtime keeps the totals; counters here are brought up to them at each scrape.
    let catch_up = |c: &Counter, total: u64| {
        c.inc_by(total.saturating_sub(c.get()));
    };
    let d = rt.counters();
    set(&m.tracked_tokens, c.tracked_tokens);
    set(&m.active_bans, rt.active_bans().await.unwrap_or(0));
    if let Some(h) = rt.store_health() {
        m.store_up.set(i64::from(h.up));
        catch_up(&m.store_errors, h.errors);
        catch_up(&m.store_short_circuited, h.short_circuited);
    }
    catch_up(
        &m.fail_policy,
        d.fail_policy_answers.load(Ordering::Relaxed),
    );
    catch_up(&m.evictions, c.evictions);
    catch_up(
        &m.background_dropped,
        d.background_dropped.load(Ordering::Relaxed),
    );
    let conns = state.conn_stats();
    m.connections
        .set(i64::try_from(conns.open.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
    for (reason, counter) in [
        ("idle_timeout", &conns.idle_closed),
        ("evicted", &conns.evicted),
        ("peer_limit", &conns.peer_refused),
        ("full", &conns.full_refused),
    ] {
        catch_up(
            &m.connections_closed.get_or_create(&ReasonLabels { reason }),
            counter.load(Ordering::Relaxed),
        );
    }
    for (kind, counter) in [
        ("ban", &d.bans),
        ("unban", &d.unbans),
        ("alert", &d.alerts),
        ("notice", &d.notices),
    ] {
        catch_up(
            &m.decisions
                .get_or_create(&DecisionLabels { decision: kind }),
            counter.load(Ordering::Relaxed),
        );
    }
    if let Some(q) = state.action_queue() {
        let c = q.counters();
        for (outcome, counter) in [
            ("delivered", &c.delivered),
            ("dropped", &c.dropped),
            ("failed", &c.failed),
        ] {
            catch_up(
                &m.action_records.get_or_create(&OutcomeLabels { outcome }),
                counter.load(Ordering::Relaxed),
            );
        }
    }
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, &m.registry).is_err() {
        body.clear();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
