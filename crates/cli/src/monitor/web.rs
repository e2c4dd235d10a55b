//! `monitor --web ADDR`: the web console's traffic view, served from a thread of its own and
//! fed the monitor's state whenever its clock moves or an alert starts or ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use banhammer_core::Timestamp;
use banhammer_http::ConsoleMode;
use banhammer_monitor::{to_web_json, App};
use tokio::sync::{oneshot, watch};

/// The console's server and what it shows.
pub(super) struct WebFeed {
    tx: watch::Sender<Arc<str>>,
    /// The clock and alert count last sent: the page is told at most once per second of the
    /// monitor's clock, and at once for an alert.
    last: Option<(Timestamp, usize)>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl WebFeed {
    /// Listens on `addr` and serves the console there until dropped.
    #[allow(clippy::print_stderr)] // where the console is: stdout holds the reports
    pub(super) fn start(addr: SocketAddr) -> anyhow::Result<WebFeed> {
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("--web: listening on {addr}"))?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        if !local.ip().is_loopback() {
            tracing::warn!(%local, "The monitor's console has no login: anyone who reaches this address sees the traffic (client addresses included).");
        }
        let (tx, rx) = watch::channel::<Arc<str>>(Arc::from("null"));
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the console's runtime")?;
        let thread = std::thread::Builder::new()
            .name("banhammer-web".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "The console cannot listen.");
                            return;
                        }
                    };
                    let shutdown = async move {
                        let _ = stopped.await;
                    };
                    if let Err(e) =
                        banhammer_http::serve_feed(listener, ConsoleMode::Monitor, rx, shutdown)
                            .await
                    {
                        tracing::error!(error = %e, "The console stopped.");
                    }
                });
            })
            .context("starting the console's thread")?;
        eprintln!("banhammer monitor: console on http://{local}/ui");
        Ok(WebFeed {
            tx,
            last: None,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Sends `app`'s state to the pages if its clock moved or an alert came since last time.
    pub(super) fn publish(&mut self, app: &App) {
        let key = (app.now(), app.alerts().len());
        if self.last == Some(key) {
            return;
        }
        self.last = Some(key);
        self.tx.send_replace(Arc::from(to_web_json(app)));
    }
}

impl Drop for WebFeed {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
