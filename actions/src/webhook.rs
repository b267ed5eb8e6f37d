//! `webhook`: the entry point of a story. Receives HTTP requests at
//! `/webhook/<path>/<secret>` (or with `Authorization: Bearer <secret>`).

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use tale_core::action::{ActionConfig, TemplateField, ValueCx};
use tale_core::diagnostic::Code;
use tale_core::span::Spanned;
use tale_core::yaml::Node;

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
    /// At most `requests` untrusted requests per `per_secs` seconds; more
    /// get 429 with `Retry-After` and start nothing.
    pub rate_limit: Option<Spanned<RateLimit>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed in one window (a burst may use them all at once).
    pub requests: u32,
    /// The window, in seconds (default 1).
    pub per_secs: Option<u32>,
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
    /// Content type of the body (default: `text/plain` for text,
    /// `application/json` for a structure).
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

    fn build(&self, compiler: &Compiler<'_>) -> Result<Box<dyn Executable>, CompileError> {
        self.build_exec(compiler)
    }

    fn webhook_path(&self) -> Option<(&str, tale_core::span::Span)> {
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
        // Segments a client or a proxy would normalise away (`a//b`, `x/`,
        // `..`) would make a path no request can reach.
        let segments_ok = path.split('/').all(|s| !s.is_empty() && s != "." && s != "..");
        if !valid {
            cx.report(
                Code::InvalidValue,
                self.path.span,
                format!("invalid webhook path `{path}`"),
            )
            .help = Some("a path uses letters, digits, `-`, `_`, `.` and `/`".into());
        } else if !segments_ok {
            cx.report(
                Code::InvalidValue,
                self.path.span,
                format!("invalid webhook path `{path}`: an empty, `.` or `..` segment"),
            )
            .help = Some("write segments separated by single `/`, such as `graph/alerts`".into());
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
        if let Some(max) = &self.max_body_bytes {
            cx.range("max_body_bytes", max, 1, MAX_BODY_BYTES, "bytes");
        }
        if let Some(limit) = &self.rate_limit
            && (limit.value.requests == 0 || limit.value.per_secs == Some(0))
        {
            cx.report(
                Code::InvalidValue,
                limit.span,
                "a `rate_limit` needs `requests` and `per_secs` greater than 0",
            );
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

// ---------------------------------------------------------------------------
// Execution: accepting a request.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Value as J, json};
use subtle::ConstantTimeEq;
use tale_core::action::{
    ActionError, CompileError, Compiler, ExecCx, Executable, Outcome, WebhookRequest, WebhookResult,
};
use tale_core::runtime::contract::WebhookResponse;
use tale_core::runtime::event::{Event, Output, RAW_OUTPUT_BYTES};
use tale_core::runtime::render::{Field, Tree};
use tale_core::template::raw::RawJson;

/// Default largest body: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// The largest `max_body_bytes` a story may set: a body is held whole.
pub const MAX_BODY_BYTES: u64 = 256 * 1024 * 1024;

struct WebhookExec {
    verbs: Vec<String>,
    rate_limit: Option<Limiter>,
    secret: Option<Field>,
    signature: Option<SignatureCheck>,
    include_headers: bool,
    max_body_bytes: u64,
    status: u16,
    content_type: Option<String>,
    headers: Vec<(String, Tree)>,
    body: Option<Tree>,
}

/// A fixed-window counter: `requests` per `window_ms`.
struct Limiter {
    requests: u32,
    window_ms: i64,
    /// The window's start and the requests counted in it.
    state: std::sync::Mutex<(i64, u32)>,
}

/// A webhook's `signature`, ready to verify.
struct SignatureCheck {
    algorithm: SignatureAlgorithm,
    header: Option<String>,
    secret: Field,
    prefix: Option<String>,
}

/// Slack refuses requests whose timestamp is more than five minutes off.
const SLACK_TOLERANCE_SECS: i64 = 300;

fn hmac_hex(algorithm: SignatureAlgorithm, key: &[u8], message: &[u8]) -> String {
    use tale_core::template::filters::{hmac_sha1_hex, hmac_sha256_hex};
    match algorithm {
        SignatureAlgorithm::Sha1 => hmac_sha1_hex(key, message),
        _ => hmac_sha256_hex(key, message),
    }
}

/// Equal in constant time (ASCII case-insensitive: hex digests).
fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.to_ascii_lowercase()
        .as_bytes()
        .ct_eq(b.to_ascii_lowercase().as_bytes())
        .into()
}

impl SignatureCheck {
    /// Checks the request; `Err` says why it is refused (never the secret).
    fn verify(&self, request: &WebhookRequest, secret: &str, now_ms: i64) -> Result<(), String> {
        if secret.is_empty() {
            return Err("the signature secret is not configured".into());
        }
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
        };
        match self.algorithm {
            SignatureAlgorithm::Sha256 | SignatureAlgorithm::Sha1 => {
                let name = self.header.as_deref().unwrap_or("x-hub-signature-256");
                let given = header(name).ok_or_else(|| format!("the signature header `{name}` is missing"))?;
                let digest = match &self.prefix {
                    Some(p) => given
                        .strip_prefix(p.as_str())
                        .ok_or_else(|| format!("the signature does not start with `{p}`"))?,
                    None => given.as_str(),
                };
                let expected = hmac_hex(self.algorithm, secret.as_bytes(), &request.body);
                if same(digest, &expected) {
                    Ok(())
                } else {
                    Err("wrong signature".into())
                }
            }
            SignatureAlgorithm::Slack => {
                let name = self.header.as_deref().unwrap_or("x-slack-signature");
                let given = header(name).ok_or_else(|| format!("the signature header `{name}` is missing"))?;
                let ts =
                    header("x-slack-request-timestamp").ok_or("the header `x-slack-request-timestamp` is missing")?;
                let seconds: i64 = ts
                    .parse()
                    .map_err(|_| "the Slack timestamp is not a number".to_owned())?;
                if (now_ms / 1000 - seconds).abs() > SLACK_TOLERANCE_SECS {
                    return Err("the Slack timestamp is more than five minutes off (a replay?)".into());
                }
                let mut base = format!("v0:{ts}:").into_bytes();
                base.extend_from_slice(&request.body);
                let expected = format!("v0={}", hmac_hex(SignatureAlgorithm::Sha256, secret.as_bytes(), &base));
                if same(&given, &expected) {
                    Ok(())
                } else {
                    Err("wrong signature".into())
                }
            }
            SignatureAlgorithm::ClientState => client_state(request, secret),
        }
    }
}

/// Microsoft Graph's change notifications: the validation handshake (a
/// `validationToken` in the query and no body) passes; any other request
/// must be `{"value": [...]}` with at least one notification, every one an
/// object whose `clientState` is the secret. (The handshake is answered
/// before: [`graph_handshake`].)
fn client_state(request: &WebhookRequest, secret: &str) -> Result<(), String> {
    let body: J = serde_json::from_slice(&request.body)
        .map_err(|_| "not a Graph change notification: the body is not JSON".to_owned())?;
    let notifications = body
        .get("value")
        .and_then(J::as_array)
        .filter(|list| !list.is_empty())
        .ok_or("not a Graph change notification: no `value` list of notifications")?;
    let all = notifications.iter().all(|n| {
        n.get("clientState")
            .and_then(J::as_str)
            .is_some_and(|c| bool::from(subtle::ConstantTimeEq::ct_eq(c.as_bytes(), secret.as_bytes())))
    });
    if all {
        Ok(())
    } else {
        Err("a notification's clientState is missing or wrong".into())
    }
}

/// Graph's validation handshake: a POST (or GET) whose query is only
/// `validationToken` and whose body is empty. tale answers it itself, the
/// token as text within Graph's 10 s, and starts no run: an unauthenticated
/// request never becomes an event.
fn graph_handshake(request: &WebhookRequest) -> Option<WebhookResponse> {
    let [(key, token)] = request.query.as_slice() else {
        return None;
    };
    let post_or_get = request.method.eq_ignore_ascii_case("post") || request.method.eq_ignore_ascii_case("get");
    (key == "validationToken" && !token.is_empty() && post_or_get && request.body.iter().all(u8::is_ascii_whitespace))
        .then(|| WebhookResponse {
            status: 200,
            content_type: "text/plain".into(),
            headers: Vec::new(),
            body: token.clone(),
        })
}

/// Whether a body of this content type can become an event: JSON, a form,
/// or text (XML included). Binary bodies and multipart uploads cannot.
fn supported(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.is_empty()
        || essence.contains("json")
        || essence == "application/x-www-form-urlencoded"
        || essence.starts_with("text/")
        || essence == "application/xml"
        || essence.ends_with("+xml")
}

/// The output `{method, path, query, headers, body}` of a large JSON body
/// as JSON text, the body's text inside it as it arrived: kept as text, it
/// is read in place by templates and explodes instead of held parsed
/// (five to ten times its size). `None` when the body is small or not JSON.
fn large_json_output(request: &WebhookRequest, method: &str) -> Option<Result<RawJson, (u16, String)>> {
    if request.body.len() < RAW_OUTPUT_BYTES {
        return None;
    }
    let content_type = content_type(request);
    let text = std::str::from_utf8(&request.body).ok()?;
    if !is_json(&content_type, text) || !supported(&content_type) {
        return None;
    }
    // The body alone is one JSON value (so that it cannot close the object
    // it is pasted into and add members of its own).
    if let Err(e) = tale_core::template::raw::check(text) {
        return Some(Err((400, format!("the body is not valid JSON: {e}"))));
    }
    // As deep as parsing allows: one level more inside the output would
    // not be; the parsed path takes it.
    if tale_core::template::raw::nesting(text) >= tale_core::template::raw::MAX_DEPTH {
        return None;
    }
    // The same members as a parsed output, the body's text last.
    let mut out = J::Object(request_members(method, request)).to_string();
    out.reserve(text.len() + 10);
    out.pop();
    out.push_str(",\"body\":");
    out.push_str(text);
    out.push('}');
    Some(RawJson::parse(out).map_err(|e| (400, format!("the body is not valid JSON: {e}"))))
}

/// The request's content type, lower-cased (empty when it has none).
fn content_type(request: &WebhookRequest) -> String {
    request
        .headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map_or("", |(_, v)| v.as_str())
        .to_ascii_lowercase()
}

/// Whether a body is JSON: by its content type, or without one by its text.
fn is_json(content_type: &str, text: &str) -> bool {
    content_type.contains("json") || (content_type.is_empty() && text.trim_start().starts_with(['{', '[']))
}

/// A webhook output's members other than the body, in their order.
fn request_members(method: &str, request: &WebhookRequest) -> serde_json::Map<String, J> {
    let mut m = serde_json::Map::with_capacity(5);
    m.insert("method".into(), J::String(method.to_owned()));
    m.insert("path".into(), J::String(request.path.clone()));
    m.insert("query".into(), pairs(&request.query));
    m.insert("headers".into(), pairs(&request.headers));
    m
}

/// The body by its content type: JSON, a form, or text; `Err` holds the
/// status to answer (400 malformed, 415 unsupported) and why.
fn parse_body(request: &WebhookRequest) -> Result<J, (u16, String)> {
    let content_type = content_type(request);
    if !supported(&content_type) {
        return Err((
            415,
            format!("content type `{content_type}` is not supported: send JSON, a form or text"),
        ));
    }
    if request.body.is_empty() {
        return Ok(J::Null);
    }
    let text = std::str::from_utf8(&request.body).map_err(|_| (400, "the body is not UTF-8 text".to_owned()))?;
    if is_json(&content_type, text) {
        return serde_json::from_str(text).map_err(|e| (400, format!("the body is not valid JSON: {e}")));
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let map: serde_json::Map<String, J> = url::form_urlencoded::parse(text.as_bytes())
            .map(|(k, v)| (k.into_owned(), J::String(v.into_owned())))
            .collect();
        return Ok(J::Object(map));
    }
    Ok(J::String(text.to_owned()))
}

fn pairs(list: &[(String, String)]) -> J {
    J::Object(list.iter().map(|(k, v)| (k.clone(), J::String(v.clone()))).collect())
}

impl Executable for WebhookExec {
    fn execute<'a>(&'a self, cx: &'a ExecCx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        // A webhook only starts runs; an event reaching it is passed on.
        Box::pin(std::future::ready(Ok(Outcome::main(cx.input().clone()))))
    }

    fn accept(&self, request: &WebhookRequest, cx: &ExecCx<'_>) -> Option<WebhookResult> {
        let refuse = |status: u16, message: String| Some(WebhookResult::Refused { status, message });
        let method = request.method.to_ascii_lowercase();
        if !self.verbs.contains(&method) {
            return refuse(
                405,
                format!(
                    "method {} is not accepted (verbs: {})",
                    request.method,
                    self.verbs.join(", ")
                ),
            );
        }
        if request.body.len() as u64 > self.max_body_bytes {
            return refuse(
                413,
                format!(
                    "the body is {} bytes, more than {}",
                    request.body.len(),
                    self.max_body_bytes
                ),
            );
        }
        if !request.trusted {
            // Counted before authentication: a flood of wrong secrets counts too.
            if let Some(Limiter {
                requests,
                window_ms,
                state,
            }) = &self.rate_limit
            {
                let now = cx.clock.now_ms();
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                if now.saturating_sub(s.0) >= *window_ms {
                    *s = (now, 0);
                }
                if s.1 >= *requests {
                    let wait = (s.0 + window_ms - now).max(0) / 1000 + 1;
                    return refuse(
                        429,
                        format!(
                            "more than {requests} requests in {} s: retry in {wait} s",
                            window_ms / 1000
                        ),
                    );
                }
                s.1 += 1;
            }
            if let Some(sig) = &self.signature {
                if sig.algorithm == SignatureAlgorithm::ClientState
                    && let Some(response) = graph_handshake(request)
                {
                    return Some(WebhookResult::Ignored { response });
                }
                let secret = match sig.secret.render_text(&cx.scope) {
                    Ok(s) => s,
                    Err(e) => return refuse(500, e.to_string()),
                };
                if let Err(why) = sig.verify(request, &secret, cx.clock.now_ms()) {
                    return refuse(401, why);
                }
            }
            if let Some(secret) = &self.secret {
                let expected = match secret.render_text(&cx.scope) {
                    Ok(s) => s,
                    Err(e) => return refuse(500, e.to_string()),
                };
                let presented = request.secret.as_deref().unwrap_or("");
                let same: bool = presented.as_bytes().ct_eq(expected.as_bytes()).into();
                if expected.is_empty() || !same {
                    return refuse(401, "missing or wrong secret".into());
                }
            }
        }
        // Without rules or templates in the response, nothing reads the
        // request apart from the output: the body is moved, not copied (a
        // batch of 10,000 alerts is megabytes).
        let reads_request = !(cx.rules.is_empty() && self.body.is_none() && self.headers.is_empty());
        if !reads_request && self.include_headers && !request.whole_output {
            match large_json_output(request, &method) {
                Some(Ok(output)) => return Some(self.accepted_unread(cx, output.into())),
                Some(Err((status, e))) => return refuse(status, e),
                None => {}
            }
        }
        let body = match parse_body(request) {
            Ok(b) => b,
            Err((status, e)) => return refuse(status, e),
        };
        let query = pairs(&request.query);
        let request_of = |body: J| {
            let mut m = request_members(&method, request);
            m.insert("body".into(), body);
            J::Object(m)
        };
        let request_json = if reads_request {
            request_of(body.clone())
        } else {
            J::Null
        };
        let output = if request.whole_output {
            body
        } else if self.include_headers {
            if reads_request {
                request_json.clone()
            } else {
                request_of(body)
            }
        } else {
            // Tines compatibility: the body merged with the query parameters.
            let mut merged = query.as_object().cloned().unwrap_or_default();
            match body {
                J::Object(o) => merged.extend(o),
                J::Null => {}
                other => {
                    merged.insert("body".into(), other);
                }
            }
            J::Object(merged)
        };
        if !reads_request {
            return Some(self.accepted_unread(cx, output.into()));
        }
        // Rules and the response see the request; rules also see the output
        // under the webhook's own slug.
        let this = Arc::new(Event::new(
            cx.run_id,
            cx.story_id.into(),
            cx.slug.into(),
            Vec::new(),
            output.clone(),
            0,
        ));
        let extra = [("request", &request_json)];
        let mut scope = cx.scope.clone_with_extra(&extra);
        scope.input = Some(&this);
        let matched = match cx.rules.matches(&scope, None) {
            Ok(m) => m,
            Err(e) => return refuse(500, e.to_string()),
        };
        let response = match self.response(&scope) {
            Ok(r) => r,
            Err(e) => return refuse(500, e.to_string()),
        };
        Some(if matched {
            WebhookResult::Accepted {
                output: output.into(),
                response,
            }
        } else {
            WebhookResult::Ignored { response }
        })
    }
}

