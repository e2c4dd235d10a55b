//! Tests of the configuration reader: valid files, and every error named and located.

use std::path::Path;

use banhammer_core::{BanPolicy, NamedNoop};

use super::*;

fn errors(text: &str) -> Vec<String> {
    Config::parse(text, "t.toml")
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

const SPEC: &str = r#"
[engine]
rates = true

[metrics.login_failed]
[[metrics.login_failed.thresholds]]
limit = 10
window = "1h"
actions = ["block_local"]
action_duration = 3600

[[metrics.login_failed.thresholds]]
limit = 100
window = 3600
action = ["report_central"]
action_duration = "1d"

[metrics.login_successful]
[[metrics.login_successful.thresholds]]
limit = 10
window = 60
actions = ["record_local"]
action_duration = 3600
policy = "after_violation"
"#;

#[test]
fn the_seed_example_reads() {
    let c = Config::parse(SPEC, "t.toml").unwrap();
    assert!(c.engine.rates);
    assert_eq!(c.metrics.len(), 2);
    let lf = &c.metrics[0];
    assert_eq!(&*lf.name, "login_failed");
    assert_eq!(lf.thresholds[0].effect, Effect::Block);
    assert_eq!(lf.thresholds[0].window.secs(), 3600);
    assert_eq!(lf.thresholds[1].effect, Effect::Notify);
    assert_eq!(lf.thresholds[1].action_duration, Seconds::new(86_400));
    assert_eq!(lf.thresholds[1].actions, ["report_central"]);
    assert_eq!(c.metrics[1].thresholds[0].policy, BanPolicy::AfterViolation);
    let rules = c.ruleset(&|n| Arc::new(NamedNoop(n.to_owned()))).unwrap();
    assert!(rules.metric_id("login_successful").is_some());
}

#[test]
fn kinds_and_scopes_read() {
    let c = Config::parse(
        r#"
[metrics.detect]
[[metrics.detect.thresholds]]
limit = 3
window = 5
kind = "distinct(email)"
actions = ["block_local"]
action_duration = 30

[metrics.hits]
scope = "global"
[[metrics.hits.thresholds]]
limit = 1200
window = "2m"
kind = "sum(bytes)"
"#,
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        c.metrics[0].thresholds[0].kind,
        Kind::Distinct("email".into())
    );
    assert_eq!(c.metrics[1].scope, Scope::Global);
    assert_eq!(c.metrics[1].thresholds[0].effect, Effect::Alert);
    assert_eq!(c.metrics[1].thresholds[0].kind, Kind::Sum("bytes".into()));
}

#[test]
fn every_error_is_reported_at_once_with_its_line_and_field() {
    let text = r#"[engine]
rates = true
colour = "red"

[metrics.login]
[[metrics.login.thresholds]]
limit = 0
window = "10 parsecs"
actions = ["block_locale"]
action_duration = 60

[[metrics.login.thresholds]]
limit = 5
window = 60
actoins = ["block_local"]

[surprise]
"#;
    let errs = errors(text);
    let expected = [
        "t.toml:3:1: engine.colour: unknown field `colour`",
        "t.toml:7:9: metrics.login.thresholds[0].limit: must be at least 1",
        "t.toml:8:10: metrics.login.thresholds[0].window: `10 parsecs` is not a duration",
        "t.toml:9:12: metrics.login.thresholds[0].actions: unknown action `block_locale`",
        "t.toml:12:1: metrics.login.thresholds[1].action_duration: is required",
        "t.toml:15:1: metrics.login.thresholds[1].actoins: unknown field `actoins`",
        "t.toml:17:2: surprise: unknown section",
    ];
    assert_eq!(errs.len(), expected.len(), "{errs:#?}");
    for (got, want) in errs.iter().zip(expected) {
        assert!(
            got.starts_with(want),
            "{got}\n  does not start with\n{want}"
        );
    }
}

#[test]
fn wrong_types_name_the_field() {
    let errs = errors(
        "[metrics.m]\n[[metrics.m.thresholds]]\nlimit = \"ten\"\nwindow = 1\naction_duration = 1\n",
    );
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("t.toml:3:9: metrics.m.thresholds[0].limit: invalid type"),
        "{}",
        errs[0]
    );
}

