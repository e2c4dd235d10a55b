//! `EventError`: why an event or a call was refused (a client's fault; nothing was counted).

use crate::event::Event;
use crate::token::Token;

/// The most members of one metric family a token counts apart (untrusted names must not grow
/// memory without bound).
pub const MAX_MEMBERS: usize = 16;

/// The longest metric name in bytes, and so the longest family member name an event may carry
/// (`detect:…`): member names are kept per token, in memory and on Redis alike.
pub const MAX_NAME_LEN: usize = 128;

/// The longest reason an operator may give a ban by hand, in bytes: it is kept with the
/// ban, in memory, in the decision log and on Redis.
pub const MAX_REASON_LEN: usize = 512;

/// Why an event or a call was refused. Nothing was counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The metric is not in the rule set.
    #[error("unknown metric `{0}`")]
    UnknownMetric(String),
    /// A metric name longer than [`MAX_NAME_LEN`] bytes (no rule has one; a family member
    /// this long is refused rather than kept). Holds the name cut to 64 bytes.
    #[error("metric name `{0}` is longer than {max} bytes", max = MAX_NAME_LEN)]
    MetricTooLong(String),
    /// The token is empty or longer than [`Token::MAX_LEN`] bytes.
    #[error("the token must be 1 to {} bytes", Token::MAX_LEN)]
    BadToken,
    /// A `distinct` or `sum` threshold needs an attribute the event does not carry.
    #[error("metric `{metric}` needs attribute `{attr}`")]
    MissingAttr {
        /// The metric.
        metric: String,
        /// The attribute.
        attr: String,
    },
    /// A `sum` attribute that is not a non-negative integer.
    #[error("attribute `{attr}` must be a non-negative integer, not `{value}`")]
    BadSumAttr {
        /// The attribute.
        attr: String,
        /// What it held (cut to 64 bytes).
        value: String,
    },
    /// An attribute value longer than [`Event::MAX_ATTR_LEN`] bytes.
    #[error("attribute `{0}` is longer than {max} bytes", max = Event::MAX_ATTR_LEN)]
    AttrTooLong(String),
    /// The metric has no such tier.
    #[error("metric `{metric}` has no tier {tier}")]
    UnknownTier {
        /// The metric.
        metric: String,
        /// The tier asked for.
        tier: usize,
    },
    /// A token already counts the most members of a metric family that it may.
    #[error("token counts too many members of `{0}` (at most {max})", max = MAX_MEMBERS)]
    TooManyMembers(String),
    /// A ban by hand must last 1 second to [`crate::Ruleset::MAX_SPAN`].
    #[error("a ban by hand lasts 1 second to 10 years")]
    BadDuration,
    /// A ban's reason longer than [`MAX_REASON_LEN`] bytes.
    #[error("the reason is longer than {max} bytes", max = MAX_REASON_LEN)]
    ReasonTooLong,
    /// Global-scope alerts follow traffic; they cannot be fired by hand.
    #[error("metric `{0}` is global-scope: its alerts cannot be fired by hand")]
    GlobalFire(String),
}
