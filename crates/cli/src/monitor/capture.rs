//! Packet sources for the monitor (live capture and pcap files): not built yet.

use anyhow::anyhow;

use super::sources::Source;
use super::MonitorOptions;

pub(super) fn open(_opts: &MonitorOptions) -> anyhow::Result<Box<dyn Source>> {
    Err(anyhow!(
        "packet capture is not available yet: use --log FILE"
    ))
}
