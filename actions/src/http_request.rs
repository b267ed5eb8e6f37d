//! `http_request`: sends a request and emits `{status, headers, body}`;
//! after its last retry a failure takes the `failure` branch.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use tale_core::action::{ActionConfig, CredentialUse, TemplateField, ValueCx};
use tale_core::diagnostic::{Code, did_you_mean, one_of};
use tale_core::span::Spanned;
use tale_core::yaml::{Node, NodeKind};

/// The largest values `check` accepts (beyond them no run is sensible, and
/// `timeout_secs: 1e20` would not even be a duration).
const MAX_TIMEOUT_SECS: f64 = 3600.0;
const MAX_RETRIES: u32 = 100;
const MAX_PAGES: u32 = 100_000;
const MAX_RESPONSE_BYTES: u64 = 1024 * 1024 * 1024;

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
    /// The body; for GET, HEAD and DELETE, the query string.
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
    /// Do not follow redirects (they are followed by default, up to 10; each
    /// hop is checked like the first request, and one that would carry a
    /// credential to a host it does not allow takes the `failure` branch).
    pub disable_redirect_follow: Option<bool>,
    /// Most bytes of response body read (default 32 MiB, at most 1 GiB);
    /// the pages of a paginated request count together. Beyond it the
    /// action takes the `failure` branch.
    pub max_response_bytes: Option<Spanned<u64>>,
    /// Follow pages: `next_url` is evaluated after each page over `response`.
    pub pagination: Option<Pagination>,
    /// Send an `Idempotency-Key` header derived from the input event and the
    /// action: the same on every retry and when a crash makes the request
    /// run again, so the receiver can drop the duplicate.
    pub idempotency_key: Option<bool>,
    /// The header that carries it (default `Idempotency-Key`); setting it
    /// turns the key on.
    pub idempotency_header: Option<Spanned<String>>,
    /// Repeat the request until its response satisfies rules (a job that
    /// is still running, a status not yet final), at most `max_attempts`
    /// times, then take the `failure` branch: polling without a loop.
    pub poll: Option<Poll>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Poll {
    /// Rules over `response` (`{status, headers, body}` of the attempt), as
    /// a trigger's: the request is done when they match.
    pub until: Vec<tale_core::model::Rule>,
    /// How many of `until` must match (default all).
    pub must_match: Option<Spanned<usize>>,
    /// Seconds between attempts (default 30); the wait is stored, so it
    /// survives a restart of `tale serve`.
    pub interval_secs: Option<Spanned<f64>>,
    /// Attempts in all, the first included (default 10).
    pub max_attempts: Option<Spanned<u32>>,
}

/// Bounds of `poll`.
const DEFAULT_POLL_INTERVAL_SECS: f64 = 30.0;
const MAX_POLL_INTERVAL_SECS: f64 = 86_400.0;
const DEFAULT_POLL_ATTEMPTS: u32 = 10;
const MAX_POLL_ATTEMPTS: u32 = 10_000;

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
    pub emit: Option<PageEmit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PageEmit {
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
        if let Some(p) = &self.poll {
            for (i, rule) in p.until.iter().enumerate() {
                out.push(
                    TemplateField::new(format!("poll.until[{i}].path"), &rule.path.value, rule.path.span)
                        .with_names(PAGE_NAMES),
                );
                if let Some(v) = &rule.value {
                    TemplateField::collect_node(&format!("poll.until[{i}].value"), v, out);
                }
            }
        }
    }

    fn check(&self, cx: &mut ValueCx<'_>) {
        // A header name is an HTTP token: letters, digits and !#$%&'*+-.^_`|~.
        if let Some(h) = &self.idempotency_header
            && (h.value.is_empty()
                || !h
                    .value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)))
        {
            cx.report(
                Code::InvalidValue,
                h.span,
                format!("`{}` is not a header name", h.value),
            )
            .help = Some("write a name such as `Idempotency-Key` or `X-Request-Id`".into());
        }
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
        // `.nan` and `.inf` are refused for the whole story at load.
        if let Some(t) = self.timeout_secs.as_ref().filter(|t| t.value.is_finite()) {
            if t.value <= 0.0 {
                cx.report(
                    Code::InvalidValue,
                    t.span,
                    "`timeout_secs` must be a positive number of seconds",
                );
            } else {
                cx.range("timeout_secs", t, 0.0, MAX_TIMEOUT_SECS, "seconds");
            }
        }
        if let Some(r) = &self.retries {
            cx.range("retries", r, 0, MAX_RETRIES, "");
        }
        if let Some(m) = &self.max_response_bytes {
            cx.range("max_response_bytes", m, 1, MAX_RESPONSE_BYTES, "bytes");
        }
        if let Some(p) = &self.poll {
            check_poll(p, self.pagination.as_ref(), cx);
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
                NodeKind::Str(s) => s.contains(':') || tale_core::template::has_markup(s),
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
        {
            cx.range("max_pages", m, 1, MAX_PAGES, "");
        }
    }

    fn build(&self, compiler: &Compiler<'_>) -> Result<Box<dyn Executable>, CompileError> {
        self.build_exec(compiler)
    }

    fn request_url(&self) -> Option<(&str, tale_core::span::Span)> {
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

// ---------------------------------------------------------------------------
// Execution.

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value as J, json};
use tale_core::action::{ActionError, CompileError, Compiler, Emit, ExecCx, Executable, Inline, Outcome};
use tale_core::runtime::http::{
    DEFAULT_MAX_RESPONSE_BYTES, HttpError, HttpRequest, HttpResponse, MAX_REDIRECTS, redirect_target, same_origin,
};
use tale_core::runtime::render::{Field, Tree};

