//! banhammer-accesslog: access logs as a source of events.
//!
//! The parser ([`parse`]) is pure, total and bounded: bytes in, an [`AccessLogLine`] or a
//! [`LineError`] out, for Apache/nginx common and combined logs, nginx-style format strings
//! and the CSV export. Around it: reading inputs (plain, gzip, stdin) line by line without
//! unbounded memory, following a live file like `tail -F`, and turning lines into the
//! engine's events per the `[accesslog]` settings. [`LinePipeline`] is the per-line loop every
//! front end shares (parse, skip headers, count and report malformed lines, map to events),
//! and [`Reorder`] puts lines back in time order, within a bounded delay, for the event-time
//! modes.
#![warn(clippy::pedantic)]
// Byte offsets and counts are far below 2^53 and 2^32.
#![allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
#![allow(
    clippy::must_use_candidate,
    clippy::missing_errors_doc,
    clippy::module_name_repetitions
)]
// Date arithmetic reads best with the short names of its formulas (y, m, d, h).
#![allow(clippy::many_single_char_names)]

mod client;
mod error;
mod events;
mod follow;
mod format;
pub mod input;
mod lines;
mod parse;
mod pipeline;
mod reorder;
mod time;

pub use client::{is_host_name, Client, MAX_HOST_NAME};
pub use error::{LineError, Near, Snippet};
pub use events::LineEvents;
pub use follow::{Fingerprint, FollowedLine, Follower, Notice, Position};
pub use format::{CustomFormat, FormatError, LogFormat};
pub use lines::{BoundedLine, BoundedLines, Counted};
pub use parse::{parse, AccessLogLine, MAX_LINE};
pub use pipeline::{
    FormatChosen, LateLine, LinePipeline, Malformed, Note, ReportPolicy, TokenLine,
};
pub use reorder::{Late, Reorder, DEFAULT_MAX_BUFFERED, DEFAULT_MAX_DELAY};
