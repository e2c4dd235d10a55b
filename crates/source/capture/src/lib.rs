//! banhammer-capture: HTTP/1.x requests and responses seen on the wire.
//!
//! Packets go through three pure stages, none of which touches libpcap, a clock or a file:
//! decoding (link layer to TCP segment, with etherparse), TCP reassembly per connection and
//! direction (in order, duplicates trimmed, gaps skipped), and HTTP/1.x head parsing (httparse,
//! bodies skipped by length or chunks). [`Reassembler`] ties them together and bounds all its
//! memory by [`Limits`]. With the `live` feature (on by default), [`open_live`] and
//! [`open_file`] feed it from an interface or a pcap/pcapng file through libpcap.
//!
//! ```
//! use banhammer_capture::{Limits, LinkType, Reassembler, Seen};
//!
//! let mut reassembler = Reassembler::new(Limits::default());
//! let mut seen = Vec::new();
//! # let packet: &[u8] = &[];
//! reassembler.packet(1_700_000_000_000_000, LinkType::Ethernet, packet, &mut seen);
//! for s in seen.drain(..) {
//!     if let Seen::Request(r) = s {
//!         println!("{} {} {}", r.client, r.method, r.target);
//!     }
//! }
//! ```
#![warn(clippy::pedantic)]
// Counts and lengths stay far below 2^53 and 2^63.
#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
// Plain accessors need no #[must_use]; errors are documented on the error type.
#![allow(clippy::must_use_candidate, clippy::missing_errors_doc)]
// `LinkType`, `Limits`, `CaptureError`: names that read well from outside the crate.
#![allow(clippy::module_name_repetitions)]

mod chunked;
mod decode;
mod error;
mod http;
#[cfg(feature = "live")]
mod live;
mod reassembler;
mod seen;
mod stream;

pub use decode::LinkType;
pub use error::CaptureError;
#[cfg(feature = "live")]
pub use live::{open_file, open_live, FileCapture, KernelStats, LiveCapture};
pub use reassembler::{Counters, Limits, Reassembler, IDLE_US};
pub use seen::{HttpRequest, HttpResponse, Seen};
