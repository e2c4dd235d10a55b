//! docs/configuration.md against the parser: every field `banhammer check` accepts is
//! documented in its section's table, and every documented field is accepted. The accepted
//! fields are what the parser itself lists when it refuses an unknown one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// Each section as the reference names it, with a file that puts the unknown field `zz_x`
/// in it (and whatever the section needs to be read at all).
const PROBES: &[(&str, &str)] = &[
    ("[engine]", "[engine]\nzz_x = 1\n"),
    (
        "[actions.record_local]",
        "[actions.record_local]\nzz_x = 1\n",
    ),
    (
        "[actions.report_central]",
        "[actions.report_central]\nzz_x = 1\n",
    ),
    ("[metrics.NAME]", "[metrics.a]\nzz_x = 1\n"),
    (
        "[[metrics.NAME.thresholds]]",
        "[metrics.a]\n[[metrics.a.thresholds]]\nzz_x = 1\n",
    ),
    (
        "escalate",
        "[metrics.a]\n[[metrics.a.thresholds]]\nescalate = { zz_x = 1 }\n",
    ),
    ("[accesslog]", "[accesslog]\nzz_x = 1\n"),
    ("[[accesslog.match]]", "[[accesslog.match]]\nzz_x = 1\n"),
    ("[watch]", "[watch]\nzz_x = 1\n"),
    ("[serve]", "[serve]\nzz_x = 1\n"),
    ("[serve.check]", "[serve.check]\nzz_x = 1\n"),
    ("[detect]", "[detect]\nzz_x = 1\n"),
    ("[nftables]", "[nftables]\nzz_x = 1\n"),
];

/// The names `check` says it expected instead of `zz_x` (or, for the top level, instead of
/// the unknown section).
fn accepted(toml: &str) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probe.toml");
    std::fs::write(&file, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_banhammer"))
        .arg("check")
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("zz_x") && l.contains("expected"))
        .unwrap_or_else(|| panic!("no refusal of zz_x for\n{toml}\n{text}"));
    let expected = line.split("expected").nth(1).unwrap();
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The fields each section's tables list: rows starting with a backticked name, under
/// headings that name the section in backticks (`## `[watch]` and `[serve]`: …`).
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut sections: Vec<String> = Vec::new();
    let mut fields: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("## ") || line.starts_with("### ") {
            sections = line
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect();
            for s in &sections {
                fields.entry(s.clone()).or_default();
            }
        } else if line.starts_with("| `") {
            // Every backticked name of the first cell: `actions` (or `action`).
            let cell = line.split('|').nth(1).unwrap();
            for name in cell.split('`').skip(1).step_by(2) {
                let field = name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if field {
                    for s in &sections {
                        fields.entry(s.clone()).or_default().insert(name.to_owned());
                    }
                }
            }
        }
    }
    fields
}

#[test]
fn every_field_the_parser_accepts_is_documented_and_every_documented_field_is_accepted() {
    let documented = documented();
    let mut problems = Vec::new();
    for (section, probe) in PROBES {
        let accepted = accepted(probe);
        let listed = documented.get(*section).cloned().unwrap_or_default();
        for f in accepted.difference(&listed) {
            problems.push(format!(
                "{section} {f}: accepted but not in docs/configuration.md"
            ));
        }
        for f in listed.difference(&accepted) {
            problems.push(format!(
                "{section} {f}: documented but refused by the parser"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_section_the_parser_accepts_has_a_heading_and_is_probed() {
    let top = accepted("zz_x = 1\n");
    let documented = documented();
    for section in &top {
        assert!(
            documented
                .keys()
                .any(|d| d.trim_matches(['[', ']']).split('.').next() == Some(section)),
            "[{section}] has no heading in docs/configuration.md"
        );
        assert!(
            PROBES
                .iter()
                .any(|(name, _)| name.trim_matches(['[', ']']).split('.').next() == Some(section)),
            "[{section}] is not probed by this test"
        );
    }
}
