//! The contract between the engine and the action types of `tale-actions`.
//!
//! **Boundary:** this module (with `model`, `span`, `yaml` and `diagnostic`)
//! is all that `tale-actions` uses of the engine. The engine never names an
//! action type: it asks the [`ActionRegistry`] it is given.

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::diagnostic::{Code, Diagnostic, did_you_mean, one_of};
use crate::model::RawCommon;
use crate::span::Span;
use crate::yaml::{DeCx, DeIssue, DeIssueKind, Node, NodeKind, decode};

/// The checked configuration of one action, whatever its type.
pub trait ActionConfig: Debug + Send + Sync + 'static {
    /// The `type:` value, such as `http_request`.
    fn type_name(&self) -> &'static str;

    /// Named branches other actions may follow with `from: slug.<branch>`.
    fn branches(&self) -> &'static [&'static str] {
        &[]
    }

    /// Receives requests: may start a story and be its `entry`.
    fn is_webhook(&self) -> bool {
        self.webhook_path().is_some()
    }

    /// The path a webhook listens on (`/webhook/<path>/…`).
    fn webhook_path(&self) -> Option<(&str, Span)> {
        None
    }

    /// Can be one of the story's `exits` (a message_only transform).
    fn is_exit(&self) -> bool {
        false
    }

    /// The action is pointless without rules (a trigger).
    fn needs_rules(&self) -> bool {
        false
    }

    /// Every template of the action, for syntax and reference checks.
    fn templates<'a>(&'a self, out: &mut Vec<TemplateField<'a>>);

    /// Checks of values the type alone cannot express (regexes, URLs…).
    fn check(&self, _cx: &mut ValueCx<'_>) {}

    /// The call made by a send_to_story action.
    fn story_call(&self) -> Option<StoryCall<'_>> {
        None
    }

    /// The credential a request attaches, with the request's URL.
    fn credential(&self) -> Option<CredentialUse<'_>> {
        None
    }

    /// Compiles the action for running (templates are parsed here, once).
    fn build(&self, compiler: &Compiler<'_>) -> Result<Box<dyn Executable>, CompileError>;

    /// The URL an action sends requests to: credentials read in its templates
    /// are checked against their allowed hosts.
    fn request_url(&self) -> Option<(&str, Span)> {
        None
    }
}

/// One template string inside an action's configuration.
#[derive(Clone, Debug)]
pub struct TemplateField<'a> {
    /// Where it sits, such as `payload.query` or `headers.Authorization`.
    pub field: String,
    pub text: &'a str,
    pub span: Span,
    /// Names available in this field only: `request` in a webhook response,
    /// `response` in a pagination `next_url`, `LOOP` in a looping transform.
    pub extra_names: &'static [&'static str],
}

impl<'a> TemplateField<'a> {
    pub fn new(field: impl Into<String>, text: &'a str, span: Span) -> Self {
        Self {
            field: field.into(),
            text,
            span,
            extra_names: &[],
        }
    }

    pub fn with_names(mut self, names: &'static [&'static str]) -> Self {
        self.extra_names = names;
        self
    }

    /// Every string of a YAML tree, each a template, named by its path.
    pub fn collect_node(field: &str, node: &'a Node, out: &mut Vec<TemplateField<'a>>) {
        collect(field, node, out, &[]);
    }

    pub fn collect_node_with(
        field: &str,
        node: &'a Node,
        names: &'static [&'static str],
        out: &mut Vec<TemplateField<'a>>,
    ) {
        collect(field, node, out, names);
    }
}

fn collect<'a>(path: &str, node: &'a Node, out: &mut Vec<TemplateField<'a>>, names: &'static [&'static str]) {
    use crate::yaml::NodeKind;
    match &node.kind {
        NodeKind::Str(s) => out.push(TemplateField::new(path, s, node.span).with_names(names)),
        NodeKind::Seq(items) => {
            for (i, n) in items.iter().enumerate() {
                collect(&format!("{path}[{i}]"), n, out, names);
            }
        }
        NodeKind::Map(entries) => {
            for (k, v) in entries {
                let key = k.key_text().unwrap_or_default();
                collect(&format!("{path}.{key}"), v, out, names);
            }
        }
        _ => {}
    }
}

