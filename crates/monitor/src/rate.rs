//! `PerSecond`: the alert threshold as the user typed it, an exact decimal rate.

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

/// Millionths in one.
const MICROS: u64 = 1_000_000;

/// Requests per second with up to six decimals (`10`, `0.5`, `2.25`), kept exact so that the
/// alert's limit over its window is exact too (`0.1 × 120` is 12, not 12.000000000000002).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct PerSecond {
    micros: u64,
}

impl PerSecond {
    /// `n` requests per second.
    pub const fn whole(n: u64) -> PerSecond {
        PerSecond {
            micros: n.saturating_mul(MICROS),
        }
    }

    /// The most hits over `window` seconds that still average no more than this rate: the
    /// alert fires above it. `None` when that is 0 (a rate below one request per window):
    /// the engine's limits count whole requests, so such a threshold cannot be honoured.
    pub fn limit(self, window: u64) -> Option<NonZeroU64> {
        let hits = u128::from(self.micros) * u128::from(window) / u128::from(MICROS);
        NonZeroU64::new(u64::try_from(hits).unwrap_or(u64::MAX))
    }
}

impl FromStr for PerSecond {
    type Err = String;

    /// Digits with an optional decimal point and at most six decimals; nothing else (no sign,
    /// exponent or unit).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a rate: write digits like 10 or 0.5");
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() && frac.is_empty() || !digits(whole) || !digits(frac) {
            return Err(bad());
        }
        if frac.len() > 6 {
            return Err(format!("{s:?} has more than six decimals"));
        }
        let too_big = || format!("{s:?} is too large");
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_big())?
        };
        // Six decimals at most: `frac` is below 10^6 once scaled, and the power is at most 6.
        let scale = 10u64.pow(6 - frac.len() as u32);
        let frac: u64 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| bad())?
        };
        whole
            .checked_mul(MICROS)
            .and_then(|w| w.checked_add(frac * scale))
            .map(|micros| PerSecond { micros })
            .ok_or_else(too_big)
    }
}

impl fmt::Display for PerSecond {
    /// As typed, without trailing zeros: `10`, `0.5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.micros / MICROS, self.micros % MICROS);
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let frac = format!("{frac:06}");
        write!(f, "{whole}.{}", frac.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(s: &str) -> PerSecond {
        s.parse().unwrap()
    }

    #[test]
    fn decimals_are_exact_and_the_limit_is_the_most_hits_not_above_the_rate() {
        assert_eq!(rate("10").limit(120).map(NonZeroU64::get), Some(1200));
        assert_eq!(rate("0.5").limit(120).map(NonZeroU64::get), Some(60));
        assert_eq!(rate("0.1").limit(120).map(NonZeroU64::get), Some(12));
        assert_eq!(rate(".7").limit(120).map(NonZeroU64::get), Some(84));
        // More than 0.01/s over 120 s is more than 1.2 hits: 2 or more, so above 1.
        assert_eq!(rate("0.01").limit(120).map(NonZeroU64::get), Some(1));
        assert_eq!(rate("0.008334").limit(120).map(NonZeroU64::get), Some(1));
        assert_eq!(rate("0.008333").limit(120), None);
        assert_eq!(rate("0").limit(120), None);
        assert_eq!(PerSecond::whole(10), rate("10.000"));
        assert_eq!(
            rate("18446744073709").limit(u64::MAX).map(NonZeroU64::get),
            Some(u64::MAX)
        );
    }

    #[test]
    fn only_plain_decimals_parse() {
        for bad in [
            "",
            ".",
            "-1",
            "+1",
            "1e3",
            "1/s",
            " 1",
            "0.1234567",
            "1.2.3",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<PerSecond>().is_err(), "{bad:?}");
        }
        for (typed, shown) in [
            ("10", "10"),
            ("0.50", "0.5"),
            ("2.", "2"),
            ("007.25", "7.25"),
        ] {
            assert_eq!(rate(typed).to_string(), shown);
        }
    }
}
