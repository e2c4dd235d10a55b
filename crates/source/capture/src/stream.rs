//! One direction of a TCP connection: segments in any order to bytes in order, with bounded
//! out-of-order buffering, duplicate trimming, sequence wrap-around and gap skipping.
//!
//! Positions are kept as 64-bit stream offsets (bytes since the first one seen), so the
//! 32-bit sequence space wraps only in the one subtraction that places a segment relative to
//! the next expected byte.

use std::collections::BTreeMap;

/// What a stream hands on, in stream order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery<'a> {
    /// The next bytes. `segment_start` is true when they are the first bytes of a segment as
    /// sent (not the trimmed tail of a retransmission): only there may an HTTP head begin
    /// when resynchronizing.
    Data {
        bytes: &'a [u8],
        segment_start: bool,
    },
    /// This many bytes were lost to the capture and will never come.
    Gap(u64),
}

/// Bookkeeping charged per buffered segment on top of its bytes, so that many tiny segments
/// cannot hold more memory than the buffer limit suggests.
pub(crate) const SEGMENT_OVERHEAD: usize = 64;

/// What happened to a pushed segment, for the counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PushOutcome {
    /// Some or all of its bytes had already been delivered.
    pub(crate) duplicate: bool,
    /// It was held back waiting for earlier bytes.
    pub(crate) out_of_order: bool,
    /// Gaps skipped because the buffer was full.
    pub(crate) gaps: u64,
}

#[derive(Debug)]
struct Held {
    bytes: Box<[u8]>,
    segment_start: bool,
}

/// One direction's sequence space.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    /// Whether `next` is known (a SYN or a first segment was seen).
    started: bool,
    /// Sequence number of the next byte to deliver.
    next: u32,
    /// Stream offset of `next`.
    offset: u64,
    /// Segments waiting for earlier bytes, by stream offset of their first byte.
    held: BTreeMap<u64, Held>,
    /// Bytes held plus `SEGMENT_OVERHEAD` per segment.
    held_cost: usize,
    /// The SYN's sequence number, to tell a retransmitted SYN from a new connection.
    syn: Option<u32>,
    /// Stream offset just past the last byte, once a FIN placed it.
    fin_at: Option<u64>,
}

impl Stream {
    /// Whether the stream has a known position.
    pub(crate) fn started(&self) -> bool {
        self.started
    }

    /// The SYN's sequence number, if one was seen.
    pub(crate) fn syn(&self) -> Option<u32> {
        self.syn
    }

    /// Memory charged to this stream's out-of-order buffer.
    pub(crate) fn held_cost(&self) -> usize {
        self.held_cost
    }

    /// A SYN: the data starts at `seq + 1`.
    pub(crate) fn syn_at(&mut self, seq: u32) {
        *self = Stream {
            started: true,
            next: seq.wrapping_add(1),
            syn: Some(seq),
            ..Stream::default()
        };
    }

    /// Whether every byte up to the FIN was delivered (or skipped).
    pub(crate) fn finished(&self) -> bool {
        self.fin_at.is_some_and(|end| self.offset >= end)
    }

    /// Where `seq` lies relative to the next byte: negative is already delivered.
    fn relative(&self, seq: u32) -> i64 {
        // Reinterpreting the wrapped difference as signed is the RFC 1982 comparison: within
        // 2^31 either way.
        #[allow(clippy::cast_possible_wrap)]
        i64::from(seq.wrapping_sub(self.next) as i32)
    }

    /// A FIN after `len` bytes from `seq`: the stream ends there. (A stream seen for the
    /// first time by its FIN starts and ends there.)
    pub(crate) fn fin(&mut self, seq: u32, len: usize) {
        if !self.started {
            self.started = true;
            self.next = seq;
        }
        let end = self.relative(seq) + i64::try_from(len).unwrap_or(i64::MAX);
        self.fin_at = Some(self.offset.saturating_add_signed(end));
    }

