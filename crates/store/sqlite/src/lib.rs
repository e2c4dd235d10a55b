//! banhammer-store-sqlite: the decision log and the active bans in one SQLite file (WAL).
//!
//! Every decision (ban, unban, notice, alert) is appended to `decisions`; active bans are kept
//! in `bans` so that a restart restores them; a follower's read positions are kept in
//! `positions`, written in the same transaction as the decisions their lines caused, so a crash
//! neither forgets a ban nor counts a line twice. At a restart [`DecisionStore::read_back`]
//! closes the bans that ended while nothing ran and hands back the others to restore.
//! Operators' commands for a running `watch` (`banhammer ban`, `unban`) wait in `commands`
//! until the watcher applies them (`commands.rs`).

mod commands;
mod windows;

pub use commands::{Command, CommandOutcome, CommandStatus};

use std::fmt::Display;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use banhammer_core::{
    BanRecord, Change, DecisionEvent, Effect, Escaped, Ruleset, Timestamp, Token, WindowsSnapshot,
};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite refused (the file is not a database, the disk is full, …).
    #[error("decision store: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// A decision as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDecision {
    /// When it happened.
    pub at: Timestamp,
    /// `BAN`, `UNBAN`, `EXTEND`, `ALERT`, `RECOVER`, `NOTIFY`, `NOTIFY_END`.
    pub verb: String,
    /// Who.
    pub token: String,
    /// The metric of the rule.
    pub rule: String,
    /// The rule's tier.
    pub tier: usize,
    /// The measure that reached the limit.
    pub value: u64,
    /// When the decision started.
    pub from: Timestamp,
    /// When it ends (as known at `at`).
    pub until: Timestamp,
    /// The operator's reason, for a ban made or carried further by hand.
    pub reason: Option<String>,
}

impl StoredDecision {
    /// This stored ban as an engine restores it ([`banhammer_core::Engine::restore_ban`]).
    pub fn as_ban(&self) -> BanRecord<'_> {
        BanRecord {
            token: &self.token,
            metric: &self.rule,
            tier: self.tier,
            value: self.value,
            from: self.from,
            until: self.until,
            reason: self.reason.as_deref(),
        }
    }

    /// Whether an operator made it by hand (its rule is [`Ruleset::MANUAL`]).
    pub fn is_manual(&self) -> bool {
        self.rule == Ruleset::MANUAL
    }

    /// This stored ban's end as the engine reports one: an `UNBAN` at `at` (for a ban that
    /// [`DecisionStore::close_expired`] closed, its own `until`). `None` if the stored token is
    /// not a token the engine accepts.
    pub fn unban(&self) -> Option<DecisionEvent> {
        Some(DecisionEvent {
            at: self.at,
            change: Change::End,
            effect: Effect::Block,
            token: Token::new(&self.token)?,
            metric: Arc::from(self.rule.as_str()),
            tier: self.tier,
            value: self.value,
            from: self.from,
            until: self.until,
            reason: self.reason.as_deref().map(Arc::from),
        })
    }
}

/// The bans a restart reads back: see [`DecisionStore::read_back`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBack {
    /// Bans that ended while nothing ran, now closed in the store: their `UNBAN`s, each at its
    /// own `until`, in that order, for the sinks that did not hear of them.
    pub ended: Vec<DecisionEvent>,
    /// Bans still active, oldest first, to restore into the engine.
    pub active: Vec<StoredDecision>,
}

impl ReadBack {
    /// Restores every active ban through `restore`, called like `Engine::restore_ban`. A ban
    /// it refuses (its rule is gone from the configuration) is logged and stays on disk only,
    /// to end at its time. Returns how many were restored.
    pub fn restore<E: Display>(
        &self,
        mut restore: impl FnMut(&BanRecord<'_>) -> Result<(), E>,
    ) -> usize {
        let mut restored = 0;
        for b in &self.active {
            match restore(&b.as_ban()) {
                Ok(()) => restored += 1,
                Err(e) => {
                    tracing::warn!(token = %Escaped(&b.token), error = %Escaped(&e), "A stored ban does not fit the rules; kept on disk only.");
                }
            }
        }
        restored
    }
}

/// Where a follower is in one file: which file (device, inode and a fingerprint of its first
/// bytes) and how far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FilePosition {
    /// Device of the file read.
    pub dev: u64,
    /// Inode of the file read.
    pub ino: u64,
    /// Bytes consumed (whole lines only).
    pub offset: u64,
    /// How many of the file's first bytes `head_hash` covers; 0 when unknown (a state file
    /// written before fingerprints were kept).
    pub head_len: u64,
    /// A hash of those bytes: tells a file truncated and written again in place, or a new file
    /// with the old one's inode, from the file that was read.
    pub head_hash: u64,
}