#[test]
fn a_bad_field_does_not_hide_the_next_one() {
    let errs = errors(
        "[metrics.m]\n[[metrics.m.thresholds]]\nlimit = -1\nwindow = \"soon\"\nactions = [\"ban\"]\naction_duration = 1\n",
    );
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(
        errs[0].starts_with("t.toml:3:9: metrics.m.thresholds[0].limit: invalid value"),
        "{}",
        errs[0]
    );
    assert!(
        errs[1]
            .starts_with("t.toml:4:10: metrics.m.thresholds[0].window: `soon` is not a duration"),
        "{}",
        errs[1]
    );
    assert!(
        errs[2].starts_with("t.toml:5:12: metrics.m.thresholds[0].actions: unknown action `ban`"),
        "{}",
        errs[2]
    );
}

#[test]
fn missing_required_fields_are_named() {
    let errs = errors("[metrics.m]\n[[metrics.m.thresholds]]\nlimit = 3\nwindow = 1\n");
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].contains("metrics.m.thresholds[0].action_duration: is required"),
        "{}",
        errs[0]
    );
    let errs = errors("[metrics.m]\n[[metrics.m.thresholds]]\nwindow = 1\naction_duration = 1\n");
    assert!(
        errs[0].starts_with("t.toml:2:1: metrics.m.thresholds[0].limit: is required"),
        "{}",
        errs[0]
    );
}

#[test]
fn global_metrics_cannot_block() {
    let errs = errors(
        "[metrics.g]\nscope = \"global\"\n[[metrics.g.thresholds]]\nlimit = 3\nwindow = 1\nactions = [\"block_local\"]\n",
    );
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with(
            "t.toml:6:11: metrics.g.thresholds[0].actions: a global-scope metric alerts"
        ),
        "{}",
        errs[0]
    );
}

#[test]
fn core_rule_errors_are_located_too() {
    let errs = errors(
        "[metrics.m]\n[[metrics.m.thresholds]]\nlimit = 5000\nwindow = 1\nkind = \"distinct(email)\"\naction_duration = 1\n",
    );
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("t.toml:2:1: metrics.m.thresholds[0]: metric `m` tier 0: a distinct limit may be at most 1024"), "{}", errs[0]);
}

#[test]
fn syntax_errors_are_located() {
    let errs = errors("[metrics.m\nlimit = 3\n");
    assert!(errs[0].starts_with("t.toml:1:"), "{}", errs[0]);
}

#[test]
fn unreadable_files_say_so() {
    let err = Config::load(Path::new("/nonexistent/banhammer.toml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/banhammer.toml: cannot read"),
        "{err}"
    );
}

const ACCESSLOG: &str = r#"
[accesslog]
format = "common"
ipv6_prefix = 48
ignore = ["127.0.0.1", "10.0.0.0/8"]

[[accesslog.match]]
metric = "login"
path = "/login"
method = ["post", "GET"]
status = ["4xx", 200]

[[accesslog.match]]
metric = "wp"
path_glob = "/wp-*.php"
user_agent = "(?i)curl"

[watch]
csv = "action_record.csv"
ban_command = "nft add element inet filter banned { {ip} timeout {duration}s }"

[metrics.login]
[metrics.wp]
"#;

#[test]
fn accesslog_and_watch_sections_read() {
    let c = Config::parse(ACCESSLOG, "t.toml").unwrap();
    let a = &c.accesslog;
    assert_eq!(a.format.value, "common");
    assert_eq!(a.request_metric, "request");
    assert!(a.ignores("10.1.2.3".parse().unwrap()));
    assert!(!a.ignores("11.1.2.3".parse().unwrap()));
    assert_eq!(
        a.token_of("2001:db8:1:2::7".parse().unwrap()),
        "2001:db8:1::/48"
    );
    assert_eq!(a.token_of("1.2.3.4".parse().unwrap()), "1.2.3.4");
    assert_eq!(a.matchers[0].methods, ["POST", "GET"]);
    assert_eq!(a.matchers[0].statuses, [(400, 499), (200, 200)]);
    assert!(a.matchers[1]
        .path
        .as_ref()
        .unwrap()
        .matches("/wp-login.php"));
    assert!(!a.matchers[1]
        .path
        .as_ref()
        .unwrap()
        .matches("/blog/wp-login.php"));
    assert_eq!(c.watch.csv.as_deref(), Some(Path::new("action_record.csv")));
    assert!(c.watch.ban_command.is_some());
    assert_eq!(
        c.accesslog.format.error("bad").to_string(),
        "t.toml:3:10: accesslog.format: bad"
    );
}

