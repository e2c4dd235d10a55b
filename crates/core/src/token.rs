//! `Token`: who is counted (an IP address, a prefix, a user id, an API key).

use std::borrow::Borrow;
use std::fmt;

use compact_str::CompactString;

/// Who is counted. Front ends normalise it (an IP address, an IPv6 /64 prefix, a user id).
///
/// Stored inline up to 24 bytes, so IPv4 and most IPv6 tokens need no allocation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(CompactString);

impl Token {
    /// The longest token accepted, in bytes: untrusted input must not grow memory without bound.
    pub const MAX_LEN: usize = 256;

    /// The token under which `global`-scope metrics count all traffic together.
    pub const GLOBAL: &'static str = "global";

    /// A token from its text; `None` if it is empty or longer than [`Token::MAX_LEN`].
    pub fn new(text: &str) -> Option<Self> {
        if text.is_empty() || text.len() > Self::MAX_LEN {
            None
        } else {
            Some(Token(CompactString::from(text)))
        }
    }

    /// The token for `global` scope.
    pub fn global() -> Self {
        Token(CompactString::const_new(Self::GLOBAL))
    }

    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Token {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Token {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
