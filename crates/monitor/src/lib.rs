//! banhammer-monitor: the traffic monitor's state, statistics, alerts and views.
//!
//! Sources (packet capture, pcap files, access logs) are translated by the binary into
//! [`Observation`]s; an [`App`] counts them per section and interval, keeps summary statistics,
//! and raises the high-traffic alert through the core engine's global scope. [`App::advance`]
//! is driven by a clock (wall time live, event time in replays): reports, alerts and
//! recoveries come out in time order, with no traffic needed for a recovery. Views render an
//! `App` or its outputs: plain text, JSON lines, and a ratatui TUI.
#![warn(clippy::pedantic)]
// Counts shown as rates and percentages: f64 precision is plenty for display.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
#![allow(clippy::must_use_candidate, clippy::module_name_repetitions)]

mod app;
mod messages;
mod rate;
mod stats;
mod text;
pub mod tui;
mod view;

use std::net::IpAddr;

use banhammer_core::Timestamp;

pub use app::{Alert, AlertKind, App, MonitorConfig, NoTraffic, Output, Report};
pub use messages::Messages;
pub use rate::PerSecond;
pub use stats::{Counter, Stats};
pub use text::{alert_line, no_traffic_line, render_plain, to_json, to_web_json};
pub use view::{Key, Outcome, Panel, Sort, ViewState};

/// An HTTP request seen on the wire or in a log. Its text is shown as it is by every view: the
/// source hands it over printable (the binary escapes control characters with
/// `banhammer_sink::escape`, which this crate, depending only on the core, cannot call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// When.
    pub time: Timestamp,
    /// Who sent it.
    pub client: IpAddr,
    /// The `Host` header or the log's virtual host.
    pub host: Option<String>,
    /// The method.
    pub method: Option<String>,
    /// The path (a query string is ignored for sections).
    pub path: Option<String>,
}

/// An HTTP response seen on the wire or in a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// When.
    pub time: Timestamp,
    /// The status code.
    pub status: u16,
    /// The body's size, when known.
    pub bytes: Option<u64>,
}

/// What a source reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// A request.
    Request(Hit),
    /// A response.
    Response(Reply),
}

impl Observation {
    /// When it happened.
    pub fn time(&self) -> Timestamp {
        match self {
            Observation::Request(h) => h.time,
            Observation::Response(r) => r.time,
        }
    }
}

/// The section of a request: the URL up to its second `/`, with the host in front
/// (`my.site.com` + `/pages/create` → `my.site.com/pages`; `/` and `/about` are their own
/// sections). The query string and an absolute-form scheme and host are ignored; a
/// `CONNECT`'s authority-form target (`example.com:443`) is a host with no path.
pub fn section(host: Option<&str>, path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    // An absolute-form target (`http://host/path`) carries its own host.
    let (host, path) = match path.split_once("://") {
        Some((scheme, rest))
            if !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphabetic()) =>
        {
            let (h, p) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
            (Some(h), p)
        }
        _ if is_authority(path) => (Some(path), ""),
        _ => (host, path.strip_prefix('/').unwrap_or(path)),
    };
    let first = path.split('/').next().unwrap_or_default();
    let host = host.map_or("", |h| h.strip_suffix(":80").unwrap_or(h));
    format!("{host}/{first}")
}

/// Whether a target is in authority form, `host:port` (only `CONNECT` sends it).
fn is_authority(target: &str) -> bool {
    target.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains('/')
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::section;

    #[test]
    fn a_section_is_the_url_up_to_its_second_slash() {
        assert_eq!(
            section(Some("my.site.com"), "/pages/create"),
            "my.site.com/pages"
        );
        assert_eq!(section(Some("my.site.com"), "/pages"), "my.site.com/pages");
        assert_eq!(section(Some("my.site.com"), "/pages/"), "my.site.com/pages");
        assert_eq!(section(Some("my.site.com"), "/"), "my.site.com/");
        assert_eq!(
            section(Some("my.site.com"), "/api/user?id=3"),
            "my.site.com/api"
        );
        assert_eq!(section(None, "/api/user"), "/api");
        assert_eq!(
            section(Some("x"), "http://my.site.com/pages/create"),
            "my.site.com/pages"
        );
        assert_eq!(section(Some("my.site.com:80"), "/a/b"), "my.site.com/a");
        assert_eq!(
            section(Some("example.com:443"), "example.com:443"),
            "example.com:443/"
        );
        assert_eq!(
            section(Some("x"), "[2001:db8::1]:443"),
            "[2001:db8::1]:443/"
        );
        assert_eq!(section(None, "index.html"), "/index.html");
        assert_eq!(section(None, "/a:1"), "/a:1");
    }
}
