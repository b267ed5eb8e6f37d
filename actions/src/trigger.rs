//! `trigger`: passes on the events that match its rules; the others take
//! the `no_match` branch.

use futures_util::future::BoxFuture;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value as J, json};
use tale_core::action::{
    ActionConfig, ActionError, CompileError, Compiler, Emit, ExecCx, Executable, Inline, Outcome, TemplateField,
};
use tale_core::runtime::contract::with_member;

/// The rules themselves are the common `rules` and `must_match` keys.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// Compare text case-sensitively. Unset: comparisons are, regexes are
    /// not (as in Tines); a rule's own `case_sensitive` wins.
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

    fn build(&self, _compiler: &Compiler<'_>) -> Result<Box<dyn Executable>, CompileError> {
        Ok(self.build_exec())
    }
}

impl TriggerConfig {
    fn build_exec(&self) -> Box<dyn Executable> {
        Box::new(TriggerExec {
            case_sensitive: self.case_sensitive,
        })
    }
}

struct TriggerExec {
    case_sensitive: Option<bool>,
}

impl Executable for TriggerExec {
    fn inline(&self) -> Inline {
        Inline::Pure
    }

    fn execute<'a>(&'a self, cx: &'a ExecCx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        Box::pin(async move {
            let (matched, rules) = cx.rules.explain(&cx.scope, self.case_sensitive)?;
            let emit = if matched {
                cx.passed_on(Some(("rule_matched", J::Bool(true))))?
            } else {
                Emit::Branch("no_match", with_member(cx.input(), "rule_matched", J::Bool(false)))
            };
            Ok(Outcome {
                emits: vec![emit],
                trace: vec![json!({ "rules": rules })],
                ..Outcome::default()
            })
        })
    }
}
