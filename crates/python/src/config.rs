//! The `bans` dict: checked field by field, then turned into a core `Ruleset` and the table of
//! Python callables its thresholds run.
//!
//! Reading (docs/python.md): a threshold blocks when one of its callables is named
//! `block_local`, as `actions = ["block_local"]` does in the TOML configuration; otherwise it
//! is a notice whose callables run once per episode while the token still passes.

use std::num::{NonZeroU64, NonZeroUsize};
use std::sync::Arc;

use banhammer_core::{Effect, MetricRule, Ruleset, Scope, Seconds, Threshold, Window};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyList, PyString, PyTuple};

use crate::actions::Callables;

/// The name that makes a threshold a ban.
pub(crate) const BLOCK_LOCAL: &str = "block_local";

/// The fields a threshold dict may have.
const THRESHOLD_FIELDS: [&str; 4] = ["limit", "window", "action", "action_duration"];

/// One metric as the user wrote it, checked: the core's rule with Python callables as its
/// actions.
pub(crate) type MetricSpec = MetricRule<Py<PyAny>>;

/// One threshold as the user wrote it, checked. It blocks when a callable is named
/// `block_local`, and otherwise only notifies.
pub(crate) type ThresholdSpec = Threshold<Py<PyAny>>;

/// What a `BanHammer` runs: the rules and the callables their due actions name.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) rules: Arc<Ruleset>,
    pub(crate) callables: Callables,
}

/// Reads `bans`, collecting every problem as `bans['metric'].thresholds[i].field: why`.
pub(crate) fn parse(bans: &Bound<'_, PyAny>) -> Result<Vec<MetricSpec>, Vec<String>> {
    let Ok(bans) = bans.cast::<PyDict>() else {
        return Err(vec![
            "bans: must be a dict of metric name -> {'thresholds': [...]}".to_owned(),
        ]);
    };
    let mut errors = Vec::new();
    let mut metrics = Vec::with_capacity(bans.len());
    for (name, spec) in bans.iter() {
        let at = format!("bans[{}]", repr(&name));
        let Ok(name) = name.cast::<PyString>().map(|s| s.to_string()) else {
            errors.push(format!("{at}: a metric name must be a str"));
            continue;
        };
        if name.is_empty() || name.len() > 128 {
            errors.push(format!("{at}: a metric name must be 1 to 128 bytes"));
        }
        if let Some(thresholds) = parse_metric(&at, &spec, &mut errors) {
            metrics.push(MetricSpec {
                name: name.into(),
                scope: Scope::Token,
                thresholds,
            });
        }
    }
    if errors.is_empty() {
        Ok(metrics)
    } else {
        Err(errors)
    }
}

fn parse_metric(
    at: &str,
    spec: &Bound<'_, PyAny>,
    errors: &mut Vec<String>,
) -> Option<Vec<ThresholdSpec>> {
    let Ok(spec) = spec.cast::<PyDict>() else {
        errors.push(format!("{at}: must be a dict with a 'thresholds' list"));
        return None;
    };
    for key in spec.keys() {
        if key.cast::<PyString>().map_or(true, |k| k != "thresholds") {
            errors.push(format!(
                "{at}[{}]: unknown field, expected 'thresholds'",
                repr(&key)
            ));
        }
    }
    let at = format!("{at}.thresholds");
    let Some(list) = spec.get_item("thresholds").ok().flatten() else {
        errors.push(format!("{at}: missing (a list of threshold dicts)"));
        return None;
    };
    let Some(items) = sequence(&list) else {
        errors.push(format!("{at}: must be a list of threshold dicts"));
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(t) = parse_threshold(&format!("{at}[{i}]"), item, errors) {
            out.push(t);
        }
    }
    Some(out)
}

fn parse_threshold(
    at: &str,
    spec: &Bound<'_, PyAny>,
    errors: &mut Vec<String>,
) -> Option<ThresholdSpec> {
    let Ok(spec) = spec.cast::<PyDict>() else {
        errors.push(format!(
            "{at}: must be a dict with limit, window, action, action_duration"
        ));
        return None;
    };
    let before = errors.len();
    for key in spec.keys() {
        let known = key
            .cast::<PyString>()
            .is_ok_and(|k| THRESHOLD_FIELDS.iter().any(|f| k == *f));
        if !known {
            errors.push(format!(
                "{at}[{}]: unknown field, expected one of {}",
                repr(&key),
                THRESHOLD_FIELDS.join(", ")
            ));
        }
    }
    let limit = positive(at, "limit", spec, errors);
    let window = positive(at, "window", spec, errors);
    let duration = positive(at, "action_duration", spec, errors);
    let callables = parse_callables(at, spec, errors);
    if errors.len() > before {
        return None;
    }
    let callables = callables?;
    let effect = if callables.iter().any(|c| is_block_local(c.bind(spec.py()))) {
        Effect::Block
    } else {
        Effect::Notify
    };
    let mut t = ThresholdSpec::new(
        NonZeroU64::new(limit?)?,
        Window::from_secs(window?)?,
        effect,
        Seconds::new(duration?),
    );
    t.actions = callables;
    Some(t)
}