/// Default retries when `retry_on_status` is set.
const DEFAULT_RETRIES: u32 = 3;
const DEFAULT_MAX_PAGES: u32 = 100;
/// First back-off; it doubles with each retry (with jitter), up to a minute.
const BACKOFF_BASE_MS: i64 = 1000;
const BACKOFF_MAX_MS: i64 = 60_000;
/// Longest wait a `Retry-After` may impose (ten minutes).
const MAX_RETRY_AFTER_MS: i64 = 600_000;
/// Longest retry wait spent inside the execution (the first back-offs of a
/// flaky request: one step, one trace); a longer one is stored.
const MAX_WAIT_IN_STEP_MS: i64 = 2_000;

/// A compiled `poll`.
struct PollExec {
    until: tale_core::runtime::rules::Rules,
    interval_ms: i64,
    max_attempts: u32,
}

/// A status list entry: one code, or an inclusive range.
#[derive(Debug, Clone, Copy)]
struct StatusRange(u16, u16);

impl StatusRange {
    fn parse(node: &Node) -> Option<Self> {
        match &node.kind {
            NodeKind::Int(n) => u16::try_from(*n).ok().map(|n| StatusRange(n, n)),
            NodeKind::Str(s) => match s.split_once('-') {
                Some((a, b)) => Some(StatusRange(a.trim().parse().ok()?, b.trim().parse().ok()?)),
                None => s.trim().parse().ok().map(|n| StatusRange(n, n)),
            },
            _ => None,
        }
    }
}

fn any_contains(list: &[StatusRange], status: u16) -> bool {
    list.iter().any(|r| (r.0..=r.1).contains(&status))
}

enum FailOn {
    Never,
    AnyError,
    Statuses(Vec<StatusRange>),
}

struct HttpExec {
    url: Field,
    method: String,
    content_type: String,
    payload: Option<Tree>,
    headers: Vec<(String, Tree)>,
    basic_auth: Option<Tree>,
    credential: Option<String>,
    timeout: Duration,
    retry_on: Vec<StatusRange>,
    retries: u32,
    log_error_on: Vec<StatusRange>,
    fail_on: FailOn,
    verify_tls: bool,
    follow_redirects: bool,
    max_response_bytes: u64,
    pagination: Option<(Field, u32, Emit2)>,
    poll: Option<PollExec>,
    /// The header of the idempotency key, when one is sent.
    idempotency_header: Option<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Emit2 {
    Merged,
    PerPage,
}

/// A response as an event output: headers lower-cased, JSON bodies parsed,
/// XML bodies (RSS, Atom, SOAP) read as Tines reads them (see
/// `tale_core::runtime::xml`); a body that does not parse stays text.
fn response_json(r: &HttpResponse) -> J {
    let text = String::from_utf8_lossy(&r.body);
    let content_type = r.header("content-type").unwrap_or("").to_ascii_lowercase();
    let start = text.trim_start();
    let is_json = content_type.contains("json");
    let is_xml = (content_type.contains("xml") && !content_type.contains("xhtml")) || start.starts_with("<?xml");
    let body = if is_json || (!is_xml && start.starts_with(['{', '['])) {
        serde_json::from_str(&text).unwrap_or(J::String(text.into_owned()))
    } else if is_xml {
        tale_core::runtime::xml::to_json(&text).unwrap_or(J::String(text.into_owned()))
    } else {
        J::String(text.into_owned())
    };
    let mut headers = serde_json::Map::new();
    for (k, v) in &r.headers {
        headers.entry(k.clone()).or_insert_with(|| J::String(v.clone()));
    }
    json!({"status": r.status, "headers": headers, "body": body})
}

/// What one send gave: the last response or error, or the due time of a
/// retry for the executor to store.
enum Sent {
    Done(Result<HttpResponse, HttpError>),
    Later { at_ms: i64, attempt: u32 },
}

/// The wake-up payload key of a stored retry: the retry it comes back for.
const RETRY_ATTEMPT: &str = "retry_attempt";

/// `Retry-After` in seconds (decimals too) or as an HTTP date, in ms from `now`.
fn retry_after(r: &HttpResponse, now_ms: i64) -> Option<i64> {
    let value = r.header("retry-after")?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return secs.is_finite().then(|| (secs.max(0.0) * 1000.0) as i64);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at_ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64;
    Some((at_ms - now_ms).max(0))
}

fn form(value: &J) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    if let J::Object(o) = value {
        for (k, v) in o {
            let text = match v {
                J::String(s) => s.clone(),
                J::Null => String::new(),
                other => other.to_string(),
            };
            out.append_pair(k, &text);
        }
    }
    out.finish()
}

