//! Errors of the libpcap shell: opening an interface or a file, the filter, reading.

use std::path::PathBuf;

/// Why a capture could not be opened or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// Capturing needs root or `CAP_NET_RAW` (and `CAP_NET_ADMIN` for some interfaces).
    #[error(
        "no permission to capture on {interface}: {message} (run as root or grant CAP_NET_RAW)"
    )]
    PermissionDenied {
        /// The interface asked for.
        interface: String,
        /// libpcap's message.
        message: String,
    },
    /// The interface could not be opened (no such device, down, …).
    #[error("cannot capture on {interface}: {message}")]
    Open {
        /// The interface asked for.
        interface: String,
        /// libpcap's message.
        message: String,
    },
    /// The BPF filter did not compile.
    #[error("bad capture filter {filter:?}: {message}")]
    Filter {
        /// The filter as given.
        filter: String,
        /// libpcap's message.
        message: String,
    },
    /// The file is missing or is not a pcap or pcapng file libpcap can read.
    #[error("cannot read {}: {message}", path.display())]
    File {
        /// The file asked for.
        path: PathBuf,
        /// libpcap's message.
        message: String,
    },
    /// The interface or file has a link layer we do not decode.
    #[error("unsupported link type (DLT {0})")]
    LinkType(i32),
    /// Reading packets failed after opening (interface gone, file cut short).
    #[error("reading packets: {0}")]
    Read(String),
}
