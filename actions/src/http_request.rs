//! `http_request`: sends a request and emits `{status, headers, body}`;
//! after its last retry a failure takes the `failure` branch.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use tale_engine::action::{ActionConfig, CredentialUse, TemplateField, ValueCx};
use tale_engine::diagnostic::{Code, did_you_mean, one_of};
use tale_engine::span::Spanned;
use tale_engine::yaml::{Node, NodeKind};

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete", "head", "options"];
const CONTENT_TYPES: &[&str] = &["json", "form", "xml", "data"];
/// Names the pagination `next_url` may read besides upstream actions.
const PAGE_NAMES: &[&str] = &["response"];

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpRequestConfig {
    /// The URL, usually a template.
    pub url: Spanned<String>,
    /// get (default), post, put, patch, delete, head or options.
    pub method: Option<Spanned<String>>,
    /// `json` (default), `form`, `xml`, `data`, or a literal MIME type.
    pub content_type: Option<Spanned<String>>,
    /// The body; for GET, the query string.
    pub payload: Option<Node>,
    pub headers: Option<IndexMap<String, Node>>,
    /// `[user, password]` or `"user:password"`.
    pub basic_auth: Option<Node>,
    /// A named credential to attach (Bearer token, basic auth or header).
    pub credential: Option<Spanned<String>>,
    /// Seconds before the request times out (default 30).
    pub timeout_secs: Option<Spanned<f64>>,
    /// Statuses to retry: codes, ranges such as `"500-599"`, and `0` for
    /// network errors and timeouts.
    pub retry_on_status: Option<Vec<Node>>,
    /// How many retries (default 3 when `retry_on_status` is set).
    pub retries: Option<Spanned<u32>>,
    /// Statuses logged as errors while the run goes on.
    pub log_error_on_status: Option<Vec<Node>>,
    /// `true`: any non-2xx status fails the action; or a list of statuses.
    pub fail_on_status: Option<Node>,
    pub disable_ssl_verification: Option<bool>,
    pub disable_redirect_follow: Option<bool>,
    /// Follow pages: `next_url` is evaluated after each page over `response`.
    pub pagination: Option<Pagination>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pagination {
    /// Template over `response` (`{status, headers, body}` of the page just
    /// read); an empty result stops.
    pub next_url: Spanned<String>,
    /// Stop after this many pages (default 100).
    pub max_pages: Option<Spanned<u32>>,
    /// `merged` (default): one event with the pages' arrays concatenated;
    /// `per_page`: one event per page.
    pub emit: Option<Emit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Emit {
    Merged,
    PerPage,
}

impl ActionConfig for HttpRequestConfig {
    fn type_name(&self) -> &'static str {
        "http_request"
    }

    fn branches(&self) -> &'static [&'static str] {
        &["failure"]
    }

    fn templates<'a>(&'a self, out: &mut Vec<TemplateField<'a>>) {
        out.push(TemplateField::new("url", &self.url.value, self.url.span));
        if let Some(p) = &self.payload {
            TemplateField::collect_node("payload", p, out);
        }
        for (name, value) in self.headers.iter().flatten() {
            TemplateField::collect_node(&format!("headers.{name}"), value, out);
        }
        if let Some(b) = &self.basic_auth {
            TemplateField::collect_node("basic_auth", b, out);
        }
        if let Some(p) = &self.pagination {
            out.push(
                TemplateField::new("pagination.next_url", &p.next_url.value, p.next_url.span).with_names(PAGE_NAMES),
            );
        }
    }

    fn check(&self, cx: &mut ValueCx<'_>) {
        if let Some(m) = &self.method
            && !METHODS.contains(&m.value.to_ascii_lowercase().as_str())
        {
            cx.report(Code::InvalidValue, m.span, format!("unknown HTTP method `{}`", m.value))
                .help = Some(
                did_you_mean(&m.value.to_ascii_lowercase(), METHODS.iter().copied())
                    .unwrap_or_else(|| format!("methods are {}", one_of(METHODS))),
            );
        }
        if let Some(c) = &self.content_type
            && !CONTENT_TYPES.contains(&c.value.as_str())
            && !c.value.contains('/')
        {
            cx.report(
                Code::InvalidValue,
                c.span,
                format!("unknown content type `{}`", c.value),
            )
            .help = Some(format!(
                "use {} or a MIME type such as `text/plain`",
                one_of(CONTENT_TYPES)
            ));
        }
        check_url(&self.url, cx);
        if let Some(t) = &self.timeout_secs
            && !(t.value > 0.0 && t.value.is_finite())
        {
            cx.report(
                Code::InvalidValue,
                t.span,
                "`timeout_secs` must be a positive number of seconds",
            );
        }
        for list in [&self.retry_on_status, &self.log_error_on_status].into_iter().flatten() {
            list.iter().for_each(|n| check_status(n, cx));
        }
        if let Some(f) = &self.fail_on_status {
            match &f.kind {
                NodeKind::Bool(_) => {}
                NodeKind::Seq(items) => items.iter().for_each(|n| check_status(n, cx)),
                other => {
                    cx.report(
                        Code::WrongType,
                        f.span,
                        format!(
                            "`fail_on_status` is true/false or a list of statuses, found {}",
                            other.type_name()
                        ),
                    );
                }
            }
        }
        if let Some(b) = &self.basic_auth {
            let ok = match &b.kind {
                NodeKind::Str(s) => s.contains(':') || tale_engine::template::has_markup(s),
                NodeKind::Seq(items) => items.len() == 2 && items.iter().all(|i| i.as_str().is_some()),
                _ => false,
            };
            if !ok {
                cx.report(
                    Code::InvalidValue,
                    b.span,
                    "`basic_auth` is `[user, password]` or `\"user:password\"`",
                );
            }
        }
        if let Some(p) = &self.pagination
            && let Some(m) = &p.max_pages
            && m.value == 0
        {
            cx.report(Code::InvalidValue, m.span, "`max_pages` must be at least 1");
        }
    }

    fn request_url(&self) -> Option<(&str, tale_engine::span::Span)> {
        Some((&self.url.value, self.url.span))
    }

    fn credential(&self) -> Option<CredentialUse<'_>> {
        self.credential.as_ref().map(|c| CredentialUse {
            name: &c.value,
            span: c.span,
            url: Some((&self.url.value, self.url.span)),
        })
    }
}