/// The SQLite file.
#[derive(Debug)]
pub struct DecisionStore {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    verb TEXT NOT NULL,
    token TEXT NOT NULL,
    rule TEXT NOT NULL,
    tier INTEGER NOT NULL,
    value INTEGER NOT NULL,
    from_ts INTEGER NOT NULL,
    until_ts INTEGER NOT NULL,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS decisions_token ON decisions (token, at);
CREATE TABLE IF NOT EXISTS bans (
    token TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    tier INTEGER NOT NULL,
    value INTEGER NOT NULL,
    from_ts INTEGER NOT NULL,
    until_ts INTEGER NOT NULL,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS positions (
    path TEXT PRIMARY KEY,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    head_len INTEGER NOT NULL DEFAULT 0,
    head_hash INTEGER NOT NULL DEFAULT 0
);
";

/// Adds the columns a file written by an earlier version lacks, in place: the fingerprint
/// columns of `positions` (its rows keep their place, with an unknown fingerprint) and the
/// `reason` of `decisions` and `bans` (none for what they hold). In one immediate
/// transaction, so that two processes opening the same old file do not both add them.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let has = |table: &str, column: &str| -> Result<bool, rusqlite::Error> {
        tx.query_row(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
            [table, column],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )
    };
    if !has("positions", "head_len")? {
        tx.execute_batch(
            "ALTER TABLE positions ADD COLUMN head_len INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE positions ADD COLUMN head_hash INTEGER NOT NULL DEFAULT 0;",
        )?;
    }
    for table in ["decisions", "bans"] {
        if !has(table, "reason")? {
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN reason TEXT;"))?;
        }
    }
    tx.commit()?;
    Ok(())
}