/// A minimal XML rendering of a structure (`{a: {b: 1}}` → `<a><b>1</b></a>`).
fn xml(value: &J, out: &mut String) {
    match value {
        J::Object(o) => {
            for (k, v) in o {
                match v {
                    J::Array(items) => {
                        for item in items {
                            out.push_str(&format!("<{k}>"));
                            xml(item, out);
                            out.push_str(&format!("</{k}>"));
                        }
                    }
                    _ => {
                        out.push_str(&format!("<{k}>"));
                        xml(v, out);
                        out.push_str(&format!("</{k}>"));
                    }
                }
            }
        }
        J::Array(items) => items.iter().for_each(|i| xml(i, out)),
        J::String(s) => out.push_str(&s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")),
        J::Null => {}
        other => out.push_str(&other.to_string()),
    }
}

impl HttpExec {
    /// The first request, rendered.
    fn render(&self, cx: &ExecCx<'_>) -> Result<HttpRequest, ActionError> {
        let mut url = self.url.render_text(&cx.scope)?;
        let mut headers: Vec<(String, String)> = Vec::new();
        let payload = self.payload.as_ref().map(|p| p.render(&cx.scope)).transpose()?;
        let mut body = None;
        match (&payload, self.method.as_str()) {
            (Some(p @ J::Object(_)), "get" | "head" | "delete") => {
                let query = form(p);
                if !query.is_empty() {
                    url.push(if url.contains('?') { '&' } else { '?' });
                    url.push_str(&query);
                }
            }
            (Some(p), _) => {
                let (ct, bytes) = match self.content_type.as_str() {
                    // `to_vec` writes into a buffer; `to_string` goes through `Display`.
                    "json" => (
                        "application/json".to_owned(),
                        serde_json::to_vec(p).map_err(|e| ActionError::Failed(e.to_string()))?,
                    ),
                    "form" => ("application/x-www-form-urlencoded".to_owned(), form(p).into_bytes()),
                    "xml" => {
                        let text = match p {
                            J::String(s) => s.clone(),
                            other => {
                                let mut s = String::new();
                                xml(other, &mut s);
                                s
                            }
                        };
                        ("application/xml".to_owned(), text.into_bytes())
                    }
                    // Tines' `data`: an object is a multipart form (a file
                    // upload); text goes as it is.
                    "data" if p.is_object() => crate::form_data::encode(p).map_err(ActionError::Failed)?,
                    "data" => (
                        "text/plain".to_owned(),
                        p.as_str().map_or_else(|| p.to_string(), str::to_owned).into_bytes(),
                    ),
                    literal => (
                        literal.to_owned(),
                        p.as_str().map_or_else(|| p.to_string(), str::to_owned).into_bytes(),
                    ),
                };
                headers.push(("content-type".into(), ct));
                body = Some(bytes);
            }
            (None, _) => {}
        }
        // A credential of the credentials file is attached in `run` (an OAuth2
        // token may need fetching first).
        if let Some(name) = self
            .credential
            .as_ref()
            .filter(|n| cx.scope.globals.vault.get(n).is_none())
        {
            let value = cx.scope.globals.credentials.get(name).or_else(|| {
                let lower = name.to_ascii_lowercase();
                cx.scope.globals.credentials.get(lower.as_str())
            });
            match value.and_then(J::as_str) {
                Some(token) => headers.push(("authorization".into(), format!("Bearer {token}"))),
                None => return Err(ActionError::Failed(format!("credential `{name}` is not configured"))),
            }
        }
        if let Some(auth) = &self.basic_auth {
            let (user, pass) = match auth.render(&cx.scope)? {
                J::Array(a) if a.len() == 2 => (
                    a[0].as_str().unwrap_or_default().to_owned(),
                    a[1].as_str().unwrap_or_default().to_owned(),
                ),
                J::String(s) => match s.split_once(':') {
                    Some((u, p)) => (u.to_owned(), p.to_owned()),
                    None => (s, String::new()),
                },
                _ => {
                    return Err(ActionError::Failed(
                        "`basic_auth` is `[user, password]` or `\"user:password\"`".into(),
                    ));
                }
            };
            use base64::Engine as _;
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
            headers.push(("authorization".into(), format!("Basic {token}")));
        }
        for (name, tree) in &self.headers {
            let v = tree.render(&cx.scope)?;
            let v = match v {
                J::Null => String::new(),
                J::String(s) => s,
                other => other.to_string(),
            };
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
            // A header that renders empty is left out: optional headers
            // (`{{ x.maybe }}`) need no `if`.
            if !v.is_empty() {
                headers.push((name.clone(), v));
            }
        }
        Ok(HttpRequest {
            method: self.method.clone(),
            url,
            headers,
            body,
            timeout: self.timeout,
            verify_tls: self.verify_tls,
            max_response_bytes: self.max_response_bytes,
        })
    }

    /// Sends with retries from retry `attempt` (0: the first try); the last
    /// response or the error. With `stored`, a wait longer than
    /// [`MAX_WAIT_IN_STEP_MS`] is not spent here: its due time is returned,
    /// for the executor to store (a crash or a ten-minute `Retry-After` then
    /// holds neither memory nor a worker, and the retry resumes where it was).
    async fn send(
        &self,
        cx: &ExecCx<'_>,
        request: &HttpRequest,
        trace: &mut Vec<J>,
        attached: Option<&Attached>,
        mut attempt: u32,
        stored: bool,
    ) -> Sent {
        loop {
            let result = self
                .send_following(cx, request.clone(), trace, attached, attempt + 1)
                .await;
            let retryable = match &result {
                Ok(r) => any_contains(&self.retry_on, r.status),
                // A refusal or an oversized body is the same on every try.
                Err(HttpError::Refused(_) | HttpError::TooLarge { .. }) => false,
                Err(_) => any_contains(&self.retry_on, 0),
            };
            if !retryable || attempt >= self.retries {
                return Sent::Done(result);
            }
            let now = cx.clock.now_ms();
            let backoff = (BACKOFF_BASE_MS << attempt.min(10)).min(BACKOFF_MAX_MS);
            let jitter = fastrand::i64(0..=backoff / 4);
            // A server may ask for any wait: at most `MAX_RETRY_AFTER_MS`.
            let asked = result
                .as_ref()
                .ok()
                .and_then(|r| retry_after(r, now))
                .map(|w| w.min(MAX_RETRY_AFTER_MS));
            let wait = asked.unwrap_or(backoff + jitter);
            let at_ms = now.saturating_add(wait);
            // Decided on the wait before jitter, so that a story test or a
            // dry run takes the same path every time.
            if stored && asked.unwrap_or(backoff) > MAX_WAIT_IN_STEP_MS {
                return Sent::Later {
                    at_ms,
                    attempt: attempt + 1,
                };
            }
            cx.clock.sleep_until(at_ms).await;
            attempt += 1;
        }
    }

    /// One attempt, following redirects hop by hop. Each hop is checked like
    /// the first request: a credential in its URL, headers or body, or the
    /// attached credential's header, bound for a host that credential does
    /// not allow makes the hop refused, never sent.
    async fn send_following(
        &self,
        cx: &ExecCx<'_>,
        mut request: HttpRequest,
        trace: &mut Vec<J>,
        attached: Option<&Attached>,
        attempt: u32,
    ) -> Result<HttpResponse, HttpError> {
        let mut hops = 0;
        loop {
            trace.push(json!({
                "method": request.method.to_ascii_uppercase(),
                "url": request.url,
                "headers": J::Object(request.headers.iter().map(|(k, v)| (k.clone(), J::String(v.clone()))).collect()),
                "body": request.body.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
                "body_bytes": request.body.as_ref().map_or(0, Vec::len),
                "attempt": attempt,
            }));
            let sent = std::time::Instant::now();
            let response = cx.http.send(request.clone()).await;
            // What came back, beside what was sent (stored traces, dry runs).
            if let Some(J::Object(entry)) = trace.last_mut() {
                entry.insert("duration_ms".into(), J::from(sent.elapsed().as_millis() as u64));
                match &response {
                    Ok(r) => entry.insert("status".into(), J::from(r.status)),
                    Err(e) => entry.insert("error".into(), J::String(e.to_string())),
                };
            }
            let response = response?;
            if !self.follow_redirects {
                return Ok(response);
            }
            let Some(next) = redirect_target(&request, &response) else {
                return Ok(response);
            };
            let mut next = next?;
            hops += 1;
            // The header a typed credential attached is bound to its origin
            // like `Authorization`: another origin never gets it.
            if let Some(a) = attached {
                let cross = match (url::Url::parse(&request.url), url::Url::parse(&next.url)) {
                    (Ok(from), Ok(to)) => !same_origin(&from, &to),
                    _ => true,
                };
                if cross {
                    next.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&a.header));
                }
            }
            if hops > MAX_REDIRECTS {
                return Err(HttpError::Refused(format!("more than {MAX_REDIRECTS} redirects")));
            }
            let refused = |why: String| {
                HttpError::Refused(format!(
                    "the {} redirect to {} was not followed: {why}",
                    response.status, next.url
                ))
            };
            cx.scope.check_request(&next).map_err(refused)?;
            if let Some(a) = attached
                && next.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(&a.header))
                && let Some(why) = vault_host_refusal(cx, &a.name, &next.url)
            {
                return Err(refused(why));
            }
            request = next;
        }
    }

    fn failed(&self, status: Option<u16>, response: Option<&HttpResponse>, error: String) -> Emit {
        let mut out = response.map_or_else(
            || json!({"status": status.unwrap_or(0), "headers": {}, "body": null}),
            response_json,
        );
        out["error"] = J::String(error);
        Emit::Branch("failure", out)
    }

    /// The idempotency key of this work item's `page`-th request (1-based):
    /// the input event's id (the run's for a scheduled start) and the slug.
    fn idempotency_key(cx: &ExecCx<'_>, page: u32) -> String {
        let origin = cx
            .scope
            .input
            .map_or_else(|| cx.run_id.to_string(), |e| e.id.to_string());
        match page {
            1 => format!("{origin}-{}", cx.slug),
            n => format!("{origin}-{}-{n}", cx.slug),
        }
    }

    fn set_idempotency_key(&self, cx: &ExecCx<'_>, request: &mut HttpRequest, page: u32) {
        if let Some(header) = &self.idempotency_header {
            request.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(header));
            request.headers.push((header.clone(), Self::idempotency_key(cx, page)));
        }
    }

    /// One execution from retry `retry` of the first request (0 at first,
    /// more when a stored retry comes back).
    async fn run(&self, cx: &ExecCx<'_>, retry: u32) -> Result<Outcome, ActionError> {
        let mut trace = Vec::new();
        let mut request = self.render(cx)?;
        // Signs of a resource or a value that rendered empty: said in the
        // log and in dry runs, where a mock would answer anything.
        if let Some(warning) = url_warning(&request.url) {
            trace.push(json!({"log_error": warning}));
        }
        self.set_idempotency_key(cx, &mut request, 1);
        if let Err(refused) = cx.scope.check_request(&request) {
            return Ok(Outcome {
                emits: vec![self.failed(None, None, refused)],
                ..Outcome::default()
            });
        }
        // A typed credential: its header, a token fetched if need be.
        let mut attached: Option<Attached> = None;
        if let Some(name) = self
            .credential
            .as_ref()
            .filter(|n| cx.scope.globals.vault.get(n).is_some())
        {
            let refuse = |why: String| {
                Ok(Outcome {
                    emits: vec![self.failed(None, None, why)],
                    ..Outcome::default()
                })
            };
            if let Some(refused) = vault_host_refusal(cx, name, &request.url) {
                return refuse(refused);
            }
            match cx.scope.globals.vault.header(name, cx.http, cx.clock).await {
                Ok((header, value)) => {
                    request.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&header));
                    request.headers.push((header.clone(), value.clone()));
                    attached = Some(Attached {
                        name: name.clone(),
                        header,
                        value,
                    });
                }
                Err(e) => return refuse(e.to_string()),
            }
        }
        let outcome = self.exchange(cx, request, trace, attached.as_ref(), retry).await?;
        // A server that echoes the credential (or its token) back does not
        // get it into the event.
        Ok(match attached {
            Some(Attached { name, value, .. }) => {
                let secret = value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("Basic "))
                    .unwrap_or(&value)
                    .to_owned();
                tale_core::runtime::redact::Redactor::from_pairs([(name.as_str(), secret.as_str())]).outcome(outcome)
            }
            None => outcome,
        })
    }

    /// Sends the request (retries, pages) and builds the outcome. A retry of
    /// the first request is a stored wake-up (`retry_attempt`); a retry of a
    /// later page waits here, the pages read so far being in memory.
    async fn exchange(
        &self,
        cx: &ExecCx<'_>,
        mut request: HttpRequest,
        mut trace: Vec<J>,
        attached: Option<&Attached>,
        retry: u32,
    ) -> Result<Outcome, ActionError> {
        let mut pages: Vec<J> = Vec::new();
        let max_pages = self.pagination.as_ref().map_or(1, |p| p.1.max(1));
        let mut emits = Vec::new();
        // The pages of one request share the body budget.
        let mut read: u64 = 0;
        let mut truncated = false;
        loop {
            request.max_response_bytes = self.max_response_bytes.saturating_sub(read);
            let first = pages.is_empty();
            let sent = self
                .send(cx, &request, &mut trace, attached, if first { retry } else { 0 }, first)
                .await;
            let result = match sent {
                Sent::Done(result) => result,
                Sent::Later { at_ms, attempt } => {
                    trace.push(json!({"retry": {"attempt": attempt, "again_at_ms": at_ms}}));
                    return Ok(Outcome {
                        emits: vec![Emit::Later {
                            at_ms,
                            payload: json!({ RETRY_ATTEMPT: attempt }),
                        }],
                        trace,
                        ..Outcome::default()
                    });
                }
            };
            let response = match result {
                Ok(r) => {
                    read += r.body.len() as u64;
                    r
                }
                Err(HttpError::TooLarge { .. }) => {
                    let why = match pages.len() {
                        0 => format!(
                            "the response is larger than {} bytes (`max_response_bytes`)",
                            self.max_response_bytes
                        ),
                        n => format!(
                            "page {} takes the responses past {} bytes (`max_response_bytes` counts every page)",
                            n + 1,
                            self.max_response_bytes
                        ),
                    };
                    emits.push(self.failed(None, None, why));
                    break;
                }
                Err(e) => {
                    emits.push(self.failed(None, None, e.to_string()));
                    break;
                }
            };
            let failing = match &self.fail_on {
                FailOn::Never => false,
                FailOn::AnyError => !(200..300).contains(&response.status),
                FailOn::Statuses(list) => any_contains(list, response.status),
            } || any_contains(&self.retry_on, response.status);
            if any_contains(&self.log_error_on, response.status) {
                trace.push(json!({"log_error": format!("{} answered {}", request.url, response.status)}));
            }
            if failing {
                let why = format!(
                    "{} {} answered {}",
                    request.method.to_ascii_uppercase(),
                    request.url,
                    response.status
                );
                emits.push(self.failed(Some(response.status), Some(&response), why));
                break;
            }
            let page = response_json(&response);
            let next = match &self.pagination {
                Some((next_url, _, _)) => {
                    let extra = [("response", &page)];
                    let scope = cx.scope.clone_with_extra(&extra);
                    match next_url.render_text(&scope) {
                        Ok(next) => next,
                        // Rendered on the last page only to know whether more
                        // exist: an error there stops, as `max_pages` would.
                        Err(e) if pages.len() as u32 + 1 >= max_pages => {
                            trace.push(json!({"log_error": format!("`next_url` after the last page: {e}")}));
                            String::new()
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                _ => String::new(),
            };
            pages.push(page);
            if next.trim().is_empty() {
                break;
            }
            // More pages, but `max_pages` is reached: say so (logged by
            // `tale run` and `tale serve`; the merged output gets `truncated`).
            if pages.len() as u32 >= max_pages {
                truncated = true;
                // The URL without its query (which may carry a secret).
                let at = url::Url::parse(&request.url).map_or_else(
                    |_| String::new(),
                    |mut u| {
                        u.set_query(None);
                        u.to_string()
                    },
                );
                trace.push(json!({
                    "log_error": format!("{at} stopped after {max_pages} pages (`max_pages`): more were available")
                }));
                break;
            }
            request.url = next.trim().to_owned();
            self.set_idempotency_key(cx, &mut request, pages.len() as u32 + 1);
            if let Err(refused) = cx.scope.check_request(&request) {
                emits.push(self.failed(None, None, refused));
                break;
            }
            // Later pages repeat the request without its query payload.
            if request.method == "get" {
                request.body = None;
            }
        }
        if !pages.is_empty() && emits.is_empty() {
            match self.pagination.as_ref().map(|p| p.2) {
                Some(Emit2::PerPage) => emits.extend(pages.into_iter().map(Emit::Main)),
                _ if pages.len() == 1 => emits.extend(pages.into_iter().map(Emit::Main)),
                _ => emits.push(Emit::Main(merge_pages(pages))),
            }
            // Pages were left: the (last) output says so, in every mode.
            if truncated && let Some(Emit::Main(last)) = emits.last_mut() {
                last["truncated"] = J::Bool(true);
            }
        }
        // When a later page fails, the pages read so far are not emitted on the
        // main output: the failure says which page broke.
        Ok(Outcome {
            emits,
            trace,
            ..Outcome::default()
        })
    }
}

/// `poll`: known rule types, a list to wait for, bounds, and one output to
/// test (not one event per page).
fn check_poll(p: &Poll, pagination: Option<&Pagination>, cx: &mut ValueCx<'_>) {
    for rule in &p.until {
        if !tale_core::model::RULE_TYPES.contains(&rule.kind.value.as_str()) {
            cx.report(
                Code::UnknownRuleType,
                rule.kind.span,
                format!("unknown rule type `{}`", rule.kind.value),
            )
            .help = Some(
                did_you_mean(&rule.kind.value, tale_core::model::RULE_TYPES.iter().copied())
                    .unwrap_or_else(|| format!("rule types are {}", one_of(tale_core::model::RULE_TYPES))),
            );
        }
    }
    if let Some(m) = &p.must_match {
        cx.range("poll.must_match", m, 1, p.until.len().max(1), "");
    }
    if let Some(i) = p.interval_secs.as_ref().filter(|i| i.value.is_finite()) {
        cx.range("poll.interval_secs", i, 0.0, MAX_POLL_INTERVAL_SECS, "seconds");
    }
    if let Some(m) = &p.max_attempts {
        cx.range("poll.max_attempts", m, 1, MAX_POLL_ATTEMPTS, "");
    }
    if let Some(pg) = pagination
        && pg.emit == Some(PageEmit::PerPage)
    {
        cx.report(
            Code::InvalidValue,
            pg.next_url.span,
            "`poll` tests one response: it does not go with `emit: per_page`",
        );
    }
}

/// Why a rendered URL looks wrong although it may still be sent: relative
/// (no scheme and host), or with an empty path segment
/// (`/subscriptions//resourceGroups/` from an unset resource).
fn url_warning(url: &str) -> Option<String> {
    match url::Url::parse(url.trim()) {
        Err(url::ParseError::RelativeUrlWithoutBase) => Some(format!(
            "the URL `{}` is relative: a resource or a value it starts with rendered empty?",
            url.split('?').next().unwrap_or_default()
        )),
        Ok(u) if u.path().contains("//") => Some(format!(
            "the URL path `{}` has an empty segment: a resource or a value in it rendered empty?",
            u.path()
        )),
        _ => None,
    }
}

/// The typed credential `run` attached: its name, header and value.
struct Attached {
    name: String,
    header: String,
    value: String,
}

/// A typed credential's allowed hosts (the file's, else the environment's)
/// refuse this URL's host.
fn vault_host_refusal(cx: &ExecCx<'_>, name: &str, url: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    let hosts = cx
        .scope
        .globals
        .vault
        .allowed_hosts
        .get(&lower)
        .or_else(|| cx.scope.globals.allowed_hosts.get(&lower))?;
    let host = url::Url::parse(url).ok()?.host_str()?.to_owned();
    (!tale_core::values::host_allowed(&host, hosts)).then(|| {
        format!(
            "credential `{name}` may not be sent to `{host}` (its allowed hosts are {})",
            hosts.join(", ")
        )
    })
}

/// Pages as one response: arrays concatenated (a list body, or each list
/// field of an object body such as Graph's `value`); other fields from the
/// first page; the last page's status and headers.
fn merge_pages(pages: Vec<J>) -> J {
    let count = pages.len();
    let mut iter = pages.into_iter();
    let Some(mut first) = iter.next() else { return J::Null };
    let mut last_meta = None;
    for page in iter {
        match (&mut first["body"], page["body"].clone()) {
            (J::Array(acc), J::Array(more)) => acc.extend(more),
            (J::Object(acc), J::Object(more)) => {
                // Lists add up; other fields (a next link, a count) are the last page's.
                let stale: Vec<String> = acc
                    .iter()
                    .filter(|(k, v)| !v.is_array() && !more.contains_key(*k))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in stale {
                    acc.remove(&k);
                }
                for (k, v) in more {
                    match (acc.get_mut(&k), v) {
                        (Some(J::Array(a)), J::Array(b)) => a.extend(b),
                        (_, v) => {
                            acc.insert(k, v);
                        }
                    }
                }
            }
            _ => {}
        }
        last_meta = Some((page["status"].clone(), page["headers"].clone()));
    }
    if let Some((status, headers)) = last_meta {
        first["status"] = status;
        first["headers"] = headers;
    }
    first["pages"] = json!(count);
    first
}

impl Executable for HttpExec {
    fn inline(&self) -> Inline {
        // With an idempotency key the request runs as a work item of its
        // own: its input event is then stored before it is sent, so the
        // re-run after a crash derives the same key (an event made inline
        // in the same step would get a new id).
        if self.idempotency_header.is_some() {
            Inline::Never
        } else {
            Inline::Effect
        }
    }

    fn execute<'a>(&'a self, cx: &'a ExecCx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        Box::pin(self.polled(cx, 1, 0))
    }

    /// The next attempt of a `poll`, or a stored retry of the request.
    fn wake<'a>(&'a self, cx: &'a ExecCx<'a>, payload: J) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        let number = |key: &str| payload[key].as_u64().map(|n| n.min(u64::from(u32::MAX)) as u32);
        let retry = number(RETRY_ATTEMPT);
        // A wake-up without a poll attempt is a poll's second (stored before
        // retries were), or a retry of the first.
        let attempt = number("poll_attempt").unwrap_or(if retry.is_some() { 1 } else { 2 });
        Box::pin(self.polled(cx, attempt, retry.unwrap_or(0)))
    }
}

