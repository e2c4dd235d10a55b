//! `banhammer serve`: the HTTP service on the embedded default (memory + SQLite).

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use banhammer_config::{Config, ProcessEnv};
use banhammer_core::{Action, NamedNoop};
use banhammer_http::AppState;
use banhammer_runtime::{
    ActionQueue, ActionTarget, Backend, MemoryBackend, RedisBackend, Runtime, StoreUrl, TokioClock,
};
use banhammer_store_sqlite::DecisionStore;

/// Command-line choices for `serve`.
#[derive(Debug, Clone)]
pub(crate) struct ServeOptions {
    pub(crate) config: Option<PathBuf>,
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) db: Option<PathBuf>,
    pub(crate) store: Option<String>,
    pub(crate) insecure_open_admin: bool,
}

/// Builds the built-in actions for the service: files and webhooks go through a queue.
fn resolver(config: &Config, queue: &Arc<ActionQueue>) -> impl Fn(&str) -> Arc<dyn Action> {
    let a = &config.actions;
    let record = a
        .record_local_path
        .as_ref()
        .map(|p| queue.action("record_local", ActionTarget::File(PathBuf::from(p))));
    let report = match (&a.report_central_url, &a.report_central_path) {
        (Some(url), _) => Some(queue.action("report_central", ActionTarget::Webhook(url.clone()))),
        (None, Some(p)) => {
            Some(queue.action("report_central", ActionTarget::File(PathBuf::from(p))))
        }
        (None, None) => None,
    };
    move |name: &str| -> Arc<dyn Action> {
        let queued = match name {
            "record_local" => record.clone(),
            "report_central" => report.clone(),
            _ => None,
        };
        queued.unwrap_or_else(|| Arc::new(NamedNoop(name.to_owned())))
    }
}

/// Runs until SIGTERM or SIGINT, then drains connections and flushes the store.
pub(crate) fn run(opts: &ServeOptions) -> anyhow::Result<ExitCode> {
    let mut config = match &opts.config {
        Some(path) => Config::load_with_env(path, &ProcessEnv).map_err(|e| anyhow!("{e}"))?,
        None => Config::parse_with_env("", "<default>", &ProcessEnv).map_err(|e| anyhow!("{e}"))?,
    };
    if let Some(l) = opts.listen {
        config.serve.listen = l;
    }
    if let Some(db) = &opts.db {
        config.serve.db.clone_from(db);
    }
    if opts.store.is_some() {
        config.serve.store.clone_from(&opts.store);
    }
    config.serve.insecure_open_admin |= opts.insecure_open_admin;
    // Before anything starts: open admin routes on a reachable address are refused.
    banhammer_http::admin_access(&config.serve, config.serve.listen).map_err(admin_refusal)?;
    config.add_detector();
    // The HTTP API answers stats (`now`, `status`, `?rates=true`): keep the rates. On a shared
    // store only when asked for (`[engine] rates` or `[serve] return_rates`): they keep every
    // event in Redis for an hour, where the rules alone keep it for their longest window.
    if config.serve.store.is_none() || config.serve.return_rates {
        config.engine.rates = true;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)] // the listening address is the command's output
async fn serve(config: Config) -> anyhow::Result<()> {
    let queue = ActionQueue::start();
    let rules = config
        .ruleset(&resolver(&config, &queue))
        .map_err(|e| crate::setup::invalid_rules(e.0))?;
    let store = DecisionStore::open(&config.serve.db)
        .with_context(|| format!("opening the decision store {}", config.serve.db.display()))?;
    let shards = std::thread::available_parallelism().map_or(4, NonZeroUsize::get) * 8;
    let clock: Arc<dyn banhammer_core::Clock> = Arc::new(TokioClock::new());
    let rules = Arc::new(rules);
    let backend: Box<dyn Backend> = match &config.serve.store {
        None => Box::new(MemoryBackend::new(
            Arc::clone(&rules),
            Arc::clone(&clock),
            NonZeroUsize::new(shards).unwrap_or(NonZeroUsize::MIN),
        )),
        Some(url) => {
            let url: StoreUrl = url.parse().map_err(|e: String| anyhow!("--store: {e}"))?;
            Box::new(
                RedisBackend::connect(
                    &url,
                    Arc::clone(&rules),
                    Arc::clone(&clock),
                    config.serve.store_timeout,
                )
                .await
                .context("connecting to the shared store")?,
            )
        }
    };
    let guard = Runtime::start(rules, clock, store, backend)?;
    let rt = Arc::clone(guard.runtime());
    let listener = tokio::net::TcpListener::bind(config.serve.listen)
        .await
        .with_context(|| format!("listening on {}", config.serve.listen))?;
    let addr = listener.local_addr()?;
    warn_if_descriptors_short(config.serve.max_connections);
    let state = AppState::new(Arc::clone(&rt), config.serve.clone()).with_action_queue(queue);
    println!("banhammer serve: listening on http://{addr}");
    tracing::info!(%addr, db = %config.serve.db.display(), "Serving.");
    let signals = async move {
        shutdown_signal().await;
        tracing::info!("Shutting down.");
    };
    banhammer_http::run(listener, state, signals).await?;
    drop(rt);
    guard.shutdown().await;
    tracing::info!("Stopped.");
    Ok(())
}

/// Warns when `max_connections` cannot all be open within the process's descriptor limit
/// (Linux: `/proc/self/limits`); past it, accepting closes idle connections to get
/// descriptors back, which works but is not what the setting says.
fn warn_if_descriptors_short(max_connections: usize) {
    // Descriptors the service needs besides its connections: the store, logs, the runtime.
    const SPARE: u64 = 64;
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let soft = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok());
    let wanted = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(SPARE);
    if let Some(soft) = soft.filter(|&soft| soft < wanted) {
        tracing::warn!(
            max_connections,
            descriptor_limit = soft,
            "[serve] max_connections is above the open-file limit: raise it (ulimit -n, \
             LimitNOFILE) or lower max_connections."
        );
    }
}

/// The refusal to serve open admin routes, naming the command-line flag too.
fn admin_refusal(e: banhammer_http::AdminSetupError) -> anyhow::Error {
    match e {
        banhammer_http::AdminSetupError::OpenOnNetwork(_) => {
            anyhow!("refusing to start: {e} (--insecure-open-admin on the command line)")
        }
        other => anyhow!("refusing to start: {other}"),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM can be watched");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT can be watched");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
