//! The part of CrowdSec's local API that bouncers use, so that CrowdSec's bouncers (firewall,
//! nginx, Traefik, Cloudflare…) enforce banhammer's bans unchanged: `GET /v1/decisions/stream`
//! and `GET /v1/decisions`, behind `X-Api-Key` (`[serve] bouncer_api_keys`), answering in
//! CrowdSec's shapes (`{"message": …}` errors included). Bans whose token is an address or a
//! network become decisions (`decision.rs`); what each key was last given answers the
//! stream's deltas (`pulls.rs`).

mod decision;
mod pulls;

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use banhammer_runtime::RuntimeError;
use serde::Serialize;
use subtle::ConstantTimeEq;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth_limit::AuthLimiter;
use crate::error::ApiError;
use crate::state::AppState;
use decision::{offers, Decision, Filter, Params};
use pulls::Pulls;

/// The bouncer routes' shared state: what each key was last given, and failed key attempts
/// per client address (an engine of their own, apart from the admin routes' limiter, so that
/// a misconfigured bouncer does not lock its host out of the admin routes).
#[derive(Debug)]
pub(crate) struct Bouncers {
    pulls: Pulls,
    limiter: AuthLimiter,
}

impl Bouncers {
    pub(crate) fn new(clock: Arc<dyn banhammer_core::Clock>) -> Self {
        Bouncers {
            pulls: Pulls::default(),
            limiter: AuthLimiter::new(clock),
        }
    }
}

/// Which configured key a request carried (its index): each key has its own stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BouncerKey(usize);

/// Declares the `api_key` scheme (`X-Api-Key`) that the bouncer routes require.
struct ApiKeyScheme;

impl utoipa::Modify for ApiKeyScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "api_key",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
            );
    }
}

#[derive(OpenApi)]
#[openapi(modifiers(&ApiKeyScheme))]
struct BouncerDoc;

/// The bouncer routes and their part of the OpenAPI document.
pub(crate) fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(BouncerDoc::openapi())
        .routes(routes!(stream))
        .routes(routes!(decisions))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_key,
        ))
}

/// A failed bouncer request, answered in CrowdSec's shape: `{"message": "…"}`.
#[derive(Debug)]
pub(crate) enum LapiError {
    /// 403: no key, or not one of `bouncer_api_keys`.
    Forbidden,
    /// 429: too many wrong keys from this address.
    TooManyRequests { retry_after: u64 },
    /// 400: a parameter that does not parse.
    BadRequest(String),
    /// The runtime failed (the shared store is down…), with its usual status.
    Api(ApiError),
}

impl From<RuntimeError> for LapiError {
    fn from(e: RuntimeError) -> Self {
        LapiError::Api(e.into())
    }
}

impl IntoResponse for LapiError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            LapiError::Forbidden => (StatusCode::FORBIDDEN, "access forbidden".to_owned()),
            LapiError::TooManyRequests { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many failed authentications from this address: retry in {retry_after} s"
                ),
            ),
            LapiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            LapiError::Api(e) => (e.status(), e.to_string()),
        };
        if status.is_server_error() {
            tracing::error!(error = %banhammer_core::Escaped(&message), "Bouncer request failed.");
        }
        let mut response = (status, Json(Message { message })).into_response();
        if let LapiError::TooManyRequests { retry_after } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        response
    }
}

/// CrowdSec's error body.
#[derive(Debug, Serialize, ToSchema)]
struct Message {
    message: String,
}

/// The index of the key `given` among `keys`. Every key is compared, each in constant time,
/// so the time taken does not tell which one matched.
fn key_index(keys: &[String], given: &[u8]) -> Option<usize> {
    let mut found = None;
    for (i, key) in keys.iter().enumerate() {
        if bool::from(key.as_bytes().ct_eq(given)) {
            found.get_or_insert(i);
        }
    }
    found
}

/// Refuses bouncer routes without one of the configured keys in `X-Api-Key` (403, as
/// CrowdSec; every request when none is configured). As for the admin token, a client
/// address that sent 10 wrong keys within 60 s is answered 429 for 5 minutes; a request with
/// no key guesses nothing and is not counted.
async fn require_key(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, LapiError> {
    let client = crate::auth::request_client(&state, &req);
    let limiter = &state.bouncers().limiter;
    if let Some(retry_after) = limiter.blocked(client) {
        return Err(LapiError::TooManyRequests { retry_after });
    }
    let Some(given) = req.headers().get("x-api-key") else {
        return Err(LapiError::Forbidden);
    };
    match key_index(&state.settings().bouncer_api_keys, given.as_bytes()) {
        Some(i) => {
            req.extensions_mut().insert(BouncerKey(i));
            Ok(next.run(req).await)
        }
        None => {
            if limiter.failed(client) {
                tracing::warn!(
                    %client,
                    "Bouncer authentication failed too often: client blocked from bouncer routes."
                );
            }
            Err(LapiError::Forbidden)
        }
    }
}

/// The query string's parameters (400 when it does not parse).
fn params(uri: &Uri) -> Result<Params, LapiError> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|Query(pairs)| Params::new(pairs))
        .map_err(|e| LapiError::BadRequest(e.body_text()))
}

/// The stream's answer: decisions to add (or replace) and to drop.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DecisionStream {
    /// Bans that started since the last pull (every active one at startup), and extended
    /// ones with their new duration; `[]` when none.
    new: Vec<Decision>,
    /// Bans that ended (unbanned, expired, or replaced by an extension); `[]` when none.
    deleted: Vec<Decision>,
}

