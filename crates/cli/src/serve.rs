//! `banhammer serve`: the HTTP service on the embedded default (memory + SQLite).

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context};
use banhammer_config::{Config, ProcessEnv};
use banhammer_core::{Action, DecisionEvent, Effect, Escaped, NamedNoop, Ruleset};
use banhammer_http::AppState;
use banhammer_runtime::{
    ActionQueue, ActionTarget, Backend, MemoryBackend, RedisBackend, Runtime, RuntimeCounters,
    RuntimeGuard, StoreUrl, TokioClock,
};
use banhammer_sink::Enforcer;
use banhammer_store_sqlite::DecisionStore;

/// Command-line choices for `serve`.
#[derive(Debug, Clone)]
pub(crate) struct ServeOptions {
    pub(crate) config: Option<PathBuf>,
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) db: Option<PathBuf>,
    pub(crate) store: Option<String>,
    pub(crate) store_ca: Option<PathBuf>,
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

/// Runs until SIGTERM or SIGINT, then drains connections and flushes the store. SIGHUP
/// reloads the configuration (see [`Live::reload`]).
pub(crate) fn run(opts: &ServeOptions) -> anyhow::Result<ExitCode> {
    let config = load(opts)?;
    // Before anything starts: open admin routes on a reachable address are refused.
    banhammer_http::admin_access(&config.serve, config.serve.listen).map_err(admin_refusal)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config, opts.clone()))?;
    Ok(ExitCode::SUCCESS)
}

/// The configuration file with the command line's overrides, as `serve` runs it.
fn load(opts: &ServeOptions) -> anyhow::Result<Config> {
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
    if opts.store_ca.is_some() {
        config.serve.store_ca.clone_from(&opts.store_ca);
    }
    config.serve.insecure_open_admin |= opts.insecure_open_admin;
    config.add_detector();
    // The HTTP API answers stats (`now`, `status`, `?rates=true`): keep the rates. On a shared
    // store only when asked for (`[engine] rates` or `[serve] return_rates`): they keep every
    // event in Redis for an hour, where the rules alone keep it for their longest window.
    if config.serve.store.is_none() || config.serve.return_rates {
        config.engine.rates = true;
    }
    Ok(config)
}

/// What a running `serve` was started from, and what it replaces on a reload.
struct Live {
    config: Config,
    /// Always there, but for the moment a reload swaps it.
    guard: Option<RuntimeGuard>,
    /// The thread keeping the firewall in step with `guard`'s runtime; a reload starts a new
    /// one on the new runtime (which reconciles the firewall with its bans).
    firewall: Option<Firewall>,
    queue: Arc<ActionQueue>,
    clock: Arc<dyn banhammer_core::Clock>,
}

/// The rules and the backend of `config`, ready to start: connected to the shared store if
/// there is one.
async fn prepare(
    config: &Config,
    queue: &Arc<ActionQueue>,
    clock: &Arc<dyn banhammer_core::Clock>,
) -> anyhow::Result<(Arc<Ruleset>, Box<dyn Backend>)> {
    let rules = config
        .ruleset(&resolver(config, queue))
        .map_err(|e| crate::setup::invalid_rules(e.0))?;
    let rules = Arc::new(rules);
    let shards = std::thread::available_parallelism().map_or(4, NonZeroUsize::get) * 8;
    let backend: Box<dyn Backend> = match &config.serve.store {
        None => Box::new(MemoryBackend::new(
            Arc::clone(&rules),
            Arc::clone(clock),
            NonZeroUsize::new(shards).unwrap_or(NonZeroUsize::MIN),
        )),
        Some(url) => {
            let mut url: StoreUrl = url.parse().map_err(|e: String| anyhow!("--store: {e}"))?;
            if let Some(ca) = &config.serve.store_ca {
                let pem = std::fs::read(ca)
                    .with_context(|| format!("serve.store_ca: reading {}", ca.display()))?;
                url = url
                    .with_ca(pem)
                    .map_err(|e| anyhow!("serve.store_ca: {}: {e}", ca.display()))?;
            }
            Box::new(
                RedisBackend::connect(
                    &url,
                    Arc::clone(&rules),
                    Arc::clone(clock),
                    config.serve.store_timeout,
                )
                .await
                .context("connecting to the shared store")?,
            )
        }
    };
    Ok((rules, backend))
}

/// Starts a runtime on `backend`: the decision store is opened, its bans and counts read
/// back into the backend.
fn start(
    config: &Config,
    clock: &Arc<dyn banhammer_core::Clock>,
    (rules, backend): (Arc<Ruleset>, Box<dyn Backend>),
    counters: Arc<RuntimeCounters>,
) -> anyhow::Result<RuntimeGuard> {
    let store = DecisionStore::open(&config.serve.db)
        .with_context(|| format!("opening the decision store {}", config.serve.db.display()))?;
    Ok(Runtime::start_counting(
        rules,
        Arc::clone(clock),
        store,
        backend,
        counters,
    )?)
}

