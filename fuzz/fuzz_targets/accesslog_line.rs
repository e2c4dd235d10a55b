//! Fuzzes the access-log parser with every format: any bytes give a line or an error, never a
//! panic.
#![no_main]
use banhammer_accesslog::{parse, CustomFormat, LogFormat};

const CUSTOM: &str = r#"$host $remote_addr [$time_iso8601] "$request" $status $bytes_sent "$http_user_agent" $msec $uri?$args"#;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let custom = LogFormat::Custom(CustomFormat::parse(CUSTOM).expect("a valid format"));
    for format in [
        LogFormat::Common,
        LogFormat::Combined,
        LogFormat::Csv,
        custom,
    ] {
        let _ = parse(data, &format);
    }
});
