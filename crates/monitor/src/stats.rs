//! Summary statistics of an interval or a whole run, bounded however varied the traffic.

use std::collections::HashMap;

use crate::view::Sort;
use crate::{Hit, Reply};

/// Counts per key, bounded: past `cap` distinct keys, new keys are counted under `(other)`.
#[derive(Debug, Clone, Default)]
pub struct Counter {
    map: HashMap<String, u64>,
    cap: usize,
    other: u64,
}

impl Counter {
    /// A counter keeping at most `cap` distinct keys.
    pub fn new(cap: usize) -> Self {
        Counter {
            map: HashMap::new(),
            cap,
            other: 0,
        }
    }

    /// Adds `n` to `key`.
    pub fn add(&mut self, key: &str, n: u64) {
        if let Some(v) = self.map.get_mut(key) {
            *v += n;
        } else if self.map.len() < self.cap {
            self.map.insert(key.to_owned(), n);
        } else {
            self.other += n;
        }
    }

    /// The `k` largest counts, largest first (ties by key), with `(other)` last if any.
    pub fn top(&self, k: usize) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self.map.iter().map(|(k, n)| (k.clone(), *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(k);
        if self.other > 0 {
            v.push(("(other)".to_owned(), self.other));
        }
        v
    }

    /// Every count in `sort` order, with `(other)` last if any.
    pub fn sorted(&self, sort: Sort) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self.map.iter().map(|(k, n)| (k.clone(), *n)).collect();
        match sort {
            Sort::MostHits => v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0))),
            Sort::FewestHits => v.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0))),
            Sort::Name => v.sort_by(|a, b| a.0.cmp(&b.0)),
        }
        if self.other > 0 {
            v.push(("(other)".to_owned(), self.other));
        }
        v
    }

    /// The sum of every count.
    pub fn sum(&self) -> u64 {
        self.map.values().sum::<u64>() + self.other
    }

    /// Distinct keys counted (a floor once the cap is reached).
    pub fn distinct(&self) -> usize {
        self.map.len()
    }

    /// Whether keys were lumped into `(other)`.
    pub fn saturated(&self) -> bool {
        self.other > 0
    }
}

/// What was seen in an interval or a run.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Requests.
    pub requests: u64,
    /// Responses.
    pub responses: u64,
    /// Response body bytes, where known.
    pub bytes: u64,
    /// Requests per method.
    pub methods: Counter,
    /// Responses per status class: 1xx, 2xx, 3xx, 4xx, 5xx, other.
    pub statuses: [u64; 6],
    /// Requests per client.
    pub clients: Counter,
    /// Requests per host.
    pub hosts: Counter,
    /// Requests per section.
    pub sections: Counter,
}

impl Stats {
    /// Empty statistics keeping at most `cap` distinct clients, hosts and sections.
    pub fn new(cap: usize) -> Self {
        Stats {
            requests: 0,
            responses: 0,
            bytes: 0,
            methods: Counter::new(64),
            statuses: [0; 6],
            clients: Counter::new(cap),
            hosts: Counter::new(cap.min(10_000)),
            sections: Counter::new(cap.min(10_000)),
        }
    }

    pub(crate) fn add_hit(&mut self, hit: &Hit, section: &str) {
        self.requests += 1;
        self.methods.add(hit.method.as_deref().unwrap_or("?"), 1);
        self.clients.add(&hit.client.to_string(), 1);
        self.hosts.add(hit.host.as_deref().unwrap_or("-"), 1);
        self.sections.add(section, 1);
    }

    pub(crate) fn add_reply(&mut self, reply: &Reply) {
        self.responses += 1;
        self.bytes += reply.bytes.unwrap_or(0);
        let class = match reply.status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            500..=599 => 4,
            _ => 5,
        };
        self.statuses[class] += 1;
    }

    /// Share of responses with a 4xx or 5xx status (0 with no responses).
    pub fn error_rate(&self) -> f64 {
        if self.responses == 0 {
            0.0
        } else {
            (self.statuses[3] + self.statuses[4]) as f64 / self.responses as f64
        }
    }

    /// Requests per second over `seconds`.
    pub fn rate(&self, seconds: u64) -> f64 {
        self.requests as f64 / seconds.max(1) as f64
    }
}
