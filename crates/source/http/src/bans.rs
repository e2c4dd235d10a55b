//! `/v1/bans` (admin): the operator's view of bans, as `fail2ban-client` and `cscli decisions`
//! give one: list them (with their origin, a rule or an operator, and the operator's reason),
//! look one up, ban by hand for a while with a reason, unban. The answers' shapes are public:
//! `banhammer bans|ban|unban --server` read them back ([`crate::AdminClient`]).
//!
//! A token named here that is a client address is the token its client counts as (`[serve]
//! ipv4_prefix`, `ipv6_prefix`): `2001:db8:1:2::7` names `2001:db8:1:2::/64`. A token of
//! `[serve] allow` is never banned: banning it is refused (409).

use axum::extract::{Path, State};
use axum::Json;
use banhammer_core::{Change, DecisionView, Seconds, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use crate::v1::cut;

/// Who started a ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A threshold held (`rule` and `tier` say which).
    Rule,
    /// An operator banned by hand (`POST /v1/bans`, `banhammer ban`).
    Manual,
}

/// An active ban, as listings show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BanEntry {
    /// Who is banned.
    pub token: String,
    /// Whether a rule or an operator started it.
    pub origin: Origin,
    /// The metric of the rule that started it (`manual` for a ban by hand).
    pub rule: String,
    /// That rule's tier.
    pub tier: usize,
    /// The measure that reached the limit (0 for a ban by hand).
    pub value: u64,
    /// When it started (Unix seconds).
    pub from: i64,
    /// When it ends (Unix seconds).
    pub until: i64,
    /// Seconds left, from the server's clock.
    pub remaining: u64,
    /// The operator's reason, when a ban by hand started it or carried it further.
    pub reason: Option<String>,
}

impl BanEntry {
    /// `token`'s ban `d`, with the time left at `now`.
    pub fn new(token: &str, d: &DecisionView, now: Timestamp) -> Self {
        BanEntry {
            token: token.to_owned(),
            origin: if d.is_manual() {
                Origin::Manual
            } else {
                Origin::Rule
            },
            rule: d.metric.to_string(),
            tier: d.tier,
            value: d.value,
            from: d.from.as_unix(),
            until: d.until.as_unix(),
            remaining: u64::try_from(d.until.as_unix().saturating_sub(now.as_unix())).unwrap_or(0),
            reason: d.reason.as_deref().map(str::to_owned),
        }
    }
}

/// The answer of `GET /v1/bans`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BansResponse {
    /// Every active ban, oldest first.
    pub bans: Vec<BanEntry>,
}

/// How long a ban by hand lasts: whole seconds, or a duration such as `"1h"`, `"30m"`,
/// `"1d"`, `"1h 30m"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum BanDuration {
    /// Whole seconds.
    Seconds(u64),
    /// A duration as the configuration writes one.
    Text(String),
}

impl BanDuration {
    fn seconds(&self) -> Result<Seconds, String> {
        match self {
            BanDuration::Seconds(s) => Ok(Seconds::new(*s)),
            BanDuration::Text(t) => banhammer_config::parse_duration(t),
        }
    }
}

/// The body of `POST /v1/bans`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BanRequest {
    /// The token, or a client address (banned as its client counts: an IPv6 address by its
    /// network at `[serve] ipv6_prefix`).
    pub token: String,
    /// How long, from now: 1 second to 10 years.
    pub duration: BanDuration,
    /// Why, at most 512 bytes: listings show it, the decision log keeps it.
    #[serde(default)]
    pub reason: Option<String>,
}

/// What a ban by hand did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BanOutcome {
    /// A ban started.
    Banned,
    /// The token was banned already; its ban now reaches further (and keeps its origin).
    Extended,
    /// The token was banned further already: nothing changed (a ban is never shortened).
    Unchanged,
}

/// The answer of `POST /v1/bans`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BanResponse {
    /// What happened.
    pub outcome: BanOutcome,
    /// The token's ban now.
    pub ban: BanEntry,
}

/// The answer of `DELETE /v1/bans/{token}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UnbanResponse {
    /// The token unbanned.
    pub token: String,
    /// When (Unix seconds).
    pub unbanned_at: i64,
}