impl WebhookExec {
    /// The request accepted with `output`, its response rendered without
    /// the request (nothing reads it).
    fn accepted_unread(&self, cx: &ExecCx<'_>, output: Output) -> WebhookResult {
        match self.response(&cx.scope) {
            Ok(response) => WebhookResult::Accepted { output, response },
            Err(e) => WebhookResult::Refused {
                status: 500,
                message: e.to_string(),
            },
        }
    }

    fn response(&self, scope: &tale_core::runtime::scope::Scope<'_>) -> Result<WebhookResponse, ActionError> {
        let body = match &self.body {
            Some(tree) => tree.render(scope)?,
            None => json!({"status": "ok"}),
        };
        let (content_type, body) = match body {
            J::String(s) => (self.content_type.clone().unwrap_or_else(|| "text/plain".into()), s),
            other => (
                self.content_type.clone().unwrap_or_else(|| "application/json".into()),
                other.to_string(),
            ),
        };
        let headers = self
            .headers
            .iter()
            .map(|(k, t)| {
                let v = t.render(scope)?;
                Ok((k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            })
            .collect::<Result<_, ActionError>>()?;
        Ok(WebhookResponse {
            status: self.status,
            content_type,
            headers,
            body,
        })
    }
}

impl WebhookConfig {
    fn build_exec(&self, c: &Compiler<'_>) -> Result<Box<dyn Executable>, CompileError> {
        let response = self.response.as_ref();
        Ok(Box::new(WebhookExec {
            verbs: match &self.verbs {
                Some(v) => v
                    .iter()
                    .map(|v| format!("{:?}", v.value).to_ascii_lowercase())
                    .collect(),
                None => vec!["post".into()],
            },
            secret: self
                .secret
                .as_ref()
                .map(|s| c.field("secret", &s.value, s.span))
                .transpose()?,
            rate_limit: self.rate_limit.as_ref().map(|l| Limiter {
                requests: l.value.requests.max(1),
                window_ms: i64::from(l.value.per_secs.unwrap_or(1).max(1)) * 1000,
                state: std::sync::Mutex::new((i64::MIN, 0)),
            }),
            signature: self
                .signature
                .as_ref()
                .map(|sig| {
                    Ok::<_, CompileError>(SignatureCheck {
                        algorithm: sig.value.algorithm.value,
                        header: sig.value.header.as_ref().map(|h| h.value.to_ascii_lowercase()),
                        secret: c.field("signature.secret", &sig.value.secret.value, sig.value.secret.span)?,
                        prefix: sig.value.prefix.clone(),
                    })
                })
                .transpose()?,
            include_headers: self.include_headers.unwrap_or(true),
            max_body_bytes: self.max_body_bytes.as_ref().map_or(DEFAULT_MAX_BODY_BYTES, |m| m.value),
            status: response.and_then(|r| r.status.as_ref()).map_or(200, |s| s.value),
            content_type: response.and_then(|r| r.content_type.clone()),
            headers: response
                .and_then(|r| r.headers.as_ref())
                .map(|h| {
                    h.iter()
                        .map(|(k, v)| Ok((k.clone(), c.tree(&format!("response.headers.{k}"), v)?)))
                        .collect::<Result<Vec<_>, CompileError>>()
                })
                .transpose()?
                .unwrap_or_default(),
            body: response
                .and_then(|r| r.body.as_ref())
                .map(|b| c.tree("response.body", b))
                .transpose()?,
        }))
    }
}