fn accesslog_of(text: &str) -> AccessLogSettings {
    Config::parse(text, "t.toml").unwrap().accesslog
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

#[test]
fn ipv4_mapped_clients_count_and_are_ignored_as_their_ipv4_address() {
    let a = accesslog_of("[accesslog]\nignore = [\"127.0.0.1\", \"::ffff:10.0.0.0/104\"]\n");
    assert_eq!(a.token_of(ip("::ffff:203.0.113.9")), "203.0.113.9");
    assert_eq!(a.token_of(ip("203.0.113.9")), "203.0.113.9");
    assert!(a.ignores(ip("::ffff:127.0.0.1")));
    // A mapped range in the list is the IPv4 range it maps.
    assert!(a.ignores(ip("10.9.8.7")));
    assert!(a.ignores(ip("::ffff:10.9.8.7")));
    assert!(!a.ignores(ip("11.0.0.1")));
    // Other IPv6 clients are grouped as before.
    assert_eq!(a.token_of(ip("2001:db8:1:2::7")), "2001:db8:1:2::/64");
}

#[test]
fn max_delay_and_the_buffer_bound_read_with_defaults() {
    let a = accesslog_of("");
    assert_eq!(a.max_delay, Seconds::new(60));
    assert_eq!(a.max_buffered_lines, 1_000_000);
    assert!(a.format_is_default());
    let a = accesslog_of("[accesslog]\nmax_delay = \"2m\"\nmax_buffered_lines = 1000\n");
    assert_eq!(
        (a.max_delay, a.max_buffered_lines),
        (Seconds::new(120), 1000)
    );
    assert_eq!(
        accesslog_of("[accesslog]\nmax_delay = 0\n").max_delay,
        Seconds::ZERO
    );
    assert!(!accesslog_of("[accesslog]\nformat = \"combined\"\n").format_is_default());
    assert!(accesslog_of("[accesslog]\nformat = \"auto\"\n").format_is_default());
    assert_eq!(
        errors("[accesslog]\nmax_delay = -1\nmax_buffered_lines = 0\n"),
        [
            "t.toml:2:13: accesslog.max_delay: must not be negative, got -1",
            "t.toml:3:22: accesslog.max_buffered_lines: must be at least 1"
        ]
    );
    assert_eq!(
        AccessLogSettings::parse_max_delay("90"),
        Ok(Seconds::new(90))
    );
    assert_eq!(
        AccessLogSettings::parse_max_delay("5m"),
        Ok(Seconds::new(300))
    );
    assert!(AccessLogSettings::parse_max_delay("soon").is_err());
    assert!(AccessLogSettings::parse_max_delay("-3").is_err());
}

#[test]
fn accesslog_errors_are_located() {
    let errs = errors(
        "[accesslog]\nignore = [\"10.0.0.0/33\"]\n[[accesslog.match]]\nmetric = \"nope\"\npath_regex = \"(\"\n\
         [[accesslog.match]]\nmetric = \"m\"\npath = \"/a\"\npath_prefix = \"/b\"\n\
         [watch]\nban_command = \"echo {address}\"\n[metrics.m]\n",
    );
    let expected = [
        "t.toml:2:11: accesslog.ignore: `10.0.0.0/33` is not an address or CIDR range",
        "t.toml:3:1: accesslog.match[0].metric: metric `nope` is not defined",
        "t.toml:5:14: accesslog.match[0].path_regex: not a regular expression",
        "t.toml:9:15: accesslog.match[1].path_prefix: use one of",
        "t.toml:11:15: watch.ban_command: unknown placeholder `{address}`",
    ];
    assert_eq!(errs.len(), expected.len(), "{errs:#?}");
    for (got, want) in errs.iter().zip(expected) {
        assert!(
            got.starts_with(want),
            "{got}\n  does not start with\n{want}"
        );
    }
}

mod never_panics {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_text_gives_a_config_or_located_errors(text in "\\PC{0,200}") {
            if let Err(errs) = Config::parse(&text, "t.toml") {
                prop_assert!(!errs.0.is_empty());
            }
        }

        #[test]
        fn mangled_valid_configs_never_panic(cut in 0usize..400, byte in 0u8..128) {
            let mut text = ACCESSLOG.as_bytes().to_vec();
            text.extend_from_slice(SPEC.as_bytes());
            let at = cut.min(text.len() - 1);
            text[at] = byte;
            if let Ok(t) = std::str::from_utf8(&text) {
                let _ = Config::parse(t, "t.toml");
            }
        }
    }
}