impl Live {
    /// SIGHUP: reads the configuration again and, if it is valid, puts its rules in place.
    ///
    /// A reload is a restart without the downtime: the requests in flight are answered, new
    /// ones wait, the running runtime saves its counts and stops, and one built from the new
    /// rules reads back the bans and counts from the decision store, as a restart would (so a
    /// metric keeps its counts and bans when it is still defined and its windows still fit).
    /// A file with problems changes nothing: each problem is logged. `[serve]` (the address,
    /// the store, limits, keys) takes a restart; a change there is logged and not applied.
    async fn reload(&mut self, state: &AppState, opts: &ServeOptions) -> anyhow::Result<()> {
        tracing::info!("Reloading the configuration.");
        let opts_for_load = opts.clone();
        let loaded = tokio::task::spawn_blocking(move || load(&opts_for_load))
            .await
            .context("reading the configuration")?;
        let mut new = match loaded {
            Ok(c) => c,
            Err(e) => {
                crate::setup::not_reloaded(&e);
                return Ok(());
            }
        };
        if new.serve != self.config.serve {
            tracing::warn!(
                "[serve] changed: its settings take a restart; the running ones are kept."
            );
            new.serve.clone_from(&self.config.serve);
        }
        let prepared = match prepare(&new, &self.queue, &self.clock).await {
            Ok(p) => p,
            Err(e) => {
                crate::setup::not_reloaded(&e);
                return Ok(());
            }
        };
        let held = state.hold_requests().await;
        let counters = held.runtime().shared_counters();
        if let Some(old) = self.guard.take() {
            old.shutdown().await;
        }
        if let Some(f) = self.firewall.take() {
            let _ = tokio::task::spawn_blocking(move || f.stop()).await;
        }
        let guard = match start(&new, &self.clock, prepared, Arc::clone(&counters)) {
            Ok(guard) => {
                tracing::info!(
                    metrics = guard.runtime().rules().metrics().count(),
                    "Configuration reloaded."
                );
                self.config = new;
                guard
            }
            Err(e) => {
                let error = format!("{e:#}");
                tracing::error!(error = %banhammer_core::Escaped(&error), "The new configuration did not start; back to the running one.");
                let again = prepare(&self.config, &self.queue, &self.clock).await?;
                start(&self.config, &self.clock, again, counters)?
            }
        };
        held.replace_runtime(Arc::clone(guard.runtime()));
        self.firewall = Firewall::start(guard.runtime(), serve_enforcers(&self.config)?)?;
        self.guard = Some(guard);
        Ok(())
    }
}

#[allow(clippy::print_stdout)] // the listening address is the command's output
async fn serve(config: Config, opts: ServeOptions) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Before anything can send it: SIGHUP's default action ends the process.
    let mut hangups = signal(SignalKind::hangup()).context("watching SIGHUP")?;
    let queue = ActionQueue::start();
    let clock: Arc<dyn banhammer_core::Clock> = Arc::new(TokioClock::new());
    let prepared = prepare(&config, &queue, &clock).await?;
    let guard = start(&config, &clock, prepared, Arc::default())?;
    let rt = Arc::clone(guard.runtime());
    let firewall = Firewall::start(&rt, serve_enforcers(&config)?)?;
    let listener = tokio::net::TcpListener::bind(config.serve.listen)
        .await
        .with_context(|| format!("listening on {}", config.serve.listen))?;
    let addr = listener.local_addr()?;
    warn_if_descriptors_short(config.serve.max_connections);
    let state = AppState::new(rt, config.serve.clone()).with_action_queue(Arc::clone(&queue));
    println!("banhammer serve: listening on http://{addr}");
    tracing::info!(%addr, db = %config.serve.db.display(), "Serving.");
    let mut live = Live {
        config,
        guard: Some(guard),
        firewall,
        queue,
        clock,
    };
    let (stop, mut stopped) = tokio::sync::watch::channel(());
    // A reload that could start neither configuration stops the service.
    let failed = Arc::new(tokio::sync::Notify::new());
    let reloads = {
        let (state, failed) = (state.clone(), Arc::clone(&failed));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = hangups.recv() => {
                        if let Err(e) = live.reload(&state, &opts).await {
                            failed.notify_one();
                            return Err(e);
                        }
                    }
                    _ = stopped.changed() => break,
                }
            }
            anyhow::Ok(live)
        })
    };
    let signals = async move {
        tokio::select! {
            () = shutdown_signal() => tracing::info!("Shutting down."),
            () = failed.notified() => tracing::error!("No configuration could start; shutting down."),
        }
    };
    banhammer_http::run(listener, state, signals).await?;
    let _ = stop.send(());
    let live = reloads.await.context("the reload task")??;
    if let Some(guard) = live.guard {
        guard.shutdown().await;
    }
    if let Some(f) = live.firewall {
        // The last changes (the shutdown's own commits among them) reach the firewall.
        let _ = tokio::task::spawn_blocking(move || f.stop()).await;
    }
    tracing::info!("Stopped.");
    Ok(())
}

