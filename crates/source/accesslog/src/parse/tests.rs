//! Parser tests: every format, real lines, IPv6, escapes, odd request lines, malformed lines
//! and their messages, the length cap, and properties (no panics, render → parse round trip).

use std::fmt::Write as _;
use std::net::IpAddr;

use proptest::prelude::*;

use super::*;
use crate::format::CustomFormat;

fn combined(line: &str) -> Result<AccessLogLine<'_>, LineError> {
    parse(line.as_bytes(), &LogFormat::Combined)
}

fn custom(spec: &str) -> LogFormat {
    LogFormat::Custom(CustomFormat::parse(spec).unwrap())
}

fn addr(s: &str) -> Client<'static> {
    Client::from(s.parse::<IpAddr>().unwrap())
}

/// The challenge log's first 20 lines, as written (referer and agent empty: `""`).
const CHALLENGE_HEAD: &str = r#"163.15.145.50 - - [31/Dec/2018:23:55:00 +0800] "GET /fresh HTTP/1.1" 200 2059 "" ""
58.236.203.13 - - [31/Dec/2018:23:55:00 +0800] "GET /gag/6283296 HTTP/1.1" 200 1657 "" ""
163.171.37.32 - - [31/Dec/2018:23:55:00 +0800] "HEAD /gag/4558218 HTTP/1.1" 200 1739 "" ""
204.79.242.166 - - [31/Dec/2018:23:55:01 +0800] "GET /fresh HTTP/1.1" 200 3074 "" ""
22.28.230.69 - - [31/Dec/2018:23:55:01 +0800] "GET /upload HTTP/1.1" 200 2515 "" ""
89.58.128.244 - - [31/Dec/2018:23:55:01 +0800] "GET /explore HTTP/1.1" 200 1369 "" ""
187.64.208.82 - - [31/Dec/2018:23:55:01 +0800] "GET /gag/4172384 HTTP/1.1" 200 2211 "" ""
7.143.180.51 - - [31/Dec/2018:23:55:02 +0800] "GET /login HTTP/1.1" 200 2963 "" ""
141.52.6.23 - - [31/Dec/2018:23:55:02 +0800] "GET /fresh HTTP/1.1" 200 2856 "" ""
7.83.194.86 - - [31/Dec/2018:23:55:02 +0800] "GET /trending HTTP/1.1" 200 798 "" ""
86.75.238.26 - - [31/Dec/2018:23:55:03 +0800] "GET /settings HTTP/1.1" 200 1468 "" ""
54.62.130.101 - - [31/Dec/2018:23:55:03 +0800] "GET /settings HTTP/1.1" 200 2898 "" ""
91.36.84.94 - - [31/Dec/2018:23:55:04 +0800] "GET /search HTTP/1.1" 200 1325 "" ""
195.25.53.14 - - [31/Dec/2018:23:55:04 +0800] "GET /login HTTP/1.1" 301 3888 "" ""
91.36.84.94 - - [31/Dec/2018:23:55:04 +0800] "GET /trending HTTP/1.1" 200 1559 "" ""
218.107.197.209 - - [31/Dec/2018:23:55:04 +0800] "GET /search HTTP/1.1" 200 1424 "" ""
58.236.203.13 - - [31/Dec/2018:23:55:05 +0800] "GET /trending HTTP/1.1" 200 2821 "" ""
58.236.203.13 - - [31/Dec/2018:23:55:05 +0800] "GET /settings HTTP/1.1" 200 2627 "" ""
163.171.37.32 - - [31/Dec/2018:23:55:05 +0800] "GET /gag/8651095 HTTP/1.1" 200 204 "" ""
230.177.23.250 - - [31/Dec/2018:23:55:06 +0800] "GET /gag/7239579 HTTP/1.1" 200 2067 "" ""
"#;

