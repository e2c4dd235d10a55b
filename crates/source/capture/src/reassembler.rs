//! The flow table: packets to per-connection TCP streams to HTTP heads, with every table and
//! buffer bounded and the least recently active connections dropped first.

use hashlink::linked_hash_map::RawEntryMut;
use hashlink::LinkedHashMap;

use crate::decode::{decode, LinkType, Segment, Skip};
use crate::http::{Ctx, End, HttpDir, Role, Shared};
use crate::seen::Seen;
use crate::stream::Stream;

/// A connection with no packet for this long is forgotten.
pub const IDLE_US: i64 = 60 * 1_000_000;
/// How often (in packet time) `packet` looks for idle connections by itself.
const SWEEP_US: i64 = 1_000_000;

/// Bounds on what untrusted traffic can make the reassembler hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections tracked at once; beyond it the least recently active one is dropped.
    pub max_streams: usize,
    /// Out-of-order bytes held per direction of a connection (each held segment is charged
    /// 64 bytes more); beyond it the oldest gap is taken as lost.
    pub max_buffer: usize,
    /// Longest request or response head; a longer one is skipped as garbage.
    pub max_head: usize,
    /// Bytes held by all connections together (out-of-order segments and partial heads);
    /// beyond it the least recently active connections are dropped.
    pub max_total: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_streams: 10_000,
            max_buffer: 64 * 1024,
            max_head: 16 * 1024,
            max_total: 64 * 1024 * 1024,
        }
    }
}

/// What the reassembler has seen and done, since it was created.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Packets given to [`Reassembler::packet`].
    pub packets: u64,
    /// Their captured bytes.
    pub bytes: u64,
    /// Packets that were not TCP over IPv4 or IPv6.
    pub not_tcp: u64,
    /// IP fragments (skipped).
    pub fragments: u64,
    /// Packets too short or inconsistent to decode.
    pub malformed: u64,
    /// TCP packets cut short by the snap length (used as far as they go).
    pub truncated: u64,
    /// Connections tracked.
    pub streams_opened: u64,
    /// Connections ended by FIN in both directions or by RST.
    pub streams_closed: u64,
    /// Connections forgotten after 60 s without a packet.
    pub streams_expired: u64,
    /// Connections dropped because the table or the memory budget was full.
    pub streams_dropped: u64,
    /// Segments held back until earlier bytes came.
    pub out_of_order: u64,
    /// Segments carrying bytes already delivered (retransmissions, overlaps).
    pub retransmitted: u64,
    /// Holes in a stream that never filled (packets the capture lost).
    pub gaps: u64,
    /// Times a direction lost its place in the HTTP stream and waited for the next head.
    pub resyncs: u64,
    /// Heads or chunked bodies that did not parse, or heads longer than `max_head`.
    pub http_errors: u64,
    /// Requests reported.
    pub requests: u64,
    /// Responses reported.
    pub responses: u64,
}

/// The key of a connection: its two ends, the lower one first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey([End; 2]);

impl FlowKey {
    /// The key of a segment's connection, and the index of the end that sent it.
    fn of(seg: &Segment<'_>) -> (FlowKey, usize) {
        let src = (seg.src, seg.src_port);
        let dst = (seg.dst, seg.dst_port);
        if src <= dst {
            (FlowKey([src, dst]), 0)
        } else {
            (FlowKey([dst, src]), 1)
        }
    }
}

/// One direction of a connection: its bytes and what they mean.
#[derive(Debug, Default)]
struct Dir {
    stream: Stream,
    http: HttpDir,
}

#[derive(Debug)]
struct Conn {
    dirs: [Dir; 2],
    shared: Shared,
    last_us: i64,
}

impl Conn {
    fn new(ends: [End; 2], time_us: i64) -> Conn {
        Conn {
            dirs: [Dir::default(), Dir::default()],
            shared: Shared::new(ends),
            last_us: time_us,
        }
    }

    /// Bytes this connection holds.
    fn held(&self) -> usize {
        self.dirs
            .iter()
            .map(|d| d.stream.held_cost() + d.http.held())
            .sum()
    }

