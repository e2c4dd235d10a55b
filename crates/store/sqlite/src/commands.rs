//! Operators' commands for a running `banhammer watch`, queued in its state file.
//!
//! `banhammer ban` and `unban` given watch's state file (`--db`) insert a row into `commands`;
//! the watcher takes the waiting rows at each step, applies them to its engine, stores and
//! sends the decisions they make like any other, and writes each row's outcome, which the
//! command reads back. The file's permissions are the access control: whoever may write the
//! state file may ban. A row queued while no watcher runs waits for the next one.

use banhammer_core::{Seconds, Timestamp};
use rusqlite::{params, OptionalExtension};

use crate::{from_sql, to_sql, DecisionStore, StoreError};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY,
    verb TEXT NOT NULL,
    token TEXT NOT NULL,
    duration INTEGER,
    reason TEXT,
    status TEXT,
    result_token TEXT,
    until_ts INTEGER,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS commands_waiting ON commands (status, id);
";

/// A waiting row: id, verb, token, duration, reason.
type QueuedRow = (i64, String, String, Option<i64>, Option<String>);

/// An outcome row: status, token acted on, until, detail (all unset while waiting).
type OutcomeRow = (Option<String>, Option<String>, Option<i64>, Option<String>);

/// What an operator asks a running watcher to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Ban `token` for `duration`, with an optional reason (`banhammer ban`).
    Ban {
        /// The token or address, as the operator wrote it.
        token: String,
        /// How long.
        duration: Seconds,
        /// Why.
        reason: Option<String>,
    },
    /// End `token`'s ban now (`banhammer unban`).
    Unban {
        /// The token or address, as the operator wrote it.
        token: String,
    },
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandStatus {
    /// A ban started.
    Banned,
    /// The token's ban now reaches further.
    Extended,
    /// The token was banned further already: nothing changed.
    Unchanged,
    /// The token's ban ended.
    Unbanned,
    /// The token was not banned.
    NotBanned,
    /// The command was refused (`detail` says why).
    Refused,
}

