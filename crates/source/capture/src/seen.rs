//! What the capture reports: HTTP request and response heads, with the packet time and the
//! two ends of the connection.

use std::net::IpAddr;

/// An HTTP/1.x request head seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Time of the packet that completed the head, in microseconds since the Unix epoch.
    pub time_us: i64,
    /// The side that sent the request.
    pub client: IpAddr,
    /// The client's TCP port.
    pub client_port: u16,
    /// The side that received it.
    pub server: IpAddr,
    /// The server's TCP port.
    pub server_port: u16,
    /// The method as sent (`GET`, `POST`, …).
    pub method: String,
    /// The request target as sent: `path?query`, or the absolute form through a proxy.
    pub target: String,
    /// The `Host` header, when there is one (the first, if repeated).
    pub host: Option<String>,
}

/// An HTTP/1.x response head seen on the wire (interim `1xx` responses other than `101` are
/// not reported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Time of the packet that completed the head, in microseconds since the Unix epoch.
    pub time_us: i64,
    /// The side that receives the response.
    pub client: IpAddr,
    /// The side that sent it.
    pub server: IpAddr,
    /// The status code.
    pub status: u16,
    /// The body length from `Content-Length`, when the response has one.
    pub bytes: Option<u64>,
}

/// One thing seen on the wire, in the order the packets completed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A request head.
    Request(HttpRequest),
    /// A response head.
    Response(HttpResponse),
}
