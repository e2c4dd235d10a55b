//! `/v1`: the library API over HTTP (`incr`, `now`, `status`, `status_all`, bans), plus
//! `/healthz` and `/openapi.json`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::Json;
use banhammer_config::TokenFrom;
use banhammer_core::{DecisionView, Event, Rates};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::client_ip::client_ip;
use crate::error::{ApiError, ApiJson};
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
pub(crate) struct RatesQuery {
    /// Return the token's rates for the metric.
    #[serde(default)]
    rates: Option<bool>,
}

/// `POST /v1/incr`: one event; answers whether the token passes.
#[utoipa::path(post, path = "/v1/incr", tag = "engine", request_body = IncrRequest, params(RatesQuery),
    responses(
        (status = 200, body = IncrResponse),
        (status = 400, description = "Malformed JSON"),
        (status = 422, description = "Unknown metric, bad token or missing attribute"),
        (status = 503, description = "The decision could not be stored"),
    ))]
pub(crate) async fn incr(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<RatesQuery>,
    ApiJson(req): ApiJson<IncrRequest>,
) -> Result<Json<IncrResponse>, ApiError> {
    let token = match state.settings().token_from {
        TokenFrom::Peer => client_ip(peer, &headers, &state.settings().trusted_proxies).to_string(),
        TokenFrom::Body => req
            .token
            .ok_or_else(|| ApiError::Unprocessable("`token` is required".to_owned()))?,
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
    let rates = q.rates.unwrap_or(state.settings().return_rates);
    let rt = state.runtime();
    let event = Event::new(&token, &req.metric, rt.now()).with_attrs(&attrs);
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
/// token's stats.
#[utoipa::path(post, path = "/v1/now", tag = "engine", request_body = NowRequest,
    security(("bearer" = [])),
    responses((status = 200, body = Stats), (status = 401), (status = 429), (status = 422)))]
pub(crate) async fn now(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NowRequest>,
) -> Result<Json<Stats>, ApiError> {
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
pub(crate) struct Ban {
    token: String,
    /// The metric of the rule that started the ban.
    rule: String,
    tier: usize,
    /// The measure that reached the limit.
    value: u64,
    from: i64,
    until: i64,
}

impl Ban {
    pub(crate) fn new(token: &str, d: &DecisionView) -> Self {
        Ban {
            token: token.to_owned(),
            rule: d.metric.to_string(),
            tier: d.tier,
            value: d.value,
            from: d.from.as_unix(),
            until: d.until.as_unix(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatusResponse {
    token: String,
    metric: String,
    stats: Option<Stats>,
    tiers: Vec<Tier>,
    /// The token's active ban, from whichever metric.
    ban: Option<Ban>,
}

/// `GET /v1/status/{token}/{metric}` (admin): the seed API's `status`.
#[utoipa::path(get, path = "/v1/status/{token}/{metric}", tag = "engine",
    params(("token" = String, Path), ("metric" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = StatusResponse), (status = 401), (status = 429), (status = 422), (status = 501)))]
pub(crate) async fn status_one(
    State(state): State<AppState>,
    Path((token, metric)): Path<(String, String)>,
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
    let ban = s.ban.as_ref().map(|b| Ban::new(&token, b));
    Ok(Json(StatusResponse {
        token,
        metric,
        stats: s.rates.map(Stats::from),
        tiers,
        ban,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
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
    responses((status = 200, body = StatusPageResponse), (status = 401), (status = 429)))]
pub(crate) async fn status_all(
    State(state): State<AppState>,
    Query(q): Query<PageQuery>,
) -> Result<Json<StatusPageResponse>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
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
pub(crate) struct BansResponse {
    bans: Vec<Ban>,
}

/// `GET /v1/bans` (admin): every active ban, oldest first.
#[utoipa::path(get, path = "/v1/bans", tag = "bans", security(("bearer" = [])),
    responses((status = 200, body = BansResponse), (status = 401), (status = 429)))]
pub(crate) async fn bans(State(state): State<AppState>) -> Result<Json<BansResponse>, ApiError> {
    let bans = state
        .runtime()
        .bans()
        .await?
        .iter()
        .map(|(t, d)| Ban::new(t.as_str(), d))
        .collect();
    Ok(Json(BansResponse { bans }))
}

/// `GET /v1/bans/{token}` (admin): the token's ban, and why.
#[utoipa::path(get, path = "/v1/bans/{token}", tag = "bans", params(("token" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Ban), (status = 401), (status = 429), (status = 404)))]
pub(crate) async fn ban(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Json<Ban>, ApiError> {
    state
        .runtime()
        .ban(&token)
        .await?
        .map(|d| Json(Ban::new(&token, &d)))
        .ok_or_else(|| ApiError::NotFound(format!("`{}` is not banned", cut(&token))))
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UnbanResponse {
    token: String,
    unbanned_at: i64,
}

/// `DELETE /v1/bans/{token}` (admin): ends the ban now (the UNBAN is stored first).
#[utoipa::path(delete, path = "/v1/bans/{token}", tag = "bans", params(("token" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = UnbanResponse), (status = 401), (status = 429), (status = 404)))]
pub(crate) async fn unban(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Json<UnbanResponse>, ApiError> {
    match state.runtime().unban(&token).await? {
        Some(end) => Ok(Json(UnbanResponse {
            token,
            unbanned_at: end.at.as_unix(),
        })),
        None => Err(ApiError::NotFound(format!(
            "`{}` is not banned",
            cut(&token)
        ))),
    }
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
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, body = Health)))]
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
