//! Parser tests: every format, real lines, escapes, IPv6, malformed lines, and properties.

use proptest::prelude::*;

use super::*;
use crate::format::FormatError;

fn combined(line: &str) -> Result<AccessLogLine<'_>, LineError> {
    parse(line.as_bytes(), &LogFormat::combined())
}

#[test]
fn reads_the_challenge_log_format() {
    let l = combined(
        r#"163.15.145.50 - - [31/Dec/2018:23:55:00 +0800] "GET /fresh HTTP/1.1" 200 2059 "" """#,
    )
    .unwrap();
    assert_eq!(l.client, "163.15.145.50".parse::<IpAddr>().unwrap());
    assert_eq!(l.time, Timestamp::from_unix(1_546_271_700));
    assert_eq!(
        (l.method, l.path, l.query, l.protocol),
        (Some("GET"), Some("/fresh"), None, Some("HTTP/1.1"))
    );
    assert_eq!((l.status, l.bytes), (Some(200), Some(2059)));
    assert_eq!(
        (l.ident, l.user, l.referer, l.user_agent),
        (None, None, None, None)
    );
}

#[test]
fn reads_every_line_of_the_challenge_head() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../tests/data/access-head-3739.log"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let format = LogFormat::combined();
    let lines: Vec<AccessLogLine<'_>> = text
        .lines()
        .map(|l| parse(l.as_bytes(), &format).unwrap())
        .collect();
    assert_eq!(lines.len(), 3740);
    assert_eq!(lines[0].time, Timestamp::from_unix(1_546_271_700));
    assert_eq!(
        lines.last().unwrap().time,
        Timestamp::from_unix(1_546_272_895)
    );
    assert_eq!(
        lines.iter().filter(|l| l.path == Some("/login")).count(),
        428
    );
}

