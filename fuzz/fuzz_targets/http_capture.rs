//! Fuzzes the capture pipeline: any bytes, as one packet of every link type, give requests,
//! responses or nothing, never a panic.
#![no_main]
use banhammer_capture::{Limits, LinkType, Reassembler};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut r = Reassembler::new(Limits::default());
    for link in LinkType::ALL {
        r.packet(0, link, data, &mut Vec::new());
    }
});
