//! The capture crate's one integration binary.
//!
//! Contents:
//! - `support`: connections framed for every link type, pcap/pcapng writers, short renderings.
//! - `flows`: packets fed straight to a `Reassembler` (no libpcap): splitting, pipelining,
//!   keep-alive, link types, IPv6, VLANs, reordering, loss, connections already open, garbage.
//! - `proptests`: any input never panics or exceeds the limits; cut and reordered request
//!   streams come out exactly.
//! - `files` (feature `live`): the same traffic written to pcap and pcapng files and read back
//!   through libpcap with `open_file`.
//! - `live` (feature `live`): a real HTTP/1.1 server and client on loopback, captured with
//!   `open_live` (needs root, as CI runs).

mod flows;
mod proptests;
mod support;

#[cfg(feature = "live")]
mod files;
#[cfg(feature = "live")]
mod live;
