//! Points in time and lengths of time, in whole seconds: the engine's resolution.

use std::fmt;
use std::num::NonZeroU64;

/// A point in time: whole seconds since the Unix epoch (signed, so that a window reaching
/// before the epoch is still exact).
///
/// The engine counts at one-second resolution (docs/semantics.md: "exact at one-second
/// resolution or better"); every front end's input (log lines, event scripts, wall time) is floored to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);
    /// The earliest representable time (before anything happens).
    pub const MIN: Timestamp = Timestamp(i64::MIN);

    /// A timestamp from whole seconds since the Unix epoch.
    pub const fn from_unix(secs: i64) -> Self {
        Timestamp(secs)
    }

    /// Whole seconds since the Unix epoch.
    pub const fn as_unix(self) -> i64 {
        self.0
    }

    /// `self + d`, saturating at the far future.
    #[must_use]
    pub const fn plus(self, d: Seconds) -> Self {
        Timestamp(self.0.saturating_add_unsigned(d.0))
    }

    /// `self - d`, saturating at the far past.
    #[must_use]
    pub const fn minus(self, d: Seconds) -> Self {
        Timestamp(self.0.saturating_sub_unsigned(d.0))
    }

    /// Seconds from `earlier` to `self` (zero if `earlier` is later).
    pub const fn since(self, earlier: Timestamp) -> Seconds {
        let d = self.0.saturating_sub(earlier.0);
        Seconds(if d < 0 { 0 } else { d.unsigned_abs() })
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A length of time in whole seconds (may be zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seconds(u64);

impl Seconds {
    /// Zero seconds.
    pub const ZERO: Seconds = Seconds(0);

    /// A length of `secs` seconds.
    pub const fn new(secs: u64) -> Self {
        Seconds(secs)
    }

    /// The number of seconds.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

/// The length of a sliding window: at least one second.
///
/// A window of length `w` ending at `s` is the half-open interval `(s - w, s]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window(NonZeroU64);

impl Window {
    /// A window of `secs` seconds; `None` for zero.
    pub const fn from_secs(secs: u64) -> Option<Self> {
        match NonZeroU64::new(secs) {
            Some(n) => Some(Window(n)),
            None => None,
        }
    }

    /// The window's length.
    pub const fn length(self) -> Seconds {
        Seconds(self.0.get())
    }

    /// The window's length in seconds.
    pub const fn secs(self) -> u64 {
        self.0.get()
    }

    /// The last instant *outside* the window that ends at `end`: events at or before it do not
    /// count, events after it do.
    pub const fn boundary(self, end: Timestamp) -> Timestamp {
        end.minus(self.length())
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}
