//! `/v1`: the library API over HTTP (`incr`, `now`, `status`, `status_all`, bans), plus
//! `/healthz` and `/openapi.json`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::Json;
use banhammer_config::TokenFrom;
use banhammer_core::{Event, Rates};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::bans::BanEntry;
use crate::client_ip::client_ip;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

/// The seed API's `stats_dict`: events of the metric for the token in the last 1, 10 and 60
/// minutes, the current one included.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub(crate) struct Stats {
    token_rate_1m: u64,
    token_rate_10m: u64,
    token_rate_60m: u64,
}

impl From<Rates> for Stats {
    fn from(r: Rates) -> Self {
        Stats {
            token_rate_1m: r.last_1m,
            token_rate_10m: r.last_10m,
            token_rate_60m: r.last_60m,
        }
    }
}

/// Longest attribute list accepted per event.
const MAX_ATTRS: usize = 16;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IncrRequest {
    /// Who is counted (usually the client IP). Ignored with `token_from = "peer"`.
    #[serde(default)]
    token: Option<String>,
    /// The metric, as configured.
    metric: String,
    /// Values for `distinct`/`sum` thresholds, e.g. `{"email": "a@example.com"}`.
    #[serde(default)]
    attrs: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IncrResponse {
    /// False while the token is banned (the event that reaches a block threshold included).
    passed: bool,
    /// Present when rates are asked for (`?rates=true` or `[serve] return_rates`).
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<Stats>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RatesQuery {
    /// Return the token's rates for the metric.
    #[serde(default)]
    rates: Option<bool>,
}

/// `POST /v1/incr`: one event; answers whether the token passes. A client in `[serve] allow`
/// (the peer with `token_from = "peer"`, or a body token that is an address in the list)
/// passes uncounted.
#[utoipa::path(post, path = "/v1/incr", tag = "engine", request_body = IncrRequest, params(RatesQuery),
    responses(
        (status = 200, body = IncrResponse, description = "The verdict, with the stats when asked"),
        (status = 400, description = "Malformed JSON or query string"),
        (status = 422, description = "Unknown metric, bad token or missing attribute"),
        (status = 503, description = "The decision could not be stored"),
    ))]
