//! `[nftables]`: the built-in nftables enforcement that `watch` and `serve` keep in step with
//! their bans (a table of banhammer's own, an IPv4 and an IPv6 set, a drop rule).

use std::path::PathBuf;

use serde::Deserialize;
use toml::de::DeValue;
use toml::Spanned;

use crate::context::Cx;

/// `[nftables]`. Present: the bans are enforced in nftables (run as root, or with
/// CAP_NET_ADMIN).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNftables {
    /// The table banhammer owns and fills: `"inet NAME"` (or `NAME`; always family inet, so
    /// one chain sees IPv4 and IPv6). Default `"inet banhammer"`.
    #[serde(default)]
    table: Option<Spanned<String>>,
    /// The set of banned IPv4 addresses and prefixes. Default `"banned4"`.
    #[serde(default)]
    ipv4_set: Option<Spanned<String>>,
    /// The set of banned IPv6 addresses and prefixes. Default `"banned6"`.
    #[serde(default)]
    ipv6_set: Option<Spanned<String>>,
    /// Create a chain on the input hook that drops packets from both sets. Default true;
    /// false when rules of your own, in this table, use the sets.
    #[serde(default)]
    drop: Option<bool>,
    /// That chain's name. Default `"input"`.
    #[serde(default)]
    chain: Option<Spanned<String>>,
    /// The `nft` program. Default `"nft"`, found on `PATH`.
    #[serde(default)]
    nft: Option<String>,
}

/// `[nftables]`, validated: every name a plain nft identifier, so that no setting can carry
/// script syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftablesSettings {
    /// The table's name (family inet).
    pub table: String,
    /// The IPv4 set.
    pub ipv4_set: String,
    /// The IPv6 set.
    pub ipv6_set: String,
    /// Whether banhammer creates the drop chain.
    pub drop: bool,
    /// The drop chain's name.
    pub chain: String,
    /// The `nft` program.
    pub nft: PathBuf,
}

impl Default for NftablesSettings {
    fn default() -> Self {
        NftablesSettings {
            table: "banhammer".to_owned(),
            ipv4_set: "banned4".to_owned(),
            ipv6_set: "banned6".to_owned(),
            drop: true,
            chain: "input".to_owned(),
            nft: PathBuf::from("nft"),
        }
    }
}

/// A letter, then letters, digits and `_`, at most 64 bytes (the sink checks names again
/// before writing a script; here they are placed in the file).
fn is_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 64
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Cx<'_> {
    pub(crate) fn nftables(&mut self, value: &Spanned<DeValue<'_>>) -> Option<NftablesSettings> {
        let raw = self.de::<RawNftables>("nftables", value)?;
        let mut s = NftablesSettings::default();
        if let Some(t) = &raw.table {
            let text = t.get_ref().trim();
            let name = match text.split_once(char::is_whitespace) {
                Some(("inet", name)) => Some(name.trim()),
                Some(_) => None,
                None => Some(text),
            };
            match name.filter(|n| is_name(n)) {
                Some(n) => s.table = n.to_owned(),
                None => self.push(
                    Some(t.span()),
                    "nftables.table",
                    format!(
                        "`{}` is not `inet NAME` (family inet, NAME a letter then letters, \
                         digits and `_`)",
                        t.get_ref()
                    ),
                ),
            }
        }
        let mut name = |field: &str, v: &Option<Spanned<String>>, slot: &mut String| {
            if let Some(v) = v {
                if is_name(v.get_ref()) {
                    slot.clone_from(v.get_ref());
                } else {
                    self.push(
                        Some(v.span()),
                        field,
                        format!(
                            "`{}` is not an nftables name (a letter, then letters, digits and `_`)",
                            v.get_ref()
                        ),
                    );
                }
            }
        };
        name("nftables.ipv4_set", &raw.ipv4_set, &mut s.ipv4_set);
        name("nftables.ipv6_set", &raw.ipv6_set, &mut s.ipv6_set);
        name("nftables.chain", &raw.chain, &mut s.chain);
        if s.ipv4_set == s.ipv6_set {
            let span = raw.ipv6_set.as_ref().map(Spanned::span);
            self.push(
                span,
                "nftables.ipv6_set",
                "must differ from ipv4_set (a set holds one address family)",
            );
        }
        if let Some(d) = raw.drop {
            s.drop = d;
        }
        if let Some(p) = raw.nft {
            s.nft = PathBuf::from(p);
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    #[test]
    fn the_section_turns_it_on_with_defaults() {
        assert_eq!(Config::parse("", "t.toml").unwrap().nftables, None);
        let n = Config::parse("[nftables]\n", "t.toml")
            .unwrap()
            .nftables
            .unwrap();
        assert_eq!(n, super::NftablesSettings::default());
        assert_eq!(
            (n.table.as_str(), n.ipv4_set.as_str(), n.ipv6_set.as_str()),
            ("banhammer", "banned4", "banned6")
        );
        assert!(n.drop);
        let n = Config::parse(
            "[nftables]\ntable = \"inet fw\"\nipv4_set = \"b4\"\nipv6_set = \"b6\"\ndrop = false\n\
             nft = \"/usr/sbin/nft\"\n",
            "t.toml",
        )
        .unwrap()
        .nftables
        .unwrap();
        assert_eq!((n.table.as_str(), n.drop), ("fw", false));
        assert_eq!(n.nft, std::path::Path::new("/usr/sbin/nft"));
    }

    #[test]
    fn names_that_could_carry_script_syntax_are_refused_at_their_place() {
        let errs = Config::parse(
            "[nftables]\ntable = \"ip fw\"\nipv4_set = \"b4 }; flush ruleset\"\nchain = \"\"\n\
             ipv6_set = \"banned4\"\nipv4_set_x = 1\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(errs.contains("unknown field `ipv4_set_x`"), "{errs}");
        let errs = Config::parse(
            "[nftables]\ntable = \"ip fw\"\nipv4_set = \"b4 }; flush ruleset\"\nchain = \"\"\n\
             ipv6_set = \"b4\"\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            errs,
            "t.toml:2:9: nftables.table: `ip fw` is not `inet NAME` (family inet, NAME a letter \
             then letters, digits and `_`)\n\
             t.toml:3:12: nftables.ipv4_set: `b4 }; flush ruleset` is not an nftables name (a \
             letter, then letters, digits and `_`)\n\
             t.toml:4:9: nftables.chain: `` is not an nftables name (a letter, then letters, \
             digits and `_`)"
        );
        let errs = Config::parse(
            "[nftables]\nipv4_set = \"same\"\nipv6_set = \"same\"\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            errs,
            "t.toml:3:12: nftables.ipv6_set: must differ from ipv4_set (a set holds one \
             address family)"
        );
    }
}
