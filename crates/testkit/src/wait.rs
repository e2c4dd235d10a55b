//! Waiting on conditions, never on time: a test that needs a background task, a child process
//! or a server to get somewhere polls what it can observe (a file's contents, an HTTP answer,
//! a committed read position, a counter) until it holds, for a bounded time, and then fails
//! with a message naming what never happened.
//!
//! The pause between two checks is short and only spaces the checks; no test relies on how
//! long it is. This is the only file of the test kit that reads the system clock: deadlines
//! for other processes, never a decision (`scripts/check-architecture` lists it).
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! let calls = AtomicU32::new(0);
//! banhammer_testkit::wait::until("the third check", || {
//!     calls.fetch_add(1, Ordering::Relaxed) == 2
//! });
//! ```

use std::time::{Duration, Instant};

/// How long a wait lasts before it fails: far longer than anything takes on a loaded machine,
/// short enough that a broken test fails in reasonable time.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The pause between two checks.
const BETWEEN: Duration = Duration::from_millis(10);

/// Waits until `check` holds, for at most [`PATIENCE`]; panics with "`what` never happened".
pub fn until(what: &str, mut check: impl FnMut() -> bool) {
    within(PATIENCE, what, || check().then_some(()));
}

/// Waits until `check` gives a value, for at most [`PATIENCE`], and returns it; panics with
/// "`what` never happened".
pub fn for_some<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    within(PATIENCE, what, check)
}

/// [`for_some`] with another bound.
pub fn within<T>(patience: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    #[allow(clippy::disallowed_methods)] // a deadline for other processes, not a decision
    let deadline = Instant::now() + patience;
    loop {
        if let Some(v) = check() {
            return v;
        }
        #[allow(clippy::disallowed_methods)] // as above
        let late = Instant::now() >= deadline;
        assert!(!late, "{what} never happened (waited {patience:?})");
        std::thread::sleep(BETWEEN);
    }
}

/// [`until`] on a tokio runtime: the pauses are tokio's, so that other tasks run meanwhile
/// (and paused test time moves on by itself).
#[cfg(feature = "tokio")]
pub async fn until_async(what: &str, mut check: impl FnMut() -> bool) {
    let polls = async {
        while !check() {
            tokio::time::sleep(BETWEEN).await;
        }
    };
    if tokio::time::timeout(PATIENCE, polls).await.is_err() {
        panic!("{what} never happened (waited {PATIENCE:?})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_is_returned_once_it_comes() {
        let mut n = 0;
        let got = for_some("the fifth check", || {
            n += 1;
            (n == 5).then_some(n * 10)
        });
        assert_eq!(got, 50);
    }

    #[test]
    #[should_panic(expected = "the impossible never happened")]
    fn a_condition_that_never_holds_fails_naming_it() {
        within(Duration::from_millis(30), "the impossible", || None::<()>);
    }
}
