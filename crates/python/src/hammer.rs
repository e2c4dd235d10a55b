//! `BanHammer`: the seed's Python API (`incr`, `now`, `status`, `status_all`) on a `SharedEngine`.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};

use banhammer_core::{
    Clock, DecisionView, DueAction, Event, EventError, MetricStatus, Rates, Ruleset, SharedEngine,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList};
use pyo3::{intern, IntoPyObjectExt};

use crate::actions::{self, Callables};
use crate::clock::{HostClock, TimeSource};
use crate::config;

/// Shards of the engine: tokens hash to one of them, so threads working on different tokens
/// rarely wait for each other once the GIL is released.
const SHARDS: NonZeroUsize = NonZeroUsize::new(8).unwrap();

/// Counts events per token and metric over exact sliding windows, and bans or notifies when
/// a threshold is reached.
///
/// `BanHammer(bans, return_rates=False, *, clock=None, max_tokens=None)`. See docs/python.md.
#[pyclass(frozen, module = "banhammer")]
#[derive(Debug)]
pub(crate) struct BanHammer {
    engine: SharedEngine<HostClock>,
    /// The engine's clock, also read for the time of each `incr` event.
    clock: HostClock,
    time: TimeSource,
    /// The Python callables of each threshold, run for the actions the engine lists as due.
    callables: Callables,
    return_rates: bool,
    /// Exceptions raised by actions (logged, then ignored).
    action_errors: AtomicU64,
}

#[pymethods]
impl BanHammer {
    #[new]
    #[pyo3(signature = (bans, return_rates = false, *, clock = None, max_tokens = None))]
    fn new(
        bans: &Bound<'_, PyAny>,
        return_rates: bool,
        clock: Option<&Bound<'_, PyAny>>,
        max_tokens: Option<usize>,
    ) -> PyResult<Self> {
        let metrics = config::parse(bans).map_err(|errs| PyValueError::new_err(errs.join("\n")))?;
        let max_tokens = match max_tokens {
            Some(0) => return Err(PyValueError::new_err("max_tokens: must be at least 1")),
            cap => cap.and_then(NonZeroUsize::new),
        };
        let compiled = config::compile(metrics, max_tokens)
            .map_err(|errs| PyValueError::new_err(errs.join("\n")))?;
        let (time, clock) = TimeSource::from_arg(clock)?;
        Ok(BanHammer {
            engine: SharedEngine::new(compiled.rules, &clock, SHARDS),
            clock,
            time,
            callables: compiled.callables,
            return_rates,
            action_errors: AtomicU64::new(0),
        })
    }

    /// Counts one event of `metric` for `token` now.
    ///
    /// Returns whether the token passes (False while it is banned, from the event that
    /// reaches a `block_local` threshold on), or `(passed, stats)` with `return_rates`.
    fn incr<'py>(&self, py: Python<'py>, token: &str, metric: &str) -> PyResult<Bound<'py, PyAny>> {
        self.time.sync(py)?;
        let want_rates = self.return_rates;
        // Without the GIL: other Python threads run while this one counts. Nothing in here
        // touches Python; the actions due come back in the verdict (actions.rs).
        let verdict = py
            .detach(|| {
                let event = Event::new(token, metric, self.clock.now());
                self.engine.observe(&event, want_rates)
            })
            .map_err(value_error)?;
        self.run_actions(py, &verdict.actions)?;
        if want_rates {
            let stats = rates_dict(py, verdict.rates.unwrap_or_default())?;
            (verdict.passed, stats).into_bound_py_any(py)
        } else {
            Ok(PyBool::new(py, verdict.passed).to_owned().into_any())
        }
    }

    /// Fires threshold `threshold` of `metric` for `token` at once, as if its limit were
    /// reached: a `block_local` threshold bans the token now. Returns the token's stats.
    #[pyo3(signature = (token, metric, threshold = 0))]
    fn now<'py>(
        &self,
        py: Python<'py>,
        token: &str,
        metric: &str,
        threshold: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        self.time.sync(py)?;
        let verdict = py
            .detach(|| {
                let mut out = None;
                self.engine.for_each_token_shard(token, |e| {
                    out = Some(e.fire(token, metric, threshold));
                });
                out.unwrap_or(Err(EventError::BadToken))
            })
            .map_err(value_error)?;
        self.run_actions(py, &verdict.actions)?;
        rates_dict(py, verdict.rates.unwrap_or_default())
    }

    /// The token's stats for `metric` now, each threshold's count, and its ban if any.
    fn status<'py>(
        &self,
        py: Python<'py>,
        token: &str,
        metric: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        self.time.sync(py)?;
        let status = py.detach(|| {
            let mut out = None;
            self.engine.for_each_token_shard(token, |e| {
                e.tick();
                out = Some(e.status(token, metric));
            });
            out.unwrap_or(Err(EventError::BadToken))
        });
        let status = status.map_err(value_error)?;
        status_dict(py, self.engine.rules(), metric, &status)
    }

    /// Every token and metric still in memory: `{token: {metric: stats}}`.
    fn status_all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.time.sync(py)?;
        let rows = py.detach(|| {
            let mut rows: Vec<(String, String, Rates)> = Vec::new();
            self.engine.for_each_shard(|e| {
                e.tick();
                rows.extend(
                    e.status_all()
                        .map(|(t, m, r)| (t.to_owned(), m.to_owned(), r)),
                );
            });
            rows
        });
        let all = PyDict::new(py);
        for (token, metric, rates) in rows {
            let per_token = match all.get_item(&token)? {
                Some(d) => d.cast_into::<PyDict>()?,
                None => {
                    let d = PyDict::new(py);
                    all.set_item(&token, &d)?;
                    d
                }
            };
            per_token.set_item(metric, rates_dict(py, rates)?)?;
        }
        Ok(all)
    }

    /// Ends `token`'s ban now. Returns whether it was banned.
    fn unban(&self, py: Python<'_>, token: &str) -> PyResult<bool> {
        self.time.sync(py)?;
        Ok(py.detach(|| {
            let mut ended = false;
            self.engine.for_each_token_shard(token, |e| {
                e.tick();
                ended = e.unban(token).is_some();
            });
            ended
        }))
    }

    /// How many times an action raised an exception (each one was logged and ignored).
    #[getter]
    fn action_errors(&self) -> u64 {
        self.action_errors.load(Ordering::Relaxed)
    }

    /// Whether `incr` returns `(passed, stats)` rather than `passed`.
    #[getter]
    fn return_rates(&self) -> bool {
        self.return_rates
    }

    /// The metric names, in the order `bans` listed them.
    #[getter]
    fn metrics(&self) -> Vec<String> {
        self.engine
            .rules()
            .metrics()
            .map(|(_, m)| m.name.to_string())
            .collect()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let metrics = PyList::new(py, self.metrics())?.repr()?;
        let rates = if self.return_rates { "True" } else { "False" };
        Ok(format!(
            "BanHammer(metrics={metrics}, return_rates={rates})"
        ))
    }
}

