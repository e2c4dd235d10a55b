//! banhammer-http: the engine over HTTP, shaped like mini-redis: [`app`] builds the router
//! (tests call it directly), [`run`] serves it on a listener, within the connection limits of
//! `[serve]`, until a shutdown future resolves.
//!
//! Routes: `POST /v1/incr`, `POST /v1/now`, `GET /v1/status[/{token}/{metric}]`,
//! `GET|POST /v1/bans`, `GET|DELETE /v1/bans/{token}` (`bans.rs`), `PUT /detect`,
//! `GET /metrics`, `GET /healthz`, `GET /openapi.json`. Only this crate knows the JSON shapes
//! of requests and answers, so the admin client of `banhammer ban|unban|bans --server`
//! ([`AdminClient`], `client.rs`) is here too.
//! `GET /v1/check[/{metric}]` is the forward-auth check for reverse proxies (`check.rs`).
//! CrowdSec's bouncer routes, `GET /v1/decisions[/stream]`, are in `crowdsec/`. The live web
//! console is `GET /ui` and its assets (`console.rs`), fed by `GET /v1/events` and `GET /v1/log`
//! (`events.rs`, admin).

mod auth;
mod auth_limit;
mod bans;
mod check;
mod client;
mod client_ip;
mod conn;
mod console;
mod crowdsec;
mod detect;
mod error;
mod events;
pub mod exposition;
mod metrics;
mod server;
mod state;
mod v1;

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{admin_access, AdminAccess, AdminSetupError};
pub use bans::{
    BanDuration, BanEntry, BanOutcome, BanRequest, BanResponse, BansResponse, Origin, UnbanResponse,
};
pub use client::{AdminClient, ClientError, LogEntry};
pub use console::{serve_feed, watch_state_json, ConsoleMode, MAX_FEED_CLIENTS};
pub use error::ApiError;
pub use events::MAX_CONSOLES;
pub use server::run;
pub use state::{AppState, HeldRequests};

/// Declares the `bearer` scheme that admin routes require.
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerScheme),
    info(
        title = "banhammer",
        description = "Counts events per token over exact sliding windows and bans, alerts and reports when thresholds are crossed."
    ),
    components(schemas(v1::Stats))
)]
struct ApiDoc;

/// The router and its OpenAPI document, built from the same route list so they cannot differ.
pub fn app_and_openapi(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let admin = OpenApiRouter::new()
        .routes(routes!(v1::now))
        .routes(routes!(v1::status_one))
        .routes(routes!(v1::status_all))
        .routes(routes!(bans::bans, bans::ban_by_hand))
        .routes(routes!(bans::ban, bans::unban))
        .routes(routes!(events::events))
        .routes(routes!(events::log))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ));
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(v1::incr))
        .routes(routes!(check::check))
        .routes(routes!(check::check_named))
        .routes(routes!(detect::detect))
        .routes(routes!(metrics::scrape))
        .routes(routes!(v1::healthz))
        .routes(routes!(v1::openapi_json))
        .routes(routes!(console::ui))
        .routes(routes!(console::ui_script))
        .routes(routes!(console::ui_style))
        .merge(admin)
        .merge(crowdsec::routes(&state))
        .split_for_parts();
    let router = router
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            state.settings().max_body_bytes,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            state.settings().request_timeout,
        ))
        .with_state(state.clone());
    state.set_openapi(doc.clone());
    (router, doc)
}

/// Each request is answered by one runtime: a configuration reload waits for it to finish.
async fn gate(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let _held = state.enter().await;
    next.run(request).await
}

/// The router.
pub fn app(state: AppState) -> Router {
    app_and_openapi(state).0
}
