//! `Reorder`: puts lines back in time order within a bounded delay. Servers write a line
//! when a request ends and workers interleave their writes, so logs are locally shuffled;
//! the event-time modes count lines in the order this stage releases them.

use std::collections::btree_map::{BTreeMap, Entry};
use std::collections::VecDeque;

use banhammer_core::{Seconds, Timestamp};

/// How far behind the newest line a line may be logged and still be counted in order, unless
/// configured (`[accesslog] max_delay`, `--max-delay`).
pub const DEFAULT_MAX_DELAY: Seconds = Seconds::new(60);

/// How many lines may wait at once, unless configured (`[accesslog] max_buffered_lines`).
pub const DEFAULT_MAX_BUFFERED: usize = 1_000_000;

/// A bounded reordering buffer, pure (no I/O, no clock but the items' own times).
///
/// Items go in with their time in arrival order and come out in (time, arrival) order: an
/// item is released once the newest time seen is `max_delay` past it. So any input whose
/// items are each at most `max_delay` older than the newest item before them comes out
/// exactly as a stable sort by time would put it. An item older than that (or than an item
/// already released) is *late*: [`Reorder::push`] gives it back at once, for the caller to
/// count out of order and report. At most `capacity` items wait; past that the oldest second
/// is released early (counted in [`Reorder::early`]), so untrusted input never allocates
/// without bound.
#[derive(Debug)]
pub struct Reorder<T> {
    max_delay: Seconds,
    capacity: usize,
    /// Waiting items per second, each second's in arrival order.
    waiting: BTreeMap<Timestamp, VecDeque<T>>,
    len: usize,
    /// The newest time pushed.
    newest: Option<Timestamp>,
    /// The newest time released: an item older than it can no longer go in order.
    released: Option<Timestamp>,
    /// Everything up to here is due, whatever its delay (the end of input).
    flushed: Option<Timestamp>,
    early: u64,
}

/// An item too late to be put in order, given back by [`Reorder::push`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Late<T> {
    /// The item.
    pub item: T,
    /// Its time.
    pub time: Timestamp,
    /// The newest time seen before it.
    pub newest: Timestamp,
    /// The earliest time an item could still have and be put in order.
    pub floor: Timestamp,
}

impl<T> Reorder<T> {
    /// A buffer that holds items until the newest time is `max_delay` past them, and at most
    /// `capacity` items (at least 1).
    pub fn new(max_delay: Seconds, capacity: usize) -> Self {
        Reorder {
            max_delay,
            capacity: capacity.max(1),
            waiting: BTreeMap::new(),
            len: 0,
            newest: None,
            released: None,
            flushed: None,
            early: 0,
        }
    }

    /// The delay it was made with.
    pub fn max_delay(&self) -> Seconds {
        self.max_delay
    }

    /// Takes `item`, logged at `time`. Call [`Reorder::pop`] until it gives `None` after each
    /// push: that is what keeps the buffer within its capacity. A late item is given back.
    pub fn push(&mut self, time: Timestamp, item: T) -> Result<(), Late<T>> {
        if let (Some(floor), Some(newest)) = (self.floor(), self.newest) {
            if time < floor {
                return Err(Late {
                    item,
                    time,
                    newest,
                    floor,
                });
            }
        }
        self.newest = self.newest.max(Some(time));
        // Most lines are of the newest second waiting: no search for them.
        match self.waiting.last_entry() {
            Some(mut last) if *last.key() == time => last.get_mut().push_back(item),
            _ => match self.waiting.entry(time) {
                Entry::Occupied(mut e) => e.get_mut().push_back(item),
                Entry::Vacant(e) => {
                    e.insert(VecDeque::from([item]));
                }
            },
        }
        self.len += 1;
        Ok(())
    }

    /// The next item due, in (time, arrival) order, or `None` while the oldest waiting item
    /// may still be preceded by one yet to come.
    pub fn pop(&mut self) -> Option<(Timestamp, T)> {
        let mut first = self.waiting.first_entry()?;
        let second = *first.key();
        let in_time = self
            .newest
            .is_some_and(|n| second <= n.minus(self.max_delay))
            || self.flushed.is_some_and(|f| second <= f);
        // The rest of a second already released goes at once: nothing can come before it.
        let due = in_time || self.released.is_some_and(|r| second <= r);
        if !due && self.len <= self.capacity {
            return None;
        }
        let item = first.get_mut().pop_front()?;
        if first.get().is_empty() {
            first.remove();
        }
        self.len -= 1;
        self.early += u64::from(!in_time);
        self.released = self.released.max(Some(second));
        Some((second, item))
    }

    /// Makes every waiting item due (the end of input): [`Reorder::pop`] then gives them all,
    /// in order. Items pushed later wait as usual.
    pub fn flush(&mut self) {
        self.flushed = self.newest;
    }

    /// The earliest time an item may have and still be put in order: items before it are
    /// late. Everything before it has been released, so a clock that follows the released
    /// items may be moved up to it. `None` before the first item.
    pub fn floor(&self) -> Option<Timestamp> {
        let within = self.newest.map(|n| n.minus(self.max_delay));
        within.max(self.released)
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no item waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Items released before their delay because the buffer was full.
    pub fn early(&self) -> u64 {
        self.early
    }
}

#[cfg(test)]
mod tests;
