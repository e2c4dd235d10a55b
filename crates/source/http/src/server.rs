//! The accept loop: connection limits (a cap that closes the longest-idle connection to make
//! room, a cap per peer, an idle timeout from accept), a header-read timeout against slow
//! clients, and a graceful shutdown that lets answered requests finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::conn::{BusyBody, Limits, Registry, Standing};
use crate::state::AppState;

/// How long open connections may take to finish once shutdown starts.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `state`'s [`app`](crate::app) on `listener` until `shutdown` resolves, then stops
/// accepting and waits (up to 10 s) for the connections in flight.
///
/// Limits come from `[serve]`: at most `max_connections` open (at the cap the connection
/// idle the longest is closed for the new one; while all have a request under way, new
/// clients wait in the kernel's queue), at most `max_connections_per_peer` from one address
/// (IPv6: one /64; trusted proxies exempt), none idle for longer than `idle_timeout` (from
/// accept to a complete request head, and between requests), and `request_timeout` to send
/// a request head once begun.
///
/// Refuses to start (`InvalidInput`) when admin routes would be open on an address other
/// than loopback, unless `insecure_open_admin` says so ([`admin_access`](crate::admin_access)).
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let settings = state.settings();
    let local = listener.local_addr()?;
    let access = crate::auth::admin_access(settings, local)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    crate::auth::log_access(access, local);
    let registry = Registry::new(
        Limits {
            max_connections: settings.max_connections.max(1),
            per_peer: settings.max_connections_per_peer.max(1),
            idle_timeout: settings.idle_timeout,
            exempt: settings.trusted_proxies.clone(),
        },
        Arc::clone(state.conn_stats()),
    );
    let app = crate::app(state.clone());
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.request_timeout);
    tokio::pin!(shutdown);
    // Said once: running out of descriptors repeats on every accept while it lasts.
    let mut warned_descriptors = false;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = registry.room() => {}
        }
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if out_of_descriptors(&e) => {
                    if !warned_descriptors {
                        warned_descriptors = true;
                        tracing::warn!(
                            error = %e,
                            max_connections = settings.max_connections,
                            "Out of file descriptors: closing idle connections to accept new \
                             ones. Lower max_connections below the descriptor limit."
                        );
                    }
                    if registry.evict_one() {
                        // An idle connection gives its descriptor back as its task ends.
                        tokio::task::yield_now().await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // A dual-stack socket shows IPv4 clients as `::ffff:a.b.c.d`: from here on they are
        // the IPv4 address (per-peer limit, trusted proxies, tokens, logs).
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let ticket = match registry.admit(peer.ip()) {
            Ok(t) => Arc::new(t),
            Err(why) => {
                tracing::debug!(%peer, ?why, "Connection refused.");
                continue; // dropping the stream closes it
            }
        };
        let _ = stream.set_nodelay(true);
        // Each request carries the peer address, and counts as under way (the connection is
        // not idle) until its answer has been sent.
        let service = {
            let (app, ticket) = (app.clone(), Arc::clone(&ticket));
            tower::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                let busy = ticket.busy();
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                let answer = app.clone().oneshot(req);
                async move {
                    let response = answer.await?;
                    Ok::<_, Infallible>(response.map(|body| Body::new(BusyBody::new(body, busy))))
                }
            })
        };
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            tokio::pin!(conn);
            // Ends with the connection, or closes it (by dropping it) when the registry evicts
            // it or its idle time runs out.
            loop {
                let wake = match ticket.standing() {
                    Standing::Evicted => {
                        tracing::debug!(%peer, "Idle connection closed to make room.");
                        break;
                    }
                    Standing::Busy => None,
                    Standing::IdleUntil(at) if at <= Instant::now() => {
                        ticket.count_idle_close();
                        tracing::debug!(%peer, "Idle connection timed out.");
                        break;
                    }
                    Standing::IdleUntil(at) => Some(at),
                };
                tokio::select! {
                    ended = conn.as_mut() => {
                        if let Err(e) = ended {
                            tracing::debug!(error = %e, %peer, "Connection ended with an error.");
                        }
                        break;
                    }
                    () = ticket.poked() => {}
                    () = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
                }
            }
        });
    }
    drop(listener);
    // Live consoles' streams never end by themselves.
    state.consoles().close();
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => tracing::warn!("Connections still open after the drain time."),
    }
    Ok(())
}

/// Whether `e` is the process or the system running out of file descriptors (EMFILE,
/// ENFILE; the same numbers on Linux and the BSDs).
fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24))
}
