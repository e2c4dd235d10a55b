//! banhammer-sink: where decisions go — CSV / JSON-lines records, commands, built-in actions.

mod actions;
mod command;
mod logfile;
mod record;

pub use actions::{builtin_action, RecordFile};
pub use command::CommandRunner;
pub use logfile::DecisionFile;
pub use record::{write_decision, DecisionFormat};
