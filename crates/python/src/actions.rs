//! Python callables as actions: recorded while the engine runs, called once it has returned.
//!
//! The engine runs without the GIL and under a shard lock. Calling Python from there would
//! need the GIL while holding the lock, and a Python thread holding the GIL and waiting for
//! the lock would deadlock with it. So the engine's action only writes down what to call, in
//! a buffer of the calling thread, and the callables run after the engine call, with the GIL
//! and no engine lock: they may even call the `BanHammer` again.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use banhammer_core::{Action, ActionCall};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// One threshold's Python callables, with what they are told.
#[derive(Debug)]
pub(crate) struct ThresholdActions {
    /// The callables, in the order the configuration lists them.
    pub(crate) callables: Vec<Py<PyAny>>,
}

/// One call of a threshold's callables, written down by the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    /// Index of the threshold in the `BanHammer`'s table of [`ThresholdActions`].
    pub(crate) slot: usize,
    /// `(token, duration, key, window, limit)`, the seed API's arguments.
    pub(crate) token: String,
    pub(crate) duration: u64,
    pub(crate) key: String,
    pub(crate) window: u64,
    pub(crate) limit: u64,
    pub(crate) threshold: usize,
}

thread_local! {
    /// Calls written down during the current thread's engine call. Per thread because the
    /// engine calls actions on the thread that called it: each caller finds exactly its own.
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
}

/// Takes the calls written down on this thread since the last take.
pub(crate) fn take_pending() -> Vec<Pending> {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if p.is_empty() {
            Vec::new()
        } else {
            std::mem::take(&mut *p)
        }
    })
}

/// The engine-side action of one threshold: writes the call down for later.
#[derive(Debug)]
pub(crate) struct Recorder {
    /// Index of the threshold in the table of [`ThresholdActions`].
    pub(crate) slot: usize,
}

impl Action for Recorder {
    fn name(&self) -> &'static str {
        "python"
    }

    fn call(&self, call: &ActionCall<'_>) {
        let pending = Pending {
            slot: self.slot,
            token: call.token.to_owned(),
            duration: call.duration.get(),
            key: call.metric.to_owned(),
            window: call.window.secs(),
            limit: call.limit,
            threshold: call.tier,
        };
        PENDING.with(|p| p.borrow_mut().push(pending));
    }
}

/// Calls the callables of every pending call, in order. An `Exception` from a callable is
/// logged on the `banhammer` logger and counted in `errors`, and the next callable runs; the
/// engine's state and answer were settled before. Anything else (`KeyboardInterrupt`,
/// `SystemExit`) is not the action's failure but the program's, so it is raised.
pub(crate) fn run(
    py: Python<'_>,
    table: &[ThresholdActions],
    calls: Vec<Pending>,
    errors: &AtomicU64,
) -> PyResult<()> {
    for call in calls {
        let Some(actions) = table.get(call.slot) else {
            continue;
        };
        for func in &actions.callables {
            let func = func.bind(py);
            let args = (
                call.token.as_str(),
                call.duration,
                call.key.as_str(),
                call.window,
                call.limit,
            );
            if let Err(err) = func.call1(args) {
                if !err.is_instance_of::<PyException>(py) {
                    return Err(err);
                }
                errors.fetch_add(1, Ordering::Relaxed);
                log_failure(py, func, &call, &err);
            }
        }
    }
    Ok(())
}

static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `logging.getLogger("banhammer").error(..., exc_info=err)`; a logger that fails itself is
/// reported as unraisable rather than turned into the caller's exception.
fn log_failure(py: Python<'_>, func: &Bound<'_, PyAny>, call: &Pending, err: &PyErr) {
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
                call.token.as_str(),
                call.key.as_str(),
                call.threshold,
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
    use banhammer_core::{Effect, Seconds, Timestamp, Window};

    #[test]
    fn recorder_writes_the_seed_arguments_for_this_thread_only() {
        let recorder = Recorder { slot: 3 };
        let call = ActionCall {
            token: "10.0.0.1",
            duration: Seconds::new(3600),
            metric: "login_failed",
            window: Window::from_secs(60).unwrap(),
            limit: 10,
            tier: 1,
            at: Timestamp::from_unix(0),
            effect: Effect::Block,
            repeat: false,
        };
        recorder.call(&call);
        // Another thread's buffer is its own.
        std::thread::spawn(|| assert!(take_pending().is_empty()))
            .join()
            .unwrap();
        assert_eq!(
            take_pending(),
            vec![Pending {
                slot: 3,
                token: "10.0.0.1".into(),
                duration: 3600,
                key: "login_failed".into(),
                window: 60,
                limit: 10,
                threshold: 1,
            }]
        );
        assert!(take_pending().is_empty());
    }
}
