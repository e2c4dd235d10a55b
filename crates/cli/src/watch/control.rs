//! Operators' commands for a running watch (`banhammer ban|unban --db STATE`): queued in the
//! state file, applied here to the engine at each step. Their decisions join the step's, so
//! they are stored and sent to the sinks (records, ban and unban commands) like any other.
//!
//! Why the state file and not a socket: it is already shared with `banhammer bans --db`, its
//! permissions already say who may act on this watcher's state, it needs no listener in a
//! process that has none, and a command queued while watch is down is applied when it starts.

use banhammer_config::{nets_cover, AccessLogSettings};
use banhammer_core::{Change, Clock, DecisionEvent, Engine, Timestamp};
use banhammer_sink::Escaped;
use banhammer_store_sqlite::{Command, CommandOutcome, CommandStatus};

/// Applies `commands` to `engine`: their decisions go to `decisions`, their outcomes come
/// back with their ids, to be written once the decisions are stored and sent. A token named
/// by address is the token its client counts as (`[accesslog]` prefixes); a client of
/// `[accesslog] ignore` is never banned.
pub(crate) fn apply<C: Clock>(
    engine: &mut Engine<C>,
    settings: &AccessLogSettings,
    commands: Vec<(i64, Command)>,
    decisions: &mut Vec<DecisionEvent>,
) -> Vec<(i64, CommandOutcome)> {
    commands
        .into_iter()
        .map(|(id, command)| (id, run(engine, settings, command, decisions)))
        .collect()
}

fn run<C: Clock>(
    engine: &mut Engine<C>,
    settings: &AccessLogSettings,
    command: Command,
    decisions: &mut Vec<DecisionEvent>,
) -> CommandOutcome {
    let refused = |token: String, why: String| CommandOutcome {
        status: CommandStatus::Refused,
        token,
        until: None,
        detail: Some(why),
    };
    match command {
        Command::Ban {
            token,
            duration,
            reason,
        } => {
            let token = settings.clients.token_named(token.trim());
            if engine.time() == Timestamp::MIN {
                // `--clock event` before any line: there is no now to ban from.
                return refused(
                    token,
                    "the watcher has no time yet (--clock event, no line read)".to_owned(),
                );
            }
            if nets_cover(&settings.ignore, &token) {
                return refused(
                    token,
                    "in [accesslog] ignore: never counted, never banned".to_owned(),
                );
            }
            match engine.ban_by_hand(&token, duration, reason.as_deref()) {
                Ok(v) => {
                    let made = v
                        .decisions
                        .iter()
                        .rev()
                        .find(|d| d.token.as_str() == token && d.change != Change::End)
                        .map(|d| d.change);
                    decisions.extend(v.decisions);
                    let status = match made {
                        Some(Change::Start) => CommandStatus::Banned,
                        Some(_) => CommandStatus::Extended,
                        None => CommandStatus::Unchanged,
                    };
                    tracing::info!(token = %Escaped(&token), reason = %Escaped(reason.as_deref().unwrap_or("")), status = status.as_str(), "Ban by hand.");
                    CommandOutcome {
                        status,
                        until: engine.ban(&token).map(|b| b.until),
                        token,
                        detail: None,
                    }
                }
                Err(e) => refused(token, e.to_string()),
            }
        }
        Command::Unban { token } => {
            let token = settings.clients.token_named(token.trim());
            // Ends that are due come first: a ban over by now is not there to end.
            decisions.extend(engine.tick());
            match engine.unban(&token) {
                Some(end) => {
                    tracing::info!(token = %Escaped(&token), "Unban by hand.");
                    let until = Some(end.at);
                    decisions.push(end);
                    CommandOutcome {
                        status: CommandStatus::Unbanned,
                        token,
                        until,
                        detail: None,
                    }
                }
                None => CommandOutcome {
                    status: CommandStatus::NotBanned,
                    token,
                    until: None,
                    detail: None,
                },
            }
        }
    }
}