/// A send_to_story call, as the cross-story checks need it.
#[derive(Debug)]
pub struct StoryCall<'a> {
    /// Story id, or a path ending in `.yaml`/`.yml` relative to the caller.
    pub story: &'a str,
    pub story_span: Span,
    /// The payload when it is a literal mapping (its keys are the inputs).
    pub payload: Option<&'a Node>,
}

/// A credential attached to a request.
#[derive(Debug)]
pub struct CredentialUse<'a> {
    pub name: &'a str,
    pub span: Span,
    /// The request URL (a template) and its span.
    pub url: Option<(&'a str, Span)>,
}

/// Context for [`ActionConfig::check`]: where to report.
pub struct ValueCx<'a> {
    pub file: &'a Arc<PathBuf>,
    pub diagnostics: &'a mut Vec<Diagnostic>,
}

impl ValueCx<'_> {
    pub fn report(&mut self, code: Code, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.diagnostics.push(Diagnostic::new(code, self.file, span, message));
        self.diagnostics.last_mut().expect("just pushed")
    }

    /// Reports a number outside `min..=max` (E-code of an invalid value):
    /// numbers a story may write but no run can honour (`retries:
    /// 4000000000`, `timeout_secs: 1e20`). `unit` follows the bounds in the
    /// message (`"seconds"`, or empty).
    pub fn range<T>(&mut self, key: &str, n: &crate::span::Spanned<T>, min: T, max: T, unit: &str)
    where
        T: PartialOrd + std::fmt::Display + Copy,
    {
        if n.value < min || n.value > max {
            let unit = if unit.is_empty() {
                String::new()
            } else {
                format!(" {unit}")
            };
            self.report(
                Code::InvalidValue,
                n.span,
                format!("`{key}` must be between {min} and {max}{unit}, found {}", n.value),
            )
            .help = Some(format!("write a number from {min} to {max}"));
        }
    }

    /// Checks a regular expression unless it is templated.
    pub fn regex(&mut self, text: &str, span: Span) {
        if text.contains("{{") || text.contains("{%") {
            return;
        }
        if let Some(why) = crate::values::regex_error(text) {
            self.report(Code::InvalidRegex, span, format!("invalid regular expression: {why}"))
                .label = Some("this regex".into());
        }
    }
}

/// Context for an action type's decoding: collects problems as diagnostics.
pub struct DecodeCx<'a> {
    pub file: &'a Arc<PathBuf>,
    pub diagnostics: &'a mut Vec<Diagnostic>,
    /// The slug's span: missing keys are reported there.
    pub slug_span: Span,
    /// What is being decoded, for messages: "http_request action".
    pub what: String,
    /// Keys valid at the top of the body besides the config's own.
    pub extra_keys: &'static [&'static str],
}

