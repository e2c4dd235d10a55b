//! Fuzzes the configuration reader: any text gives a config or located errors, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = banhammer_config::Config::parse(text, "fuzz.toml");
    }
});