    /// Handles one segment; returns whether the connection is over.
    fn segment(
        &mut self,
        dir: usize,
        seg: &Segment<'_>,
        time_us: i64,
        limits: &Limits,
        counters: &mut Counters,
        out: &mut Vec<Seen>,
    ) -> bool {
        self.last_us = time_us;
        let other = 1 - dir;
        if seg.syn && self.dirs[dir].stream.syn() != Some(seg.seq) {
            if self.dirs[dir].stream.started() {
                // A new connection on the same ports (or a stray SYN): start over.
                if seg.ack.is_none() {
                    *self = Conn::new(self.shared.ends, time_us);
                } else {
                    self.dirs[dir] = Dir::default();
                }
            }
            self.dirs[dir].stream.syn_at(seg.seq);
            // A SYN alone opens the connection: its sender is the client.
            let client = if seg.ack.is_none() { dir } else { other };
            self.shared.role = Role::Known { client };
        }
        // Acknowledgments first: they may show that the other direction lost bytes to the
        // capture, and the request those bytes ended must be reported before this response.
        if let Some(ack) = seg.ack {
            let Dir { stream, http } = &mut self.dirs[other];
            let mut ctx = Ctx {
                dir: other,
                time_us,
                shared: &mut self.shared,
                limits,
                counters: &mut *counters,
                out: &mut *out,
            };
            if stream.acked(ack, &mut |d| http.deliver(d, &mut ctx)) {
                counters.gaps += 1;
            }
        }
        let seq = seg.seq.wrapping_add(u32::from(seg.syn));
        let Dir { stream, http } = &mut self.dirs[dir];
        let mut ctx = Ctx {
            dir,
            time_us,
            shared: &mut self.shared,
            limits,
            counters: &mut *counters,
            out: &mut *out,
        };
        let pushed = stream.push(seq, seg.payload, limits.max_buffer, &mut |d| {
            http.deliver(d, &mut ctx);
        });
        counters.retransmitted += u64::from(pushed.duplicate);
        counters.out_of_order += u64::from(pushed.out_of_order);
        counters.gaps += pushed.gaps;
        if seg.fin && !seg.truncated {
            stream.fin(seq, seg.payload.len());
        }
        seg.rst || self.dirs.iter().all(|d| d.stream.finished())
    }
}

/// Turns captured packets into HTTP requests and responses.
///
/// Pure: it reads no clock and does no I/O; time is each packet's timestamp. Memory is
/// bounded by [`Limits`] whatever the input.
pub struct Reassembler {
    limits: Limits,
    /// Least recently active first.
    conns: LinkedHashMap<FlowKey, Conn>,
    counters: Counters,
    /// Bytes held by all connections: the sum of `Conn::held`.
    held: usize,
    /// Packet time of the last idle sweep.
    swept_us: i64,
}

impl std::fmt::Debug for Reassembler {
    /// A summary: the connections themselves are too many to print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reassembler")
            .field("limits", &self.limits)
            .field("streams", &self.conns.len())
            .field("buffered", &self.held)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Reassembler {
    /// A reassembler with these limits (`max_streams` of 0 is taken as 1).
    pub fn new(limits: Limits) -> Self {
        Reassembler {
            limits: Limits {
                max_streams: limits.max_streams.max(1),
                ..limits
            },
            conns: LinkedHashMap::new(),
            counters: Counters::default(),
            held: 0,
            swept_us: i64::MIN,
        }
    }

    /// What was seen so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Connections tracked now.
    pub fn streams(&self) -> usize {
        self.conns.len()
    }

    /// Bytes held now for out-of-order segments and partial heads (each held segment
    /// charged 64 bytes more than its length).
    pub fn buffered(&self) -> usize {
        self.held
    }

    /// Takes one captured packet (`data` starting with the `link` header, captured at
    /// `time_us` microseconds since the Unix epoch) and appends the requests and responses
    /// it completes to `out`. Also forgets connections idle for 60 s, about once a second of
    /// packet time.
    pub fn packet(&mut self, time_us: i64, link: LinkType, data: &[u8], out: &mut Vec<Seen>) {
        self.counters.packets += 1;
        self.counters.bytes += data.len() as u64;
        if time_us.saturating_sub(self.swept_us) >= SWEEP_US {
            self.expire(time_us);
            self.swept_us = time_us;
        }
        match decode(link, data) {
            Ok(seg) => {
                self.counters.truncated += u64::from(seg.truncated);
                self.segment(&seg, time_us, out);
            }
            Err(Skip::NotTcp) => self.counters.not_tcp += 1,
            Err(Skip::Fragment) => self.counters.fragments += 1,
            Err(Skip::Malformed) => self.counters.malformed += 1,
        }
    }

    /// Forgets connections with no packet in the 60 s before `now_us`.
    pub fn expire(&mut self, now_us: i64) {
        let cutoff = now_us.saturating_sub(IDLE_US);
        while let Some((_, conn)) = self.conns.front() {
            if conn.last_us >= cutoff {
                break;
            }
            self.pop_front();
            self.counters.streams_expired += 1;
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, conn)) = self.conns.pop_front() {
            self.held -= conn.held();
        }
    }

