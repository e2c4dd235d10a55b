//! The live console's data (admin): `GET /v1/events`, a Server-Sent Events stream (a snapshot,
//! then each decision as it is stored, and rates every two seconds), and `GET /v1/log`, the
//! decision log. Streams are capped ([`MAX_CONSOLES`]); each reads a bounded broadcast and
//! is sent a fresh snapshot when it falls behind; the rates and busiest tokens are computed
//! at most once a second whoever watches, and not at all while nobody does.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use banhammer_core::DecisionEvent;
use banhammer_runtime::StoredDecision;
use futures_util::stream::{self, Stream};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};

use crate::bans::BanEntry;
use crate::error::{ApiError, ApiQuery};
use crate::state::AppState;

/// The most live consoles (event streams) open at once; past it, 503.
pub const MAX_CONSOLES: usize = 16;

/// How many decisions a snapshot carries from the log (the timeline's hour, at most).
const SNAPSHOT_LOG: usize = 2000;

/// How often rates are sent to each console.
const RATES_EVERY: Duration = Duration::from_secs(2);

/// How long one computation of the rates serves every console.
const RATES_SHARED_FOR: Duration = Duration::from_secs(1);

/// Tokens looked at per shard for the busiest list, and how many are listed.
const RECENT_PER_SHARD: usize = 32;
const BUSIEST: usize = 20;

/// One decision, as the log and the stream show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Decision {
    /// Unix seconds.
    at: i64,
    /// `BAN`, `UNBAN`, `ALERT`, `RECOVER`, `NOTIFY` or `NOTIFY_END`.
    verb: String,
    token: String,
    /// The metric of the rule.
    rule: String,
    tier: usize,
    value: u64,
    from: i64,
    until: i64,
}

impl From<&DecisionEvent> for Decision {
    fn from(d: &DecisionEvent) -> Self {
        Decision {
            at: d.at.as_unix(),
            verb: d.verb().to_owned(),
            token: d.token.to_string(),
            rule: d.metric.to_string(),
            tier: d.tier,
            value: d.value,
            from: d.from.as_unix(),
            until: d.until.as_unix(),
        }
    }
}

impl From<StoredDecision> for Decision {
    fn from(d: StoredDecision) -> Self {
        Decision {
            at: d.at.as_unix(),
            verb: d.verb,
            token: d.token,
            rule: d.rule,
            tier: d.tier,
            value: d.value,
            from: d.from.as_unix(),
            until: d.until.as_unix(),
        }
    }
}

/// One metric's events over time.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MetricRateDto {
    metric: String,
    /// Events in each of the last 60 seconds, oldest first.
    per_second: Vec<u64>,
    /// Events in each of the last 60 minutes, oldest first.
    per_minute: Vec<u64>,
    /// Events since start.
    total: u64,
}

/// A token near its limits: each tier's measure and limit.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LoadDto {
    token: String,
    metric: String,
    /// `[measure, limit]` per tier.
    tiers: Vec<(u64, u64)>,
}

/// Rates, every two seconds on the stream.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RatesDto {
    /// The service's clock, unix seconds.
    now: i64,
    metrics: Vec<MetricRateDto>,
    /// Among recently seen tokens, the closest to a limit first.
    busiest: Vec<LoadDto>,
    /// Why `busiest` is empty, when the store cannot say.
    #[serde(skip_serializing_if = "Option::is_none")]
    busiest_unavailable: Option<String>,
}

/// What a console starts from (and restarts from after missing decisions).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Snapshot {
    /// The service's clock, unix seconds.
    now: i64,
    bans: Vec<BanEntry>,
    /// The latest decisions of the log, oldest first.
    log: Vec<Decision>,
    /// The metrics and their tiers' limits, for the ban-by-hand form.
    metrics: Vec<MetricInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MetricInfo {
    name: String,
    /// `[limit, window seconds]` per tier.
    tiers: Vec<(u64, u64)>,
}

/// The consoles' shared parts: the stream cap, and the rates of the current second.
#[derive(Debug)]
pub(crate) struct Consoles {
    slots: Arc<Semaphore>,
    /// The rates payload of one second, shared by every console (monotonic time: the
    /// service's clock may stand still, in tests).
    rates: Mutex<Option<(Instant, Arc<str>)>>,
    /// Flipped when the service stops, so that streams end and the drain is quick.
    closing: watch::Sender<bool>,
}

impl Consoles {
    pub(crate) fn new() -> Self {
        Consoles {
            slots: Arc::new(Semaphore::new(MAX_CONSOLES)),
            rates: Mutex::new(None),
            closing: watch::channel(false).0,
        }
    }

    /// Ends every open stream (the service is stopping).
    pub(crate) fn close(&self) {
        let _ = self.closing.send(true);
    }

    /// How many streams are open.
    pub(crate) fn open(&self) -> usize {
        MAX_CONSOLES - self.slots.available_permits()
    }
}

/// What one stream holds.
struct Feed {
    state: AppState,
    decisions: broadcast::Receiver<DecisionEvent>,
    closing: watch::Receiver<bool>,
    rates: tokio::time::Interval,
    /// A snapshot is owed (at the start, and after falling behind).
    resync: bool,
    _slot: OwnedSemaphorePermit,
}

/// `GET /v1/events` (admin): the live console's stream (Server-Sent Events). Events:
/// `snapshot` (bans, the latest decisions, metrics), then `decision` for each decision as it
/// is stored, `rates` every two seconds, and a new `snapshot` when the client fell more than
/// 1024 decisions behind. At most 16 streams at once (503 past that).
#[utoipa::path(get, path = "/v1/events", tag = "console", security(("bearer" = [])),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream"),
        (status = 401, description = "No admin bearer token, or a wrong one"),
        (status = 429, description = "Too many failed admin authentications from this address (`Retry-After`)"),
        (status = 503, description = "Too many consoles are open"),
    ))]
