//! banhammer-sink: where decisions go — CSV / JSON-lines records and the built-in actions.

mod actions;
mod record;

pub use actions::{builtin_action, RecordFile};
pub use record::{write_decision, DecisionFormat};
