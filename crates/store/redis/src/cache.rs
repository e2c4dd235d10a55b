//! `BanCache`: the bans a node knows of, fed by its own decisions and other nodes' messages,
//! so a banned token is answered without a round trip and bans hold while Redis is away.

use std::collections::HashMap;
use std::sync::RwLock;

use banhammer_core::Timestamp;

/// Token → until (unix seconds) for bans known to be active.
#[derive(Debug, Default)]
pub struct BanCache {
    /// A std lock: held for a lookup or an insert, never across an await.
    bans: RwLock<HashMap<String, i64>>,
}

/// Past this many entries, ended bans are swept out on insert.
const SWEEP_AT: usize = 100_000;

impl BanCache {
    /// Records `token` banned until `until` (0: unbanned).
    pub fn set(&self, token: &str, until: i64) {
        let Ok(mut bans) = self.bans.write() else {
            return;
        };
        if until == 0 {
            bans.remove(token);
            return;
        }
        if bans.len() >= SWEEP_AT {
            let newest = until;
            bans.retain(|_, u| *u > newest - 86_400);
        }
        let e = bans.entry(token.to_owned()).or_insert(until);
        *e = (*e).max(until);
    }

    /// Applies a `token|until` message from the ban channel.
    pub fn apply(&self, message: &str) {
        if let Some((token, until)) = message.rsplit_once('|') {
            if let Ok(until) = until.parse::<i64>() {
                self.set(token, until);
            }
        }
    }

    /// Whether `token` is known banned at `now`.
    pub fn is_banned(&self, token: &str, now: Timestamp) -> bool {
        self.until(token).is_some_and(|u| u > now)
    }

    /// The known end of `token`'s ban.
    pub fn until(&self, token: &str) -> Option<Timestamp> {
        self.bans
            .read()
            .ok()?
            .get(token)
            .map(|u| Timestamp::from_unix(*u))
    }

    /// Known bans (token, until), for listings while Redis is away.
    pub fn snapshot(&self) -> Vec<(String, i64)> {
        self.bans
            .read()
            .map(|b| b.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }
}
