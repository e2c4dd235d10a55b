//! `[watch]`: where `banhammer watch` keeps its state and sends its decisions.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;

use crate::context::Cx;

/// `[watch]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatch {
    /// SQLite file keeping active bans and read positions across restarts.
    /// Default `"banhammer-watch.sqlite"`.
    #[serde(default)]
    state: Option<String>,
    /// Append `<unix_seconds>,BAN|UNBAN,<ip>` records to this file (`action_record.csv`).
    #[serde(default)]
    csv: Option<String>,
    /// Append one JSON object per decision to this file.
    #[serde(default)]
    jsonl: Option<String>,
    /// Run this command on each ban (and for each active ban at start), without a shell, e.g.
    /// `"nft add element inet filter banned_{family} { {ip}/{prefix} timeout {duration}s }"`.
    /// Only bans of addresses and prefixes run it. Placeholders: `{ip}` (the address, host
    /// bits cleared), `{prefix}` (its length: the token's /N, or 32 / 128), `{family}` (`ip`
    /// or `ip6`), `{token}`, `{duration}` (seconds left), `{until}`, `{at}`, `{rule}`,
    /// `{tier}`, `{value}`, `{verb}`.
    #[serde(default)]
    ban_command: Option<Spanned<String>>,
    /// Run this command when a ban is extended, `{duration}` being the time now left (same
    /// placeholders). Default: `ban_command`.
    #[serde(default)]
    extend_command: Option<Spanned<String>>,
    /// Run this command on each unban (same placeholders).
    #[serde(default)]
    unban_command: Option<Spanned<String>>,
    /// How often the followed file is checked for new lines, in milliseconds. Default 250.
    #[serde(default)]
    poll_interval_ms: Option<Spanned<u64>>,
}

/// `[watch]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSettings {
    /// SQLite state file.
    pub state: PathBuf,
    /// CSV record file.
    pub csv: Option<PathBuf>,
    /// JSON-lines record file.
    pub jsonl: Option<PathBuf>,
    /// Command run on each ban, and for each active ban at start.
    pub ban_command: Option<CommandTemplate>,
    /// Command run on each extension (`ban_command` unless set).
    pub extend_command: Option<CommandTemplate>,
    /// Command run on each unban.
    pub unban_command: Option<CommandTemplate>,
    /// Poll interval.
    pub poll_interval: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            state: PathBuf::from("banhammer-watch.sqlite"),
            csv: None,
            jsonl: None,
            ban_command: None,
            extend_command: None,
            unban_command: None,
            poll_interval: Duration::from_millis(250),
        }
    }
}

/// A command line with `{placeholders}`, split into words like a shell would but run
/// without one: a token can never become a second command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTemplate {
    argv: Vec<String>,
}

/// The placeholders a command template may use.
pub const PLACEHOLDERS: [&str; 11] = [
    "ip", "prefix", "family", "token", "duration", "until", "at", "rule", "tier", "value", "verb",
];

impl CommandTemplate {
    /// Splits `text` into words; refuses unknown `{placeholders}` and an empty command.
    pub fn parse(text: &str) -> Result<Self, String> {
        let argv = shell_words::split(text).map_err(|e| format!("cannot split into words: {e}"))?;
        if argv.is_empty() {
            return Err("is empty".to_owned());
        }
        for word in &argv {
            for name in placeholders(word) {
                if !PLACEHOLDERS.contains(&name) {
                    return Err(format!(
                        "unknown placeholder `{{{name}}}`, expected one of {}",
                        PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                    ));
                }
            }
        }
        Ok(CommandTemplate { argv })
    }

    /// The words with each `{name}` replaced by its value from `vars`.
    pub fn render(&self, vars: &[(&str, &str)]) -> Vec<String> {
        self.argv
            .iter()
            .map(|word| {
                let mut out = word.clone();
                for (name, value) in vars {
                    out = out.replace(&format!("{{{name}}}"), value);
                }
                out
            })
            .collect()
    }
}