impl DecodeCx<'_> {
    /// Decodes `node` as `T`; every problem becomes a diagnostic.
    pub fn decode<'de, T: Deserialize<'de>>(&mut self, node: &Node) -> Option<T> {
        let de = DeCx::default();
        let result = decode::<T>(node, &de);
        let mut issues = de.take();
        let value = match result {
            Ok(v) => Some(v),
            Err(issue) => {
                for found in self.all_issues::<T>(node, issue) {
                    if !issues.contains(&found) {
                        issues.push(found);
                    }
                }
                None
            }
        };
        let root_fields = de.root_fields();
        for mut issue in issues {
            if matches!(issue.kind, DeIssueKind::MissingField(_)) && issue.span == node.span {
                issue.span = self.slug_span;
            }
            let too_deep = match &issue.kind {
                DeIssueKind::UnknownField {
                    field, at_root: false, ..
                } => {
                    // `type` names a kind in many nested mappings: no hint.
                    (field != "type"
                        && (root_fields.contains(&field.as_str()) || self.extra_keys.contains(&field.as_str())))
                    .then(|| indented_too_far(field, &self.what, node))
                }
                _ => None,
            };
            let mut d = issue_to_diagnostic(self.file, &self.what, self.extra_keys, issue);
            if let Some(help) = too_deep {
                d.help = Some(help);
            }
            self.diagnostics.push(d);
        }
        value
    }

    /// serde stops at the first wrong value of a struct: find the others by
    /// decoding the mapping one key at a time, then the missing keys with the
    /// broken ones left out.
    fn all_issues<'de, T: Deserialize<'de>>(&self, node: &Node, first: DeIssue) -> Vec<DeIssue> {
        let mut found = vec![first.clone()];
        let (NodeKind::Map(entries), false) = (&node.kind, matches!(first.kind, DeIssueKind::MissingField(_))) else {
            return found;
        };
        let mut broken = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let single = Node::new(node.span, NodeKind::Map(vec![entry.clone()]));
            let de = DeCx::default();
            let result = decode::<T>(&single, &de);
            // Unknown keys after the first wrong value, which stopped serde.
            for issue in de.take() {
                if !found.contains(&issue) {
                    found.push(issue);
                }
            }
            if let Err(e) = result {
                if !matches!(e.kind, DeIssueKind::MissingField(_)) {
                    broken.push(i);
                    if !found.contains(&e) {
                        found.push(e);
                    }
                }
            }
        }
        let rest: Vec<(Node, Node)> = entries
            .iter()
            .enumerate()
            .filter(|(i, _)| !broken.contains(i))
            .map(|(_, e)| e.clone())
            .collect();
        if let Err(e) = decode::<T>(&Node::new(node.span, NodeKind::Map(rest)), &DeCx::default()) {
            // A key that is there with a wrong value is not missing.
            let written = |field: &str| broken.iter().any(|&i| entries[i].0.as_str() == Some(field));
            if matches!(e.kind, DeIssueKind::MissingField(f) if !written(f)) {
                found.push(e);
            }
        }
        found
    }

    pub fn report(&mut self, code: Code, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.diagnostics.push(Diagnostic::new(code, self.file, span, message));
        self.diagnostics.last_mut().expect("just pushed")
    }
}

/// The help for a key of `root` (an action) found inside one of its values:
/// the line was indented one level too far.
fn indented_too_far(field: &str, what: &str, root: &Node) -> String {
    match root.as_map().and_then(|entries| entries.first()) {
        Some((key, _)) => format!(
            "`{field}` is a key of the {what} itself, indented too far: indent it like `{}` (column {})",
            key.key_text().unwrap_or_default(),
            key.span.col
        ),
        None => format!("`{field}` is a key of the {what} itself, indented too far"),
    }
}

/// Turns a decoding problem into the diagnostic a user reads.
pub fn issue_to_diagnostic(file: &Arc<PathBuf>, what: &str, extra_keys: &[&str], issue: DeIssue) -> Diagnostic {
    match issue.kind {
        DeIssueKind::UnknownField {
            field,
            expected,
            at_root,
        } => {
            let mut valid: Vec<&str> = expected.to_vec();
            if at_root {
                valid.extend(extra_keys.iter().copied());
            }
            valid.sort_unstable();
            valid.dedup();
            let suggestion = did_you_mean(&field, valid.iter().copied());
            let list = format!("valid keys: {}", valid.join(", "));
            Diagnostic::new(
                Code::UnknownKey,
                file,
                issue.span,
                format!("unknown key `{field}` in {what}"),
            )
            .label("unknown key")
            .help(match suggestion {
                Some(s) => format!("{s} ({list})"),
                None => list,
            })
        }
        DeIssueKind::MissingField(field) => {
            let full = if issue.path.is_empty() {
                field.to_owned()
            } else {
                format!("{}.{field}", issue.path)
            };
            Diagnostic::new(
                Code::MissingKey,
                file,
                issue.span,
                format!("{what} is missing the required key `{full}`"),
            )
            .label(format!("add `{field}:` here"))
        }
        DeIssueKind::InvalidType { expected, found } => {
            let place = if issue.path.is_empty() {
                String::new()
            } else {
                format!(" for `{}`", issue.path)
            };
            Diagnostic::new(
                Code::WrongType,
                file,
                issue.span,
                format!("expected {}{place}, found {}", pretty_expected(&expected), found),
            )
            .label("wrong type")
        }
        DeIssueKind::UnknownVariant { variant, expected } => Diagnostic::new(
            Code::InvalidValue,
            file,
            issue.span,
            format!("`{variant}` is not one of {}", one_of(expected)),
        )
        .help_opt(did_you_mean(&variant, expected.iter().copied())),
        DeIssueKind::Invalid(message) => Diagnostic::new(Code::InvalidValue, file, issue.span, message),
    }
}