/// What keeps the firewall in step for `serve`: its commands and `[nftables]`.
fn serve_enforcers(config: &Config) -> anyhow::Result<Vec<Box<dyn Enforcer>>> {
    crate::setup::enforcers(
        config,
        &config.serve.ban_command,
        &config.serve.extend_command,
        &config.serve.unban_command,
    )
}

/// Bursts of ban changes waiting for the firewall thread; past this (a firewall far slower
/// than the bans) changes are dropped and the thread reconciles with every active ban instead.
const FIREWALL_QUEUE: usize = 4096;

/// The thread that keeps the firewall in step with the service's bans: it reconciles at start
/// (every active ban, with its time left), then applies each burst of committed changes, all
/// that waited at once (one nftables transaction). Firewall calls never run on the async
/// workers, and a slow firewall never holds an answer up.
struct Firewall {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Firewall {
    /// Starts the thread if anything enforces (commands or `[nftables]`).
    fn start(rt: &Arc<Runtime>, enforcers: Vec<Box<dyn Enforcer>>) -> anyhow::Result<Option<Self>> {
        if enforcers.is_empty() {
            return Ok(None);
        }
        let (tx, rx) = mpsc::sync_channel::<Vec<DecisionEvent>>(FIREWALL_QUEUE);
        let missed = Arc::new(AtomicBool::new(false));
        let missed_here = Arc::clone(&missed);
        rt.on_committed(Box::new(move |decisions| {
            let bans: Vec<DecisionEvent> = decisions
                .iter()
                .filter(|d| d.effect == Effect::Block)
                .cloned()
                .collect();
            if !bans.is_empty() {
                if let Err(TrySendError::Full(_)) = tx.try_send(bans) {
                    missed_here.store(true, Ordering::Relaxed);
                }
            }
        }))
        .map_err(|_| anyhow!("the runtime is enforced already"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let work = FirewallWork {
            rt: Arc::clone(rt),
            handle: tokio::runtime::Handle::current(),
            enforcers,
            missed,
            stop: Arc::clone(&stop),
        };
        let thread = std::thread::Builder::new()
            .name("banhammer-firewall".to_owned())
            .spawn(move || work.run(&rx))
            .context("starting the firewall thread")?;
        Ok(Some(Firewall { stop, thread }))
    }

    /// Applies what is queued, waits for the commands still running, and ends the thread.
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// What the firewall thread owns.
struct FirewallWork {
    rt: Arc<Runtime>,
    handle: tokio::runtime::Handle,
    enforcers: Vec<Box<dyn Enforcer>>,
    missed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl FirewallWork {
    fn run(mut self, rx: &Receiver<Vec<DecisionEvent>>) {
        // Changes committed while the bans are read are applied after them: applying a change
        // the reconcile already holds changes nothing.
        self.reconcile();
        loop {
            let mut burst = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(b) => b,
                Err(RecvTimeoutError::Timeout) if !self.stop.load(Ordering::Relaxed) => {
                    // Commands that ended since are logged and counted now.
                    for e in &mut self.enforcers {
                        e.poll();
                    }
                    self.count();
                    continue;
                }
                Err(_) => break,
            };
            while let Ok(more) = rx.try_recv() {
                burst.extend(more);
            }
            for e in &mut self.enforcers {
                e.apply(&burst);
            }
            if self.missed.swap(false, Ordering::Relaxed) {
                tracing::warn!(
                    "The firewall fell behind the bans; reconciling it with every active ban."
                );
                self.reconcile();
            }
            self.count();
        }
        for e in &mut self.enforcers {
            e.wait();
        }
        self.count();
    }

    /// Makes every enforcer hold the active bans, each with its time left.
    fn reconcile(&mut self) {
        match self.handle.block_on(self.rt.bans()) {
            Ok(bans) => {
                let now = self.rt.now();
                for e in &mut self.enforcers {
                    e.reconcile(&bans, now);
                }
            }
            Err(e) => {
                tracing::warn!(error = %Escaped(&e), "Cannot list the active bans; the firewall is not reconciled.");
            }
        }
        self.count();
    }

    /// Publishes the failures for `/metrics`.
    fn count(&self) {
        let failures = self.enforcers.iter().map(|e| e.failures()).sum();
        self.rt
            .counters()
            .firewall_failures
            .store(failures, Ordering::Relaxed);
    }
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
