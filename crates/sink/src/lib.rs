//! banhammer-sink: where decisions go — CSV / JSON-lines records, built-in actions, and the
//! enforcers that keep a firewall in step with the bans (commands, native nftables);
//! [`DecisionSinks`] sends each decision to all of them.

mod actions;
mod command;
mod enforce;
mod escape;
mod logfile;
mod nft;
mod record;
mod sinks;
mod target;

pub use actions::{builtin_action, RecordFile};
pub use banhammer_core::{escape, is_unsafe, Escaped};
pub use command::CommandRunner;
pub use enforce::{CommandLine, CommandSink, Enforcer};
pub use logfile::DecisionFile;
pub use nft::{is_nft_name, NftSettings, Nftables};
pub use record::{write_decision, DecisionFormat};
pub use sinks::DecisionSinks;
pub use target::{Target, MIN_IPV4_PREFIX, MIN_IPV6_PREFIX};