impl CommandStatus {
    /// The status as stored (and as the HTTP API's ban answer names it).
    pub fn as_str(self) -> &'static str {
        match self {
            CommandStatus::Banned => "banned",
            CommandStatus::Extended => "extended",
            CommandStatus::Unchanged => "unchanged",
            CommandStatus::Unbanned => "unbanned",
            CommandStatus::NotBanned => "not_banned",
            CommandStatus::Refused => "refused",
        }
    }

    /// The status stored as `text`.
    pub fn parse(text: &str) -> Option<Self> {
        [
            CommandStatus::Banned,
            CommandStatus::Extended,
            CommandStatus::Unchanged,
            CommandStatus::Unbanned,
            CommandStatus::NotBanned,
            CommandStatus::Refused,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// What the watcher did with a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// What happened.
    pub status: CommandStatus,
    /// The token acted on (an address as the watcher counts it: `2001:db8:1:2::/64`).
    pub token: String,
    /// When the token's ban ends now (bans), or ended (unbans), if it has one.
    pub until: Option<Timestamp>,
    /// Why a command was refused.
    pub detail: Option<String>,
}

impl DecisionStore {
    /// Queues `command` for the watcher of this file; its id, to read the outcome with.
    pub fn queue_command(&mut self, command: &Command) -> Result<i64, StoreError> {
        let (verb, token, duration, reason) = match command {
            Command::Ban {
                token,
                duration,
                reason,
            } => (
                "ban",
                token,
                Some(to_sql(duration.get())),
                reason.as_deref(),
            ),
            Command::Unban { token } => ("unban", token, None, None),
        };
        self.conn
            .prepare_cached(
                "INSERT INTO commands (verb, token, duration, reason) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![verb, token, duration, reason])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The commands waiting, oldest first, with their ids. A row that cannot be read (an
    /// unknown verb) is answered refused at once.
    pub fn waiting_commands(&mut self) -> Result<Vec<(i64, Command)>, StoreError> {
        let rows: Vec<QueuedRow> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, verb, token, duration, reason FROM commands
                 WHERE status IS NULL ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let mut out = Vec::with_capacity(rows.len());
        for (id, verb, token, duration, reason) in rows {
            match (verb.as_str(), duration) {
                ("ban", Some(d)) => out.push((
                    id,
                    Command::Ban {
                        token,
                        duration: Seconds::new(from_sql(d)),
                        reason,
                    },
                )),
                ("unban", _) => out.push((id, Command::Unban { token })),
                _ => self.finish_command(
                    id,
                    &CommandOutcome {
                        status: CommandStatus::Refused,
                        token,
                        until: None,
                        detail: Some(format!("unknown command `{verb}`")),
                    },
                )?,
            }
        }
        Ok(out)
    }

    /// Writes the outcome of command `id`.
    pub fn finish_command(&mut self, id: i64, outcome: &CommandOutcome) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE commands SET status = ?2, result_token = ?3, until_ts = ?4, detail = ?5
                 WHERE id = ?1",
            )?
            .execute(params![
                id,
                outcome.status.as_str(),
                outcome.token,
                outcome.until.map(Timestamp::as_unix),
                outcome.detail
            ])?;
        Ok(())
    }

    /// The outcome of command `id`, once the watcher has applied it.
    pub fn command_outcome(&self, id: i64) -> Result<Option<CommandOutcome>, StoreError> {
        let row: Option<OutcomeRow> = self
            .conn
            .query_row(
                "SELECT status, result_token, until_ts, detail FROM commands WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        Ok(row.and_then(|(status, token, until, detail)| {
            Some(CommandOutcome {
                status: CommandStatus::parse(&status?)?,
                token: token.unwrap_or_default(),
                until: until.map(Timestamp::from_unix),
                detail,
            })
        }))
    }

    /// Forgets command `id` (its outcome was read, or nobody will read it).
    pub fn forget_command(&mut self, id: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM commands WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }

    /// Forgets every command already applied (a watcher starting: nobody waits for those).
    pub fn forget_finished_commands(&mut self) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM commands WHERE status IS NOT NULL", [])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_waits_until_it_is_applied_then_reports_its_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let mut cli = DecisionStore::open(&path).unwrap();
        let ban = Command::Ban {
            token: "203.0.113.7".into(),
            duration: Seconds::new(3600),
            reason: Some("ticket #42".into()),
        };
        let id = cli.queue_command(&ban).unwrap();
        let unban = cli
            .queue_command(&Command::Unban {
                token: "198.51.100.1".into(),
            })
            .unwrap();
        assert_eq!(cli.command_outcome(id).unwrap(), None, "still waiting");

        let mut watcher = DecisionStore::open(&path).unwrap();
        let waiting = watcher.waiting_commands().unwrap();
        assert_eq!(
            waiting,
            [
                (id, ban),
                (
                    unban,
                    Command::Unban {
                        token: "198.51.100.1".into()
                    }
                )
            ]
        );
        let outcome = CommandOutcome {
            status: CommandStatus::Banned,
            token: "203.0.113.7".into(),
            until: Some(Timestamp::from_unix(5000)),
            detail: None,
        };
        watcher.finish_command(id, &outcome).unwrap();
        assert_eq!(watcher.waiting_commands().unwrap().len(), 1);
        assert_eq!(cli.command_outcome(id).unwrap(), Some(outcome));
        cli.forget_command(id).unwrap();
        assert_eq!(cli.command_outcome(id).unwrap(), None);
    }

    #[test]
    fn an_unknown_verb_is_refused_and_finished_ones_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = DecisionStore::open(&dir.path().join("s.sqlite")).unwrap();
        s.conn
            .execute(
                "INSERT INTO commands (verb, token) VALUES ('nuke', 'a')",
                [],
            )
            .unwrap();
        let id = s.conn.last_insert_rowid();
        assert!(s.waiting_commands().unwrap().is_empty());
        let outcome = s.command_outcome(id).unwrap().unwrap();
        assert_eq!(outcome.status, CommandStatus::Refused);
        assert_eq!(outcome.detail.as_deref(), Some("unknown command `nuke`"));
        s.forget_finished_commands().unwrap();
        assert_eq!(s.command_outcome(id).unwrap(), None);
    }
}
