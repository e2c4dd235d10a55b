//! The admin routes' guard: the bearer token, checked in constant time, failed attempts
//! limited per client address, and whether running without a token is allowed on the
//! listening address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use banhammer_config::ServeSettings;
use subtle::ConstantTimeEq;

use crate::client_ip::client_ip;
use crate::error::ApiError;
use crate::state::AppState;

/// How the admin routes (`now`, `status`, `bans`) are guarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdminAccess {
    /// They need the bearer token.
    Token,
    /// Open, on a loopback address: only this host reaches them.
    OpenOnLoopback,
    /// Open to whoever reaches the address, as `insecure_open_admin` asks.
    OpenInsecure,
}

/// Why the service may not start with these admin settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminSetupError {
    /// No token, on an address other hosts may reach.
    #[error(
        "admin routes (now, status, bans) would be open to anyone who reaches {0}: set \
         [serve] admin_token (or BANHAMMER_ADMIN_TOKEN), or [serve] insecure_open_admin = true \
         to leave them open on purpose"
    )]
    OpenOnNetwork(SocketAddr),
    /// The token is blank (from the environment; the file refuses one).
    #[error("the admin token is blank: set a secret in BANHAMMER_ADMIN_TOKEN or unset it")]
    BlankToken,
}

/// How admin routes are guarded when serving `settings` on `listen`: refused when they would
/// be open on a non-loopback address (`0.0.0.0` included) without `insecure_open_admin`.
pub fn admin_access(
    settings: &ServeSettings,
    listen: SocketAddr,
) -> Result<AdminAccess, AdminSetupError> {
    match &settings.admin_token {
        Some(t) if t.trim().is_empty() => Err(AdminSetupError::BlankToken),
        Some(_) => Ok(AdminAccess::Token),
        None if listen.ip().to_canonical().is_loopback() => Ok(AdminAccess::OpenOnLoopback),
        None if settings.insecure_open_admin => Ok(AdminAccess::OpenInsecure),
        None => Err(AdminSetupError::OpenOnNetwork(listen)),
    }
}

/// Says at start how admin routes are guarded.
pub(crate) fn log_access(access: AdminAccess, listen: SocketAddr) {
    match access {
        AdminAccess::Token => {
            tracing::info!(%listen, "Admin routes are protected by the bearer token.");
        }
        AdminAccess::OpenOnLoopback => tracing::warn!(
            %listen,
            "Admin routes are open (no admin token); only this host can reach them."
        ),
        AdminAccess::OpenInsecure => tracing::warn!(
            %listen,
            "Admin routes are OPEN to the network (insecure_open_admin, no admin token)."
        ),
    }
}

/// The client address of `req`, as the failed-authentication limiters count it: the socket
/// peer, or `X-Forwarded-For` behind `trusted_proxies`.
pub(crate) fn request_client(state: &AppState, req: &Request) -> IpAddr {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), |c| c.0);
    client_ip(peer, req.headers(), &state.settings().trusted_proxies)
}

/// Refuses admin routes without the configured bearer token (open when none is configured).
/// A client address with too many failed attempts is answered 429 whatever it sends; an
/// attempt fails when it sends an `Authorization` header without the token (a request with
/// none guesses nothing, and is answered 401 uncounted).
pub(crate) async fn require_admin(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(expected) = &state.settings().admin_token {
        let client = request_client(&state, &req);
        let limiter = state.auth_limiter();
        if let Some(retry_after) = limiter.blocked(client) {
            return Err(ApiError::TooManyRequests { retry_after });
        }
        let header = req.headers().get(header::AUTHORIZATION);
        let given = header
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            if header.is_some() && limiter.failed(client) {
                tracing::warn!(
                    %client,
                    failures = crate::auth_limit::FAILURES,
                    window_s = crate::auth_limit::WINDOW,
                    block_s = crate::auth_limit::BLOCK,
                    "Admin authentication failed too often: client blocked from admin routes."
                );
            }
            return Err(ApiError::Unauthorized);
        }
    }
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_admin_routes_only_on_loopback_unless_told() {
        let mut s = ServeSettings::default();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let public: SocketAddr = "[2001:db8::1]:8080".parse().unwrap();
        for local in ["127.0.0.1:8080", "[::1]:8080", "[::ffff:127.0.0.1]:80"] {
            assert_eq!(
                admin_access(&s, local.parse().unwrap()),
                Ok(AdminAccess::OpenOnLoopback)
            );
        }
        assert_eq!(
            admin_access(&s, any),
            Err(AdminSetupError::OpenOnNetwork(any))
        );
        assert!(admin_access(&s, public).is_err());
        s.insecure_open_admin = true;
        assert_eq!(admin_access(&s, any), Ok(AdminAccess::OpenInsecure));
        s.admin_token = Some("s3cret".to_owned());
        assert_eq!(admin_access(&s, any), Ok(AdminAccess::Token));
        s.admin_token = Some(" \t".to_owned());
        assert_eq!(admin_access(&s, any), Err(AdminSetupError::BlankToken));
    }
}
