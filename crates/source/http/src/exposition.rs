//! The metrics exposition, negotiated: Prometheus' classic text format (0.0.4) unless the
//! scraper's `Accept` asks for OpenMetrics, series in a stable order. Shared by `serve`'s
//! `/metrics` and `watch --metrics-listen`.
//!
//! prometheus-client encodes OpenMetrics only. The two formats differ, for what is registered
//! here (counters, gauges, histograms), in one place: OpenMetrics names a counter's family
//! without its `_total` suffix (`# TYPE x counter`, samples `x_total`), which a classic parser
//! reads as an untyped `x_total`. The classic text is therefore the OpenMetrics text with the
//! counters' `HELP`/`TYPE` lines named as their samples are, and no `# EOF`.

use std::future::Future;
use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;

/// The classic text format's content type.
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";
/// OpenMetrics' content type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether `accept` asks for OpenMetrics: listed with a quality above 0 and at least that of
/// every other type it lists (Prometheus sends OpenMetrics first, text/plain after it).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let mut best_other = 0.0f32;
    let mut openmetrics = 0.0f32;
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let kind = parts.next().unwrap_or_default().to_ascii_lowercase();
        let q = parts
            .find_map(|p| p.strip_prefix("q="))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        if kind == "application/openmetrics-text" {
            openmetrics = openmetrics.max(q);
        } else {
            best_other = best_other.max(q);
        }
    }
    openmetrics > 0.0 && openmetrics >= best_other
}

/// `registry` encoded in the format `headers` ask for, as a response.
pub fn respond(registry: &Registry, headers: &HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let openmetrics = wants_openmetrics(accept);
    let (kind, body) = encode(registry, openmetrics);
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(kind))],
        body,
    )
        .into_response()
}

/// Serves `GET /metrics` alone (as [`respond`] answers it) on `listener` until `shutdown`:
/// the metrics endpoint of a command that has no other HTTP service (`watch`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let scrape = move |headers: HeaderMap| {
        let registry = Arc::clone(&registry);
        async move { respond(&registry, &headers) }
    };
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .fallback(crate::error::no_route)
        .method_not_allowed_fallback(crate::error::wrong_method);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// `registry` as OpenMetrics or classic text, with its content type.
pub fn encode(registry: &Registry, openmetrics: bool) -> (&'static str, String) {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
        text.clear();
    }
    let text = stable_order(&text);
    if openmetrics {
        (OPENMETRICS, text)
    } else {
        (CLASSIC, classic(&text))
    }
}

/// Sorts each family's series by their labels (a family keeps its series in a hash map, so
/// scrapes would list them in any order); a series' own lines (a histogram's sum, count and
/// buckets) keep their order.
fn stable_order(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut samples: Vec<&str> = Vec::new();
    let flush = |samples: &mut Vec<&str>, out: &mut String| {
        samples.sort_by_cached_key(|line| series_key(line));
        for s in samples.drain(..) {
            out.push_str(s);
            out.push('\n');
        }
    };
    for line in text.lines() {
        if line.starts_with('#') {
            flush(&mut samples, &mut out);
            out.push_str(line);
            out.push('\n');
        } else if !line.is_empty() {
            samples.push(line);
        }
    }
    flush(&mut samples, &mut out);
    out
}

/// A sample line's labels less `le` (a bucket's bound): what tells its series apart.
fn series_key(line: &str) -> String {
    let Some(open) = line.find('{') else {
        return String::new();
    };
    let mut labels = Vec::new();
    let (mut start, mut quoted, mut escaped) = (open + 1, false, false);
    for (i, c) in line[open + 1..].char_indices() {
        let i = open + 1 + i;
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' | '}' if !quoted => {
                labels.push(&line[start..i]);
                start = i + 1;
                if c == '}' {
                    break;
                }
            }
            _ => {}
        }
    }
    labels.retain(|l| !l.starts_with("le="));
    labels.join(",")
}

/// OpenMetrics text as the classic format: counter families named as their samples are
/// (`_total`), no `# EOF`; everything else is the same in both.
fn classic(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|t| t.strip_suffix(" counter"))
        {
            counters.insert(name.to_owned());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_only_when_asked_at_least_as_much_as_anything_else() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(Some(prometheus)));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(Some(
            "text/plain,application/openmetrics-text;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("application/openmetrics-text;q=0")));
    }

    #[test]
    fn series_are_told_apart_by_their_labels_less_the_bucket_bound() {
        assert_eq!(
            series_key(r#"x_bucket{le="0.1",route="/v1/bans/{token}"} 1"#),
            r#"route="/v1/bans/{token}""#
        );
        assert_eq!(
            series_key(r#"x_total{a="q\"}",b="2"} 3"#),
            r#"a="q\"}",b="2""#
        );
        assert_eq!(series_key("x 1"), "");
    }
}
