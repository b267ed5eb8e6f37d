//! `trigger`: passes on the events that match its rules; the others take
//! the `no_match` branch.

use futures_util::future::BoxFuture;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value as J, json};
use tale_core::action::{
    ActionConfig, ActionError, CompileError, Compiler, Emit, ExecCx, Executable, Inline, Outcome, TemplateField,
};

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

/// The incoming output with `rule_matched` added (inside it when it is an
/// object, else beside it as `value`).
fn with_rule_matched(input: &J, matched: bool) -> J {
    match input {
        J::Object(o) => {
            let mut o = o.clone();
            o.insert("rule_matched".into(), J::Bool(matched));
            J::Object(o)
        }
        other => json!({"value": other, "rule_matched": matched}),
    }
}

impl Executable for TriggerExec {
    fn inline(&self) -> Inline {
        Inline::Pure
    }

    fn execute<'a>(&'a self, cx: &'a ExecCx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        Box::pin(async move {
            let (matched, rules) = cx.rules.explain(&cx.scope, self.case_sensitive)?;
            let emit = match cx.input_text() {
                // A large input kept as text stays text on the main output.
                Some(raw) if matched => Emit::Text(
                    raw.with_member("rule_matched", &J::Bool(true))
                        .map_err(|e| ActionError::Failed(e.to_string()))?,
                ),
                _ if matched => Emit::Main(with_rule_matched(cx.input(), matched)),
                _ => Emit::Branch("no_match", with_rule_matched(cx.input(), matched)),
            };
            Ok(Outcome {
                emits: vec![emit],
                trace: vec![json!({ "rules": rules })],
                ..Outcome::default()
            })
        })
    }
}
