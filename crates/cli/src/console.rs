//! The web console for `monitor --web` and `watch --http`: served from a thread of its own
//! (these commands are not async), fed a JSON document of the command's state.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use banhammer_http::ConsoleMode;
use tokio::sync::{oneshot, watch};

/// The console's server and what it shows.
pub(crate) struct WebFeed {
    tx: watch::Sender<Arc<str>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl WebFeed {
    /// Listens on `addr` (the option `flag` asked for it) and serves `mode`'s console there
    /// until dropped; says where on stderr as `banhammer COMMAND: console on http://…/ui`.
    #[allow(clippy::print_stderr)] // where the console is: stdout holds the command's output
    pub(crate) fn start(
        addr: SocketAddr,
        mode: ConsoleMode,
        command: &str,
        flag: &str,
    ) -> anyhow::Result<WebFeed> {
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("{flag}: listening on {addr}"))?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        if !local.ip().is_loopback() {
            tracing::warn!(%local, "The console has no login: anyone who reaches this address sees what it shows (client addresses included).");
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
                    if let Err(e) = banhammer_http::serve_feed(listener, mode, rx, shutdown).await {
                        tracing::error!(error = %e, "The console stopped.");
                    }
                });
            })
            .context("starting the console's thread")?;
        eprintln!("banhammer {command}: console on http://{local}/ui");
        Ok(WebFeed {
            tx,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Sends `state` (a JSON document) to the pages.
    pub(crate) fn send(&self, state: String) {
        self.tx.send_replace(Arc::from(state));
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