#[test]
fn serve_and_detect_read_with_environment_overrides() {
    let text = "[serve]\nlisten = \"0.0.0.0:9000\"\ntoken_from = \"peer\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n\
                [detect]\nip_requests_limit = 20\nsample_period = 10\n";
    let env: std::collections::HashMap<String, String> = [
        ("IP_REQUESTS_LIMIT".to_owned(), "7".to_owned()),
        ("IP_BAN_TIME".to_owned(), "60".to_owned()),
        ("BANHAMMER_ADMIN_TOKEN".to_owned(), "s3cret".to_owned()),
    ]
    .into();
    let c = Config::parse_with_env(text, "t.toml", &env).unwrap();
    assert_eq!(c.serve.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(c.serve.token_from, TokenFrom::Peer);
    assert_eq!(c.serve.admin_token.as_deref(), Some("s3cret"));
    assert_eq!(
        c.detect,
        DetectSettings {
            ip_requests_limit: 7,
            ip_emails_limit: 2,
            sample_period: 10,
            ip_ban_time: 60
        },
        "the environment wins over the file, the file over the defaults"
    );
    let defaults = Config::parse("", "t.toml").unwrap();
    assert_eq!(defaults.detect, DetectSettings::default());
}

#[test]
fn the_detector_becomes_a_metric_family() {
    let mut c = Config::parse("", "t.toml").unwrap();
    c.add_detector();
    let m = &c.metrics[0];
    assert_eq!(&*m.name, "detect:*");
    assert_eq!(
        m.thresholds[0].limit.get(),
        11,
        "more than 10 requests: the 11th"
    );
    assert_eq!(
        m.thresholds[1].limit.get(),
        3,
        "more than 2 emails: the 3rd"
    );
    assert_eq!(m.thresholds[1].kind, Kind::Distinct("email".into()));
    assert_eq!(m.thresholds[0].action_duration, Seconds::new(30));
    assert!(c.ruleset(&|n| Arc::new(NamedNoop(n.to_owned()))).is_ok());
}

#[test]
fn serve_and_detect_errors_are_located() {
    let env: std::collections::HashMap<String, String> =
        [("SAMPLE_PERIOD".to_owned(), "soon".to_owned())].into();
    let errs = Config::parse_with_env(
        "[serve]\nlisten = \"nowhere\"\ntoken_from = \"cookie\"\nstore = \"tcp://r:6379\"\n\
         [detect]\nip_ban_time = 0\n[actions.report_central]\nurl = \"ftp://x\"\n",
        "t.toml",
        &env,
    )
    .unwrap_err();
    let text: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
    let expected = [
        "environment variable SAMPLE_PERIOD: detect.sample_period: `soon` must be a whole number",
        "t.toml:2:10: serve.listen: `nowhere` is not an address",
        "t.toml:3:14: serve.token_from: `cookie` is not \"body\" or \"peer\"",
        "t.toml:4:9: serve.store: `tcp://r:6379` is not redis://host:port or",
        "t.toml:6:15: detect.ip_ban_time: must be 1 to 1000000",
        "t.toml:8:7: actions.report_central.url: `ftp://x` is not an http:// or https:// URL",
    ];
    assert_eq!(text.len(), expected.len(), "{text:#?}");
    for (got, want) in text.iter().zip(expected) {
        assert!(
            got.starts_with(want),
            "{got}\n  does not start with\n{want}"
        );
    }
}

#[test]
fn store_over_tls_takes_a_ca_and_a_ca_needs_tls() {
    for url in ["rediss://r:6379", "rediss+cluster://r:1,s:2"] {
        let c = Config::parse(
            &format!("[serve]\nstore = \"{url}\"\nstore_ca = \"ca.pem\"\n"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.serve.store.as_deref(), Some(url));
        assert_eq!(c.serve.store_ca, Some(std::path::PathBuf::from("ca.pem")));
    }
    let errs = Config::parse(
        "[serve]\nstore = \"redis://r:6379\"\nstore_ca = \"ca.pem\"\n",
        "t.toml",
    )
    .unwrap_err();
    let text: Vec<String> = errs.0.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 1, "{text:#?}");
    assert!(
        text[0].starts_with("t.toml:3:12: serve.store_ca: a CA is only used with TLS"),
        "{}",
        text[0]
    );
}

#[test]
fn rule_errors_after_reading_name_their_place_one_a_line() {
    let mut c = Config::parse(SPEC, "t.toml").unwrap();
    c.metrics[0].thresholds[1].action_duration = Seconds::ZERO;
    c.metrics[1].thresholds[0].limit = NonZeroU64::new(5000).unwrap();
    c.metrics[1].thresholds[0].kind = Kind::Distinct("email".into());
    let err = c
        .ruleset(&|n| Arc::new(NamedNoop(n.to_owned())))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "t.toml:12:1: metrics.login_failed.thresholds[1]: metric `login_failed` tier 1: \
         action_duration must be at least 1 second\n\
         t.toml:19:1: metrics.login_successful.thresholds[0]: metric `login_successful` tier 0: \
         a distinct limit may be at most 1024"
    );
}

