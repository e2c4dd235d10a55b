//! banhammer-sink: where decisions go — CSV / JSON-lines records, commands, built-in actions,
//! and [`DecisionSinks`], which sends each decision to all of them.

mod actions;
mod command;
mod escape;
mod logfile;
mod record;
mod sinks;

pub use actions::{builtin_action, RecordFile};
pub use banhammer_core::{escape, is_unsafe, Escaped};
pub use command::CommandRunner;
pub use logfile::DecisionFile;
pub use record::{write_decision, DecisionFormat};
pub use sinks::{CommandLine, DecisionSinks};
