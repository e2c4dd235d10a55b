//! `Offences`: when each token's recent bans started, for the tiers that escalate repeat
//! offenders' bans.

use hashlink::LinkedHashMap;
use smallvec::SmallVec;

use crate::time::{Seconds, Timestamp};
use crate::token::Token;

/// The most ban starts kept per token: a longer history cannot change a ban (a factor of 2
/// passes any `max` of up to ten years well before 32 doublings).
const KEPT: usize = 32;

/// How many of `earlier` (ban starts) fall within `memory` before `from`.
pub(super) fn within(earlier: &[Timestamp], from: Timestamp, memory: Seconds) -> u32 {
    let earliest = from.minus(memory);
    earlier
        .iter()
        .filter(|t| **t > earliest && **t < from)
        .count() as u32
}

/// Ban starts per token, tokens in the order of their latest ban, so that the ones whose
/// bans are all older than the longest memory leave from the front in O(1).
#[derive(Debug, Default)]
pub(super) struct Offences {
    starts: LinkedHashMap<Token, SmallVec<[Timestamp; 2]>>,
}

impl Offences {
    /// Notes that a ban of `token` started at `at` (in time order, or read back from a log).
    /// Offences count by the second: bans started in one second (one unbanned by hand, then
    /// another) are one offence, as the Redis store's set of starts keeps them.
    pub(super) fn record(&mut self, token: &Token, at: Timestamp) {
        let starts = match self.starts.remove(token) {
            Some(s) => s,
            None => SmallVec::new(),
        };
        let mut starts = starts;
        let pos = starts.partition_point(|t| *t <= at);
        if pos == 0 || starts[pos - 1] != at {
            starts.insert(pos, at);
        }
        if starts.len() > KEPT {
            starts.remove(0);
        }
        self.starts.insert(token.clone(), starts);
    }

    /// When `token`'s bans started before `from` (a ban's own start not among them).
    pub(super) fn before(&self, token: &str, from: Timestamp) -> Box<[Timestamp]> {
        self.starts.get(token).map_or_else(Box::default, |s| {
            s.iter().copied().filter(|t| *t < from).collect()
        })
    }

    /// Forgets tokens whose latest ban started at or before `until`.
    pub(super) fn forget_until(&mut self, until: Timestamp) {
        while let Some((_, s)) = self.starts.front() {
            if s.last().is_some_and(|t| *t > until) {
                break;
            }
            self.starts.pop_front();
        }
    }
}
