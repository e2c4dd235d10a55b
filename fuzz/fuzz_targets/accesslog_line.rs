//! Fuzzes the access-log parser with every format: it must never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for format in [banhammer_accesslog::LogFormat::common(), banhammer_accesslog::LogFormat::combined(), banhammer_accesslog::LogFormat::csv()] {
        let _ = banhammer_accesslog::parse(data, &format);
    }
});