fn check_url(url: &Spanned<String>, cx: &mut ValueCx<'_>) {
    let text = url.value.trim();
    if text.contains("{{") || text.contains("{%") {
        return;
    }
    match url::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        Ok(u) => {
            cx.report(
                Code::InvalidUrl,
                url.span,
                format!("`{}` URLs are not supported: use http or https", u.scheme()),
            );
        }
        Err(e) => {
            cx.report(Code::InvalidUrl, url.span, format!("invalid URL `{text}`: {e}"));
        }
    }
}

/// A status code (`0` = network error) or a range `"500-599"`.
fn check_status(node: &Node, cx: &mut ValueCx<'_>) {
    let valid = |n: i64| n == 0 || (100..=599).contains(&n);
    let ok = match &node.kind {
        NodeKind::Int(n) => valid(*n),
        NodeKind::Str(s) => match s.split_once('-') {
            Some((a, b)) => match (a.trim().parse::<i64>(), b.trim().parse::<i64>()) {
                (Ok(a), Ok(b)) => valid(a) && valid(b) && a <= b,
                _ => false,
            },
            None => s.trim().parse::<i64>().is_ok_and(valid),
        },
        _ => false,
    };
    if !ok {
        cx.report(
            Code::InvalidValue,
            node.span,
            "expected an HTTP status (100-599, or 0 for network errors) or a range such as \"500-599\"",
        );
    }
}
