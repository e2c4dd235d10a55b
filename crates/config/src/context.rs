//! The located-error collector: [`Cx`] walks the document, records every problem with its
//! place instead of stopping at the first, and reads serde tables on past their bad fields.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use crate::error::{ConfigError, Source};
use crate::raw::RawDuration;

/// The walk over the document: collects errors instead of stopping at the first.
pub(crate) struct Cx<'s> {
    pub(crate) src: &'s Source<'s>,
    pub(crate) errors: Vec<ConfigError>,
    /// Metrics named outside `[metrics]` (matchers), checked once all metrics are known.
    pub(crate) metric_refs: Vec<(String, Range<usize>, String)>,
}

impl Cx<'_> {
    /// Records a problem with `field`, at `span` when it has a place in the text.
    pub(crate) fn push(
        &mut self,
        span: Option<Range<usize>>,
        field: &str,
        message: impl Into<String>,
    ) {
        self.errors.push(self.src.error(span, field, message));
    }

    /// Deserializes one value; on failure records the error against the key it is under.
    pub(crate) fn de<T: DeserializeOwned>(
        &mut self,
        field: &str,
        value: &Spanned<DeValue<'_>>,
    ) -> Option<T> {
        match self.de_partial(field, value) {
            (Some(v), removed) if removed.is_empty() => Some(v),
            _ => None,
        }
    }

    /// Like [`Cx::de`], but reads on past bad fields: serde stops at a table's first bad field,
    /// so the field is taken out (and reported) and the table read again. Returns what could
    /// be read and the fields taken out, so later checks do not report them missing.
    pub(crate) fn de_partial<T: DeserializeOwned>(
        &mut self,
        field: &str,
        value: &Spanned<DeValue<'_>>,
    ) -> (Option<T>, Vec<String>) {
        let mut value = value.clone();
        let mut removed: Vec<String> = Vec::new();
        loop {
            let e = match T::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(v) => return (Some(v), removed),
                Err(e) => e,
            };
            let span = e.span().unwrap_or_else(|| value.span());
            let keys = value
                .get_ref()
                .as_table()
                .map(|t| keys_at(t, &span))
                .unwrap_or_default();
            let key = keys.first().map(|k| (*k).to_owned());
            let path = std::iter::once(field)
                .chain(keys.iter().copied())
                .collect::<Vec<_>>()
                .join(".");
            self.push(Some(span), &path, e.message().to_owned());
            let table_span = value.span();
            let (Some(key), DeValue::Table(table)) = (key, value.get_mut()) else {
                return (None, removed);
            };
            let mut rest = DeTable::new();
            for (k, v) in std::mem::take(table) {
                if k.get_ref().as_ref() != key {
                    rest.insert(k, v);
                }
            }
            removed.push(key);
            value = Spanned::new(table_span, DeValue::Table(rest));
        }
    }

    /// A duration in whole seconds; what is not one is reported against `field`.
    pub(crate) fn duration(&mut self, field: &str, raw: &Spanned<RawDuration>) -> Option<u64> {
        match raw.get_ref().seconds() {
            Ok(s) => Some(s),
            Err(why) => {
                self.push(Some(raw.span()), field, why);
                None
            }
        }
    }
}

/// The keys down to the one whose text holds `span`, to name the field of a serde error:
/// `["check", "zz"]` for an unknown `zz` in `[serve.check]`. A sub-table written under its own
/// header (`[serve.check]`) does not span its fields, so sub-tables are searched by their keys.
fn keys_at<'a>(table: &'a DeTable<'_>, span: &Range<usize>) -> Vec<&'a str> {
    let inside = |r: Range<usize>| r.start <= span.start && span.start < r.end.max(r.start + 1);
    for (k, v) in table {
        let key = k.get_ref().as_ref();
        if inside(k.span()) {
            return vec![key];
        }
        if let DeValue::Table(sub) = v.get_ref() {
            let below = keys_at(sub, span);
            if !below.is_empty() {
                return std::iter::once(key).chain(below).collect();
            }
        }
        if inside(v.span()) {
            return vec![key];
        }
    }
    Vec::new()
}
