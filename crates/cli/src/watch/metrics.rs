//! `watch --metrics-listen`: the engine's and the decisions' metrics, named as `serve`'s
//! `/metrics` names them, on an endpoint of their own (a thread with its own async runtime:
//! the watch loop stays synchronous).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use banhammer_core::{Change, DecisionEvent, Effect, EngineCounters};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
}

/// What the watcher reports; shared handles, read by the endpoint's thread at each scrape.
#[derive(Debug, Clone)]
pub(crate) struct WatchMetrics {
    decisions: Family<DecisionLabels, Counter>,
    active_bans: Gauge,
    tracked_tokens: Gauge,
    evictions: Counter,
    evictions_at_stake: Counter,
    /// The engine's eviction totals at the last record: each engine (a reload makes a new
    /// one) counts from zero, and a watcher's copy starts with its engine.
    seen: [u64; 2],
}

impl WatchMetrics {
    /// Registers the metrics and serves them on `addr` for as long as the process runs.
    pub(crate) fn serve(addr: SocketAddr) -> anyhow::Result<Self> {
        let mut r = Registry::with_prefix("banhammer");
        let metrics = WatchMetrics {
            decisions: Family::default(),
            active_bans: Gauge::default(),
            tracked_tokens: Gauge::default(),
            evictions: Counter::default(),
            evictions_at_stake: Counter::default(),
            seen: [0; 2],
        };
        let m = metrics.clone();
        r.register(
            "decisions",
            "Decisions started or ended since start, by kind",
            m.decisions,
        );
        r.register("active_bans", "Tokens banned now", m.active_bans);
        r.register(
            "tracked_tokens",
            "Tokens whose windows are in memory",
            m.tracked_tokens,
        );
        r.register(
            "evictions",
            "Tokens evicted by the max_tokens cap since start",
            m.evictions,
        );
        r.register(
            "evictions_at_stake",
            "Evictions (max_tokens) of tokens that still had counts inside a window",
            m.evictions_at_stake,
        );
        for decision in ["ban", "unban", "alert", "notice"] {
            // Listed from the start, at 0.
            metrics
                .decisions
                .get_or_create(&DecisionLabels { decision })
                .inc_by(0);
        }
        let listener = std::net::TcpListener::bind(addr)
            .with_context(|| format!("--metrics-listen: listening on {addr}"))?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let registry = Arc::new(r);
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                let served = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|rt| {
                        rt.block_on(async {
                            let listener = tokio::net::TcpListener::from_std(listener)?;
                            let forever = std::future::pending::<()>();
                            banhammer_http::exposition::serve(listener, registry, forever).await
                        })
                    });
                if let Err(e) = served {
                    tracing::error!(error = %e, "The metrics endpoint stopped.");
                }
            })
            .context("starting the metrics endpoint")?;
        tracing::info!(addr = %local, "Metrics at http://{local}/metrics.");
        Ok(metrics)
    }

    /// Counts `decisions` and takes the engine's figures.
    pub(crate) fn record(&mut self, decisions: &[DecisionEvent], engine: &EngineCounters) {
        for d in decisions {
            let decision = match (d.effect, d.change) {
                (Effect::Block, Change::Start) => "ban",
                (Effect::Block, Change::End) => "unban",
                (Effect::Alert, Change::Start) => "alert",
                (Effect::Notify, Change::Start) => "notice",
                _ => continue,
            };
            self.decisions
                .get_or_create(&DecisionLabels { decision })
                .inc();
        }
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.active_bans.set(gauge(engine.active_bans));
        self.tracked_tokens.set(gauge(engine.tracked_tokens));
        let totals = [engine.evictions, engine.evictions_at_stake];
        for ((c, total), seen) in [&self.evictions, &self.evictions_at_stake]
            .into_iter()
            .zip(totals)
            .zip(&mut self.seen)
        {
            c.inc_by(total.saturating_sub(*seen));
            *seen = total;
        }
    }
}
