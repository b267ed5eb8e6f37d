//! `trigger`: passes on the events that match its rules; the others take
//! the `no_match` branch.

use schemars::JsonSchema;
use serde::Deserialize;
use tale_engine::action::{ActionConfig, TemplateField};

/// The rules themselves are the common `rules` and `must_match` keys.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// Compare text case-sensitively (default: true).
    pub case_sensitive: Option<bool>,
}

impl ActionConfig for TriggerConfig {
    fn type_name(&self) -> &'static str {
        "trigger"
    }

    fn branches(&self) -> &'static [&'static str] {
        &["no_match"]
    }

    fn needs_rules(&self) -> bool {
        true
    }

    fn templates<'a>(&'a self, _out: &mut Vec<TemplateField<'a>>) {}
}