#[test]
fn reads_the_challenge_logs_first_lines() {
    let lines: Vec<AccessLogLine<'_>> = CHALLENGE_HEAD
        .lines()
        .map(|l| combined(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 20);
    let first = &lines[0];
    assert_eq!(
        *first,
        AccessLogLine {
            client: addr("163.15.145.50"),
            ident: None,
            user: None,
            time: Timestamp::from_unix(1_546_271_700),
            request: "GET /fresh HTTP/1.1",
            method: Some("GET"),
            path: Some("/fresh"),
            query: None,
            protocol: Some("HTTP/1.1"),
            status: Some(200),
            bytes: Some(2059),
            referer: None,
            user_agent: None,
            host: None,
        }
    );
    assert_eq!(lines[2].method, Some("HEAD"));
    assert_eq!(lines[13].status, Some(301));
    assert_eq!(lines[13].path, Some("/login"));
    assert_eq!(lines[19].time, Timestamp::from_unix(1_546_271_706));
    assert_eq!(lines[19].client, addr("230.177.23.250"));
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.client == addr("58.236.203.13"))
            .count(),
        3
    );
}

#[test]
fn reads_every_line_of_the_challenge_log() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../tests/data/access-head-3739.log"
    );
    let text = std::fs::read(path).unwrap();
    let lines: Vec<AccessLogLine<'_>> = text
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(n, l)| {
            parse(l, &LogFormat::Combined).unwrap_or_else(|e| panic!("line {}: {e}", n + 1))
        })
        .collect();
    // 3,739 newlines and a last line without one: 3,740 lines.
    assert_eq!(lines.len(), 3740);
    assert_eq!(lines[0].time, Timestamp::from_unix(1_546_271_700));
    assert_eq!(lines[3739].time, Timestamp::from_unix(1_546_272_895));
    assert!(lines.windows(2).all(|w| w[0].time <= w[1].time));
    assert_eq!(
        lines.iter().filter(|l| l.path == Some("/login")).count(),
        428
    );
    assert_eq!(
        lines.iter().filter(|l| l.method == Some("POST")).count(),
        587
    );
    assert!(lines.iter().all(|l| l.referer.is_none()
        && l.user_agent.is_none()
        && l.protocol == Some("HTTP/1.1")
        && l.query.is_none()
        && l.status.is_some()
        && l.bytes.is_some()));
}

#[test]
fn reads_nginx_combined_with_query_user_referer_and_agent() {
    let l = combined(
        r#"203.0.113.7 - alice [10/Oct/2000:13:55:36 -0700] "POST /login?next=%2F&x=1 HTTP/2.0" 401 0 "https://example.com/a b" "Mozilla/5.0 (X11; Linux x86_64)""#,
    )
    .unwrap();
    assert_eq!(l.user, Some("alice"));
    assert_eq!(l.time, Timestamp::from_unix(971_211_336));
    assert_eq!(
        (l.method, l.path, l.query, l.protocol),
        (
            Some("POST"),
            Some("/login"),
            Some("next=%2F&x=1"),
            Some("HTTP/2.0")
        )
    );
    assert_eq!((l.status, l.bytes), (Some(401), Some(0)));
    assert_eq!(l.referer, Some(Cow::Borrowed("https://example.com/a b")));
    assert!(
        matches!(
            l.user_agent,
            Some(Cow::Borrowed("Mozilla/5.0 (X11; Linux x86_64)"))
        ),
        "no copy when nothing is escaped"
    );
}

