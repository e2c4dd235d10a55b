//! Python callables as actions: kept by threshold, called once the engine has answered.
//!
//! The engine runs without the GIL and under a shard lock, and calling Python from there would
//! need the GIL while holding the lock (a deadlock with a Python thread that holds the GIL and
//! waits for the lock). It does not have to: its verdict lists the actions due, by threshold,
//! and they run after the engine call, with the GIL and no engine lock, so they may even call
//! the `BanHammer` again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use banhammer_core::{Action, DueAction, MetricRule, NamedNoop, RuleId, Ruleset};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// The Python callables of every threshold, by metric and tier, in the order the `bans` dict
/// lists them: what a [`DueAction`]'s rule names.
#[derive(Debug, Default)]
pub(crate) struct Callables(Vec<Vec<Vec<Py<PyAny>>>>);

impl Callables {
    /// Keeps the callables of `metric`, the next metric of the rule set, and returns the
    /// engine's rule: each callable is a no-op there, as the engine never runs actions.
    pub(crate) fn take_from(&mut self, metric: MetricRule<Py<PyAny>>) -> MetricRule {
        let noop: Arc<dyn Action> = Arc::new(NamedNoop("python".to_owned()));
        let mut tiers = Vec::with_capacity(metric.thresholds.len());
        let thresholds = metric
            .thresholds
            .into_iter()
            .map(|t| {
                let mut funcs = Vec::with_capacity(t.actions.len());
                let t = t.map_actions(|f| {
                    funcs.push(f);
                    Arc::clone(&noop)
                });
                tiers.push(funcs);
                t
            })
            .collect();
        self.0.push(tiers);
        MetricRule {
            name: metric.name,
            scope: metric.scope,
            thresholds,
        }
    }

    /// The callables of threshold `rule`.
    fn of(&self, rule: RuleId) -> &[Py<PyAny>] {
        self.0
            .get(rule.metric.index())
            .and_then(|tiers| tiers.get(rule.tier as usize))
            .map_or(&[], Vec::as_slice)
    }
}

/// Calls the callables of every due action, in order, with the seed API's `(token, duration,
/// key, window, limit)`. An `Exception` from a callable is logged on the `banhammer` logger
/// and counted in `errors`, and the next callable runs; the engine's state and answer were
/// settled before. Anything else (`KeyboardInterrupt`, `SystemExit`) is not the action's
/// failure but the program's, so it is raised.
pub(crate) fn run(
    py: Python<'_>,
    rules: &Ruleset,
    callables: &Callables,
    due: &[DueAction],
    errors: &AtomicU64,
) -> PyResult<()> {
    for d in due {
        let t = rules.threshold(d.rule);
        let args = (
            d.token.as_str(),
            t.action_duration.get(),
            &*d.metric,
            t.window.secs(),
            t.limit.get(),
        );
        for func in callables.of(d.rule) {
            let func = func.bind(py);
            if let Err(err) = func.call1(args) {
                if !err.is_instance_of::<PyException>(py) {
                    return Err(err);
                }
                errors.fetch_add(1, Ordering::Relaxed);
                log_failure(py, func, d, &err);
            }
        }
    }
    Ok(())
}

static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `logging.getLogger("banhammer").error(..., exc_info=err)`; a logger that fails itself is
/// reported as unraisable rather than turned into the caller's exception.
fn log_failure(py: Python<'_>, func: &Bound<'_, PyAny>, due: &DueAction, err: &PyErr) {
    let logged = (|| -> PyResult<()> {
        let logger = LOGGER.get_or_try_init(py, || {
            py.import("logging")?
                .call_method1("getLogger", ("banhammer",))
                .map(Bound::unbind)
        })?;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("exc_info", err.value(py))?;
        logger.bind(py).call_method(
            "error",
            (
                "banhammer: action %r for token %r (%s threshold %d) raised; ignored",
                func,
                due.token.as_str(),
                &*due.metric,
                due.rule.tier,
            ),
            Some(&kwargs),
        )?;
        Ok(())
    })();
    if let Err(e) = logged {
        e.write_unraisable(py, Some(func));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use banhammer_core::Threshold;
    use banhammer_testkit::rules::{metric, notify};

    /// A notice tier with `funcs` callables (`None` stands for each).
    fn tier(py: Python<'_>, funcs: usize) -> Threshold<Py<PyAny>> {
        let mut t = notify(1, 60, 60);
        t.actions = (0..funcs).map(|_| py.None()).collect();
        t
    }

    #[test]
    fn callables_are_found_by_the_rule_the_engine_names() {
        Python::initialize();
        Python::attach(|py| {
            let mut callables = Callables::default();
            let mut builder = Ruleset::builder();
            for (name, funcs) in [("a", vec![2, 0]), ("b", vec![1])] {
                let rule = metric(name, funcs.into_iter().map(|n| tier(py, n)));
                builder = builder.metric(callables.take_from(rule));
            }
            let rules = builder.build().unwrap();
            let mut found = Vec::new();
            for (id, m) in rules.metrics() {
                for (tier, t) in m.thresholds.iter().enumerate() {
                    let rule = RuleId {
                        metric: id,
                        tier: tier as u32,
                    };
                    assert_eq!(t.actions.len(), callables.of(rule).len());
                    found.push((m.name.to_string(), callables.of(rule).len()));
                }
            }
            assert_eq!(
                found,
                [("a".into(), 2), ("a".into(), 0), ("b".into(), 1)],
                "{found:?}"
            );
        });
    }
}
