//! `send_email`: sends a message over SMTP (the server comes from the
//! configuration, never from the story).

use futures_util::future::BoxFuture;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value as J, json};
use tale_core::action::{
    ActionConfig, ActionError, CompileError, Compiler, Emit, ExecCx, Executable, Inline, Outcome, TemplateField,
    ValueCx,
};
use tale_core::diagnostic::Code;
use tale_core::runtime::mail::{Attachment, Email, MailError};
use tale_core::runtime::render::{Field, Tree};
use tale_core::span::Spanned;
use tale_core::yaml::{Node, NodeKind};

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
    /// Files to attach, as Tines writes them: a list of `{filename,
    /// base64encodedcontents, content_type}` (`content_type` `auto` or
    /// absent: from the file name), or a template rendering such a list.
    pub attachments: Option<Node>,
}

impl ActionConfig for SendEmailConfig {
    fn type_name(&self) -> &'static str {
        "send_email"
    }

    fn branches(&self) -> &'static [&'static str] {
        &["failure"]
    }

    fn build(&self, compiler: &Compiler<'_>) -> Result<Box<dyn Executable>, CompileError> {
        self.build_exec(compiler)
    }

    fn templates<'a>(&'a self, out: &mut Vec<TemplateField<'a>>) {
        TemplateField::collect_node("recipients", &self.recipients, out);
        if let Some(a) = &self.attachments {
            TemplateField::collect_node("attachments", a, out);
        }
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

struct SendEmailExec {
    recipients: Tree,
    cc: Option<Tree>,
    bcc: Option<Tree>,
    subject: Field,
    body: Field,
    reply_to: Option<Field>,
    sender_name: Option<Field>,
    attachments: Option<Tree>,
}

/// Most bytes of attachments one message carries (mail servers commonly
/// refuse more than 25 MB).
const MAX_ATTACHMENT_BYTES: usize = 25 * 1024 * 1024;

/// Attachments from their rendered value (one object or a list).
fn attachments(value: J) -> Result<Vec<Attachment>, String> {
    let list = match value {
        J::Null => return Ok(Vec::new()),
        J::Array(items) => items,
        J::String(s) if s.trim().is_empty() => return Ok(Vec::new()),
        J::String(s) => match serde_json::from_str::<J>(&s) {
            Ok(J::Array(items)) => items,
            Ok(one @ J::Object(_)) => vec![one],
            _ => return Err("`attachments` is text, not a list (add `| as_object` to keep its type)".into()),
        },
        one @ J::Object(_) => vec![one],
        other => return Err(format!("`attachments` is {}, not a list", json_type(&other))),
    };
    let mut total = 0;
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let filename = item["filename"].as_str().filter(|f| !f.trim().is_empty());
        let Some(filename) = filename else {
            return Err(format!("attachment {} has no `filename`", i + 1));
        };
        let encoded = item["base64encodedcontents"].as_str().unwrap_or("");
        // As Tines (Ruby's decode64): what is not base64 is skipped.
        let contents = tale_core::template::filters::decode_base64(encoded)
            .ok_or_else(|| format!("attachment `{filename}`: `base64encodedcontents` is not base64"))?;
        total += contents.len();
        if total > MAX_ATTACHMENT_BYTES {
            return Err(format!(
                "the attachments exceed {} MB",
                MAX_ATTACHMENT_BYTES / (1024 * 1024)
            ));
        }
        let content_type = match item["content_type"].as_str().map(str::trim) {
            Some(t) if !t.is_empty() && t != "auto" => t.to_owned(),
            _ => guess_type(filename).to_owned(),
        };
        out.push(Attachment {
            filename: filename.to_owned(),
            content_type,
            contents,
        });
    }
    Ok(out)
}