#[test]
fn reads_ipv6_clients() {
    for (written, client) in [
        ("::1", "::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::2]", "2001:db8::2"),
        ("fe80::1:2:3:4", "fe80::1:2:3:4"),
    ] {
        let line =
            format!(r#"{written} - - [01/Jan/2019:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-""#);
        let l = combined(&line).unwrap();
        assert_eq!(l.client, addr(client), "{written}");
        assert!(l.client.ip().unwrap().is_ipv6());
    }
}

#[test]
fn ipv4_mapped_clients_read_as_ipv4() {
    // As Node's morgan and dual-stack sockets log IPv4 clients.
    for written in [
        "::ffff:203.0.113.9",
        "[::ffff:203.0.113.9]",
        "::FFFF:CB00:7109",
    ] {
        let line =
            format!(r#"{written} - - [01/Jan/2019:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-""#);
        let l = combined(&line).unwrap();
        assert_eq!(
            l.client,
            Client::Ip("203.0.113.9".parse().unwrap()),
            "{written}"
        );
    }
    let csv = LogFormat::Csv;
    let l = parse(
        br#""::ffff:10.0.0.2","-","-",1549573860,"GET / HTTP/1.0",200,1"#,
        &csv,
    )
    .unwrap();
    assert_eq!(l.client.to_string(), "10.0.0.2");
}

#[test]
fn host_name_clients_are_read_as_written() {
    // NASA-HTTP, July 1995: Apache with HostnameLookups on.
    let l = combined(
        "in24.inetnebr.com - - [01/Jul/1995:00:00:01 -0400] \
         \"GET /shuttle/missions/sts-68/news/sts-68-mcc-05.txt HTTP/1.0\" 200 1839",
    )
    .unwrap();
    assert_eq!(l.client, Client::Host("in24.inetnebr.com"));
    assert_eq!(l.time, Timestamp::from_unix(804_571_201));
    assert_eq!(
        l.path,
        Some("/shuttle/missions/sts-68/news/sts-68-mcc-05.txt")
    );
    let l = combined(r#"Uplherc.UPL.com - - [01/Jul/1995:00:00:07 -0400] "GET / HTTP/1.0" 304 0"#)
        .unwrap();
    assert_eq!(l.client, Client::Host("Uplherc.UPL.com"));
}

#[test]
fn comment_lines_are_told_apart_from_malformed_ones() {
    for line in ["#Version: 1.0", "#Fields: date time c-ip", "# a note", "#"] {
        assert_eq!(combined(line), Err(LineError::Comment), "{line}");
        assert_eq!(
            parse(line.as_bytes(), &LogFormat::Csv),
            Err(LineError::Comment)
        );
    }
    // A format that starts with `#` still reads its lines.
    let f = custom("#$remote_addr [$time_local]");
    let l = parse(b"#1.2.3.4 [01/Jan/2019:00:00:00 +0000]", &f).unwrap();
    assert_eq!(l.client, addr("1.2.3.4"));
    assert_eq!(combined(" "), Err(LineError::Empty));
}

#[test]
fn unescapes_quoted_fields_as_apache_and_nginx_write_them() {
    let line = |referer: &str, agent: &str| {
        format!(
            r#"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "{referer}" "{agent}""#
        )
    };
    for (agent, want) in [
        // Apache: \" and \\.
        (
            r#"curl/8.0 \"quoted\" \\path"#,
            r#"curl/8.0 "quoted" \path"#,
        ),
        // nginx's default escaping: \xHH for ", \, controls and bytes above 0x7e.
        (r"say \x22hi\x22 \x5Cpath", r#"say "hi" \path"#),
        (r"caf\xC3\xA9 \xE2\x9C\x93", "café ✓"),
        // Bytes that do not make UTF-8 become U+FFFD; unknown escapes stay as written.
        (r"bad \xFF byte", "bad \u{FFFD} byte"),
        (r"\q \x4 \xZZ \ end", r"\q \x4 \xZZ \ end"),
        (r"tail\\", r"tail\"),
    ] {
        let text = line("-", agent);
        let l = combined(&text).unwrap();
        assert_eq!(l.user_agent.as_deref(), Some(want), "{agent}");
        assert!(matches!(l.user_agent, Some(Cow::Owned(_))));
    }
    // A `\"` does not end the field; an escaped backslash before the quote does.
    let text = line(r#"http://x/\"a\" b"#, "ua");
    let l = combined(&text).unwrap();
    assert_eq!(l.referer.as_deref(), Some(r#"http://x/"a" b"#));
    assert_eq!(l.user_agent.as_deref(), Some("ua"));
}

#[test]
fn empty_and_dash_referer_and_agent_are_none() {
    for (referer, agent) in [("", ""), ("-", "-"), ("", "-")] {
        let line = format!(
            r#"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "{referer}" "{agent}""#
        );
        let l = combined(&line).unwrap();
        assert_eq!((l.referer, l.user_agent), (None, None));
    }
}

#[test]
fn splits_request_lines_with_and_without_query() {
    for (request, method, path, query, protocol) in [
        ("GET /a/b HTTP/1.1", "GET", "/a/b", None, Some("HTTP/1.1")),
        (
            "GET /a/b?x=1&y HTTP/1.0",
            "GET",
            "/a/b",
            Some("x=1&y"),
            Some("HTTP/1.0"),
        ),
        ("GET /a? HTTP/1.1", "GET", "/a", None, Some("HTTP/1.1")),
        (
            "GET /a?b?c HTTP/1.1",
            "GET",
            "/a",
            Some("b?c"),
            Some("HTTP/1.1"),
        ),
        ("GET /old", "GET", "/old", None, None),
        (
            "PROPFIND * HTTP/1.1",
            "PROPFIND",
            "*",
            None,
            Some("HTTP/1.1"),
        ),
        (
            "M-SEARCH * HTTP/1.1",
            "M-SEARCH",
            "*",
            None,
            Some("HTTP/1.1"),
        ),
        (
            "CONNECT example.com:443 HTTP/1.1",
            "CONNECT",
            "example.com:443",
            None,
            Some("HTTP/1.1"),
        ),
        // The absolute form (proxy probes) gives the path, as nginx's `$uri` does.
        (
            "GET http://x.example/login?a=1 HTTP/1.1",
            "GET",
            "/login",
            Some("a=1"),
            Some("HTTP/1.1"),
        ),
        (
            "GET http://x.example HTTP/1.1",
            "GET",
            "/",
            None,
            Some("HTTP/1.1"),
        ),
        (
            "GET https://x.example?q HTTP/1.1",
            "GET",
            "/",
            Some("q"),
            Some("HTTP/1.1"),
        ),
    ] {
        let line = format!(r#"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] "{request}" 200 1 "" """#);
        let l = combined(&line).unwrap();
        assert_eq!(l.request, request);
        assert_eq!(
            (l.method, l.path, l.query, l.protocol),
            (Some(method), Some(path), query, protocol),
            "{request}"
        );
    }
}

#[test]
fn odd_request_lines_still_give_a_line() {
    for request in [
        "-",
        "",
        // TLS and SSH handshakes as nginx logs them.
        r"\x16\x03\x01\x02\x00\x01\x00\x01\xFC\x03\x03",
        "SSH-2.0-OpenSSH_7.4",
        "GET",
        "GET ",
        "get / HTTP/1.1",
        "GET / FTP/1.0",
        "GET /a b HTTP/1.1",
        "GET  / HTTP/1.1",
        r#"\"GET / HTTP/1.1\""#,
    ] {
        let line = format!(r#"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] "{request}" 400 0 "-" "-""#);
        let l = combined(&line).unwrap();
        assert_eq!(l.request, request);
        assert_eq!(
            (l.method, l.path, l.query, l.protocol),
            (None, None, None, None),
            "{request}"
        );
        assert_eq!(l.status, Some(400));
    }
}

#[test]
fn common_lines_read_under_common_and_combined() {
    let line = r#"::1 - frank [01/Jan/2019:00:00:00 +0000] "GET / HTTP/1.1" 200 -"#;
    for format in [LogFormat::Common, LogFormat::Combined] {
        let l = parse(line.as_bytes(), &format).unwrap();
        assert_eq!(l.time, Timestamp::from_unix(1_546_300_800));
        assert_eq!((l.user, l.bytes, l.referer), (Some("frank"), None, None));
    }
    // Trailing whitespace is no extra field.
    assert!(parse(format!("{line}  \t").as_bytes(), &LogFormat::Common).is_ok());
    assert!(parse(format!("{line} ").as_bytes(), &LogFormat::Combined).is_ok());
    let err = parse(
        format!("{line} \"r\" \"ua\"").as_bytes(),
        &LogFormat::Common,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unexpected text `\"r\" \"ua\"` after the last field at column 65"
    );
    // Half of the combined tail is an error.
    let err = combined(&format!("{line} \"r\"")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected ` \"` before the user agent at column 68"
    );
}

#[test]
fn ident_field_is_kept() {
    let l = combined(r#"1.2.3.4 ident42 - [01/Jan/2019:00:00:00 +0000] "GET / HTTP/1.1" 200 1"#)
        .unwrap();
    assert_eq!((l.ident, l.user), (Some("ident42"), None));
}

#[test]
fn line_ends_are_tolerated() {
    let line = r#"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "" """#;
    for end in ["\n", "\r\n", "\r"] {
        let text = format!("{line}{end}");
        assert_eq!(combined(&text).unwrap().user_agent, None);
    }
}

#[test]
fn custom_formats_read_every_supported_variable() {
    let f = custom(
        r#"$host $remote_addr [$time_iso8601] "$request_method $request_uri $server_protocol" $status $body_bytes_sent $request_time "$http_referer" "$http_user_agent""#,
    );
    let l = parse(
        br#"shop.example 10.0.0.9 [2018-12-31T23:55:00+08:00] "GET /cart?id=3 HTTP/1.1" 302 0 0.004 "-" "Mozilla/5.0 (X11) \"x\"""#,
        &f,
    )
    .unwrap();
    assert_eq!(l.host, Some("shop.example"));
    assert_eq!(l.client, addr("10.0.0.9"));
    assert_eq!(l.time, Timestamp::from_unix(1_546_271_700));
    assert_eq!(
        (l.method, l.path, l.query, l.protocol),
        (Some("GET"), Some("/cart"), Some("id=3"), Some("HTTP/1.1"))
    );
    assert_eq!(l.request, "", "no $request in this format");
    assert_eq!((l.status, l.bytes), (Some(302), Some(0)));
    assert_eq!(l.user_agent.as_deref(), Some(r#"Mozilla/5.0 (X11) "x""#));

    // $msec (floored), $uri and $args apart, $bytes_sent, $http_host, braces, the last field
    // running to the end of the line.
    let f = custom(
        "${msec} $remote_addr $http_host $uri?$args $bytes_sent $remote_user $http_user_agent",
    );
    let l = parse(
        b"1546271700.999 ::1 h:8080 /x?a=1 512 bob curl/8.0 (linux)",
        &f,
    )
    .unwrap();
    assert_eq!(l.time, Timestamp::from_unix(1_546_271_700));
    assert_eq!(
        (l.host, l.path, l.query),
        (Some("h:8080"), Some("/x"), Some("a=1"))
    );
    assert_eq!((l.bytes, l.user), (Some(512), Some("bob")));
    assert_eq!(l.user_agent.as_deref(), Some("curl/8.0 (linux)"));
    let l = parse(b"1546271700.000 ::1 - /x?- - - -", &f).unwrap();
    assert_eq!(
        (l.host, l.path, l.query, l.bytes, l.user, l.user_agent),
        (None, Some("/x"), None, None, None, None)
    );

    // $request under another name set, $query_string, $server_name, unknown variables.
    let f = custom(
        r#"$server_name|$remote_addr|$time_local|$query_string|$upstream_addr|"$request"|$status"#,
    );
    let l = parse(
        br#"srv|1.2.3.4|31/Dec/2018:23:55:00 +0800|q=1|10.0.0.1:80|"GET /p?z HTTP/1.1"|200"#,
        &f,
    )
    .unwrap();
    assert_eq!(
        (l.host, l.path, l.status),
        (Some("srv"), Some("/p"), Some(200))
    );
    // $query_string came first; the request's own query wins as it comes later.
    assert_eq!(l.query, Some("z"));
}

#[test]
fn reads_the_csv_export() {
    let f = LogFormat::Csv;
    assert_eq!(
        parse(
            br#""remotehost","rfc931","authuser","date","request","status","bytes""#,
            &f
        ),
        Err(LineError::Header)
    );
    assert_eq!(
        parse(
            b"remotehost,rfc931,authuser,date,request,status,bytes\r\n",
            &f
        ),
        Err(LineError::Header)
    );
    let l = parse(
        br#""10.0.0.2","-","apache",1549573860,"GET /api/user HTTP/1.0",200,1234"#,
        &f,
    )
    .unwrap();
    assert_eq!(l.client, addr("10.0.0.2"));
    assert_eq!((l.ident, l.user), (None, Some("apache")));
    assert_eq!(l.time, Timestamp::from_unix(1_549_573_860));
    assert_eq!(
        (l.method, l.path, l.status, l.bytes),
        (Some("GET"), Some("/api/user"), Some(200), Some(1234))
    );
    // Quotes doubled inside, IPv6, unquoted numbers with spaces, a missing byte count.
    let l = parse(
        br#""::1","-","-", 1549573861 ,"GET /a""b HTTP/1.1",404,-"#,
        &f,
    )
    .unwrap();
    assert_eq!(l.client, addr("::1"));
    assert_eq!(l.request, r#"GET /a""b HTTP/1.1"#);
    assert_eq!((l.status, l.bytes), (Some(404), None));
    for (line, why) in [
        (
            r#""10.0.0.2","-","apache",1549573860,"GET / HTTP/1.0",200"#,
            "expected `,` before the byte count at column 56",
        ),
        (
            r#""10.0.0.2","-","apache",1549573860,"GET / HTTP/1.0,200,1"#,
            "no closing `\"` for the request starting at column 36",
        ),
        (
            r#""10.0.0.2","-","apache",31/Dec/2018,"GET / HTTP/1.0",200,1"#,
            "`31/Dec/2018` is not a valid time (column 25)",
        ),
        (
            r#""10.0.0.2","-","apache",1549573860,"GET / HTTP/1.0",200,1,x"#,
            "unexpected text `,x` after the last field at column 58",
        ),
        (
            r#""ho st","-","apache",1549573860,"GET / HTTP/1.0",200,1"#,
            "`ho st` is not an IP address or host name (column 2)",
        ),
    ] {
        assert_eq!(
            parse(line.as_bytes(), &f).unwrap_err().to_string(),
            why,
            "{line}"
        );
    }
}

#[test]
fn malformed_lines_say_what_and_where() {
    let ok = r#"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "r" "u""#;
    assert!(combined(ok).is_ok());
    let cases: &[(&[u8], &str)] = &[
        (b"", "empty line"),
        (b" \t\r\n", "empty line"),
        (
            b"1.2.3.4 \xff\xfe",
            "line is not UTF-8 (first bad byte at column 9)",
        ),
        (
            b"999.1.1.1 - - [01/Jan/2019:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1",
            "`999.1.1.1` is not an IP address or host name (column 1)",
        ),
        (
            b"01.2.3.4 - - [01/Jan/2019:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1",
            "`01.2.3.4` is not an IP address or host name (column 1)",
        ),
        (
            b"exa_mple.com - - [01/Jan/2019:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1",
            "`exa_mple.com` is not an IP address or host name (column 1)",
        ),
        (
            b"\x16\x03\x01 - - [01/Jan/2019:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1",
            "`\\u{16}\\u{3}\\u{1}` is not an IP address or host name (column 1)",
        ),
        (
            b"1.2.3.4 - - 01/Jan/2019:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1",
            "expected `[` before the time at column 13",
        ),
        (
            b"1.2.3.4 - - [01/Foo/2019:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1",
            "`01/Foo/2019:00:00:00 +0000` is not a valid time (column 14)",
        ),
        (
            b"1.2.3.4 - - [01/Jan/2019:00:00:00] \"GET / HTTP/1.1\" 200 1",
            "`01/Jan/2019:00:00:00` is not a valid time (column 14)",
        ),
        (
            b"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000 \"GET / HTTP/1.1\" 200 1",
            "`01/Jan/2019:00:00:00 +0000 \"GET / HTTP/1…` is not a valid time (column 14)",
        ),
        (
            b"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] GET / HTTP/1.1 200 1",
            "expected `\"` before the request at column 42",
        ),
        (
            b"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] \"GET / HTTP/1.1 200 1",
            "no closing `\"` for the request starting at column 42",
        ),
        (
            b"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] \"GET / HTTP/1.1\" 2x0 1",
            "`2x0` is not a valid status (column 59)",
        ),
        (
            b"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] \"GET / HTTP/1.1\" 70000 1",
            "`70000` is not a valid status (column 59)",
        ),
        (
            b"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] \"GET / HTTP/1.1\" 200 -1",
            "`-1` is not a valid byte count (column 63)",
        ),
        (
            b"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] \"GET / HTTP/1.1\" 200 99999999999999999999",
            "`99999999999999999999` is not a valid byte count (column 63)",
        ),
        (
            b"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1 \"r\" \"u\" extra",
            "unexpected text `extra` after the last field at column 73",
        ),
        (
            b"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1 \"r\" \"u",
            "no closing `\"` for the user agent starting at column 69",
        ),
        (
            b"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1 \"r\"\"u\"",
            "expected ` \"` before the user agent at column 68",
        ),
        (b"1.2.3.4", "expected ` ` before the ident at column 8"),
        (b"1.2.3.4 - -", "expected ` [` before the time at column 12"),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(line, why)| {
            let got = parse(line, &LogFormat::Combined).unwrap_err().to_string();
            (got != *why).then(|| {
                format!(
                    "{}\n  got:  {got}\n  want: {why}",
                    String::from_utf8_lossy(line)
                )
            })
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn lines_are_capped_at_max_line() {
    let head = r#"1.2.3.4 - - [01/Jan/2019:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "" ""#;
    let fill = MAX_LINE - head.len() - 1;
    let longest = format!("{head}{}\"", "a".repeat(fill));
    assert_eq!(longest.len(), MAX_LINE);
    let l = combined(&longest).unwrap();
    assert_eq!(l.user_agent.map(|u| u.len()), Some(fill));
    assert!(combined(&format!("{longest}\r\n")).is_ok());
    let over = format!("{head}{}\"", "a".repeat(fill + 1));
    assert_eq!(combined(&over), Err(LineError::TooLong));
    assert_eq!(combined(&format!("{over}\n")), Err(LineError::TooLong));
    assert_eq!(
        parse(&vec![b'\n'; MAX_LINE * 2], &LogFormat::Combined),
        Err(LineError::TooLong)
    );
    assert_eq!(
        LineError::TooLong.to_string(),
        "line longer than 16384 bytes"
    );
}

/// Unix seconds as a common-log time at `offset_minutes` east of UTC.
fn clf_time(secs: i64, offset_minutes: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let local = secs + offset_minutes * 60;
    let (days, rem) = (local.div_euclid(86_400), local.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days, the inverse of `time::civil`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let off = offset_minutes.abs();
    format!(
        "{day:02}/{}/{year:04}:{:02}:{:02}:{:02} {sign}{:02}{:02}",
        MONTHS[usize::try_from(month - 1).unwrap()],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        off / 60,
        off % 60,
    )
}

/// Escapes a header value as Apache does (`\"`, `\\`, `\xhh` for ASCII controls, other text
/// as is) or as nginx does (`\xHH` for `"`, `\`, controls and every byte above 0x7E).
fn escape(value: &str, nginx: bool) -> String {
    let mut out = String::new();
    if nginx {
        for &b in value.as_bytes() {
            match b {
                b'"' | b'\\' | 0..=0x1f | 0x7f.. => {
                    let _ = write!(out, "\\x{b:02X}");
                }
                _ => out.push(char::from(b)),
            }
        }
    } else {
        for c in value.chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02x}", u32::from(c));
                }
                c => out.push(c),
            }
        }
    }
    out
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u16; 8]>().prop_map(IpAddr::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let custom = custom(r#"$remote_addr [$time_iso8601] "$request" $status "$http_user_agent" $msec"#);
        for f in [LogFormat::Common, LogFormat::Combined, LogFormat::Csv, custom] {
            let _ = parse(&bytes, &f);
        }
    }

    #[test]
    fn near_valid_lines_never_panic(
        at in 0usize..200,
        byte in any::<u8>(),
        cut in 0usize..200,
    ) {
        let lines: [(&[u8], LogFormat); 3] = [
            (br#"2001:db8::1 - u [01/Jan/2019:00:00:00 +0000] "GET /a?b HTTP/1.1" 200 5 "r\"" "u\x41""#, LogFormat::Combined),
            (br#""10.0.0.2","-","apache",1549573860,"GET /api/user HTTP/1.0",200,1234"#, LogFormat::Csv),
            (b"1546271700.123 10.0.0.9 [2018-12-31T23:55:00+08:00] /x", custom("$msec $remote_addr [$time_iso8601] $uri")),
        ];
        for (line, f) in &lines {
            let mut line = line.to_vec();
            let at = at % line.len();
            line[at] = byte;
            let _ = parse(&line, f);
            let _ = parse(&line[..cut.min(line.len())], f);
        }
    }

    #[test]
    fn find_byte_agrees_with_a_plain_search(
        hay in proptest::collection::vec(prop_oneof![Just(b'"'), Just(0x80u8), Just(0xffu8), any::<u8>()], 0..70),
        needle in prop_oneof![Just(b'"'), Just(0x7fu8), any::<u8>()],
    ) {
        prop_assert_eq!(find_byte(&hay, needle), hay.iter().position(|&b| b == needle));
    }

    #[test]
    fn rendered_combined_records_read_back(
        client in any_ip(),
        ident in proptest::option::of("[a-z0-9]{1,8}"),
        user in proptest::option::of("[A-Za-z0-9._@]{1,12}"),
        secs in 0i64..4_000_000_000,
        offset in -720i64..=840,
        method in "GET|HEAD|POST|PUT|DELETE|OPTIONS|PROPFIND",
        path in "/[A-Za-z0-9/._~%-]{0,24}",
        query in proptest::option::of("[A-Za-z0-9=&%._~/?-]{1,16}"),
        protocol in proptest::option::of("HTTP/1\\.0|HTTP/1\\.1|HTTP/2\\.0"),
        status in 100u16..=599,
        bytes in proptest::option::of(any::<u64>()),
        referer in "\\PC{0,20}|-",
        agent in "\\PC{0,40}|\\p{Cc}{1,4}|[\"\\\\]{1,4}|-",
        nginx in any::<bool>(),
    ) {
        let target = match &query { Some(q) => format!("{path}?{q}"), None => path.clone() };
        let request = match &protocol { Some(p) => format!("{method} {target} {p}"), None => format!("{method} {target}") };
        let line = format!(
            "{client} {} {} [{}] \"{request}\" {status} {} \"{}\" \"{}\"",
            ident.as_deref().unwrap_or("-"),
            user.as_deref().unwrap_or("-"),
            clf_time(secs, offset),
            bytes.map_or("-".to_owned(), |b| b.to_string()),
            escape(&referer, nginx),
            escape(&agent, nginx),
        );
        let l = combined(&line).map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
        let text = |s: &str| (!s.is_empty() && s != "-").then(|| s.to_owned());
        prop_assert_eq!(l.client, Client::from(client));
        prop_assert_eq!(l.ident, ident.as_deref());
        prop_assert_eq!(l.user, user.as_deref());
        prop_assert_eq!(l.time, Timestamp::from_unix(secs));
        prop_assert_eq!(l.request, request.as_str());
        prop_assert_eq!(l.method, Some(method.as_str()));
        prop_assert_eq!(l.path, Some(path.as_str()));
        prop_assert_eq!(l.query, query.as_deref());
        prop_assert_eq!(l.protocol, protocol.as_deref());
        prop_assert_eq!(l.status, Some(status));
        prop_assert_eq!(l.bytes, bytes);
        prop_assert_eq!(l.referer.map(Cow::into_owned), text(&referer));
        prop_assert_eq!(l.user_agent.map(Cow::into_owned), text(&agent));
    }
}
