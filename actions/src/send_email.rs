//! `send_email`: sends a message over SMTP (the server comes from the
//! configuration, never from the story).

use schemars::JsonSchema;
use serde::Deserialize;
use tale_engine::action::{ActionConfig, TemplateField, ValueCx};
use tale_engine::diagnostic::Code;
use tale_engine::span::Spanned;
use tale_engine::yaml::{Node, NodeKind};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendEmailConfig {
    /// One address or a list of addresses.
    pub recipients: Node,
    pub subject: Spanned<String>,
    pub body: Spanned<String>,
    pub cc: Option<Node>,
    pub bcc: Option<Node>,
    pub reply_to: Option<Spanned<String>>,
    /// Display name of the sender.
    pub sender_name: Option<Spanned<String>>,
}

impl ActionConfig for SendEmailConfig {
    fn type_name(&self) -> &'static str {
        "send_email"
    }

    fn branches(&self) -> &'static [&'static str] {
        &["failure"]
    }

    fn build(
        &self,
        _compiler: &tale_engine::action::Compiler<'_>,
    ) -> Result<Box<dyn tale_engine::action::Executable>, tale_engine::action::CompileError> {
        Ok(Box::new(NotYet))
    }

    fn templates<'a>(&'a self, out: &mut Vec<TemplateField<'a>>) {
        TemplateField::collect_node("recipients", &self.recipients, out);
        out.push(TemplateField::new("subject", &self.subject.value, self.subject.span));
        out.push(TemplateField::new("body", &self.body.value, self.body.span));
        for (name, node) in [("cc", &self.cc), ("bcc", &self.bcc)] {
            if let Some(n) = node {
                TemplateField::collect_node(name, n, out);
            }
        }
        for (name, s) in [("reply_to", &self.reply_to), ("sender_name", &self.sender_name)] {
            if let Some(s) = s {
                out.push(TemplateField::new(name, &s.value, s.span));
            }
        }
    }

    fn check(&self, cx: &mut ValueCx<'_>) {
        for node in [Some(&self.recipients), self.cc.as_ref(), self.bcc.as_ref()]
            .into_iter()
            .flatten()
        {
            check_addresses(node, cx);
        }
    }
}

fn check_addresses(node: &Node, cx: &mut ValueCx<'_>) {
    match &node.kind {
        NodeKind::Str(s) => {
            if !s.contains("{{") && !s.contains("{%") && !s.split(',').all(|a| a.contains('@')) {
                cx.report(Code::InvalidValue, node.span, format!("`{s}` is not an email address"));
            }
        }
        NodeKind::Seq(items) => items.iter().for_each(|n| check_addresses(n, cx)),
        other => {
            cx.report(
                Code::WrongType,
                node.span,
                format!(
                    "expected an address or a list of addresses, found {}",
                    other.type_name()
                ),
            );
        }
    }
}

/// Refuses to run, clearly, until the feature lands (the checker already
/// validates the action).
struct NotYet;

impl tale_engine::action::Executable for NotYet {
    fn execute<'a>(
        &'a self,
        _cx: &'a tale_engine::action::ExecCx<'a>,
    ) -> futures_util::future::BoxFuture<'a, Result<tale_engine::action::Outcome, tale_engine::action::ActionError>>
    {
        Box::pin(std::future::ready(Err(tale_engine::action::ActionError::Failed(
            "send_email needs an SMTP server configured, which this version cannot do yet".into(),
        ))))
    }
}