    fn segment(&mut self, seg: &Segment<'_>, time_us: i64, out: &mut Vec<Seen>) {
        let (key, dir) = FlowKey::of(seg);
        let conn = match self.conns.raw_entry_mut().from_key(&key) {
            RawEntryMut::Occupied(mut entry) => {
                entry.to_back();
                entry.into_mut()
            }
            RawEntryMut::Vacant(entry) => {
                // Bare ACKs, FINs and RSTs of unknown connections (often the tail of one
                // just closed) are not worth a slot.
                if seg.rst || !seg.syn && seg.payload.is_empty() {
                    return;
                }
                self.counters.streams_opened += 1;
                entry.insert(key, Conn::new(key.0, time_us)).1
            }
        };
        let before = conn.held();
        let over = conn.segment(dir, seg, time_us, &self.limits, &mut self.counters, out);
        self.held = self.held - before + conn.held();
        if over {
            if let Some(conn) = self.conns.remove(&key) {
                self.held -= conn.held();
            }
            self.counters.streams_closed += 1;
        }
        while self.conns.len() > self.limits.max_streams || self.held > self.limits.max_total {
            self.pop_front();
            self.counters.streams_dropped += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::*;

    fn packet(from: u16, to: u16, seq: u32, flags: &str, payload: &[u8]) -> Vec<u8> {
        let mut b = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 1], 64).tcp(from, to, seq, 1000);
        for f in flags.chars() {
            b = match f {
                'S' => b.syn(),
                'F' => b.fin(),
                'R' => b.rst(),
                'A' => b.ack(0),
                _ => b,
            };
        }
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn the_table_keeps_the_most_recently_active_connections() {
        let mut r = Reassembler::new(Limits {
            max_streams: 2,
            ..Limits::default()
        });
        let mut out = Vec::new();
        for (t, port) in [(1, 1000), (2, 1001), (3, 1000), (4, 1002)] {
            r.packet(t, LinkType::RawIp, &packet(port, 80, 0, "", b"x"), &mut out);
        }
        assert_eq!(r.streams(), 2);
        assert_eq!(r.counters().streams_dropped, 1);
        // 1001 was dropped: 1000 is still known (no new stream opened for it).
        r.packet(5, LinkType::RawIp, &packet(1000, 80, 1, "", b"y"), &mut out);
        assert_eq!(r.counters().streams_opened, 3);
    }

    #[test]
    fn idle_connections_expire_and_bare_acks_open_nothing() {
        let mut r = Reassembler::new(Limits::default());
        let mut out = Vec::new();
        r.packet(0, LinkType::RawIp, &packet(1000, 80, 0, "", b"x"), &mut out);
        r.packet(1, LinkType::RawIp, &packet(1001, 80, 0, "A", b""), &mut out);
        assert_eq!(r.streams(), 1);
        r.packet(
            IDLE_US + 1,
            LinkType::RawIp,
            &packet(1002, 80, 0, "R", b""),
            &mut out,
        );
        assert_eq!(r.streams(), 0);
        assert_eq!(r.counters().streams_expired, 1);
    }

    #[test]
    fn fin_both_ways_or_rst_closes() {
        let mut r = Reassembler::new(Limits::default());
        let mut out = Vec::new();
        r.packet(0, LinkType::RawIp, &packet(1000, 80, 0, "S", b""), &mut out);
        r.packet(
            0,
            LinkType::RawIp,
            &packet(80, 1000, 50, "SA", b""),
            &mut out,
        );
        r.packet(
            0,
            LinkType::RawIp,
            &packet(1000, 80, 1, "FA", b""),
            &mut out,
        );
        assert_eq!(r.streams(), 1);
        r.packet(
            0,
            LinkType::RawIp,
            &packet(80, 1000, 51, "FA", b""),
            &mut out,
        );
        assert_eq!(r.streams(), 0);
        r.packet(
            0,
            LinkType::RawIp,
            &packet(1000, 80, 2, "A", b"late"),
            &mut out,
        );
        r.packet(0, LinkType::RawIp, &packet(80, 1000, 2, "R", b""), &mut out);
        assert_eq!(r.streams(), 0);
        assert_eq!(r.counters().streams_closed, 2);
    }
}
