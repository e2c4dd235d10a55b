//! `GET /v1/check`: forward-auth for reverse proxies (nginx `auth_request`, Caddy
//! `forward_auth`, Traefik `ForwardAuth`). Each check counts the proxied request as an event
//! for its client and answers 204 to let it through, or `[serve.check] banned_status` (403 or
//! 429) with `Retry-After` while the client is banned.
//!
//! Not an admin route, so nothing here may let a caller act for someone else: the client
//! address comes from `X-Forwarded-For` only when the peer is a trusted proxy, and so does a
//! metric named per request, in the check URL's path (`/v1/check/login`), which the proxy's
//! configuration writes and its clients cannot change.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use banhammer_config::CheckSettings;
use banhammer_core::Event;
use serde_json::json;

use crate::client_ip::{client_ip, is_trusted};
use crate::error::ApiError;
use crate::state::AppState;
use crate::v1::cut;

/// The header a trusted proxy may name the metric in, with `[serve.check] metric_header`.
const METRIC_HEADER: &str = "x-banhammer-metric";

/// What both routes answer, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // only read by utoipa's derive
enum CheckAnswers {
    /// Pass: counted, or the client is in `[serve] allow`.
    #[response(status = 204)]
    Pass,
    /// Banned (`banned_status`, the default); `Retry-After`: seconds to the ban's end.
    #[response(status = 403)]
    Banned,
    /// Banned, with `banned_status = 429`; `Retry-After` as for 403.
    #[response(status = 429)]
    BannedTooMany,
    /// A trusted proxy named a metric that is neither `[serve.check] metric` nor one of its
    /// `metrics`.
    #[response(status = 400)]
    NotAllowed,
    /// `[serve.check]` is not configured.
    #[response(status = 404)]
    Off,
    /// The decision could not be stored.
    #[response(status = 503)]
    Unavailable,
}

/// `GET /v1/check` (also `HEAD`): counts the request for its client as `[serve.check]
/// metric` and answers whether the proxy lets it through.
#[utoipa::path(get, path = "/v1/check", tag = "forward-auth", responses(CheckAnswers))]
pub(crate) async fn check(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    answer(&state, peer, &headers, None).await
}

/// `GET /v1/check/{metric}` (also `HEAD`): as `GET /v1/check`, counting as `metric` when a
/// trusted proxy asks (its check URL names it, out of the client's reach) and it is one of
/// `[serve.check] metrics`; anyone else counts as `[serve.check] metric`.
#[utoipa::path(get, path = "/v1/check/{metric}", tag = "forward-auth",
    params(("metric" = String, Path, description = "`[serve.check] metric` or one of its `metrics`")),
    responses(CheckAnswers))]
pub(crate) async fn check_named(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    metric: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(metric) = metric.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    answer(&state, peer, &headers, Some(&metric)).await
}

