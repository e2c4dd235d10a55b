//! Where a `BanHammer` reads time: the system clock, a shared `ManualClock`, or a Python callable.

use banhammer_core::{Clock, ManualClock as CoreManualClock, Seconds, SystemClock, Timestamp};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt};

/// The clock the engine itself reads. Both variants can be read without the GIL, which is
/// what lets the engine run inside `Python::detach`.
#[derive(Debug, Clone)]
pub(crate) enum HostClock {
    /// Wall time (the default).
    System,
    /// Time set by hand: a `banhammer.ManualClock`, or the latest reading of a Python callable.
    Manual(CoreManualClock),
}

impl Clock for HostClock {
    fn now(&self) -> Timestamp {
        match self {
            HostClock::System => SystemClock.now(),
            HostClock::Manual(c) => c.now(),
        }
    }
}

/// How a `BanHammer` was told to read time (`clock=`).
#[derive(Debug)]
pub(crate) enum TimeSource {
    /// No `clock=`: the engine reads wall time itself.
    System,
    /// A `banhammer.ManualClock`: the engine reads the shared atomic itself.
    Manual,
    /// Any other callable: called (with the GIL) before each engine call, and its answer
    /// stored in `cell`, which is what the engine reads.
    Callable {
        /// The user's callable, returning unix seconds.
        func: Py<PyAny>,
        /// The engine's clock.
        cell: CoreManualClock,
    },
}

impl TimeSource {
    /// The time source for `clock=` and the clock the engine should be given.
    pub(crate) fn from_arg(clock: Option<&Bound<'_, PyAny>>) -> PyResult<(TimeSource, HostClock)> {
        let Some(obj) = clock.filter(|c| !c.is_none()) else {
            return Ok((TimeSource::System, HostClock::System));
        };
        if let Ok(manual) = obj.cast::<ManualClock>() {
            let inner = manual.get().0.clone();
            return Ok((TimeSource::Manual, HostClock::Manual(inner)));
        }
        if !obj.is_callable() {
            return Err(PyTypeError::new_err(
                "clock must be a banhammer.ManualClock or a callable returning unix seconds",
            ));
        }
        let cell = CoreManualClock::new(Timestamp::from_unix(unix_seconds(&obj.call0()?)?));
        let engine_clock = HostClock::Manual(cell.clone());
        Ok((
            TimeSource::Callable {
                func: obj.clone().unbind(),
                cell,
            },
            engine_clock,
        ))
    }

    /// Brings the engine's clock up to date before an engine call; only a callable needs it.
    ///
    /// Two threads may store their readings in either order; that is harmless because the
    /// engine's own time never goes back.
    pub(crate) fn sync(&self, py: Python<'_>) -> PyResult<()> {
        if let TimeSource::Callable { func, cell } = self {
            let t = unix_seconds(&func.bind(py).call0()?)?;
            cell.set(Timestamp::from_unix(t));
        }
        Ok(())
    }
}

/// Whole unix seconds from what a clock callable returned: an int, or a float floored (so
/// `time.time` works as it is).
pub(crate) fn unix_seconds(value: &Bound<'_, PyAny>) -> PyResult<i64> {
    if value.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(
            "clock must return unix seconds (int or float), not bool",
        ));
    }
    if value.is_instance_of::<PyInt>() {
        return value.extract::<i64>();
    }
    if value.is_instance_of::<PyFloat>() {
        return floor_secs(value.extract::<f64>()?)
            .ok_or_else(|| PyValueError::new_err("clock returned a time out of range"));
    }
    Err(PyTypeError::new_err(format!(
        "clock must return unix seconds (int or float), not {}",
        value.get_type().name()?
    )))
}

/// `secs` floored to whole seconds; `None` for NaN, infinities and values beyond `i64`.
fn floor_secs(secs: f64) -> Option<i64> {
    let floored = secs.floor();
    // 2^63 is exactly representable; anything at or past it does not fit.
    let bound = 9_223_372_036_854_775_808.0_f64;
    #[allow(clippy::cast_possible_truncation)] // range checked just before
    (floored.is_finite() && floored >= -bound && floored < bound).then_some(floored as i64)
}

/// A clock that only moves when told to, for tests: `BanHammer(bans, clock=ManualClock(0))`.
///
/// Calling it returns the time, so it also fits anywhere a `time.time`-like callable does.
/// A `BanHammer` given a `ManualClock` reads it directly, without calling into Python.
#[pyclass(frozen, module = "banhammer")]
#[derive(Debug)]
pub(crate) struct ManualClock(CoreManualClock);

#[pymethods]
impl ManualClock {
    #[new]
    #[pyo3(signature = (now = 0))]
    fn new(now: i64) -> Self {
        ManualClock(CoreManualClock::new(Timestamp::from_unix(now)))
    }

    /// The time shown, in unix seconds.
    fn now(&self) -> i64 {
        self.0.now().as_unix()
    }

    /// Sets the time to `now` unix seconds. Going back is allowed; a `BanHammer`'s own time
    /// never goes back.
    fn set(&self, now: i64) {
        self.0.set(Timestamp::from_unix(now));
    }

    /// Moves the time forward by `seconds` (not negative) and returns the new time.
    fn advance(&self, seconds: u64) -> i64 {
        self.0.advance(Seconds::new(seconds));
        self.now()
    }

    fn __call__(&self) -> i64 {
        self.now()
    }

    fn __repr__(&self) -> String {
        format!("ManualClock({})", self.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_floored_and_bounded() {
        assert_eq!(floor_secs(1_700_000_000.9), Some(1_700_000_000));
        assert_eq!(floor_secs(-0.5), Some(-1));
        assert_eq!(floor_secs(f64::NAN), None);
        assert_eq!(floor_secs(f64::INFINITY), None);
        assert_eq!(floor_secs(1e19), None);
    }

    #[test]
    fn manual_host_clock_follows_its_cell() {
        let cell = CoreManualClock::new(Timestamp::from_unix(5));
        let clock = HostClock::Manual(cell.clone());
        cell.advance(Seconds::new(60));
        assert_eq!(clock.now(), Timestamp::from_unix(65));
    }

    #[test]
    fn system_host_clock_reads_wall_time() {
        assert!(HostClock::System.now() > Timestamp::from_unix(1_577_836_800));
    }
}