impl HttpExec {
    /// Sends the request; with `poll`, tests the response and, when it is
    /// not done yet, comes back after the interval (a stored timer, like a
    /// delay's) instead of emitting, up to the last attempt, which fails.
    async fn polled(&self, cx: &ExecCx<'_>, attempt: u32, retry: u32) -> Result<Outcome, ActionError> {
        let mut outcome = self.run(cx, retry).await?;
        let Some(poll) = &self.poll else { return Ok(outcome) };
        // A stored retry comes back to this poll attempt.
        if let [Emit::Later { payload, .. }] = outcome.emits.as_mut_slice() {
            payload["poll_attempt"] = json!(attempt);
            return Ok(outcome);
        }
        // A failure stays a failure: only an answer is tested.
        let [Emit::Main(output)] = outcome.emits.as_mut_slice() else {
            return Ok(outcome);
        };
        let extra = [("response", &*output)];
        let done = poll.until.matches(&cx.scope.clone_with_extra(&extra), None)?;
        output["poll_attempts"] = json!(attempt);
        if done {
            return Ok(outcome);
        }
        if attempt >= poll.max_attempts {
            let mut out = output.take();
            out["error"] = json!(format!(
                "the response did not satisfy `poll.until` after {attempt} attempt{}",
                if attempt == 1 { "" } else { "s" }
            ));
            outcome.emits = vec![Emit::Branch("failure", out)];
            return Ok(outcome);
        }
        let at_ms = cx.clock.now_ms().saturating_add(poll.interval_ms);
        outcome
            .trace
            .push(json!({"poll": {"attempt": attempt, "status": output["status"], "again_at_ms": at_ms}}));
        outcome.emits = vec![Emit::Later {
            at_ms,
            payload: json!({"poll_attempt": attempt + 1}),
        }];
        Ok(outcome)
    }
}

