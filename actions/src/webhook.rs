//! `webhook`: the entry point of a story. Receives HTTP requests at
//! `/webhook/<path>/<secret>` (or with `Authorization: Bearer <secret>`).

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use tale_engine::action::{ActionConfig, TemplateField, ValueCx};
use tale_engine::diagnostic::Code;
use tale_engine::span::Spanned;
use tale_engine::yaml::Node;

/// Names a webhook's response templates may read besides upstream actions.
const RESPONSE_NAMES: &[&str] = &["request"];

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// URL path: requests arrive at `/webhook/<path>/<secret>`.
    pub path: Spanned<String>,
    /// Shared secret, in the URL or as `Authorization: Bearer`. Usually
    /// `"{{ CREDENTIAL.name }}"`. Without one anyone may call the webhook.
    pub secret: Option<Spanned<String>>,
    /// Accepted HTTP methods (default: post).
    pub verbs: Option<Vec<Spanned<Verb>>>,
    /// The HTTP response, templated over `request`.
    pub response: Option<Response>,
    /// Tines compatibility: `false` makes the output the body merged with
    /// the query parameters instead of `{body, headers, query, method, path}`.
    pub include_headers: Option<bool>,
    /// HMAC verification of the request, as GitHub, Slack and Microsoft send it.
    pub signature: Option<Spanned<Signature>>,
    /// Largest accepted body (default 1 MiB); larger requests get 413.
    pub max_body_bytes: Option<Spanned<u64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Response {
    /// HTTP status (default 200).
    pub status: Option<Spanned<u16>>,
    /// Content type of the body (default `application/json`).
    pub content_type: Option<String>,
    pub headers: Option<IndexMap<String, Node>>,
    /// The body: text or a structure, templated over `request`.
    pub body: Option<Node>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// The request header carrying the signature, such as `X-Hub-Signature-256`
    /// (required except for `client_state`, which is read from the body).
    pub header: Option<Spanned<String>>,
    /// `sha256`, `sha1` (HMAC of the body), `slack` (v0 with timestamp) or
    /// `client_state` (Microsoft Graph's `clientState` in the body).
    pub algorithm: Spanned<SignatureAlgorithm>,
    /// The shared secret, usually `"{{ CREDENTIAL.name }}"`.
    pub secret: Spanned<String>,
    /// Text before the hex digest, such as `sha256=`.
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignatureAlgorithm {
    Sha256,
    Sha1,
    Slack,
    ClientState,
}

impl ActionConfig for WebhookConfig {
    fn type_name(&self) -> &'static str {
        "webhook"
    }

    fn webhook_path(&self) -> Option<(&str, tale_engine::span::Span)> {
        Some((&self.path.value, self.path.span))
    }

    fn templates<'a>(&'a self, out: &mut Vec<TemplateField<'a>>) {
        if let Some(s) = &self.secret {
            out.push(TemplateField::new("secret", &s.value, s.span));
        }
        if let Some(sig) = &self.signature {
            out.push(TemplateField::new(
                "signature.secret",
                &sig.secret.value,
                sig.secret.span,
            ));
        }
        if let Some(r) = &self.response {
            if let Some(body) = &r.body {
                TemplateField::collect_node_with("response.body", body, RESPONSE_NAMES, out);
            }
            for (name, value) in r.headers.iter().flatten() {
                TemplateField::collect_node_with(&format!("response.headers.{name}"), value, RESPONSE_NAMES, out);
            }
        }
    }

    fn check(&self, cx: &mut ValueCx<'_>) {
        let path = &self.path.value;
        let valid = !path.is_empty()
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b'.'));
        if !valid {
            cx.report(
                Code::InvalidValue,
                self.path.span,
                format!("invalid webhook path `{path}`"),
            )
            .help = Some("a path uses letters, digits, `-`, `_`, `.` and `/`".into());
        }
        if let Some(status) = self.response.as_ref().and_then(|r| r.status.as_ref())
            && !(100..=599).contains(&status.value)
        {
            cx.report(
                Code::InvalidValue,
                status.span,
                format!("{} is not an HTTP status", status.value),
            );
        }
        if let Some(max) = &self.max_body_bytes
            && max.value == 0
        {
            cx.report(Code::InvalidValue, max.span, "`max_body_bytes` must be greater than 0");
        }
        if let Some(sig) = &self.signature {
            if sig.header.is_none() && sig.algorithm.value != SignatureAlgorithm::ClientState {
                cx.report(
                    Code::MissingKey,
                    sig.span,
                    "the signature is missing the required key `header`",
                )
                .help = Some("name the request header carrying the signature, such as `X-Hub-Signature-256`".into());
            }
        }
        if self.secret.is_none() && self.signature.is_none() {
            cx.report(
                Code::OpenWebhook,
                self.path.span,
                format!("webhook `{path}` has no secret: anyone who knows the URL may call it"),
            )
            .help = Some("add `secret: \"{{ CREDENTIAL.<name> }}\"` or a `signature`".into());
        }
    }
}