/// `GET /v1/decisions/stream` (bouncer key): what a bouncer in stream mode pulls, as CrowdSec
/// answers it. With `startup=true`, every active ban is `new`; afterwards, what started and
/// ended since this key's last pull. An extended ban comes again in `deleted` and in `new`
/// (bouncers apply `deleted` first, and the firewall bouncer keeps an address it already
/// holds with its old timeout). `HEAD` answers 200 and changes nothing.
#[utoipa::path(get, path = "/v1/decisions/stream", tag = "crowdsec",
    params(
        ("startup" = Option<bool>, Query, description = "`true`: every active ban, as a bouncer that just started needs"),
        ("scopes" = Option<String>, Query, description = "Comma-separated: `ip`, `range` (default both)"),
        ("origins" = Option<String>, Query, description = "Comma-separated origins; banhammer's is `banhammer`"),
        ("scenarios_containing" = Option<String>, Query, description = "Comma-separated words, one of which the scenario contains"),
        ("scenarios_not_containing" = Option<String>, Query, description = "Comma-separated words the scenario contains none of"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, body = DecisionStream, description = "The decisions new and deleted since this key's last pull (all active ones with `startup=true`)"),
        (status = 400, body = Message, description = "A malformed query string"),
        (status = 403, body = Message, description = "No key, or a wrong one"),
        (status = 429, body = Message, description = "Too many wrong keys from this address"),
        (status = 503, body = Message, description = "The shared store is unavailable"),
    ))]
pub(crate) async fn stream(
    State(state): State<AppState>,
    Extension(BouncerKey(key)): Extension<BouncerKey>,
    method: Method,
    uri: Uri,
) -> Result<Response, LapiError> {
    if method == Method::HEAD {
        // A connection check: what it would be sent stays for its next pull.
        return Ok(StatusCode::OK.into_response());
    }
    let params = params(&uri)?;
    let filter = Filter::parse(&params).map_err(LapiError::BadRequest)?;
    let startup = params.get("startup") == Some("true");
    let rt = state.runtime();
    let bans = rt.bans().await?;
    let now = rt.now();
    let current = offers(&bans, now, &filter);
    let delta = state.bouncers().pulls.pull(key, startup, now, current);
    Ok(Json(DecisionStream {
        new: delta.new.iter().map(|o| o.decision(now)).collect(),
        deleted: delta.deleted.iter().map(decision::Offer::ended).collect(),
    })
    .into_response())
}

/// `GET /v1/decisions` (bouncer key): the active decisions a bouncer in live mode asks about,
/// usually `?ip=ADDRESS`: the bans on that address and on the ranges that contain it, or
/// `null` when there are none (as CrowdSec answers). Also `range=`, `contains=false` (the
/// decisions inside the address or range instead), `scope`, `value`, `type`, `origins`,
/// `scenarios_containing`, `scenarios_not_containing`.
#[utoipa::path(get, path = "/v1/decisions", tag = "crowdsec",
    params(
        ("ip" = Option<String>, Query, description = "An address: the decisions that contain it"),
        ("range" = Option<String>, Query, description = "A CIDR range: the decisions that contain it"),
        ("contains" = Option<bool>, Query, description = "`false`: the decisions inside `ip`/`range` instead (default true)"),
        ("scope" = Option<String>, Query, description = "`ip` or `range` (comma-separated)"),
        ("value" = Option<String>, Query, description = "The decision's exact value"),
        ("type" = Option<String>, Query, description = "`ban` (the only type here)"),
        ("origins" = Option<String>, Query, description = "Comma-separated origins; banhammer's is `banhammer`"),
        ("scenarios_containing" = Option<String>, Query, description = "Comma-separated words, one of which the scenario contains"),
        ("scenarios_not_containing" = Option<String>, Query, description = "Comma-separated words the scenario contains none of"),
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, body = Option<Vec<Decision>>, description = "The decisions, or `null` when none"),
        (status = 400, body = Message, description = "`ip`, `range` or `contains` does not parse"),
        (status = 403, body = Message, description = "No key, or a wrong one"),
        (status = 429, body = Message, description = "Too many wrong keys from this address"),
        (status = 503, body = Message, description = "The shared store is unavailable"),
    ))]
pub(crate) async fn decisions(
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Json<Option<Vec<Decision>>>, LapiError> {
    let filter = Filter::parse(&params(&uri)?).map_err(LapiError::BadRequest)?;
    let rt = state.runtime();
    let bans = rt.bans().await?;
    let now = rt.now();
    let mut found: Vec<_> = offers(&bans, now, &filter).into_values().collect();
    found.sort_by(|a, b| a.value.cmp(&b.value));
    let list: Vec<Decision> = found.iter().map(|o| o.decision(now)).collect();
    Ok(Json((!list.is_empty()).then_some(list)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matching_key_is_found_and_no_other() {
        let keys = ["first".to_owned(), "second".to_owned()];
        assert_eq!(key_index(&keys, b"first"), Some(0));
        assert_eq!(key_index(&keys, b"second"), Some(1));
        for wrong in [&b""[..], b"firs", b"first ", b"SECOND"] {
            assert_eq!(key_index(&keys, wrong), None);
        }
        assert_eq!(key_index(&[], b"first"), None);
    }
}