/// The `{name}` placeholders in `word` (names of lower-case letters and `_`).
fn placeholders(word: &str) -> impl Iterator<Item = &str> {
    word.split('{').skip(1).filter_map(|rest| {
        let name = rest.split_once('}')?.0;
        (!name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .then_some(name)
    })
}

/// The ban, extend and unban commands of a section, in that order.
pub(crate) type BanCommands = (
    Option<CommandTemplate>,
    Option<CommandTemplate>,
    Option<CommandTemplate>,
);

impl Cx<'_> {
    /// The ban, extend and unban commands of `section` (`[watch]` and `[serve]` have the
    /// same three), each checked at its place; the extend command defaults to the ban
    /// command (run again with the time now left).
    pub(crate) fn ban_commands(
        &mut self,
        section: &str,
        ban: Option<Spanned<String>>,
        extend: Option<Spanned<String>>,
        unban: Option<Spanned<String>>,
    ) -> BanCommands {
        let mut command = |field: &str, v: Option<Spanned<String>>| {
            v.and_then(|v| match CommandTemplate::parse(v.get_ref()) {
                Ok(t) => Some(t),
                Err(why) => {
                    self.push(Some(v.span()), &format!("{section}.{field}"), why);
                    None
                }
            })
        };
        let ban = command("ban_command", ban);
        let extend = command("extend_command", extend).or_else(|| ban.clone());
        let unban = command("unban_command", unban);
        (ban, extend, unban)
    }

    pub(crate) fn watch(&mut self, value: &Spanned<DeValue<'_>>) -> Option<WatchSettings> {
        let raw = self.de::<RawWatch>("watch", value)?;
        let mut s = WatchSettings::default();
        if let Some(p) = raw.state {
            s.state = PathBuf::from(p);
        }
        s.csv = raw.csv.map(PathBuf::from);
        s.jsonl = raw.jsonl.map(PathBuf::from);
        (s.ban_command, s.extend_command, s.unban_command) = self.ban_commands(
            "watch",
            raw.ban_command,
            raw.extend_command,
            raw.unban_command,
        );
        if let Some(ms) = raw.poll_interval_ms {
            if *ms.get_ref() == 0 || *ms.get_ref() > 60_000 {
                self.push(
                    Some(ms.span()),
                    "watch.poll_interval_ms",
                    "must be 1 to 60000",
                );
            }
            s.poll_interval = Duration::from_millis(*ms.get_ref());
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_placeholders_in_place() {
        let t = CommandTemplate::parse(
            "nft add element inet filter banned { {ip} timeout {duration}s }",
        )
        .unwrap();
        assert_eq!(
            t.render(&[("ip", "1.2.3.4"), ("duration", "600")]),
            [
                "nft", "add", "element", "inet", "filter", "banned", "{", "1.2.3.4", "timeout",
                "600s", "}"
            ]
        );
    }

    #[test]
    fn a_token_cannot_break_out_of_its_word() {
        let t = CommandTemplate::parse("echo {ip}").unwrap();
        assert_eq!(t.render(&[("ip", "x; rm -rf /")]), ["echo", "x; rm -rf /"]);
    }

    #[test]
    fn templates_refuse_unknown_placeholders_and_bad_quoting() {
        assert!(CommandTemplate::parse("echo {address}")
            .unwrap_err()
            .contains("unknown placeholder `{address}`"));
        assert!(CommandTemplate::parse("echo {ip}/{prefix} {family}").is_ok());
        assert!(CommandTemplate::parse("echo 'unterminated")
            .unwrap_err()
            .starts_with("cannot split"));
        assert_eq!(CommandTemplate::parse("  ").unwrap_err(), "is empty");
    }

    #[test]
    fn the_extend_command_defaults_to_the_ban_command() {
        let c = crate::Config::parse(
            "[watch]\nban_command = \"nft add element inet t s_{family} { {ip}/{prefix} timeout {duration}s }\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.watch.extend_command, c.watch.ban_command);
        assert!(c.watch.unban_command.is_none());
        let c = crate::Config::parse(
            "[watch]\nban_command = \"ban {ip}\"\nextend_command = \"extend {ip} {duration}\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(
            c.watch
                .extend_command
                .unwrap()
                .render(&[("ip", "1.2.3.4"), ("duration", "60")]),
            ["extend", "1.2.3.4", "60"]
        );
        let errs = crate::Config::parse("[watch]\nextend_command = \"x {addr}\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            errs.starts_with("t.toml:2:18: watch.extend_command: unknown placeholder `{addr}`"),
            "{errs}"
        );
    }
}