pub(crate) async fn incr(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<RatesQuery>,
    ApiJson(req): ApiJson<IncrRequest>,
) -> Result<Json<IncrResponse>, ApiError> {
    let settings = state.settings();
    // The token, and whether it names a client of the allow list (never counted).
    let (token, allowed) = match settings.token_from {
        TokenFrom::Peer => {
            let ip = client_ip(peer, &headers, &settings.trusted_proxies);
            (settings.clients.token_of(ip), settings.allows(ip))
        }
        TokenFrom::Body => {
            let token = req
                .token
                .ok_or_else(|| ApiError::Unprocessable("`token` is required".to_owned()))?;
            let allowed = settings.allows_token(&token);
            (token, allowed)
        }
    };
    if req.attrs.len() > MAX_ATTRS {
        return Err(ApiError::Unprocessable(format!(
            "at most {MAX_ATTRS} attrs"
        )));
    }
    let attrs: Vec<(&str, &str)> = req
        .attrs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let rates = q.rates.unwrap_or(settings.return_rates);
    let rt = state.runtime();
    let event = Event::new(&token, &req.metric, rt.now()).with_attrs(&attrs);
    if allowed {
        // Checked as any event (a wrong metric is still the caller's fault), not counted.
        rt.rules()
            .resolve(&event)
            .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
        return Ok(Json(IncrResponse {
            passed: true,
            stats: rates.then_some(Stats::from(Rates::default())),
        }));
    }
    let verdict = rt.observe(&event, rates).await?;
    Ok(Json(IncrResponse {
        passed: verdict.passed,
        stats: verdict.rates.map(Stats::from),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NowRequest {
    token: String,
    metric: String,
    /// The tier to fire. Default 0.
    #[serde(default)]
    threshold: usize,
}

/// `POST /v1/now` (admin): fires a tier at once, as if its limit were reached; answers the
/// token's stats. A token of `[serve] allow` is never banned: 409.
#[utoipa::path(post, path = "/v1/now", tag = "engine", request_body = NowRequest,
    security(("bearer" = [])),
    responses((status = 200, body = Stats, description = "The token's stats once the tier fired"), (status = 401, description = "No admin bearer token, or a wrong one"), (status = 409, description = "The token is in `[serve] allow`: never banned"), (status = 429, description = "Too many failed admin authentications from this address (`Retry-After`)"), (status = 422, description = "Unknown metric or tier, or a bad token")))]
pub(crate) async fn now(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NowRequest>,
) -> Result<Json<Stats>, ApiError> {
    crate::bans::refuse_allowed(&state, &req.token)?;
    let verdict = state
        .runtime()
        .fire(&req.token, &req.metric, req.threshold)
        .await?;
    Ok(Json(verdict.rates.map(Stats::from).unwrap_or(Stats {
        token_rate_1m: 0,
        token_rate_10m: 0,
        token_rate_60m: 0,
    })))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Tier {
    /// The measure over the tier's window now.
    value: u64,
    /// Whether the tier holds now.
    holds: bool,
    limit: u64,
    window: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatusResponse {
    token: String,
    metric: String,
    stats: Option<Stats>,
    tiers: Vec<Tier>,
    /// The token's active ban, from whichever metric.
    ban: Option<BanEntry>,
}

/// `GET /v1/status/{token}/{metric}` (admin): the seed API's `status`.
#[utoipa::path(get, path = "/v1/status/{token}/{metric}", tag = "engine",
    params(("token" = String, Path), ("metric" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = StatusResponse, description = "The token's rates, tiers and ban"), (status = 400, description = "A malformed path"), (status = 401, description = "No admin bearer token, or a wrong one"), (status = 429, description = "Too many failed admin authentications from this address (`Retry-After`)"), (status = 422, description = "Unknown metric or bad token"), (status = 501, description = "Not available with the Redis store")))]
pub(crate) async fn status_one(
    State(state): State<AppState>,
    ApiPath((token, metric)): ApiPath<(String, String)>,
) -> Result<Json<StatusResponse>, ApiError> {
    let rt = state.runtime();
    // An unknown metric is 422; the Redis store's missing status is 501.
    let s = rt.status(&token, &metric)?;
    let id = rt.rules().metric_id(&metric);
    let tiers = s
        .tiers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let th = id.map(|id| &rt.rules().metric(id).thresholds[i]);
            Tier {
                value: t.value,
                holds: t.holds,
                limit: th.map_or(0, |th| th.limit.get()),
                window: th.map_or(0, |th| th.window.secs()),
            }
        })
        .collect();
    let ban = s.ban.as_ref().map(|b| BanEntry::new(&token, b, rt.now()));
    Ok(Json(StatusResponse {
        token,
        metric,
        stats: s.rates.map(Stats::from),
        tiers,
        ban,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Where to continue, from a previous page's `next`.
    cursor: Option<String>,
    /// Items per page (1 to 1000, default 100).
    limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatusItem {
    token: String,
    metric: String,
    stats: Stats,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatusPageResponse {
    items: Vec<StatusItem>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// `GET /v1/status` (admin): the seed API's `status_all`, paged.
#[utoipa::path(get, path = "/v1/status", tag = "engine", params(PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = StatusPageResponse, description = "A page of tokens' rates"), (status = 400, description = "`limit` or `cursor` does not parse, or `limit` is outside 1 to 1000"), (status = 401, description = "No admin bearer token, or a wrong one"), (status = 429, description = "Too many failed admin authentications from this address (`Retry-After`)"), (status = 501, description = "Not available with the Redis store")))]
pub(crate) async fn status_all(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<StatusPageResponse>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "`limit` is {limit}: it must be 1 to 1000"
        )));
    }
    let page = state.runtime().status_page(q.cursor.as_deref(), limit)?;
    Ok(Json(StatusPageResponse {
        items: page
            .items
            .into_iter()
            .map(|(token, metric, rates)| StatusItem {
                token,
                metric,
                stats: rates.into(),
            })
            .collect(),
        next: page.next,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok`, or `degraded` while something is wrong that the node works around.
    status: &'static str,
    /// What is wrong, in words (absent when `ok`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<String>,
}

/// `GET /healthz`: answers while the service runs (also the load test's no-op baseline). Says
/// `degraded`, still with 200 (the node keeps answering; taking it out of a load balancer
/// would not help), while the decision log refuses writes or the shared store is down.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, body = Health, description = "The service answers")))]
pub(crate) async fn healthz(State(state): State<AppState>) -> Json<Health> {
    let rt = state.runtime();
    let mut problems = Vec::new();
    let w = rt.writer_health();
    if w.failing() {
        problems.push(format!(
            "the decision log refuses writes: {} decisions wait to be stored",
            w.pending()
        ));
    }
    if rt.store_health().is_some_and(|h| !h.up) {
        problems.push("the shared store is unavailable: rules answer by their fail policy".into());
    }
    Json(Health {
        status: if problems.is_empty() {
            "ok"
        } else {
            "degraded"
        },
        problems,
    })
}

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub(crate) async fn openapi_json(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi().to_owned(),
    )
}

/// Untrusted text quoted in an answer, cut to 64 bytes at a character boundary.
pub(crate) fn cut(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