/// The MIME type of the files security stories mail (reports, exports,
/// evidence), by extension; anything else is plain bytes.
fn guess_type(filename: &str) -> &'static str {
    let extension = filename.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some("csv") => "text/csv",
        Some("txt" | "log") => "text/plain",
        Some("json") => "application/json",
        Some("html" | "htm") => "text/html",
        Some("xml") => "application/xml",
        Some("pdf") => "application/pdf",
        Some("zip") => "application/zip",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("eml") => "message/rfc822",
        _ => "application/octet-stream",
    }
}

fn json_type(value: &J) -> &'static str {
    match value {
        J::Bool(_) => "a boolean",
        J::Number(_) => "a number",
        _ => "a value",
    }
}

/// Addresses from a rendered value: a list, or text separated by commas.
fn addresses(value: J) -> Vec<String> {
    match value {
        J::Array(items) => items.into_iter().flat_map(addresses).collect(),
        J::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
        J::Null => Vec::new(),
        other => vec![other.to_string()],
    }
}

impl Executable for SendEmailExec {
    fn inline(&self) -> Inline {
        Inline::Effect
    }

    fn execute<'a>(&'a self, cx: &'a ExecCx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        Box::pin(async move {
            let email = Email {
                sender_name: self
                    .sender_name
                    .as_ref()
                    .map(|f| f.render_text(&cx.scope))
                    .transpose()?,
                to: addresses(self.recipients.render(&cx.scope)?),
                cc: self
                    .cc
                    .as_ref()
                    .map(|t| t.render(&cx.scope))
                    .transpose()?
                    .map(addresses)
                    .unwrap_or_default(),
                bcc: self
                    .bcc
                    .as_ref()
                    .map(|t| t.render(&cx.scope))
                    .transpose()?
                    .map(addresses)
                    .unwrap_or_default(),
                reply_to: self.reply_to.as_ref().map(|f| f.render_text(&cx.scope)).transpose()?,
                subject: self.subject.render_text(&cx.scope)?,
                body: self.body.render_text(&cx.scope)?,
                attachments: match &self.attachments {
                    Some(t) => attachments(t.render(&cx.scope)?).map_err(ActionError::Failed)?,
                    None => Vec::new(),
                },
            };
            if email.to.is_empty() {
                return Err(ActionError::Failed("`recipients` rendered no address".into()));
            }
            let files: Vec<J> = email
                .attachments
                .iter()
                .map(|a| json!({"filename": a.filename, "content_type": a.content_type, "bytes": a.contents.len()}))
                .collect();
            let trace = json!({"email": {"to": email.to, "cc": email.cc, "bcc": email.bcc, "subject": email.subject, "attachments": files}});
            let emit = match cx.mail.send(email).await {
                Ok(id) => Emit::Main(json!({"message_id": id})),
                Err(MailError::NotConfigured) => return Err(ActionError::Failed(MailError::NotConfigured.to_string())),
                Err(e) => Emit::Branch("failure", json!({"error": e.to_string()})),
            };
            Ok(Outcome {
                emits: vec![emit],
                trace: vec![trace],
                ..Outcome::default()
            })
        })
    }
}

impl SendEmailConfig {
    fn build_exec(&self, c: &Compiler<'_>) -> Result<Box<dyn Executable>, CompileError> {
        let field = |name: &str, s: &Spanned<String>| c.field(name, &s.value, s.span);
        Ok(Box::new(SendEmailExec {
            recipients: c.tree("recipients", &self.recipients)?,
            cc: self.cc.as_ref().map(|n| c.tree("cc", n)).transpose()?,
            bcc: self.bcc.as_ref().map(|n| c.tree("bcc", n)).transpose()?,
            subject: field("subject", &self.subject)?,
            body: field("body", &self.body)?,
            reply_to: self.reply_to.as_ref().map(|f| field("reply_to", f)).transpose()?,
            sender_name: self.sender_name.as_ref().map(|f| field("sender_name", f)).transpose()?,
            attachments: self
                .attachments
                .as_ref()
                .map(|n| c.tree("attachments", n))
                .transpose()?,
        }))
    }
}
