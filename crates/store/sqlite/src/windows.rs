//! Tokens' windows in the store, so that a restart does not reset anyone's counts.
//!
//! One row per token and metric: the windows' seconds and values in a small binary record
//! (little-endian, versioned), and the newest second they hold, by which rows that can no
//! longer matter are dropped.

use std::sync::Arc;

use banhammer_core::{Timestamp, Token, WindowsData, WindowsSnapshot};
use rusqlite::{params, Transaction};

use crate::{DecisionStore, StoreError};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS windows (
    token TEXT NOT NULL,
    metric TEXT NOT NULL,
    last_at INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (token, metric)
);
CREATE INDEX IF NOT EXISTS windows_last_at ON windows (last_at);
";

/// The record's layout version.
const VERSION: u8 = 1;

impl DecisionStore {
    /// Saves `windows` in one transaction (an empty one deletes its row), and drops every
    /// row whose newest second is at or before `forget_until` (nothing in it can matter).
    pub fn save_windows(
        &mut self,
        windows: &[WindowsSnapshot],
        forget_until: Timestamp,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        write(&tx, windows, Some(forget_until))?;
        tx.commit()?;
        Ok(())
    }

    /// Every saved window whose newest second is after `after`; rows that cannot be read
    /// (a token too long, a damaged record) are skipped.
    pub fn load_windows(&self, after: Timestamp) -> Result<Vec<WindowsSnapshot>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT token, metric, data FROM windows WHERE last_at > ?1")?;
        let rows = stmt.query_map(params![after.as_unix()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (token, metric, data) = row?;
            let (Some(token), Some(data)) = (Token::new(&token), decode(&data)) else {
                tracing::warn!(metric, "A saved window could not be read; skipped.");
                continue;
            };
            out.push(WindowsSnapshot {
                token,
                metric: Arc::from(metric),
                data,
            });
        }
        Ok(out)
    }
}

/// Saves `windows` in `tx` (an empty one deletes its row) and drops every row whose newest
/// second is at or before `forget`.
pub(crate) fn write(
    tx: &Transaction<'_>,
    windows: &[WindowsSnapshot],
    forget: Option<Timestamp>,
) -> Result<(), StoreError> {
    if !windows.is_empty() {
        let mut put = tx.prepare_cached(
            "INSERT INTO windows (token, metric, last_at, data) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (token, metric) DO UPDATE SET last_at = ?3, data = ?4",
        )?;
        let mut delete =
            tx.prepare_cached("DELETE FROM windows WHERE token = ?1 AND metric = ?2")?;
        for w in windows {
            match w.data.last_at() {
                Some(last) if !w.data.is_empty() => {
                    put.execute(params![
                        w.token.as_str(),
                        &*w.metric,
                        last.as_unix(),
                        encode(&w.data)
                    ])?;
                }
                _ => {
                    delete.execute(params![w.token.as_str(), &*w.metric])?;
                }
            }
        }
    }
    if let Some(forget) = forget {
        tx.prepare_cached("DELETE FROM windows WHERE last_at <= ?1")?
            .execute(params![forget.as_unix()])?;
    }
    Ok(())
}

fn encode(d: &WindowsData) -> Vec<u8> {
    let mut out = vec![VERSION];
    let len = |out: &mut Vec<u8>, n: usize| {
        out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
    };
    let seconds = |out: &mut Vec<u8>, s: &[(Timestamp, u64)]| {
        len(out, s.len());
        for (at, n) in s {
            out.extend_from_slice(&at.as_unix().to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
        }
    };
    seconds(&mut out, &d.count);
    len(&mut out, d.sums.len());
    for s in &d.sums {
        seconds(&mut out, s);
    }
    len(&mut out, d.distincts.len());
    for values in &d.distincts {
        len(&mut out, values.len());
        for (at, v) in values {
            out.extend_from_slice(&at.as_unix().to_le_bytes());
            len(&mut out, v.len());
            out.extend_from_slice(v.as_bytes());
        }
    }
    out
}

/// Reads a record; `None` for anything that is not one. Every length is checked against
/// what is left, so a damaged record cannot make it allocate without bound.
fn decode(bytes: &[u8]) -> Option<WindowsData> {
    let mut r = Reader(bytes);
    if r.take(1)? != [VERSION] {
        return None;
    }
    let count = r.seconds()?;
    let mut sums = Vec::new();
    for _ in 0..r.len(4)? {
        sums.push(r.seconds()?);
    }
    let mut distincts = Vec::new();
    for _ in 0..r.len(12)? {
        let n = r.len(12)?;
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            let at = r.i64()?;
            let len = r.len(1)?;
            let v = std::str::from_utf8(r.take(len)?).ok()?;
            values.push((Timestamp::from_unix(at), Box::from(v)));
        }
        distincts.push(values);
    }
    r.0.is_empty().then_some(WindowsData {
        count,
        sums,
        distincts,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    /// A count of items of at least `item` bytes each: refused if more than could follow.
    fn len(&mut self, item: usize) -> Option<usize> {
        let n = usize::try_from(u32::from_le_bytes(self.take(4)?.try_into().ok()?)).ok()?;
        (n.saturating_mul(item.max(1)) <= self.0.len()).then_some(n)
    }

    fn seconds(&mut self) -> Option<Vec<(Timestamp, u64)>> {
        let n = self.len(16)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push((Timestamp::from_unix(self.i64()?), self.u64()?));
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix(s)
    }

    #[test]
    fn windows_are_saved_loaded_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DecisionStore::open(&dir.path().join("d.sqlite")).unwrap();
        let data = WindowsData {
            count: vec![(t(10), 2), (t(12), 1)],
            sums: vec![vec![(t(10), 400)]],
            distincts: vec![vec![(t(11), "é@x".into()), (t(12), "b".into())]],
        };
        let snap = |token: &str, metric: &str, data: WindowsData| WindowsSnapshot {
            token: Token::new(token).unwrap(),
            metric: Arc::from(metric),
            data,
        };
        let old = WindowsData {
            count: vec![(t(1), 1)],
            ..WindowsData::default()
        };
        store
            .save_windows(
                &[
                    snap("a", "detect:login", data.clone()),
                    snap("b", "m", old.clone()),
                ],
                t(0),
            )
            .unwrap();
        let loaded = store.load_windows(t(0)).unwrap();
        assert_eq!(loaded.len(), 2);
        assert!(loaded.contains(&snap("a", "detect:login", data.clone())));
        // Rows past their horizon go; an empty snapshot deletes its row.
        store
            .save_windows(&[snap("a", "detect:login", WindowsData::default())], t(5))
            .unwrap();
        assert!(store.load_windows(t(0)).unwrap().is_empty());
        // Damaged records are refused, never read past their end.
        let bytes = encode(&data);
        assert_eq!(decode(&bytes), Some(data));
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None);
        }
        let mut huge = vec![VERSION];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge), None);
    }
}