    /// Adds a segment's payload starting at `seq`, delivering whatever becomes contiguous.
    /// `max_held` bounds the out-of-order buffer: when it overflows, the oldest gap is
    /// declared lost and skipped.
    pub(crate) fn push(
        &mut self,
        seq: u32,
        payload: &[u8],
        max_held: usize,
        deliver: &mut impl FnMut(Delivery<'_>),
    ) -> PushOutcome {
        let mut outcome = PushOutcome::default();
        if payload.is_empty() {
            return outcome;
        }
        if !self.started {
            self.started = true;
            self.next = seq;
        }
        let at = self.relative(seq);
        if at <= 0 {
            let behind = usize::try_from(at.unsigned_abs()).unwrap_or(usize::MAX);
            if behind >= payload.len() {
                outcome.duplicate = true;
                return outcome;
            }
            outcome.duplicate = behind > 0;
            self.advance(&payload[behind..], behind == 0, deliver);
            self.drain(deliver);
            return outcome;
        }
        outcome.out_of_order = true;
        let key = self.offset + at.unsigned_abs();
        let cost = payload.len() + SEGMENT_OVERHEAD;
        match self.held.get(&key) {
            Some(old) if old.bytes.len() >= payload.len() => outcome.duplicate = true,
            old => {
                let old_cost = old.map_or(0, |h| h.bytes.len() + SEGMENT_OVERHEAD);
                self.held.insert(
                    key,
                    Held {
                        bytes: payload.into(),
                        segment_start: true,
                    },
                );
                self.held_cost = self.held_cost - old_cost + cost;
            }
        }
        while self.held_cost > max_held {
            self.skip_to_held(deliver);
            outcome.gaps += 1;
        }
        outcome
    }

    /// The other side acknowledged up to `ack`: bytes before it reached the receiver, so if
    /// the capture lost some while later ones wait in the buffer, that gap will never fill.
    /// Returns whether a gap was skipped.
    ///
    /// Nothing happens while the buffer is empty: an acknowledgment seen before the data it
    /// covers (the capture can reorder across CPUs) must not throw that data away.
    pub(crate) fn acked(&mut self, ack: u32, deliver: &mut impl FnMut(Delivery<'_>)) -> bool {
        let Some((&first, _)) = self.held.first_key_value() else {
            return false;
        };
        let at = self.relative(ack);
        if !self.started || at <= 0 {
            return false;
        }
        let acked_to = self.offset + at.unsigned_abs();
        if first <= acked_to {
            self.skip_to_held(deliver);
        } else {
            deliver(Delivery::Gap(acked_to - self.offset));
            self.move_to(acked_to);
        }
        true
    }

    /// Skips the gap before the first held segment and delivers what follows it.
    fn skip_to_held(&mut self, deliver: &mut impl FnMut(Delivery<'_>)) {
        if let Some((&first, _)) = self.held.first_key_value() {
            if first > self.offset {
                deliver(Delivery::Gap(first - self.offset));
                self.move_to(first);
            }
            self.drain(deliver);
        }
    }

    fn move_to(&mut self, offset: u64) {
        // Offsets differ by less than 2^32 here (both came from one 32-bit difference).
        #[allow(clippy::cast_possible_truncation)]
        let step = (offset - self.offset) as u32;
        self.next = self.next.wrapping_add(step);
        self.offset = offset;
    }

    fn advance(
        &mut self,
        bytes: &[u8],
        segment_start: bool,
        deliver: &mut impl FnMut(Delivery<'_>),
    ) {
        deliver(Delivery::Data {
            bytes,
            segment_start,
        });
        self.move_to(self.offset + bytes.len() as u64);
    }

    /// Delivers held segments that have become contiguous; drops those already covered.
    fn drain(&mut self, deliver: &mut impl FnMut(Delivery<'_>)) {
        while let Some(entry) = self.held.first_entry() {
            let key = *entry.key();
            if key > self.offset {
                break;
            }
            let held = entry.remove();
            self.held_cost -= held.bytes.len() + SEGMENT_OVERHEAD;
            let behind = usize::try_from(self.offset - key).unwrap_or(usize::MAX);
            if behind < held.bytes.len() {
                self.advance(
                    &held.bytes[behind..],
                    held.segment_start && behind == 0,
                    deliver,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes segments and returns what was delivered, gaps as `[gap n]`.
    fn run(start: u32, segments: &[(u32, &str)], max_held: usize) -> (String, Stream) {
        let mut stream = Stream::default();
        stream.syn_at(start.wrapping_sub(1));
        let mut got = Vec::new();
        for &(seq, text) in segments {
            stream.push(seq, text.as_bytes(), max_held, &mut |d| {
                got.push(match d {
                    Delivery::Data { bytes, .. } => String::from_utf8(bytes.to_vec()).unwrap(),
                    Delivery::Gap(n) => format!("[gap {n}]"),
                });
            });
        }
        (got.concat(), stream)
    }

    #[test]
    fn in_order_out_of_order_and_duplicates() {
        let (got, s) = run(
            100,
            &[
                (100, "abc"),
                (106, "ghi"),
                (103, "def"),
                (101, "bcdef"),
                (109, "jk"),
                (104, "ef"),
            ],
            1 << 16,
        );
        assert_eq!(got, "abcdefghijk");
        assert_eq!(s.held_cost(), 0);
    }

    #[test]
    fn overlapping_held_segments_are_trimmed() {
        let (got, _) = run(0, &[(4, "efgh"), (2, "cdefg"), (0, "ab")], 1 << 16);
        assert_eq!(got, "abcdefgh");
    }

    #[test]
    fn wraps_around_the_sequence_space() {
        let start = u32::MAX - 2;
        let (got, s) = run(
            start,
            &[(1, "efg"), (start, "abc"), (start.wrapping_add(3), "d")],
            1 << 16,
        );
        assert_eq!(got, "abcdefg");
        assert_eq!(s.next, 4);
        assert_eq!(s.offset, 7);
    }

    #[test]
    fn a_full_buffer_skips_the_gap() {
        let limit = 2 * (SEGMENT_OVERHEAD + 3);
        let (got, s) = run(0, &[(0, "abc"), (6, "ghi"), (9, "jkl"), (15, "pqr")], limit);
        assert_eq!(got, "abc[gap 3]ghijkl");
        assert!(s.held_cost() <= limit);
        assert_eq!(s.offset, 12);
    }

    #[test]
    fn acknowledged_gaps_are_skipped_only_when_later_data_waits() {
        let mut s = Stream::default();
        let mut got = Vec::new();
        let mut sink = |d: Delivery<'_>| {
            got.push(match d {
                Delivery::Data {
                    bytes,
                    segment_start,
                } => {
                    format!(
                        "{}{}",
                        if segment_start { "|" } else { "" },
                        String::from_utf8_lossy(bytes)
                    )
                }
                Delivery::Gap(n) => format!("gap {n}"),
            });
        };
        s.push(1000, b"abc", 1 << 16, &mut sink);
        assert!(
            !s.acked(1010, &mut sink),
            "nothing waits: the data may still come"
        );
        s.push(1010, b"klm", 1 << 16, &mut sink);
        assert!(!s.acked(1003, &mut sink));
        assert!(s.acked(1013, &mut sink));
        s.push(1003, b"defghij", 1 << 16, &mut sink);
        assert_eq!(got, ["|abc", "gap 7", "|klm"]);
    }

    #[test]
    fn a_bare_fin_ends_a_stream_never_seen_before() {
        let mut s = Stream::default();
        s.fin(77, 0);
        assert!(s.finished());
    }

    #[test]
    fn fin_marks_the_end() {
        let mut s = Stream::default();
        s.syn_at(9);
        s.fin(13, 0);
        assert!(!s.finished());
        s.push(10, b"abc", 100, &mut |_| {});
        assert!(s.finished());
    }

    #[test]
    fn retransmitted_tail_is_not_a_segment_start() {
        let mut s = Stream::default();
        let mut starts = Vec::new();
        for (seq, text) in [(0u32, "ab"), (0, "abcd")] {
            s.push(seq, text.as_bytes(), 100, &mut |d| {
                if let Delivery::Data { segment_start, .. } = d {
                    starts.push(segment_start);
                }
            });
        }
        assert_eq!(starts, [true, false]);
    }
}