impl HttpRequestConfig {
    fn build_exec(&self, c: &Compiler<'_>) -> Result<Box<dyn Executable>, CompileError> {
        let statuses =
            |list: &Option<Vec<Node>>| list.iter().flatten().filter_map(StatusRange::parse).collect::<Vec<_>>();
        let retry_on = statuses(&self.retry_on_status);
        let fail_on = match self.fail_on_status.as_ref().map(|n| &n.kind) {
            Some(NodeKind::Bool(true)) => FailOn::AnyError,
            Some(NodeKind::Seq(items)) => FailOn::Statuses(items.iter().filter_map(StatusRange::parse).collect()),
            _ => FailOn::Never,
        };
        Ok(Box::new(HttpExec {
            url: c.field("url", &self.url.value, self.url.span)?,
            method: self
                .method
                .as_ref()
                .map_or("get".into(), |m| m.value.to_ascii_lowercase()),
            content_type: self.content_type.as_ref().map_or("json".into(), |c| c.value.clone()),
            payload: self.payload.as_ref().map(|p| c.tree("payload", p)).transpose()?,
            headers: self
                .headers
                .iter()
                .flatten()
                .map(|(k, v)| Ok((k.clone(), c.tree(&format!("headers.{k}"), v)?)))
                .collect::<Result<_, CompileError>>()?,
            basic_auth: self.basic_auth.as_ref().map(|b| c.tree("basic_auth", b)).transpose()?,
            credential: self.credential.as_ref().map(|c| c.value.clone()),
            // `check` bounds it; a built story never panics on one it did not see.
            timeout: Duration::try_from_secs_f64(self.timeout_secs.as_ref().map_or(30.0, |t| t.value))
                .unwrap_or(Duration::from_secs(30))
                .min(Duration::from_secs_f64(MAX_TIMEOUT_SECS)),
            retries: match (&self.retries, retry_on.is_empty()) {
                (Some(r), _) => r.value,
                (None, false) => DEFAULT_RETRIES,
                (None, true) => 0,
            },
            retry_on,
            log_error_on: statuses(&self.log_error_on_status),
            fail_on,
            verify_tls: !self.disable_ssl_verification.unwrap_or(false),
            follow_redirects: !self.disable_redirect_follow.unwrap_or(false),
            max_response_bytes: self
                .max_response_bytes
                .as_ref()
                .map_or(DEFAULT_MAX_RESPONSE_BYTES, |m| m.value),
            idempotency_header: match (self.idempotency_key, &self.idempotency_header) {
                (Some(false), _) | (None, None) => None,
                (_, Some(h)) => Some(h.value.clone()),
                (Some(true), None) => Some("Idempotency-Key".into()),
            },
            poll: self
                .poll
                .as_ref()
                .map(|p| {
                    Ok::<_, CompileError>(PollExec {
                        until: tale_core::runtime::rules::Rules::compile(
                            c,
                            &p.until,
                            p.must_match.as_ref().map(|m| m.value),
                        )?,
                        interval_ms: (p
                            .interval_secs
                            .as_ref()
                            .map_or(DEFAULT_POLL_INTERVAL_SECS, |i| i.value)
                            .clamp(0.0, MAX_POLL_INTERVAL_SECS)
                            * 1000.0) as i64,
                        max_attempts: p
                            .max_attempts
                            .as_ref()
                            .map_or(DEFAULT_POLL_ATTEMPTS, |m| m.value)
                            .clamp(1, MAX_POLL_ATTEMPTS),
                    })
                })
                .transpose()?,
            pagination: self
                .pagination
                .as_ref()
                .map(|p| {
                    Ok((
                        c.field("pagination.next_url", &p.next_url.value, p.next_url.span)?,
                        p.max_pages.as_ref().map_or(DEFAULT_MAX_PAGES, |m| m.value),
                        if p.emit == Some(PageEmit::PerPage) {
                            Emit2::PerPage
                        } else {
                            Emit2::Merged
                        },
                    ))
                })
                .transpose()?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(retry_after: &str) -> HttpResponse {
        HttpResponse {
            status: 429,
            headers: vec![("retry-after".into(), retry_after.into())],
            body: Vec::new(),
        }
    }

    #[test]
    fn retry_after_in_seconds_decimals_and_http_dates() {
        let now = 1_700_000_000_000; // Tue, 14 Nov 2023 22:13:20 GMT
        assert_eq!(retry_after(&response("2"), now), Some(2000));
        assert_eq!(retry_after(&response("0.25"), now), Some(250));
        assert_eq!(retry_after(&response("Tue, 14 Nov 2023 22:13:23 GMT"), now), Some(3000));
        assert_eq!(
            retry_after(&response("Tue, 14 Nov 2023 22:00:00 GMT"), now),
            Some(0),
            "a past date: at once"
        );
        assert_eq!(retry_after(&response("soon"), now), None);
    }

    #[test]
    fn urls_with_empty_parts_are_flagged() {
        assert!(url_warning("https://management.azure.com/subscriptions//resourceGroups//providers/x").is_some());
        assert!(url_warning("/v1.0/security/alerts").is_some_and(|w| w.contains("relative")));
        assert!(url_warning("https://graph.microsoft.com/v1.0/security/alerts_v2?$top=10").is_none());
        // The query is not part of the path: `a=//b` is fine.
        assert!(url_warning("https://x.test/p?next=//other").is_none());
    }

    #[test]
    fn status_ranges() {
        let list: Vec<StatusRange> = ["429", "500-599", "0"]
            .iter()
            .filter_map(|s| StatusRange::parse(&Node::new(Default::default(), NodeKind::Str((*s).into()))))
            .collect();
        assert!(any_contains(&list, 429) && any_contains(&list, 503) && any_contains(&list, 0));
        assert!(!any_contains(&list, 404));
    }
}
