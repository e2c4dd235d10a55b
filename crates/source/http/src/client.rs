//! `AdminClient`: the operator's side of `/v1/bans`, for `banhammer bans|ban|unban --server
//! URL` (the binary knows no JSON: the shapes are this crate's). Also the JSON that `banhammer
//! bans --format json` prints, whichever the source.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

use crate::bans::{BanEntry, BanRequest, BanResponse, BansResponse, UnbanResponse};

/// How long a call to a running `serve` may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to a running `serve` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not an `http://` or `https://` URL.
    #[error("`{0}` is not an http:// URL")]
    BadUrl(String),
    /// The service could not be reached (refused, timed out).
    #[error("cannot reach {url}: {why}")]
    Unreachable {
        /// Where.
        url: String,
        /// What the connection said.
        why: String,
    },
    /// The service answered an error: its status and message.
    #[error("{status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The service's `error` message.
        message: String,
    },
}

/// A client of one running `banhammer serve`'s admin routes, with its bearer token.
#[derive(Debug, Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl AdminClient {
    /// A client of the service at `base` (`http://127.0.0.1:8080`), sending `token` as the
    /// bearer token of the admin routes.
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        let bad = || ClientError::BadUrl(base.to_owned());
        let mut url = Url::parse(base).map_err(|_| bad())?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(bad());
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| ClientError::Unreachable {
                url: base.to_owned(),
                why: e.to_string(),
            })?;
        Ok(AdminClient {
            http,
            base: url,
            token,
        })
    }

    /// `GET /v1/bans`: every active ban, oldest first.
    pub async fn bans(&self) -> Result<Vec<BanEntry>, ClientError> {
        let r = self.send(self.http.get(self.url(&["v1", "bans"]))).await?;
        Ok(self.read::<BansResponse>(r).await?.bans)
    }

    /// `POST /v1/bans`: bans by hand.
    pub async fn ban(&self, request: &BanRequest) -> Result<BanResponse, ClientError> {
        let r = self
            .send(self.http.post(self.url(&["v1", "bans"])).json(request))
            .await?;
        self.read(r).await
    }

    /// `DELETE /v1/bans/{token}`: the unban, or `None` if the token was not banned.
    pub async fn unban(&self, token: &str) -> Result<Option<UnbanResponse>, ClientError> {
        let r = self
            .send(self.http.delete(self.url(&["v1", "bans", token])))
            .await?;
        if r.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.read(r).await.map(Some)
    }

    /// The URL of `segments` under the base, each segment escaped (a token such as
    /// `2001:db8::/64` is one segment).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        req.send().await.map_err(|e| ClientError::Unreachable {
            url: self.base.to_string(),
            why: e.without_url().to_string(),
        })
    }

    /// The answer's body as `T`, or the service's error.
    async fn read<T: for<'de> Deserialize<'de>>(
        &self,
        r: reqwest::Response,
    ) -> Result<T, ClientError> {
        let status = r.status();
        let text = r.text().await.map_err(|e| ClientError::Unreachable {
            url: self.base.to_string(),
            why: e.without_url().to_string(),
        })?;
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| ClientError::Refused {
                status: status.as_u16(),
                message: format!("an answer this client cannot read ({e})"),
            });
        }
        #[derive(Deserialize)]
        struct Error {
            error: String,
        }
        let message = serde_json::from_str::<Error>(&text)
            .map(|e| e.error)
            .unwrap_or_else(|_| status.canonical_reason().unwrap_or("error").to_owned());
        Err(ClientError::Refused {
            status: status.as_u16(),
            message,
        })
    }
}

/// A row of a decision log (`banhammer bans --all`), as `--format json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When (Unix seconds).
    pub at: i64,
    /// `BAN`, `UNBAN`, `NOTIFY`, …
    pub verb: String,
    /// Who.
    pub token: String,
    /// The metric of the rule (`manual` for a ban by hand).
    pub rule: String,
    /// Its tier.
    pub tier: usize,
    /// The measure that reached the limit.
    pub value: u64,
    /// When the decision started.
    pub from: i64,
    /// When it ends (as known then).
    pub until: i64,
    /// The operator's reason, for bans by hand.
    pub reason: Option<String>,
}

impl BansResponse {
    /// As `GET /v1/bans` answers it, indented.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

impl LogEntry {
    /// `entries` as one JSON array, indented.
    pub fn to_json(entries: &[LogEntry]) -> String {
        serde_json::to_string_pretty(entries).unwrap_or_default()
    }
}