fn pretty_expected(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "a sequence" => "a list".into(),
        "a map" => "a mapping".into(),
        "a value with its source span" => "a value".into(),
        e if e.starts_with("struct ") => "a mapping".into(),
        e if e.starts_with("a sequence") => "a list".into(),
        e => e.into(),
    }
}

/// The action types the engine can load, implemented by `tale-actions`.
pub trait ActionRegistry: Sync {
    /// Every `type:` value, for "did you mean" and documentation.
    fn type_names(&self) -> &'static [&'static str];

    /// Decodes an action body (without the common keys) of type `type_name`.
    /// `None` when the type is unknown; `Some(None)` when the body had errors.
    fn decode(&self, type_name: &str, body: &Node, cx: &mut DecodeCx<'_>) -> Option<Option<Box<dyn ActionConfig>>>;

    /// The JSON Schema of each action type's body (common keys excluded).
    fn schemas(&self, generator: &mut schemars::SchemaGenerator) -> Vec<(&'static str, schemars::Schema)>;
}

/// Keys `RawCommon` handles, for the registry's unknown-key messages.
pub const COMMON_KEYS: &[&str] = RawCommon::KEYS;

// ---------------------------------------------------------------------------
// Execution: what an action does when it runs.

pub use crate::runtime::contract::{ActionError, Emit, ExecCx, Outcome, WebhookRequest, WebhookResult};
pub use crate::runtime::render::{CompileError, Compiler};

/// How an action may share a durable step with the action upstream of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inline {
    /// Always a step of its own (state, timers, sub-runs, many emits).
    Never,
    /// Depends only on its input: running it again after a crash changes nothing.
    Pure,
    /// Acts outside (a request): at most one per step, so that a crash
    /// repeats at most one outside effect (they are at-least-once anyway).
    Effect,
}

/// A built action, ready to run: templates compiled, values converted.
pub trait Executable: Send + Sync {
    /// Runs for one input event.
    fn execute<'a>(&'a self, cx: &'a ExecCx<'a>) -> futures_util::future::BoxFuture<'a, Result<Outcome, ActionError>>;

    /// Comes back after an `Emit::Later` (delay, implode timeout).
    fn wake<'a>(
        &'a self,
        _cx: &'a ExecCx<'a>,
        _payload: serde_json::Value,
    ) -> futures_util::future::BoxFuture<'a, Result<Outcome, ActionError>> {
        Box::pin(std::future::ready(Ok(Outcome::default())))
    }

    /// Reads and writes action state: its items run one at a time, so that
    /// each sees the state the previous one committed.
    fn stateful(&self) -> bool {
        false
    }

    /// Whether `tale serve` may run this action inside the step of the action
    /// upstream of it, committing both at once instead of one step each.
    fn inline(&self) -> Inline {
        Inline::Never
    }

    /// A webhook receives a request: its output, or the refusal.
    fn accept(&self, _request: &WebhookRequest, _cx: &ExecCx<'_>) -> Option<WebhookResult> {
        None
    }
}