/// 409 when `token` names only clients of `[serve] allow`, which are never banned.
pub(crate) fn refuse_allowed(state: &AppState, token: &str) -> Result<(), ApiError> {
    if state.settings().allows_token(token) {
        return Err(ApiError::Conflict(format!(
            "`{}` is in [serve] allow: it is never banned",
            cut(token)
        )));
    }
    Ok(())
}

/// `GET /v1/bans` (admin): every active ban, oldest first, with its origin and reason.
#[utoipa::path(get, path = "/v1/bans", tag = "bans", security(("bearer" = [])),
    responses((status = 200, body = BansResponse, description = "Every active ban, oldest first"), (status = 401, description = "No admin bearer token, or a wrong one"), (status = 429, description = "Too many failed admin authentications from this address (`Retry-After`)")))]
pub(crate) async fn bans(State(state): State<AppState>) -> Result<Json<BansResponse>, ApiError> {
    let rt = state.runtime();
    let now = rt.now();
    let bans = rt
        .bans()
        .await?
        .iter()
        .map(|(t, d)| BanEntry::new(t.as_str(), d, now))
        .collect();
    Ok(Json(BansResponse { bans }))
}

/// `POST /v1/bans` (admin): bans a token by hand for a while, with a reason (`banhammer ban`,
/// `cscli decisions add`). A banned token's ban is carried further if that reaches further,
/// never shortened. Stored before the answer; it survives a restart and counts as an offence
/// for escalating tiers, without being escalated itself.
#[utoipa::path(post, path = "/v1/bans", tag = "bans", request_body = BanRequest,
    security(("bearer" = [])),
    responses((status = 200, body = BanResponse, description = "The ban, stored"), (status = 401, description = "No admin bearer token, or a wrong one"), (status = 409, description = "The token is in [serve] allow"),
        (status = 422, description = "A bad token, duration or reason"), (status = 429, description = "Too many failed admin authentications from this address (`Retry-After`)")))]
pub(crate) async fn ban_by_hand(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<BanRequest>,
) -> Result<Json<BanResponse>, ApiError> {
    let token = state.settings().clients.token_named(req.token.trim());
    refuse_allowed(&state, &token)?;
    let duration = req
        .duration
        .seconds()
        .map_err(|why| ApiError::Unprocessable(format!("duration: {why}")))?;
    let rt = state.runtime();
    let verdict = rt
        .ban_by_hand(&token, duration, req.reason.as_deref())
        .await?;
    let made = verdict
        .decisions
        .iter()
        .rev()
        .find(|d| d.token.as_str() == token && d.change != Change::End);
    let outcome = match made {
        Some(d) if d.change == Change::Start => BanOutcome::Banned,
        Some(_) => BanOutcome::Extended,
        None => BanOutcome::Unchanged,
    };
    let view = rt.ban(&token).await?.ok_or_else(|| {
        ApiError::Unavailable(format!(
            "`{}` was banned but its ban cannot be read",
            cut(&token)
        ))
    })?;
    Ok(Json(BanResponse {
        outcome,
        ban: BanEntry::new(&token, &view, rt.now()),
    }))
}

/// `GET /v1/bans/{token}` (admin): the token's ban, and why.
#[utoipa::path(get, path = "/v1/bans/{token}", tag = "bans", params(("token" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = BanEntry, description = "The token's ban"), (status = 401, description = "No admin bearer token, or a wrong one"), (status = 429, description = "Too many failed admin authentications from this address (`Retry-After`)"), (status = 404, description = "The token is not banned")))]
pub(crate) async fn ban(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Json<BanEntry>, ApiError> {
    let token = state.settings().clients.token_named(&token);
    let rt = state.runtime();
    rt.ban(&token)
        .await?
        .map(|d| Json(BanEntry::new(&token, &d, rt.now())))
        .ok_or_else(|| ApiError::NotFound(format!("`{}` is not banned", cut(&token))))
}

/// `DELETE /v1/bans/{token}` (admin): ends the ban now (the UNBAN is stored first).
#[utoipa::path(delete, path = "/v1/bans/{token}", tag = "bans", params(("token" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = UnbanResponse, description = "The ban ended; its UNBAN is stored"), (status = 401, description = "No admin bearer token, or a wrong one"), (status = 429, description = "Too many failed admin authentications from this address (`Retry-After`)"), (status = 404, description = "The token is not banned")))]
pub(crate) async fn unban(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Json<UnbanResponse>, ApiError> {
    let token = state.settings().clients.token_named(&token);
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