pub(crate) async fn events(
    State(state): State<AppState>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let slot = Arc::clone(&state.consoles().slots)
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::Unavailable(format!(
                "{MAX_CONSOLES} live consoles are open already: close one and retry"
            ))
        })?;
    let mut rates = tokio::time::interval(RATES_EVERY);
    rates.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let feed = Feed {
        decisions: state.runtime().subscribe(),
        closing: state.consoles().closing.subscribe(),
        state,
        rates,
        resync: true,
        _slot: slot,
    };
    let stream = stream::unfold(feed, |mut f| async move {
        let event = f.next().await?;
        Some((Ok(event), f))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

impl Feed {
    /// The next event, or `None` when the service stops.
    async fn next(&mut self) -> Option<Event> {
        if *self.closing.borrow() {
            return None;
        }
        if std::mem::take(&mut self.resync) {
            return Some(json_event("snapshot", &snapshot(&self.state).await));
        }
        tokio::select! {
            _ = self.closing.changed() => None,
            d = self.decisions.recv() => match d {
                Ok(d) => Some(json_event("decision", &Decision::from(&d))),
                Err(RecvError::Lagged(_)) => {
                    // Missed some: start again from the current state.
                    self.decisions = self.decisions.resubscribe();
                    Some(json_event("snapshot", &snapshot(&self.state).await))
                }
                Err(RecvError::Closed) => None,
            },
            _ = self.rates.tick() => Some(Event::default().event("rates").data(&*rates(&self.state))),
        }
    }
}

fn json_event(name: &str, body: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned()))
}

async fn snapshot(state: &AppState) -> Snapshot {
    let rt = state.runtime();
    let now = rt.now();
    let bans = rt
        .bans()
        .await
        .map(|b| {
            b.iter()
                .map(|(t, d)| BanEntry::new(t.as_str(), d, now))
                .collect()
        })
        .unwrap_or_default();
    let log = rt
        .history(None, SNAPSHOT_LOG)
        .await
        .into_iter()
        .map(Decision::from)
        .collect();
    let metrics = rt
        .rules()
        .metrics()
        .map(|(_, m)| MetricInfo {
            name: m.name.to_string(),
            tiers: m
                .thresholds
                .iter()
                .map(|t| (t.limit.get(), t.window.secs()))
                .collect(),
        })
        .collect();
    Snapshot {
        now: rt.now().as_unix(),
        bans,
        log,
        metrics,
    }
}

/// The rates payload of the current second, computed by the first console to ask in it.
fn rates(state: &AppState) -> Arc<str> {
    let rt = state.runtime();
    let now = rt.now();
    let consoles = state.consoles();
    let mut cached = consoles
        .rates
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let fresh = Instant::now();
    if let Some((at, body)) = cached.as_ref() {
        if fresh.duration_since(*at) < RATES_SHARED_FOR {
            return Arc::clone(body);
        }
    }
    let metrics = rt
        .metric_rates()
        .into_iter()
        .map(|m| MetricRateDto {
            metric: m.metric,
            per_second: m.per_second,
            per_minute: m.per_minute,
            total: m.total,
        })
        .collect();
    let (busiest, busiest_unavailable) = match rt.recent_loads(RECENT_PER_SHARD) {
        Ok(mut loads) => {
            // The closest to any of its limits first.
            let nearest = |tiers: &[(u64, u64)]| {
                tiers
                    .iter()
                    .map(|&(v, l)| v as f64 / l.max(1) as f64)
                    .fold(0.0, f64::max)
            };
            loads.retain(|l| l.tiers.iter().any(|&(v, _)| v > 0));
            loads.sort_by(|a, b| nearest(&b.tiers).total_cmp(&nearest(&a.tiers)));
            loads.truncate(BUSIEST);
            let busiest = loads
                .into_iter()
                .map(|l| LoadDto {
                    token: l.token.to_string(),
                    metric: l.metric,
                    tiers: l.tiers,
                })
                .collect();
            (busiest, None)
        }
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let body: Arc<str> = serde_json::to_string(&RatesDto {
        now: now.as_unix(),
        metrics,
        busiest,
        busiest_unavailable,
    })
    .unwrap_or_else(|_| "{}".to_owned())
    .into();
    *cached = Some((fresh, Arc::clone(&body)));
    body
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogQuery {
    /// Only this token's decisions.
    token: Option<String>,
    /// How many of the latest (1 to 5000, default 500).
    limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LogResponse {
    /// Oldest first.
    decisions: Vec<Decision>,
}

/// `GET /v1/log` (admin): the latest decisions of the decision log, oldest first, for one
/// token or all.
#[utoipa::path(get, path = "/v1/log", tag = "console", params(LogQuery),
    security(("bearer" = [])),
    responses((status = 200, body = LogResponse, description = "The latest decisions of the log, oldest first"), (status = 400, description = "`limit` does not parse or is outside 1 to 5000"), (status = 401, description = "No admin bearer token, or a wrong one"), (status = 429, description = "Too many failed admin authentications from this address (`Retry-After`)")))]
pub(crate) async fn log(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Json<LogResponse>, ApiError> {
    if q.token.as_ref().is_some_and(|t| t.len() > 256) {
        return Err(ApiError::Unprocessable(
            "`token` is longer than 256 bytes".to_owned(),
        ));
    }
    let limit = q.limit.unwrap_or(500);
    if !(1..=5000).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "`limit` is {limit}: it must be 1 to 5000"
        )));
    }
    let decisions = state
        .runtime()
        .history(q.token, limit)
        .await
        .into_iter()
        .map(Decision::from)
        .collect();
    Ok(Json(LogResponse { decisions }))
}