impl BanHammer {
    /// Calls the Python callables of the actions the engine found due, with the GIL and no
    /// engine lock held.
    fn run_actions(&self, py: Python<'_>, due: &[DueAction]) -> PyResult<()> {
        actions::run(
            py,
            self.engine.rules(),
            &self.callables,
            due,
            &self.action_errors,
        )
    }
}

/// The engine's refusal as a `ValueError`; the core's "tier" is the Python API's "threshold".
fn value_error(e: EventError) -> PyErr {
    match e {
        EventError::UnknownTier { metric, tier } => {
            PyValueError::new_err(format!("metric `{metric}` has no threshold {tier}"))
        }
        other => PyValueError::new_err(other.to_string()),
    }
}

/// `{"token_rate_1m": n, "token_rate_10m": n, "token_rate_60m": n}`.
fn rates_dict(py: Python<'_>, rates: Rates) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "token_rate_1m"), rates.last_1m)?;
    d.set_item(intern!(py, "token_rate_10m"), rates.last_10m)?;
    d.set_item(intern!(py, "token_rate_60m"), rates.last_60m)?;
    Ok(d)
}

/// The stats plus `thresholds`, `banned` and `ban`.
fn status_dict<'py>(
    py: Python<'py>,
    rules: &Ruleset,
    metric: &str,
    status: &MetricStatus,
) -> PyResult<Bound<'py, PyDict>> {
    let d = rates_dict(py, status.rates.unwrap_or_default())?;
    let thresholds = PyList::empty(py);
    if let Some(id) = rules.metric_id(metric) {
        for (t, m) in rules.metric(id).thresholds.iter().zip(&status.tiers) {
            let td = PyDict::new(py);
            td.set_item(intern!(py, "limit"), t.limit.get())?;
            td.set_item(intern!(py, "window"), t.window.secs())?;
            td.set_item(intern!(py, "value"), m.value)?;
            td.set_item(intern!(py, "holds"), m.holds)?;
            thresholds.append(td)?;
        }
    }
    d.set_item(intern!(py, "thresholds"), thresholds)?;
    d.set_item(intern!(py, "banned"), status.ban.is_some())?;
    match &status.ban {
        Some(ban) => d.set_item(intern!(py, "ban"), ban_dict(py, ban)?)?,
        None => d.set_item(intern!(py, "ban"), py.None())?,
    }
    Ok(d)
}

/// `{"metric", "threshold", "value", "from", "until"}` of an active ban.
fn ban_dict<'py>(py: Python<'py>, ban: &DecisionView) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "metric"), &*ban.metric)?;
    d.set_item(intern!(py, "threshold"), ban.tier)?;
    d.set_item(intern!(py, "value"), ban.value)?;
    d.set_item(intern!(py, "from"), ban.from.as_unix())?;
    d.set_item(intern!(py, "until"), ban.until.as_unix())?;
    Ok(d)
}
