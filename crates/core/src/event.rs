//! `Event`: one occurrence of a metric for a token, the engine's only input.

use crate::time::Timestamp;

/// One occurrence of `metric` for `token` at `at`.
///
/// `weight` is what a `count` threshold adds (1 unless the source says otherwise); `attrs`
/// carries the values that `distinct(attr)` and `sum(attr)` thresholds measure.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// Who is counted.
    pub token: &'a str,
    /// Which metric this event is of.
    pub metric: &'a str,
    /// When it happened.
    pub at: Timestamp,
    /// How much it counts for `count` thresholds and rates.
    pub weight: u64,
    /// Named values, such as `email` or `bytes`.
    pub attrs: &'a [(&'a str, &'a str)],
}

impl<'a> Event<'a> {
    /// The longest attribute value accepted, in bytes.
    pub const MAX_ATTR_LEN: usize = 1024;

    /// An event of weight 1 with no attributes.
    pub fn new(token: &'a str, metric: &'a str, at: Timestamp) -> Self {
        Event {
            token,
            metric,
            at,
            weight: 1,
            attrs: &[],
        }
    }

    /// The same event with `attrs`.
    #[must_use]
    pub fn with_attrs(self, attrs: &'a [(&'a str, &'a str)]) -> Self {
        Event { attrs, ..self }
    }

    /// The same event with `weight`.
    #[must_use]
    pub fn with_weight(self, weight: u64) -> Self {
        Event { weight, ..self }
    }

    /// The value of attribute `name`, if present (the first one wins).
    pub fn attr(&self, name: &str) -> Option<&'a str> {
        self.attrs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}