#[test]
fn matchers_may_name_members_of_a_family() {
    let text = "[[accesslog.match]]\nmetric = \"detect:login\"\npath = \"/login\"\n\
                [[accesslog.match]]\nmetric = \"detect:\"\npath = \"/\"\n\
                [metrics.\"detect:*\"]\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0]
            .starts_with("t.toml:4:1: accesslog.match[1].metric: metric `detect:` is not defined"),
        "{}",
        errs[0]
    );
}

#[test]
fn a_member_name_longer_than_the_engine_accepts_is_refused() {
    // Every event of such a matcher would be refused (`MetricTooLong`): say so at load.
    let long = format!("detect:{}", "x".repeat(122));
    let text = format!(
        "[[accesslog.match]]\nmetric = \"{long}\"\npath = \"/login\"\n[metrics.\"detect:*\"]\n"
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("t.toml:1:1: accesslog.match[0].metric: metric name `detect:xxx")
            && errs[0].ends_with("` is longer than 128 bytes"),
        "{}",
        errs[0]
    );
    let fits = text.replacen(&long, &long[..128], 1);
    assert!(Config::parse(&fits, "t.toml").is_ok());
}

#[test]
fn the_token_cap_has_a_default() {
    let c = Config::parse("", "t.toml").unwrap();
    assert_eq!(c.engine.max_tokens, Ruleset::DEFAULT_MAX_TOKENS);
    let rules = c.ruleset(&|n| Arc::new(NamedNoop(n.to_owned()))).unwrap();
    assert_eq!(rules.max_tokens().get(), 1_000_000);
    let c = Config::parse("[engine]\nmax_tokens = 5\n", "t.toml").unwrap();
    assert_eq!(c.engine.max_tokens.get(), 5);
}

#[test]
fn an_empty_admin_token_in_the_environment_is_an_error_not_no_token() {
    for empty in ["", "  "] {
        let env: std::collections::HashMap<String, String> =
            [("BANHAMMER_ADMIN_TOKEN".to_owned(), empty.to_owned())].into();
        let errs = Config::parse_with_env("", "t.toml", &env)
            .unwrap_err()
            .to_string();
        assert!(
            errs.contains("BANHAMMER_ADMIN_TOKEN: is set but empty"),
            "{errs}"
        );
    }
}

#[test]
fn an_unknown_field_of_a_sub_table_is_named_with_its_whole_path() {
    let errs = errors("[serve.check]\nzz = 1\n\n[actions.record_local]\nqq = 2\n");
    assert_eq!(errs.len(), 2, "{errs:#?}");
    for want in [
        "t.toml:2:1: serve.check.zz: unknown field `zz`",
        "t.toml:5:1: actions.record_local.qq: unknown field `qq`",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "{want}: {errs:#?}"
        );
    }
}

#[test]
fn serve_groups_clients_by_its_prefixes_and_allows_its_list() {
    let c = Config::parse(
        "[serve]\nipv6_prefix = 56\nallow = [\"192.0.2.0/24\", \"2001:db8:a::/48\"]\n",
        "t.toml",
    )
    .unwrap();
    let s = &c.serve;
    assert_eq!(s.clients.ipv6_prefix, 56);
    assert_eq!(
        s.clients.token_of(ip("2001:db8:1:2ff::9")),
        "2001:db8:1:200::/56"
    );
    assert_eq!(s.clients.token_of(ip("192.0.2.9")), "192.0.2.9");
    assert!(s.allows(ip("::ffff:192.0.2.9")));
    assert!(s.allows_token("2001:db8:a:1::/64"));
    assert!(!s.allows_token("2001:db8:b:1::/64"));
    let d = Config::parse("", "t.toml").unwrap().serve;
    assert_eq!(
        (d.clients.ipv4_prefix, d.clients.ipv6_prefix),
        (32, 64),
        "/64 unless configured"
    );
    let errs = errors("[serve]\nipv4_prefix = 33\nipv6_prefix = 129\n");
    assert_eq!(
        errs,
        [
            "t.toml:2:15: serve.ipv4_prefix: must be 0 to 32",
            "t.toml:3:15: serve.ipv6_prefix: must be 0 to 128",
        ]
    );
}

#[test]
fn no_metric_may_be_called_manual() {
    let errs = errors("[metrics.manual]\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("t.toml:1:10: metrics.manual: metric name `manual` is reserved"),
        "{errs:?}"
    );
}
