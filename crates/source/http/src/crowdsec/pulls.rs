//! What each bouncer was last given, per API key, so that `/v1/decisions/stream` answers only
//! what started and what ended since its last pull. A snapshot diff, not a cursor into a log:
//! it needs nothing from the store but the active bans, and holds per key only the set last
//! given (at most one entry per banned address or range); a key not seen for
//! [`FORGET_AFTER`] seconds is dropped.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use banhammer_core::Timestamp;

use super::decision::Offer;

/// A key that has not pulled for this long (seconds) is forgotten: a bouncer that never
/// comes back holds no memory. One that does is answered as at startup.
pub(crate) const FORGET_AFTER: u64 = 3600;
/// An extended ban is sent again once its end has moved this far (seconds) past what the
/// bouncer was told, or sooner when what it was told would lapse before its next pull:
/// a ban extended by every event of a banned client is not re-sent on every pull.
pub(crate) const EXTENSION_STEP: u64 = 60;

/// What one pull sends.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Delta {
    /// Decisions to add, or to replace (an extension is in `deleted` and in `new`).
    pub(crate) new: Vec<Offer>,
    /// Decisions to drop, as they were given.
    pub(crate) deleted: Vec<Offer>,
}

/// One key's last pull.
#[derive(Debug)]
struct Pulled {
    at: Timestamp,
    /// What the bouncer holds, by value.
    given: HashMap<String, Offer>,
}

/// Every key's last pull.
#[derive(Debug, Default)]
pub(crate) struct Pulls {
    /// A std mutex: held for one diff, never across an await.
    keys: Mutex<HashMap<usize, Pulled>>,
}

impl Pulls {
    /// What key `key` is sent when `current` is active at `now`: everything when it starts up
    /// (or was forgotten), else what changed since its last pull. Records `current` as given.
    pub(crate) fn pull(
        &self,
        key: usize,
        startup: bool,
        now: Timestamp,
        current: HashMap<String, Offer>,
    ) -> Delta {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.retain(|k, p| *k == key || now.since(p.at).get() < FORGET_AFTER);
        let previous = keys.remove(&key).filter(|_| !startup);
        let mut delta = Delta::default();
        let given = match previous {
            None => {
                delta.new.extend(current.values().cloned());
                current
            }
            Some(Pulled { at, mut given }) => {
                let interval = now.since(at).get();
                given.retain(|value, old| {
                    let kept = current.contains_key(value);
                    if !kept {
                        delta.deleted.push(old.clone());
                    }
                    kept
                });
                for (value, offer) in current {
                    match given.entry(value) {
                        Entry::Vacant(v) => {
                            delta.new.push(offer.clone());
                            v.insert(offer);
                        }
                        Entry::Occupied(mut o) => {
                            if o.get().id != offer.id || resend(o.get(), &offer, now, interval) {
                                delta.deleted.push(o.insert(offer.clone()));
                                delta.new.push(offer);
                            }
                        }
                    }
                }
                given
            }
        };
        keys.insert(key, Pulled { at: now, given });
        delta.new.sort_by(|a, b| a.value.cmp(&b.value));
        delta.deleted.sort_by(|a, b| a.value.cmp(&b.value));
        delta
    }
}