/// A required field holding an `int` of at least 1 (not a bool, not a float).
fn positive(
    at: &str,
    field: &str,
    spec: &Bound<'_, PyDict>,
    errors: &mut Vec<String>,
) -> Option<u64> {
    let Some(value) = spec.get_item(field).ok().flatten() else {
        errors.push(format!("{at}.{field}: missing (a positive integer)"));
        return None;
    };
    let n = (value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>())
        .then(|| value.extract::<i64>().ok())
        .flatten()
        .and_then(|n| u64::try_from(n).ok())
        .filter(|n| *n >= 1);
    if n.is_none() {
        errors.push(format!(
            "{at}.{field}: must be a positive integer, not {}",
            repr(&value)
        ));
    }
    n
}

/// The `action` field: a list (or tuple) of callables, possibly empty.
fn parse_callables(
    at: &str,
    spec: &Bound<'_, PyDict>,
    errors: &mut Vec<String>,
) -> Option<Vec<Py<PyAny>>> {
    let Some(value) = spec.get_item("action").ok().flatten() else {
        errors.push(format!("{at}.action: missing (a list of callables)"));
        return None;
    };
    let Some(items) = sequence(&value) else {
        errors.push(format!(
            "{at}.action: must be a list of callables, not {}",
            repr(&value)
        ));
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    for (j, item) in items.iter().enumerate() {
        if item.is_callable() {
            out.push(item.clone().unbind());
        } else {
            errors.push(format!(
                "{at}.action[{j}]: must be callable, not {}",
                repr(item)
            ));
        }
    }
    Some(out)
}

/// The items of a list or tuple; `None` for anything else (a str is iterable, but a typo).
fn sequence<'py>(value: &Bound<'py, PyAny>) -> Option<Vec<Bound<'py, PyAny>>> {
    if let Ok(list) = value.cast::<PyList>() {
        Some(list.iter().collect())
    } else if let Ok(tuple) = value.cast::<PyTuple>() {
        Some(tuple.iter().collect())
    } else {
        None
    }
}

/// Whether `func.__name__ == "block_local"` (a function, a static method, a bound method).
fn is_block_local(func: &Bound<'_, PyAny>) -> bool {
    func.getattr("__name__")
        .ok()
        .is_some_and(|n| n.cast::<PyString>().is_ok_and(|s| s == BLOCK_LOCAL))
}

/// `repr(value)`, or a placeholder when even that fails.
fn repr(value: &Bound<'_, PyAny>) -> String {
    value
        .repr()
        .map_or_else(|_| "<unprintable>".to_owned(), |r| r.to_string())
}

/// Builds the rules: every metric keeps rates (so that `status` can show them whatever
/// `return_rates` says), and the callables go to the table the due actions are run from.
pub(crate) fn compile(
    metrics: Vec<MetricSpec>,
    max_tokens: Option<NonZeroUsize>,
) -> Result<Compiled, Vec<String>> {
    let mut callables = Callables::default();
    let mut builder = Ruleset::builder().rates(true).max_tokens(max_tokens);
    for metric in metrics {
        builder = builder.metric(callables.take_from(metric));
    }
    let rules = builder.build().map_err(|errs| {
        errs.iter()
            .map(|e| format!("bans: {e}"))
            .collect::<Vec<_>>()
    })?;
    Ok(Compiled {
        rules: Arc::new(rules),
        callables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use banhammer_core::{Engine, ManualClock, Timestamp};
    use banhammer_testkit::rules::{block, metric, notify};

    #[test]
    fn block_local_makes_a_ban_and_anything_else_a_notice() {
        let compiled = compile(
            vec![metric(
                "login_failed",
                [block(2, 3600, 3600), notify(3, 3600, 86_400)],
            )],
            None,
        )
        .unwrap();
        let rules = &compiled.rules;
        assert!(rules.rates());
        let id = rules.metric_id("login_failed").unwrap();
        let effects: Vec<Effect> = rules
            .metric(id)
            .thresholds
            .iter()
            .map(|t| t.effect)
            .collect();
        assert_eq!(effects, [Effect::Block, Effect::Notify]);

        let clock = ManualClock::new(Timestamp::from_unix(0));
        let mut engine = Engine::new(Arc::clone(rules), clock);
        assert!(engine.incr("a", "login_failed").unwrap().passed);
        assert!(!engine.incr("a", "login_failed").unwrap().passed);
    }

    #[test]
    fn a_notice_never_refuses() {
        let compiled = compile(
            vec![metric("login_successful", [notify(1, 60, 3600)])],
            None,
        )
        .unwrap();
        let clock = ManualClock::new(Timestamp::from_unix(0));
        let mut engine = Engine::new(compiled.rules, clock);
        for _ in 0..5 {
            assert!(engine.incr("a", "login_successful").unwrap().passed);
        }
    }

    #[test]
    fn rule_errors_name_bans() {
        let err = compile(vec![metric("bad*", [notify(1, 60, 60)])], None).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(err[0].starts_with("bans: metric name `bad*`"), "{err:?}");
    }
}