impl DecisionStore {
    /// Opens (creating if needed) the store at `path`, in WAL mode with full sync: a
    /// decision is on disk when [`DecisionStore::record`] returns.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        migrate(&mut conn)?;
        conn.execute_batch(windows::SCHEMA)?;
        conn.execute_batch(commands::SCHEMA)?;
        Ok(DecisionStore { conn })
    }

    /// Appends `decisions` and updates the active bans, in one transaction.
    pub fn record(&mut self, decisions: &[DecisionEvent]) -> Result<(), StoreError> {
        self.record_at(decisions, None)
    }

    /// [`DecisionStore::record`], also saving the read position of the file at `path`.
    pub fn record_at(
        &mut self,
        decisions: &[DecisionEvent],
        position: Option<(&str, FilePosition)>,
    ) -> Result<(), StoreError> {
        self.record_step(decisions, position, &[], None)
    }

    /// [`DecisionStore::record_at`], also saving `windows` (and dropping saved windows at or
    /// before `forget`), all in one transaction: a follower that crashes then neither counts a
    /// line twice nor forgets what the lines it read had counted.
    pub fn record_step(
        &mut self,
        decisions: &[DecisionEvent],
        position: Option<(&str, FilePosition)>,
        windows: &[WindowsSnapshot],
        forget: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        if decisions.is_empty() && position.is_none() && windows.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        windows::write(&tx, windows, forget)?;
        for d in decisions {
            write_decision(&tx, d)?;
        }
        if let Some((path, p)) = position {
            tx.prepare_cached(
                "INSERT INTO positions (path, dev, ino, offset, head_len, head_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (path) DO UPDATE
                 SET dev = ?2, ino = ?3, offset = ?4, head_len = ?5, head_hash = ?6",
            )?
            .execute(params![
                path,
                to_sql(p.dev),
                to_sql(p.ino),
                to_sql(p.offset),
                to_sql(p.head_len),
                hash_to_sql(p.head_hash)
            ])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The bans still active at `now`, oldest first.
    pub fn active_bans(&self, now: Timestamp) -> Result<Vec<StoredDecision>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT token, rule, tier, value, from_ts, until_ts, reason FROM bans
             WHERE until_ts > ?1 ORDER BY from_ts, token",
        )?;
        let rows = stmt.query_map([now.as_unix()], |r| {
            Ok(StoredDecision {
                at: Timestamp::from_unix(r.get(4)?),
                verb: "BAN".to_owned(),
                token: r.get(0)?,
                rule: r.get(1)?,
                tier: from_sql(r.get(2)?),
                value: from_sql(r.get(3)?),
                from: Timestamp::from_unix(r.get(4)?),
                until: Timestamp::from_unix(r.get(5)?),
                reason: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Closes bans that ended while nobody was running (their `until` is at or before
    /// `now`): logs an `UNBAN` at each one's `until` and removes it. Returns them.
    pub fn close_expired(&mut self, now: Timestamp) -> Result<Vec<StoredDecision>, StoreError> {
        let tx = self.conn.transaction()?;
        let expired: Vec<StoredDecision> = {
            let mut stmt = tx.prepare(
                "SELECT token, rule, tier, value, from_ts, until_ts, reason FROM bans
                 WHERE until_ts <= ?1 ORDER BY until_ts, token",
            )?;
            let rows = stmt.query_map([now.as_unix()], |r| {
                Ok(StoredDecision {
                    at: Timestamp::from_unix(r.get(5)?),
                    verb: "UNBAN".to_owned(),
                    token: r.get(0)?,
                    rule: r.get(1)?,
                    tier: from_sql(r.get(2)?),
                    value: from_sql(r.get(3)?),
                    from: Timestamp::from_unix(r.get(4)?),
                    until: Timestamp::from_unix(r.get(5)?),
                    reason: r.get(6)?,
                })
            })?;
            rows.collect::<Result<_, _>>()?
        };
        for d in &expired {
            tx.prepare_cached(
                "INSERT INTO decisions (at, verb, token, rule, tier, value, from_ts, until_ts, reason)
                 VALUES (?1, 'UNBAN', ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                d.at.as_unix(),
                d.token,
                d.rule,
                to_sql(d.tier as u64),
                to_sql(d.value),
                d.from.as_unix(),
                d.until.as_unix(),
                d.reason
            ])?;
            tx.prepare_cached("DELETE FROM bans WHERE token = ?1")?
                .execute([&d.token])?;
        }
        tx.commit()?;
        Ok(expired)
    }

    /// When each ban logged after `since` started, oldest first, with its token: what a
    /// restart needs to escalate repeat offenders' next bans.
    pub fn ban_starts(&self, since: Timestamp) -> Result<Vec<(String, Timestamp)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT token, at FROM decisions WHERE verb = 'BAN' AND at > ?1 ORDER BY at, id",
        )?;
        let rows = stmt.query_map([since.as_unix()], |r| {
            Ok((r.get::<_, String>(0)?, Timestamp::from_unix(r.get(1)?)))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What a restart at `now` reads back: closes the bans that ended by `now` (as
    /// [`DecisionStore::close_expired`] does) and returns their `UNBAN`s with the bans still
    /// active. Give `now` as the engine's time: with line time that is the beginning of time,
    /// so nothing is closed and every ban is handed back.
    pub fn read_back(&mut self, now: Timestamp) -> Result<ReadBack, StoreError> {
        let ended = self
            .close_expired(now)?
            .iter()
            .filter_map(StoredDecision::unban)
            .collect();
        let active = self.active_bans(now)?;
        Ok(ReadBack { ended, active })
    }

    /// The decision log, oldest first, for one token or all, at most `limit` rows (the latest).
    pub fn history(
        &self,
        token: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredDecision>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT at, verb, token, rule, tier, value, from_ts, until_ts, reason FROM (
                 SELECT * FROM decisions WHERE ?1 IS NULL OR token = ?1
                 ORDER BY id DESC LIMIT ?2
             ) ORDER BY id",
        )?;
        let rows = stmt.query_map(params![token, to_sql(limit as u64)], |r| {
            Ok(StoredDecision {
                at: Timestamp::from_unix(r.get(0)?),
                verb: r.get(1)?,
                token: r.get(2)?,
                rule: r.get(3)?,
                tier: from_sql(r.get(4)?),
                value: from_sql(r.get(5)?),
                from: Timestamp::from_unix(r.get(6)?),
                until: Timestamp::from_unix(r.get(7)?),
                reason: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The saved read position of the file at `path`.
    pub fn position(&self, path: &str) -> Result<Option<FilePosition>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT dev, ino, offset, head_len, head_hash FROM positions WHERE path = ?1",
                [path],
                |r| {
                    Ok(FilePosition {
                        dev: from_sql(r.get(0)?),
                        ino: from_sql(r.get(1)?),
                        offset: from_sql(r.get(2)?),
                        head_len: from_sql(r.get(3)?),
                        head_hash: hash_from_sql(r.get(4)?),
                    })
                },
            )
            .optional()?)
    }
}

fn write_decision(tx: &Transaction<'_>, d: &DecisionEvent) -> Result<(), StoreError> {
    // Extensions only move a ban's end; the log keeps starts and ends.
    if d.is_record() {
        log_decision(tx, d)?;
    }
    if d.effect != Effect::Block {
        return Ok(());
    }
    match d.change {
        Change::End => {
            tx.prepare_cached("DELETE FROM bans WHERE token = ?1")?
                .execute([d.token.as_str()])?;
        }
        Change::Start | Change::Extend => {
            // A ban by hand that carries a ban further gives it its reason.
            tx.prepare_cached(
                "INSERT INTO bans (token, rule, tier, value, from_ts, until_ts, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (token) DO UPDATE
                 SET until_ts = max(until_ts, ?6), reason = coalesce(?7, reason)",
            )?
            .execute(params![
                d.token.as_str(),
                &*d.metric,
                to_sql(d.tier as u64),
                to_sql(d.value),
                d.from.as_unix(),
                d.until.as_unix(),
                d.reason.as_deref()
            ])?;
        }
    }
    Ok(())
}

fn log_decision(tx: &Transaction<'_>, d: &DecisionEvent) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO decisions (at, verb, token, rule, tier, value, from_ts, until_ts, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        d.at.as_unix(),
        d.verb(),
        d.token.as_str(),
        &*d.metric,
        to_sql(d.tier as u64),
        to_sql(d.value),
        d.from.as_unix(),
        d.until.as_unix(),
        d.reason.as_deref()
    ])?;
    Ok(())
}

/// SQLite integers are signed; our counters fit.
fn to_sql(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn from_sql<T: TryFrom<i64> + Default>(v: i64) -> T {
    T::try_from(v).unwrap_or_default()
}

/// A hash uses all 64 bits: stored bit for bit in SQLite's signed integer.
fn hash_to_sql(h: u64) -> i64 {
    i64::from_be_bytes(h.to_be_bytes())
}

fn hash_from_sql(v: i64) -> u64 {
    u64::from_be_bytes(v.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(at: i64, change: Change, token: &str, until: i64) -> DecisionEvent {
        DecisionEvent {
            at: Timestamp::from_unix(at),
            change,
            effect: Effect::Block,
            token: Token::new(token).unwrap(),
            metric: Arc::from("request"),
            tier: 0,
            value: 40,
            from: Timestamp::from_unix(10),
            until: Timestamp::from_unix(until),
            reason: None,
        }
    }

    #[test]
    fn bans_survive_reopening_and_end_with_their_unban() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        {
            let mut s = DecisionStore::open(&path).unwrap();
            s.record(&[
                decision(10, Change::Start, "a", 100),
                decision(10, Change::Start, "b", 50),
            ])
            .unwrap();
        }
        let mut s = DecisionStore::open(&path).unwrap();
        let active = s.active_bans(Timestamp::from_unix(20)).unwrap();
        assert_eq!(
            active.iter().map(|d| d.token.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(active[0].until, Timestamp::from_unix(100));
        s.record(&[decision(100, Change::End, "a", 100)]).unwrap();
        assert_eq!(s.active_bans(Timestamp::from_unix(20)).unwrap().len(), 1);
        let log = s.history(None, 10).unwrap();
        assert_eq!(
            log.iter().map(|d| d.verb.as_str()).collect::<Vec<_>>(),
            ["BAN", "BAN", "UNBAN"]
        );
    }

    #[test]
    fn extensions_move_the_stored_end_without_a_log_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = DecisionStore::open(&dir.path().join("s.sqlite")).unwrap();
        s.record(&[
            decision(10, Change::Start, "a", 100),
            decision(50, Change::Extend, "a", 150),
        ])
        .unwrap();
        assert_eq!(
            s.active_bans(Timestamp::from_unix(0)).unwrap()[0].until,
            Timestamp::from_unix(150)
        );
        assert_eq!(s.history(None, 10).unwrap().len(), 1);
    }

    #[test]
    fn expired_bans_are_closed_at_their_until() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = DecisionStore::open(&dir.path().join("s.sqlite")).unwrap();
        s.record(&[
            decision(10, Change::Start, "a", 100),
            decision(10, Change::Start, "b", 500),
        ])
        .unwrap();
        let closed = s.close_expired(Timestamp::from_unix(300)).unwrap();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].token, "a");
        assert_eq!(closed[0].at, Timestamp::from_unix(100));
        let log = s.history(Some("a"), 10).unwrap();
        assert_eq!(log.last().unwrap().verb, "UNBAN");
        assert_eq!(s.active_bans(Timestamp::from_unix(300)).unwrap().len(), 1);
    }

    /// Bans of metric `request` (the one rule) and of `gone` (a rule since removed) until
    /// 50, 100 and 500, recorded in a store that is then closed, as at a stop.
    fn stopped_store(path: &Path) {
        let mut s = DecisionStore::open(path).unwrap();
        let mut gone = decision(10, Change::Start, "g", 500);
        gone.metric = Arc::from("gone");
        s.record(&[
            decision(10, Change::Start, "a", 100),
            decision(10, Change::Start, "b", 500),
            decision(10, Change::Start, "c", 50),
            gone,
        ])
        .unwrap();
    }

    #[test]
    fn read_back_closes_what_ended_and_hands_back_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        stopped_store(&path);
        let mut s = DecisionStore::open(&path).unwrap();
        let back = s.read_back(Timestamp::from_unix(300)).unwrap();
        assert_eq!(
            back.ended,
            [
                decision(50, Change::End, "c", 50),
                decision(100, Change::End, "a", 100)
            ],
            "UNBANs at their own until, in that order"
        );
        let active: Vec<&str> = back.active.iter().map(|b| b.token.as_str()).collect();
        assert_eq!(active, ["b", "g"]);
        let log = s.history(None, 10).unwrap();
        assert_eq!(
            log.iter()
                .map(|d| format!("{} {}", d.verb, d.token))
                .collect::<Vec<_>>(),
            ["BAN a", "BAN b", "BAN c", "BAN g", "UNBAN c", "UNBAN a"]
        );
        // Read back again (another restart): closed once only.
        drop(s);
        let mut s = DecisionStore::open(&path).unwrap();
        let again = s.read_back(Timestamp::from_unix(300)).unwrap();
        assert!(again.ended.is_empty());
        assert_eq!(again.active, back.active);
    }

    #[test]
    fn read_back_at_the_beginning_of_time_closes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        stopped_store(&path);
        let back = DecisionStore::open(&path)
            .unwrap()
            .read_back(Timestamp::from_unix(i64::MIN))
            .unwrap();
        assert!(back.ended.is_empty());
        assert_eq!(back.active.len(), 4);
    }

    #[test]
    fn restore_puts_the_active_bans_into_an_engine_and_skips_those_that_do_not_fit() {
        use banhammer_core::{Engine, ManualClock};
        use banhammer_testkit::rules::{block, metric, ruleset};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        stopped_store(&path);
        let rules = ruleset([metric("request", [block(40, 60, 600)])]);
        let mut engine = Engine::new(rules, ManualClock::new(Timestamp::from_unix(300)));
        let back = DecisionStore::open(&path)
            .unwrap()
            .read_back(engine.time())
            .unwrap();
        let restored = back.restore(|ban| engine.restore_ban(ban));
        assert_eq!(restored, 1, "`g`'s rule is gone");
        assert!(engine.is_banned("b"));
        assert!(!engine.is_banned("a") && !engine.is_banned("g"));
    }

    #[test]
    fn positions_are_saved_with_their_decisions() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = DecisionStore::open(&dir.path().join("s.sqlite")).unwrap();
        assert_eq!(s.position("/var/log/access.log").unwrap(), None);
        let p = FilePosition {
            dev: 1,
            ino: 2,
            offset: 300,
            head_len: 256,
            head_hash: u64::MAX - 5,
        };
        s.record_at(
            &[decision(10, Change::Start, "a", 100)],
            Some(("/var/log/access.log", p)),
        )
        .unwrap();
        assert_eq!(s.position("/var/log/access.log").unwrap(), Some(p));
    }

    #[test]
    fn a_state_file_without_fingerprints_is_migrated_in_place_and_keeps_its_positions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        {
            // The positions table as it was before fingerprints.
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE positions (path TEXT PRIMARY KEY, dev INTEGER NOT NULL,
                     ino INTEGER NOT NULL, offset INTEGER NOT NULL);
                 INSERT INTO positions VALUES ('/var/log/access.log', 7, 8, 900);",
            )
            .unwrap();
        }
        let mut s = DecisionStore::open(&path).unwrap();
        let old = FilePosition {
            dev: 7,
            ino: 8,
            offset: 900,
            head_len: 0,
            head_hash: 0,
        };
        assert_eq!(s.position("/var/log/access.log").unwrap(), Some(old));
        let new = FilePosition {
            offset: 1000,
            head_len: 40,
            head_hash: 1 << 63,
            ..old
        };
        s.record_at(&[], Some(("/var/log/access.log", new)))
            .unwrap();
        drop(s);
        let s = DecisionStore::open(&path).unwrap();
        assert_eq!(s.position("/var/log/access.log").unwrap(), Some(new));
    }

    #[test]
    fn a_ban_by_hand_keeps_its_reason_in_the_log_and_the_ban() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let mut s = DecisionStore::open(&path).unwrap();
        let mut ban = decision(10, Change::Start, "a", 100);
        ban.metric = Arc::from(Ruleset::MANUAL);
        ban.reason = Some(Arc::from("ticket #42"));
        let mut rule = decision(10, Change::Start, "b", 100);
        s.record(&[ban, rule.clone()]).unwrap();
        // A rule's ban carried further by hand takes the hand's reason.
        rule.change = Change::Extend;
        rule.until = Timestamp::from_unix(900);
        rule.reason = Some(Arc::from("persistent"));
        s.record(&[rule]).unwrap();
        drop(s);
        let mut s = DecisionStore::open(&path).unwrap();
        let active = s.active_bans(Timestamp::from_unix(20)).unwrap();
        assert!(active[0].is_manual());
        assert_eq!(active[0].reason.as_deref(), Some("ticket #42"));
        assert_eq!(active[0].as_ban().reason, Some("ticket #42"));
        assert!(!active[1].is_manual());
        assert_eq!(active[1].reason.as_deref(), Some("persistent"));
        assert_eq!(active[1].until, Timestamp::from_unix(900));
        let log = s.history(Some("a"), 10).unwrap();
        assert_eq!(log[0].reason.as_deref(), Some("ticket #42"));
        let closed = s.read_back(Timestamp::from_unix(500)).unwrap().ended;
        assert_eq!(closed[0].reason.as_deref(), Some("ticket #42"));
        assert_eq!(&*closed[0].metric, Ruleset::MANUAL);
    }

    #[test]
    fn a_log_written_before_reasons_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE decisions (id INTEGER PRIMARY KEY, at INTEGER NOT NULL,
                     verb TEXT NOT NULL, token TEXT NOT NULL, rule TEXT NOT NULL,
                     tier INTEGER NOT NULL, value INTEGER NOT NULL, from_ts INTEGER NOT NULL,
                     until_ts INTEGER NOT NULL);
                 CREATE TABLE bans (token TEXT PRIMARY KEY, rule TEXT NOT NULL,
                     tier INTEGER NOT NULL, value INTEGER NOT NULL, from_ts INTEGER NOT NULL,
                     until_ts INTEGER NOT NULL);
                 INSERT INTO decisions VALUES (1, 10, 'BAN', 'a', 'request', 0, 40, 10, 100);
                 INSERT INTO bans VALUES ('a', 'request', 0, 40, 10, 100);",
            )
            .unwrap();
        }
        let mut s = DecisionStore::open(&path).unwrap();
        let active = s.active_bans(Timestamp::from_unix(20)).unwrap();
        assert_eq!(active[0].token, "a");
        assert_eq!(active[0].reason, None);
        s.record(&[decision(20, Change::Start, "b", 100)]).unwrap();
        assert_eq!(s.history(None, 10).unwrap().len(), 2);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk");
        std::fs::write(
            &path,
            b"this is not sqlite, just some text that is long enough",
        )
        .unwrap();
        let err = DecisionStore::open(&path).unwrap_err();
        assert!(err.to_string().starts_with("decision store:"), "{err}");
    }
}