/// Whether a ban given as `told` and now `now_offer` is sent again: it was extended, by at
/// least [`EXTENSION_STEP`], or what the bouncer holds ends before its next pull (expected
/// one `interval` from now) while the ban goes on.
fn resend(told: &Offer, now_offer: &Offer, now: Timestamp, interval: u64) -> bool {
    now_offer.until > told.until
        && (now_offer.until.since(told.until).get() >= EXTENSION_STEP
            || told.until.since(now).get() <= interval.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crowdsec::decision::Offer;
    use banhammer_core::{DecisionView, Effect};

    const T0: i64 = 1_700_000_000;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_unix(T0 + s)
    }

    /// A ban on `token` from `from` to `until` (seconds after T0).
    fn ban(token: &str, from: i64, until: i64) -> Offer {
        let view = DecisionView {
            effect: Effect::Block,
            metric: "m".into(),
            tier: 0,
            value: 1,
            from: at(from),
            until: at(until),
            reason: None,
        };
        Offer::of(token, &view).unwrap()
    }

    fn current(offers: &[Offer]) -> HashMap<String, Offer> {
        offers
            .iter()
            .map(|o| (o.value.clone(), o.clone()))
            .collect()
    }

    fn values(offers: &[Offer]) -> Vec<(&str, i64)> {
        offers
            .iter()
            .map(|o| (o.value.as_str(), o.until.as_unix() - T0))
            .collect()
    }

    #[test]
    fn startup_gives_everything_then_only_what_changed() {
        let p = Pulls::default();
        let a = ban("192.0.2.1", 0, 3600);
        let b = ban("192.0.2.2", 0, 3600);
        let d = p.pull(0, true, at(0), current(&[a.clone(), b.clone()]));
        assert_eq!(values(&d.new), [("192.0.2.1", 3600), ("192.0.2.2", 3600)]);
        assert!(d.deleted.is_empty());
        assert_eq!(
            p.pull(0, false, at(10), current(&[a.clone(), b.clone()])),
            Delta::default()
        );
        let c = ban("192.0.2.3", 15, 3615);
        let d = p.pull(0, false, at(20), current(&[a.clone(), c]));
        assert_eq!(values(&d.new), [("192.0.2.3", 3615)]);
        assert_eq!(values(&d.deleted), [("192.0.2.2", 3600)]);
        // Another key has its own view: it starts from nothing.
        let d = p.pull(1, false, at(20), current(&[a]));
        assert_eq!(values(&d.new), [("192.0.2.1", 3600)]);
    }

    #[test]
    fn an_extension_is_resent_once_it_is_worth_it_or_due() {
        let p = Pulls::default();
        p.pull(0, true, at(0), current(&[ban("192.0.2.1", 0, 100)]));
        // 10 s further, far from its end: not worth a resend.
        let d = p.pull(0, false, at(10), current(&[ban("192.0.2.1", 0, 110)]));
        assert_eq!(d, Delta::default());
        // A minute past what it was told: sent again (deleted, then new), same id.
        let d = p.pull(0, false, at(20), current(&[ban("192.0.2.1", 0, 160)]));
        assert_eq!(values(&d.deleted), [("192.0.2.1", 100)]);
        assert_eq!(values(&d.new), [("192.0.2.1", 160)]);
        assert_eq!(d.deleted[0].id, d.new[0].id);
        // Small extensions again, until what it holds would end before its next pull
        // (pulls every 10 s here).
        for t in (30..=140).step_by(10) {
            let d = p.pull(0, false, at(t), current(&[ban("192.0.2.1", 0, 170)]));
            assert_eq!(d, Delta::default(), "at {t}");
        }
        let d = p.pull(0, false, at(150), current(&[ban("192.0.2.1", 0, 175)]));
        assert_eq!(values(&d.new), [("192.0.2.1", 175)]);
    }

    #[test]
    fn a_ban_ended_and_started_again_is_replaced() {
        let p = Pulls::default();
        p.pull(0, true, at(0), current(&[ban("192.0.2.1", 0, 100)]));
        let again = ban("192.0.2.1", 50, 80);
        let d = p.pull(0, false, at(60), current(std::slice::from_ref(&again)));
        assert_eq!(values(&d.deleted), [("192.0.2.1", 100)]);
        assert_eq!(d.new, [again]);
    }

    #[test]
    fn keys_idle_for_an_hour_are_forgotten() {
        let p = Pulls::default();
        let a = ban("192.0.2.1", 0, 86_400);
        p.pull(0, true, at(0), current(std::slice::from_ref(&a)));
        p.pull(1, true, at(0), current(std::slice::from_ref(&a)));
        // Key 1 keeps pulling; key 0 does not, and is dropped when key 1 pulls an hour on.
        let forget = i64::try_from(FORGET_AFTER).unwrap();
        p.pull(1, false, at(forget), current(std::slice::from_ref(&a)));
        assert_eq!(p.keys.lock().unwrap().len(), 1);
        // Back, it is answered as at startup.
        let d = p.pull(0, false, at(forget + 1), current(&[a]));
        assert_eq!(values(&d.new), [("192.0.2.1", 86_400)]);
    }
}