#[test]
fn reads_nginx_combined_with_query_referer_agent_and_escapes() {
    let l = combined(
        r#"2001:db8::1 - alice [10/Oct/2000:13:55:36 -0700] "POST /login?next=%2F HTTP/2.0" 401 0 "https://example.com/a b" "curl/8.0 \"quoted\" \x5Cpath""#,
    )
    .unwrap();
    assert_eq!(l.client, "2001:db8::1".parse::<IpAddr>().unwrap());
    assert_eq!(l.user, Some("alice"));
    assert_eq!(l.time, Timestamp::from_unix(971_211_336));
    assert_eq!((l.path, l.query), (Some("/login"), Some("next=%2F")));
    assert_eq!(l.referer.as_deref(), Some("https://example.com/a b"));
    assert_eq!(l.user_agent.as_deref(), Some(r#"curl/8.0 "quoted" \path"#));
    assert!(
        matches!(l.referer, Some(Cow::Borrowed(_))),
        "no copy when nothing is escaped"
    );
}

#[test]
fn reads_common_lines_also_under_combined() {
    let line = r#"::1 - - [01/Jan/2019:00:00:00 +0000] "GET / HTTP/1.1" 200 -"#;
    for format in [LogFormat::common(), LogFormat::combined()] {
        let l = parse(line.as_bytes(), &format).unwrap();
        assert_eq!(l.time, Timestamp::from_unix(1_546_300_800));
        assert_eq!(l.bytes, None);
    }
    assert!(matches!(
        parse(
            format!("{line} \"r\" \"ua\"").as_bytes(),
            &LogFormat::common()
        ),
        Err(LineError::Trailing(_))
    ));
}

#[test]
fn odd_request_lines_still_give_a_line() {
    for req in [
        "-",
        "\\x16\\x03\\x01\\x00",
        "GET",
        "get / HTTP/1.1",
        "GET / FTP/1.0 extra",
    ] {
        let line = format!("1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] \"{req}\" 400 0 \"-\" \"-\"");
        let l = combined(&line).unwrap();
        assert_eq!((l.method, l.path), (None, None), "{req}");
        assert_eq!(l.request, req);
    }
    let l = combined(r#"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] "GET http://x.example/login?a=1 HTTP/1.1" 200 1 "" """#).unwrap();
    assert_eq!(
        (l.path, l.query),
        (Some("/login"), Some("a=1")),
        "absolute-form targets"
    );
}

#[test]
fn custom_formats_follow_the_nginx_syntax() {
    let f = LogFormat::from_setting(
        r#"$host $remote_addr [$time_iso8601] "$request_method $request_uri $server_protocol" $status $body_bytes_sent $request_time "$http_user_agent""#,
    )
    .unwrap();
    let l = parse(
        br#"shop.example 10.0.0.9 [2018-12-31T23:55:00+08:00] "GET /cart?id=3 HTTP/1.1" 302 0 0.004 "Mozilla/5.0 (X11)""#,
        &f,
    )
    .unwrap();
    assert_eq!(l.host, Some("shop.example"));
    assert_eq!(l.time, Timestamp::from_unix(1_546_271_700));
    assert_eq!(
        (l.method, l.path, l.query),
        (Some("GET"), Some("/cart"), Some("id=3"))
    );
    assert_eq!(l.user_agent.as_deref(), Some("Mozilla/5.0 (X11)"));
    let msec = LogFormat::custom("$msec $remote_addr $uri").unwrap();
    let l = parse(b"1546271700.123 10.0.0.9 /x", &msec).unwrap();
    assert_eq!(
        (l.time, l.path),
        (Timestamp::from_unix(1_546_271_700), Some("/x"))
    );
}

#[test]
fn bad_format_strings_say_why() {
    assert_eq!(
        LogFormat::custom("$remote_addr$status").unwrap_err(),
        FormatError::Adjacent(13)
    );
    assert_eq!(
        LogFormat::custom("$remote_addr $ x").unwrap_err(),
        FormatError::EmptyVariable(14)
    );
    assert_eq!(
        LogFormat::custom("$remote_addr $status").unwrap_err(),
        FormatError::MissingField
    );
    assert!(matches!(
        LogFormat::from_setting("apache2"),
        Err(FormatError::Unknown(_))
    ));
}

#[test]
fn reads_the_csv_export() {
    let f = LogFormat::csv();
    assert_eq!(
        parse(
            br#""remotehost","rfc931","authuser","date","request","status","bytes""#,
            &f
        ),
        Err(LineError::Header)
    );
    let l = parse(
        br#""10.0.0.2","-","apache",1549573860,"GET /api/user HTTP/1.0",200,1234"#,
        &f,
    )
    .unwrap();
    assert_eq!(l.client, "10.0.0.2".parse::<IpAddr>().unwrap());
    assert_eq!(l.user, Some("apache"));
    assert_eq!(l.time, Timestamp::from_unix(1_549_573_860));
    assert_eq!(
        (l.path, l.status, l.bytes),
        (Some("/api/user"), Some(200), Some(1234))
    );
}

#[test]
fn malformed_lines_say_what_and_where() {
    let cases: [(&[u8], &str); 9] = [
        (b"", "empty line"),
        (b"\xff\xfe", "line is not UTF-8"),
        (
            b"999.1.1.1 - - [01/Jan/2019:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1",
            "`999.1.1.1` is not an IP address (column 1)",
        ),
        (
            b"1.2.3.4 - - 01/Jan/2019:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1",
            "expected `[` at column 13",
        ),
        (
            b"1.2.3.4 - - [01/Foo/2019:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1",
            "`01/Foo/2019:00:00:00 +0000` is not a valid time (column 14)",
        ),
        (
            b"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] \"GET / HTTP/1.1 200 1",
            "unterminated quoted field starting at column 42",
        ),
        (
            b"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] \"GET / HTTP/1.1\" 2x0 1",
            "`2x0` is not a valid status (column 59)",
        ),
        (
            b"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1 \"a\" \"b\" extra",
            "unexpected text after the last field at column 72",
        ),
        (b"1.2.3.4", "expected ` ` at column 8"),
    ];
    for (line, why) in cases {
        let err = parse(line, &LogFormat::combined()).unwrap_err();
        assert_eq!(err.to_string(), why, "{}", String::from_utf8_lossy(line));
    }
    let long = vec![b'a'; MAX_LINE + 10];
    assert_eq!(
        parse(&long, &LogFormat::combined()),
        Err(LineError::TooLong)
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        for f in [LogFormat::common(), LogFormat::combined(), LogFormat::csv()] {
            let _ = parse(&bytes, &f);
        }
    }

    #[test]
    fn near_valid_lines_never_panic(
        cut in 0usize..90,
        byte in any::<u8>(),
    ) {
        let mut line = br#"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] "GET /a?b HTTP/1.1" 200 5 "r\"" "u""#.to_vec();
        let at = cut.min(line.len() - 1);
        line[at] = byte;
        let _ = parse(&line, &LogFormat::combined());
        let _ = parse(&line[..at], &LogFormat::combined());
    }

    #[test]
    fn rendered_records_read_back(
        ip in any::<[u8; 4]>(),
        secs in 0i64..4_000_000_000,
        path in "/[a-z0-9/._-]{0,20}",
        query in proptest::option::of("[a-z0-9=&]{1,10}"),
        status in 100u16..600,
        bytes in proptest::option::of(any::<u32>()),
        agent in "[ -~]{0,30}",
    ) {
        let ip = IpAddr::from(ip);
        let target = match &query { Some(q) => format!("{path}?{q}"), None => path.clone() };
        let escaped: String = agent.chars().map(|c| match c { '"' => "\\\"".to_owned(), '\\' => "\\\\".to_owned(), c => c.to_string() }).collect();
        let line = format!(
            "{ip} - - [{}] \"GET {target} HTTP/1.1\" {status} {} \"-\" \"{escaped}\"",
            clf(secs),
            bytes.map_or("-".to_owned(), |b| b.to_string()),
        );
        let l = combined(&line).unwrap();
        prop_assert_eq!(l.client, ip);
        prop_assert_eq!(l.time, Timestamp::from_unix(secs));
        prop_assert_eq!(l.path, Some(path.as_str()));
        prop_assert_eq!(l.query, query.as_deref());
        prop_assert_eq!(l.status, Some(status));
        prop_assert_eq!(l.bytes, bytes.map(u64::from));
        prop_assert_eq!(l.user_agent.as_deref(), (!agent.is_empty() && agent != "-").then_some(agent.as_str()));
    }
}

/// Formats unix seconds as a common-log time in UTC (civil-from-days, the inverse of `civil`).
fn clf(secs: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{day:02}/{}/{year:04}:{:02}:{:02}:{:02} +0000",
        MONTHS[usize::try_from(month - 1).unwrap()],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
