//! The libpcap shell: live capture on an interface and pcap/pcapng files, each feeding a
//! [`Reassembler`](crate::Reassembler).

use std::path::Path;

use crate::error::CaptureError;
use crate::{Counters, Limits, LinkType, Reassembler, Seen};

/// Bytes kept of each packet: whole packets, including 64 KiB loopback and GSO ones.
const SNAPLEN: i32 = 262_144;
/// Kernel buffer for packets not yet read.
const BUFFER_BYTES: i32 = 16 << 20;
/// How long a live read waits for packets before `next_batch` returns empty-handed.
const READ_TIMEOUT_MS: i32 = 100;
/// `READ_TIMEOUT_MS`, for `poll`.
const READ_TIMEOUT: rustix::event::Timespec = rustix::event::Timespec {
    tv_sec: 0,
    tv_nsec: 100_000_000,
};
/// A live batch ends once it spans this much packet time, so steady traffic still returns.
const BATCH_SPAN_US: i64 = 100_000;
/// Packets read per batch at most.
const MAX_BATCH: usize = 4096;

/// Packet counts from the kernel (`pcap_stats`), since the capture opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KernelStats {
    /// Packets that passed the filter.
    pub received: u64,
    /// Packets dropped because the buffer was full (we read too slowly).
    pub dropped: u64,
    /// Packets dropped by the interface or its driver.
    pub if_dropped: u64,
}

/// A live capture on one interface.
pub struct LiveCapture {
    capture: pcap::Capture<pcap::Active>,
    link: LinkType,
    reassembler: Reassembler,
}

impl std::fmt::Debug for LiveCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCapture")
            .field("link", &self.link)
            .field("reassembler", &self.reassembler)
            .finish_non_exhaustive()
    }
}

/// Opens `interface` (`"any"`, `"lo"`, `"eth0"`, …) for capture, not promiscuous, keeping the
/// packets that match `bpf_filter` (tcpdump syntax; empty for all).
pub fn open_live(
    interface: &str,
    bpf_filter: &str,
    limits: Limits,
) -> Result<LiveCapture, CaptureError> {
    let open_error = |e: pcap::Error| {
        let message = e.to_string();
        let lower = message.to_ascii_lowercase();
        if lower.contains("permission") || lower.contains("not permitted") {
            CaptureError::PermissionDenied {
                interface: interface.to_owned(),
                message,
            }
        } else {
            CaptureError::Open {
                interface: interface.to_owned(),
                message,
            }
        }
    };
    // Immediate mode stays off: on Linux it means TPACKET_V2, whose ring spends a frame of
    // `SNAPLEN` bytes on every packet (64 packets in 16 MiB), where TPACKET_V3 packs packets
    // into blocks that the kernel hands over when full or after the timeout (at most 100 ms
    // late). Non-blocking, waited on with `poll`: libpcap's timeout only runs once a packet
    // has arrived, so a blocking read on a quiet interface would never return.
    let mut capture = pcap::Capture::from_device(interface)
        .map_err(open_error)?
        .promisc(false)
        .snaplen(SNAPLEN)
        .buffer_size(BUFFER_BYTES)
        .timeout(READ_TIMEOUT_MS)
        .open()
        .map_err(open_error)?
        .setnonblock()
        .map_err(open_error)?;
    set_filter(&mut capture, bpf_filter)?;
    let dlt = capture.get_datalink().0;
    let link = LinkType::from_dlt(dlt).ok_or(CaptureError::LinkType(dlt))?;
    Ok(LiveCapture {
        capture,
        link,
        reassembler: Reassembler::new(limits),
    })
}

impl LiveCapture {
    /// Reads what has arrived and appends the requests and responses it completes to `out`.
    /// Returns after the read timeout (100 ms) when nothing comes, and after about 100 ms of
    /// packets (or 4096 packets) when traffic keeps coming.
    pub fn next_batch(&mut self, out: &mut Vec<Seen>) -> Result<(), CaptureError> {
        let mut first_us = None;
        let mut waited = false;
        for _ in 0..MAX_BATCH {
            match self.capture.next_packet() {
                Ok(packet) => {
                    let time_us = packet_time_us(packet.header.ts.tv_sec, packet.header.ts.tv_usec);
                    self.reassembler
                        .packet(time_us, self.link, packet.data, out);
                    if time_us - *first_us.get_or_insert(time_us) >= BATCH_SPAN_US {
                        break;
                    }
                }
                // Non-blocking: nothing waiting now. Wait once, unless packets came already.
                Err(pcap::Error::TimeoutExpired) => {
                    if first_us.is_some() || waited || !self.wait()? {
                        break;
                    }
                    waited = true;
                }
                Err(e) => return Err(CaptureError::Read(e.to_string())),
            }
        }
        Ok(())
    }

