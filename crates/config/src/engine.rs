//! `[engine]` and `[actions]`: engine-wide options and the built-in actions' settings.

use std::num::NonZeroUsize;

use banhammer_core::Ruleset;

use crate::context::Cx;
use crate::raw::{RawActions, RawEngine};

/// The built-in actions a configuration may name.
pub const BUILTIN_ACTIONS: [&str; 3] = ["block_local", "record_local", "report_central"];

/// `[engine]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    /// Keep 1m/10m/60m rates.
    pub rates: bool,
    /// Cap on tracked tokens ([`Ruleset::DEFAULT_MAX_TOKENS`] unless configured).
    pub max_tokens: NonZeroUsize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            rates: false,
            max_tokens: Ruleset::DEFAULT_MAX_TOKENS,
        }
    }
}

/// `[actions]`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionSettings {
    /// Where `record_local` appends JSON lines, if anywhere.
    pub record_local_path: Option<String>,
    /// Where `report_central` appends JSON lines, if anywhere.
    pub report_central_path: Option<String>,
    /// Where `report_central` posts decisions under `banhammer serve`, if anywhere.
    pub report_central_url: Option<String>,
}

impl Cx<'_> {
    /// `[actions]`, validated.
    pub(crate) fn actions(&mut self, raw: RawActions) -> ActionSettings {
        let url = raw
            .report_central
            .as_ref()
            .and_then(|r| r.url.as_ref())
            .and_then(|u| {
                let text = u.get_ref();
                if text.starts_with("http://") || text.starts_with("https://") {
                    Some(text.clone())
                } else {
                    self.push(
                        Some(u.span()),
                        "actions.report_central.url",
                        format!("`{text}` is not an http:// or https:// URL"),
                    );
                    None
                }
            });
        ActionSettings {
            record_local_path: raw.record_local.and_then(|r| r.path),
            report_central_path: raw.report_central.and_then(|r| r.path),
            report_central_url: url,
        }
    }

    /// `[engine]`, validated.
    pub(crate) fn engine(&mut self, raw: RawEngine) -> EngineSettings {
        let max_tokens = raw.max_tokens.and_then(|cap| {
            let n = usize::try_from(*cap.get_ref())
                .ok()
                .and_then(NonZeroUsize::new);
            if n.is_none() {
                self.push(Some(cap.span()), "engine.max_tokens", "must be at least 1");
            }
            n
        });
        EngineSettings {
            rates: raw.rates,
            max_tokens: max_tokens.unwrap_or(Ruleset::DEFAULT_MAX_TOKENS),
        }
    }
}
