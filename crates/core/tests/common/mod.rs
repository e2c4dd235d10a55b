//! What the memory tests share: resident memory read from `/proc`, and tokens that look like
//! IPv4 addresses.

/// Resident set size of this process, from `/proc/self/status`.
pub(crate) fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// An IPv4-looking token for `i`, written into `buf`.
pub(crate) fn token(i: u32, buf: &mut String) -> &str {
    use std::fmt::Write;
    buf.clear();
    let [a, b, c, d] = i.to_be_bytes();
    write!(buf, "{}.{b}.{c}.{d}", a.wrapping_add(10)).unwrap();
    buf
}