    /// Waits up to the read timeout for packets; returns whether some may be there.
    fn wait(&self) -> Result<bool, CaptureError> {
        use rustix::event::{poll, PollFd, PollFlags};
        let mut fds = [PollFd::new(&self.capture, PollFlags::IN)];
        match poll(&mut fds, Some(&READ_TIMEOUT)) {
            Ok(ready) => Ok(ready > 0),
            Err(rustix::io::Errno::INTR) => Ok(false),
            Err(e) => Err(CaptureError::Read(format!("waiting for packets: {e}"))),
        }
    }

    /// The kernel's packet counts.
    pub fn stats(&mut self) -> Result<KernelStats, CaptureError> {
        let stat = self
            .capture
            .stats()
            .map_err(|e| CaptureError::Read(e.to_string()))?;
        Ok(KernelStats {
            received: u64::from(stat.received),
            dropped: u64::from(stat.dropped),
            if_dropped: u64::from(stat.if_dropped),
        })
    }

    /// The reassembler's counts.
    pub fn counters(&self) -> &Counters {
        self.reassembler.counters()
    }

    /// The interface's link layer.
    pub fn link_type(&self) -> LinkType {
        self.link
    }
}

/// A pcap or pcapng file read through libpcap, in packet time.
pub struct FileCapture {
    capture: pcap::Capture<pcap::Offline>,
    link: LinkType,
    reassembler: Reassembler,
}

impl std::fmt::Debug for FileCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCapture")
            .field("link", &self.link)
            .field("reassembler", &self.reassembler)
            .finish_non_exhaustive()
    }
}

/// Opens a pcap or pcapng file (one link type per file, as libpcap reads them).
pub fn open_file(path: impl AsRef<Path>, limits: Limits) -> Result<FileCapture, CaptureError> {
    let path = path.as_ref();
    let capture = pcap::Capture::from_file(path).map_err(|e| CaptureError::File {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let dlt = capture.get_datalink().0;
    let link = LinkType::from_dlt(dlt).ok_or(CaptureError::LinkType(dlt))?;
    Ok(FileCapture {
        capture,
        link,
        reassembler: Reassembler::new(limits),
    })
}

impl FileCapture {
    /// Keeps only the packets that match `bpf_filter` (tcpdump syntax), compiled by libpcap
    /// for the file's link type; set before reading.
    pub fn set_filter(&mut self, bpf_filter: &str) -> Result<(), CaptureError> {
        set_filter(&mut self.capture, bpf_filter)
    }

    /// Reads up to 4096 packets and appends the requests and responses they complete to
    /// `out`. Returns whether more packets may follow (`false` at the end of the file).
    pub fn next_batch(&mut self, out: &mut Vec<Seen>) -> Result<bool, CaptureError> {
        for _ in 0..MAX_BATCH {
            match self.capture.next_packet() {
                Ok(packet) => {
                    let time_us = packet_time_us(packet.header.ts.tv_sec, packet.header.ts.tv_usec);
                    self.reassembler
                        .packet(time_us, self.link, packet.data, out);
                }
                Err(pcap::Error::NoMorePackets) => return Ok(false),
                Err(e) => return Err(CaptureError::Read(e.to_string())),
            }
        }
        Ok(true)
    }

    /// The reassembler's counts.
    pub fn counters(&self) -> &Counters {
        self.reassembler.counters()
    }

    /// The file's link layer.
    pub fn link_type(&self) -> LinkType {
        self.link
    }
}

/// Compiles `bpf_filter` for `capture` and applies it.
fn set_filter<T: pcap::Activated + ?Sized>(
    capture: &mut pcap::Capture<T>,
    bpf_filter: &str,
) -> Result<(), CaptureError> {
    capture
        .filter(bpf_filter, true)
        .map_err(|e| CaptureError::Filter {
            filter: bpf_filter.to_owned(),
            message: e.to_string(),
        })
}

/// A libpcap timestamp in microseconds since the Unix epoch (libpcap scales nanosecond files
/// to microseconds when it opens them). Generic because `time_t` and `suseconds_t` are i64
/// on 64-bit Linux but i32 elsewhere.
fn packet_time_us(sec: impl Into<i64>, usec: impl Into<i64>) -> i64 {
    sec.into()
        .saturating_mul(1_000_000)
        .saturating_add(usec.into())
}
