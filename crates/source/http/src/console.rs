//! The live web console's page: static assets embedded in the binary (`console/`), served at
//! `/ui` by `serve` (with its admin data from `/v1/events`) and by `monitor --web` /
//! `watch --http` ([`serve_feed`]: the page and one stream of JSON snapshots, `/ui/feed`;
//! [`watch_state_json`] is watch's document).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use banhammer_core::{DecisionView, Effect, Timestamp, Token};
use banhammer_runtime::StoredDecision;
use futures_util::stream::{self, Stream};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::bans::BanEntry;
use crate::events::Decision;

const PAGE: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/app.css");

/// Which data the page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsoleMode {
    /// `serve`: bans, decisions, rates (admin API).
    Serve,
    /// `monitor --web`: traffic sections, requests/s, alerts.
    Monitor,
    /// `watch --http`: bans and decisions, read only (see [`watch_state_json`]).
    Watch,
}

impl ConsoleMode {
    fn name(self) -> &'static str {
        match self {
            ConsoleMode::Serve => "serve",
            ConsoleMode::Monitor => "monitor",
            ConsoleMode::Watch => "watch",
        }
    }
}

/// The page's answer: no inline script or style is allowed, nor framing.
fn asset(content_type: &'static str, body: String) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// The page for `mode`.
pub(crate) fn page(mode: ConsoleMode) -> Response {
    asset(
        "text/html; charset=utf-8",
        PAGE.replace("{{MODE}}", mode.name()),
    )
}

pub(crate) fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT.to_owned())
}

pub(crate) fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE.to_owned())
}

/// `GET /ui`: the live console (a static page; its data come from the admin API with the
/// token the operator pastes).
#[utoipa::path(get, path = "/ui", tag = "console",
    responses((status = 200, description = "The console page", content_type = "text/html")))]
pub(crate) async fn ui() -> Response {
    page(ConsoleMode::Serve)
}

/// `GET /ui/app.js`: the console's script.
#[utoipa::path(get, path = "/ui/app.js", tag = "console",
    responses((status = 200, description = "The console's script", content_type = "text/javascript")))]
pub(crate) async fn ui_script() -> Response {
    script()
}

/// `GET /ui/app.css`: the console's style sheet.
#[utoipa::path(get, path = "/ui/app.css", tag = "console",
    responses((status = 200, description = "The console's style sheet", content_type = "text/css")))]
pub(crate) async fn ui_style() -> Response {
    style()
}

/// `watch --http`'s state for the console: the clock, the active bans, and the latest
/// decisions (oldest first), as `serve`'s snapshot shows them.
pub fn watch_state_json<'a>(
    now: Timestamp,
    bans: impl Iterator<Item = (&'a Token, DecisionView)>,
    log: impl Iterator<Item = &'a StoredDecision>,
) -> String {
    let bans: Vec<BanEntry> = bans
        .filter(|(_, d)| d.effect == Effect::Block)
        .map(|(t, d)| BanEntry::new(t.as_str(), &d, now))
        .collect();
    let log: Vec<Decision> = log.cloned().map(Decision::from).collect();
    serde_json::json!({ "now": now.as_unix(), "bans": bans, "log": log, "metrics": [] }).to_string()
}

/// The most pages reading one [`serve_feed`] stream at once.
pub const MAX_FEED_CLIENTS: usize = 16;

#[derive(Clone)]
struct FeedState {
    feed: watch::Receiver<Arc<str>>,
    slots: Arc<Semaphore>,
    closing: watch::Receiver<bool>,
    mode: ConsoleMode,
}

/// Serves the console for `mode` on `listener` until `shutdown` resolves: `/ui` (and `/`,
/// redirected there), its assets, and `/ui/feed`, a Server-Sent Events stream that sends
/// `feed`'s value (a JSON document) at once and each time it changes, to at most
/// [`MAX_FEED_CLIENTS`] pages. For `monitor --web` and `watch --http`, whose data are their
/// own and need no admin token.
pub async fn serve_feed(
    listener: TcpListener,
    mode: ConsoleMode,
    feed: watch::Receiver<Arc<str>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (close, closing) = watch::channel(false);
    let state = FeedState {
        feed,
        slots: Arc::new(Semaphore::new(MAX_FEED_CLIENTS)),
        closing,
        mode,
    };
    let app = Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .route(
            "/ui",
            get(|State(s): State<FeedState>| async move { page(s.mode) }),
        )
        .route("/ui/app.js", get(|| async { script() }))
        .route("/ui/app.css", get(|| async { style() }))
        .route("/ui/feed", get(feed_stream))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Open streams end, so the drain does not wait on them.
            let _ = close.send(true);
        })
        .await
}

struct FeedClient {
    feed: watch::Receiver<Arc<str>>,
    closing: watch::Receiver<bool>,
    first: bool,
    _slot: OwnedSemaphorePermit,
}

async fn feed_stream(
    State(s): State<FeedState>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Response> {
    let slot = Arc::clone(&s.slots).try_acquire_owned().map_err(|_| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "error": format!("{MAX_FEED_CLIENTS} consoles are open already: close one and retry")
            })),
        )
            .into_response()
    })?;
    let client = FeedClient {
        feed: s.feed,
        closing: s.closing,
        first: true,
        _slot: slot,
    };
    let stream = stream::unfold(client, |mut c| async move {
        if *c.closing.borrow() {
            return None;
        }
        if !std::mem::take(&mut c.first) {
            tokio::select! {
                _ = c.closing.changed() => return None,
                changed = c.feed.changed() => changed.ok()?,
            }
        }
        let body = Arc::clone(&c.feed.borrow_and_update());
        Some((Ok(Event::default().event("state").data(&*body)), c))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