/// Both routes: the client, the allow list, the metric, the event, the answer.
async fn answer(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    in_path: Option<&str>,
) -> Result<Response, ApiError> {
    let settings = state.settings();
    let Some(check) = &settings.check else {
        return Err(ApiError::NotFound(
            "the forward-auth check is not configured: add [serve.check]".to_owned(),
        ));
    };
    let from_proxy = is_trusted(&settings.trusted_proxies, peer.ip());
    warn_if_misconfigured(from_proxy, peer, headers);
    let client = client_ip(peer, headers, &settings.trusted_proxies);
    // An address and its IPv4-mapped form are one, as for trusted proxies.
    if settings.allows(client) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let metric = if from_proxy {
        named_metric(check, in_path, headers)?
    } else {
        // Anyone else counts as the configured metric, whatever it asks for.
        check.metric.as_str()
    };
    let token = settings.clients.token_of(client);
    let rt = state.runtime();
    let verdict = rt
        .observe(&Event::new(&token, metric, rt.now()), false)
        .await?;
    if verdict.passed {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    // Refused without a ban (a rule's fail policy while the shared store is down): no end.
    let retry_after = match rt.ban(&token).await {
        Ok(Some(ban)) => Some(ban.until.since(rt.now()).get().max(1)),
        _ => None,
    };
    Ok(refusal(check.banned_status, retry_after))
}

/// The metric a trusted proxy asks for: the one in the check URL's path, else
/// `X-Banhammer-Metric` when `metric_header` allows it, else the configured one. The query
/// string is never read: Caddy passes the client's own query on to the check when its `uri`
/// has none. Naming one that is not allowed is the proxy's configuration error, answered 400
/// so that it shows.
fn named_metric<'a>(
    check: &'a CheckSettings,
    in_path: Option<&str>,
    headers: &HeaderMap,
) -> Result<&'a str, ApiError> {
    let header = headers
        .get(METRIC_HEADER)
        .filter(|_| check.metric_header)
        .map(|v| v.to_str().unwrap_or_default());
    let Some(named) = in_path.or(header) else {
        return Ok(check.metric.as_str());
    };
    check
        .metrics
        .iter()
        .chain(std::iter::once(&check.metric))
        .find(|m| **m == named)
        .map(String::as_str)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "metric `{}` is neither [serve.check] metric nor one of its metrics",
                cut(named)
            ))
        })
}

/// The answer to a banned client: `status` with `Retry-After` when the ban's end is known.
fn refusal(status: u16, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    let message = match retry_after {
        Some(s) => format!("this client is banned: retry in {s} s"),
        None => "this client is refused".to_owned(),
    };
    let mut response = (status, Json(json!({ "error": message }))).into_response();
    if let Some(s) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    response
}

/// Says once, at warn, when checks look misrouted: a proxy that is not in `trusted_proxies`
/// (every client behind it is counted as that proxy), or a trusted one that sends no
/// `X-Forwarded-For` (it is counted itself). Once per process: each check would repeat it.
fn warn_if_misconfigured(from_proxy: bool, peer: SocketAddr, headers: &HeaderMap) {
    static UNTRUSTED: AtomicBool = AtomicBool::new(false);
    static NO_HEADER: AtomicBool = AtomicBool::new(false);
    let forwarded = headers.contains_key("x-forwarded-for");
    let peer = peer.ip().to_canonical();
    if !from_proxy && forwarded && !UNTRUSTED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            %peer,
            "A check came with X-Forwarded-For from a peer not in [serve] trusted_proxies: the \
             peer itself is counted (said once)."
        );
    }
    if from_proxy && !forwarded && !NO_HEADER.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            %peer,
            "A check came from a trusted proxy without X-Forwarded-For: the proxy itself is \
             counted; set the header in its forward-auth configuration (said once)."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_carries_its_status_and_retry_after() {
        let r = refusal(429, Some(42));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "42");
        let r = refusal(403, None);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(!r.headers().contains_key(header::RETRY_AFTER));
    }

    #[test]
    fn a_proxy_names_only_allowed_metrics_path_first() {
        let check = CheckSettings {
            metrics: vec!["login".to_owned()],
            metric_header: true,
            ..CheckSettings::default()
        };
        let mut h = HeaderMap::new();
        assert_eq!(named_metric(&check, None, &h).unwrap(), "request");
        assert_eq!(named_metric(&check, Some("login"), &h).unwrap(), "login");
        h.insert(METRIC_HEADER, HeaderValue::from_static("login"));
        assert_eq!(named_metric(&check, None, &h).unwrap(), "login");
        assert_eq!(
            named_metric(&check, Some("request"), &h).unwrap(),
            "request",
            "the path wins"
        );
        assert!(matches!(
            named_metric(&check, Some("admin_auth_failed"), &h),
            Err(ApiError::BadRequest(_))
        ));
        let off = CheckSettings {
            metric_header: false,
            ..check
        };
        assert_eq!(named_metric(&off, None, &h).unwrap(), "request");
    }
}
