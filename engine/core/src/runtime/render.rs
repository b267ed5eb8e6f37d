//! Compiled templates and their rendering. Every template is parsed once,
//! when the story is built; rendering never parses.
//!
//! A field whose whole value is one output ending in `| as_object` keeps the
//! JSON type of the value: a plain path (`{{ a.b[0] | as_object }}`) is read
//! straight from the stored JSON; any other expression is evaluated by
//! Liquid and captured as a value.

use std::fmt;
use std::sync::Arc;

use crate::template::raw::RawJson;
use serde_json::Value as J;

use super::scope::Scope;
use crate::span::Span;
use crate::template::{self, TemplateParser};
use crate::yaml::{Node, NodeKind};

/// One compiled template string.
pub enum Template {
    /// No markup: the text itself.
    Text(String),
    /// Renders text.
    Liquid(crate::template::Template),
    /// `{{ path | as_object }}`: the value at a path, with its type.
    Path(Vec<Segment>),
    /// `{{ expr | … | as_object }}`: Liquid evaluates, the value keeps its type.
    Typed(crate::template::Template),
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Template::Text(t) => write!(f, "Text({t:?})"),
            Template::Liquid(_) => f.write_str("Liquid"),
            Template::Path(p) => write!(f, "Path({p:?})"),
            Template::Typed(_) => f.write_str("Typed"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Key(String),
    Index(i64),
}

/// A template with where it came from, for render errors.
#[derive(Debug)]
pub struct Field {
    pub name: String,
    pub span: Span,
    pub template: Template,
}

/// A YAML structure whose strings are templates (payloads, headers…).
#[derive(Debug)]
pub enum Tree {
    Value(J),
    Field(Field),
    Array(Vec<Tree>),
    Object(Vec<(String, Tree)>),
}

/// A template failed to render: which field, where, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot render `{field}` (line {}, column {}): {message}", span.line, span.col)]
pub struct RenderError {
    pub field: String,
    pub span: Span,
    pub message: String,
}

/// A template that does not parse (the checker reports these first).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid template in `{field}`: {message}")]
pub struct CompileError {
    pub field: String,
    pub message: String,
}

/// Compiles templates with the story parser.
pub struct Compiler<'p> {
    parser: &'p TemplateParser,
}

impl<'p> Compiler<'p> {
    pub fn new(parser: &'p TemplateParser) -> Self {
        Self { parser }
    }

    pub fn field(&self, name: &str, text: &str, span: Span) -> Result<Field, CompileError> {
        Ok(Field {
            name: name.to_owned(),
            span,
            template: self.template(name, text)?,
        })
    }

    fn template(&self, name: &str, text: &str) -> Result<Template, CompileError> {
        if !template::has_markup(text) {
            return Ok(Template::Text(text.to_owned()));
        }
        template::check_budget(text).map_err(|message| CompileError {
            field: name.to_owned(),
            message,
        })?;
        let scan = template::scan(text);
        let normalized = scan.normalized(text);
        let error = |message: String| CompileError {
            field: name.to_owned(),
            message,
        };
        if let Some((prefix, expr)) = as_object_expression(&normalized) {
            if let Some(path) = parse_path(expr).filter(|_| prefix.is_empty()) {
                return Ok(Template::Path(path));
            }
            let capture = format!("{prefix}{{{{ {expr} | tale_typed_value }}}}");
            return self
                .parser
                .parse(&capture)
                .map(Template::Typed)
                .map_err(|e| error(e.message));
        }
        self.parser
            .parse(&normalized)
            .map(Template::Liquid)
            .map_err(|e| error(e.message))
    }

    /// A YAML structure: strings compile, other scalars stay as they are.
    pub fn tree(&self, name: &str, node: &Node) -> Result<Tree, CompileError> {
        Ok(match &node.kind {
            NodeKind::Str(s) => Tree::Field(self.field(name, s, node.span)?),
            NodeKind::Seq(items) => Tree::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| self.tree(&format!("{name}[{i}]"), n))
                    .collect::<Result<_, _>>()?,
            ),
            NodeKind::Map(entries) => Tree::Object(
                entries
                    .iter()
                    .map(|(k, v)| {
                        let key = k.key_text().unwrap_or_default();
                        let child = self.tree(&format!("{name}.{key}"), v)?;
                        Ok((key, child))
                    })
                    .collect::<Result<_, CompileError>>()?,
            ),
            _ => Tree::Value(node.to_json()),
        })
    }
}

/// The expression of a whole-field `{{ expr | as_object }}`, if that is what
/// the template is, and the tags before it: a field may compute its value
/// first (`{% assign x = … %}{% if … %}…{% endif %}{{ x | as_object }}`, what
/// `tale import` writes for a formula) as long as nothing before the output
/// writes text.
fn as_object_expression(text: &str) -> Option<(&str, &str)> {
    let text = text.trim();
    let at = text.rfind("{{")?;
    let (prefix, last) = text.split_at(at);
    if !writes_nothing(prefix) {
        return None;
    }
    let inner = last.strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.trim_start_matches('-').trim_end_matches('-');
    if inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    let (expr, last) = inner.rsplit_once('|')?;
    (last.trim() == "as_object").then(|| (prefix, expr.trim()))
}

/// Tags that compute without writing; an output is allowed only inside a
/// `capture`, whose text goes to a variable.
const SILENT_TAGS: &[&str] = &[
    "assign",
    "capture",
    "endcapture",
    "if",
    "elsif",
    "else",
    "endif",
    "unless",
    "endunless",
    "for",
    "endfor",
    "case",
    "when",
    "endcase",
    "break",
    "continue",
];

/// Whether `prefix` renders nothing but spaces: only silent tags, with
/// outputs and text only inside captures.
fn writes_nothing(prefix: &str) -> bool {
    let mut captures = 0usize;
    let mut rest = prefix;
    while !rest.is_empty() {
        let next = match (rest.find("{%"), rest.find("{{")) {
            (Some(t), Some(o)) => t.min(o),
            (Some(t), None) => t,
            (None, Some(o)) => o,
            (None, None) => rest.len(),
        };
        if captures == 0 && !rest[..next].trim().is_empty() {
            return false;
        }
        rest = &rest[next..];
        if let Some(tag) = rest.strip_prefix("{%") {
            let Some(end) = tag.find("%}") else { return false };
            let name = tag[..end].trim_matches('-').split_whitespace().next().unwrap_or("");
            if !SILENT_TAGS.contains(&name) {
                return false;
            }
            match name {
                "capture" => captures += 1,
                "endcapture" => captures = captures.saturating_sub(1),
                _ => {}
            }
            rest = &tag[end + 2..];
        } else if let Some(output) = rest.strip_prefix("{{") {
            let Some(end) = output.find("}}") else { return false };
            if captures == 0 {
                return false;
            }
            rest = &output[end + 2..];
        }
    }
    captures == 0
}

/// `a.b[0]['c d']` as segments; `None` for anything else (filters, literals).
fn parse_path(expr: &str) -> Option<Vec<Segment>> {
    let mut segments = Vec::new();
    let mut rest = expr.trim();
    let ident_end = |s: &str| {
        s.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(s.len())
    };
    let end = ident_end(rest);
    if end == 0 || rest.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    segments.push(Segment::Key(rest[..end].to_owned()));
    rest = &rest[end..];
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = ident_end(r);
            if end == 0 {
                return None;
            }
            segments.push(Segment::Key(r[..end].to_owned()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']')?;
            let inside = r[..close].trim();
            let quoted = inside
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| inside.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
            segments.push(match quoted {
                Some(key) => Segment::Key(key.to_owned()),
                None => Segment::Index(inside.parse().ok()?),
            });
            rest = &r[close + 1..];
        } else {
            return None;
        }
    }
    Some(segments)
}

impl Field {
    /// For a plain-path field that reads an upstream event (`{{ batch.body.items
    /// | as_object }}`): that event and the rest of the path, so a caller can
    /// read the value in place instead of copying it.
    pub fn source(&self, scope: &Scope<'_>) -> Option<(Arc<super::event::Event>, Vec<Segment>)> {
        let Template::Path(path) = &self.template else {
            return None;
        };
        let (Segment::Key(name), rest) = path.split_first()? else {
            return None;
        };
        Some((scope.source_event(name)?.clone(), rest.to_vec()))
    }

    /// Renders to JSON: a string, or the typed value of an `as_object` field.
    pub fn render(&self, scope: &Scope<'_>) -> Result<J, RenderError> {
        match &self.template {
            Template::Text(t) => Ok(J::String(t.clone())),
            Template::Liquid(t) => self.render_liquid(t, scope).map(J::String),
            Template::Path(path) => Ok(resolve(scope, path).unwrap_or(J::Null)),
            Template::Typed(t) => {
                let text = self.render_liquid(t, scope)?;
                Ok(serde_json::from_str(&text).unwrap_or(J::String(text)))
            }
        }
    }

    /// Renders to text (an `as_object` value as compact JSON).
    pub fn render_text(&self, scope: &Scope<'_>) -> Result<String, RenderError> {
        Ok(match self.render(scope)? {
            J::String(s) => s,
            other => {
                let mut s = String::new();
                crate::template::value::render_json(&other, &mut s);
                s
            }
        })
    }

    /// `liquid::Template::render` starts every output with a 10 kB buffer and
    /// keeps it: rendered fields live in events, so start small instead.
    fn render_liquid(&self, t: &crate::template::Template, scope: &Scope<'_>) -> Result<String, RenderError> {
        let started = std::time::Instant::now();
        let mut out = Bounded {
            buf: Vec::with_capacity(64),
            started,
            tripped: false,
        };
        let rendered = crate::template::loops::with_deadline(started + MAX_RENDER_TIME, || {
            crate::template::held::with_budget(|| {
                crate::template::filters::with_now(scope.now_ms, || t.render_to(&mut out, scope))
            })
        });
        if let Err(e) = rendered {
            // The writer's refusal says which limit; liquid wraps it.
            let message = if out.tripped || e.to_string().contains(RENDER_LIMIT_MARK) {
                format!(
                    "the template renders more than {} MiB, holds more than {} MiB in variables or runs longer than {} s (a loop over too much?)",
                    MAX_RENDER_BYTES / (1024 * 1024),
                    crate::template::held::MAX_HELD_BYTES / (1024 * 1024),
                    MAX_RENDER_TIME.as_secs()
                )
            } else {
                return Err(self.error(&e));
            };
            return Err(RenderError {
                field: self.name.clone(),
                span: self.span,
                message,
            });
        }
        let buf = out.buf;
        let mut text = String::from_utf8(buf).map_err(|e| RenderError {
            field: self.name.clone(),
            span: self.span,
            message: format!("the template rendered invalid UTF-8: {e}"),
        })?;
        text.shrink_to_fit();
        Ok(text)
    }

    fn error(&self, e: &liquid::Error) -> RenderError {
        let message = e.to_string();
        let message = message
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("liquid:")
            .trim()
            .to_owned();
        RenderError {
            field: self.name.clone(),
            span: self.span,
            message,
        }
    }
}

/// One field renders at most this much text…
pub const MAX_RENDER_BYTES: usize = 16 * 1024 * 1024;
/// …in at most this long (checked as it writes and at every loop iteration).
pub const MAX_RENDER_TIME: std::time::Duration = std::time::Duration::from_secs(5);
const RENDER_LIMIT_MARK: &str = crate::template::loops::LIMIT_MARK;

/// The buffer a template renders into: refuses to grow past the limits, so
/// that a loop bomb (`{% for i in (1..100000000) %}…`) fails its action
/// instead of the process.
struct Bounded {
    buf: Vec<u8>,
    started: std::time::Instant,
    /// A limit was hit (liquid reports any writer error as "Failed to render").
    tripped: bool,
}

impl std::io::Write for Bounded {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > MAX_RENDER_BYTES || self.started.elapsed() > MAX_RENDER_TIME {
            self.tripped = true;
            return Err(std::io::Error::other(RENDER_LIMIT_MARK));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The value at `path`, copied: from a large output kept as text, only
/// that value is parsed.
fn resolve(scope: &Scope<'_>, path: &[Segment]) -> Option<J> {
    let (first, rest) = path.split_first()?;
    let Segment::Key(name) = first else { return None };
    // An upstream event is found once, then read as it is held.
    if let Some(event) = scope.source_event(name) {
        return match event.held_output().raw() {
            Some(raw) => resolve_raw(raw, rest).map(RawJson::to_json),
            None => resolve_in(event.output(), rest).cloned(),
        };
    }
    resolve_in(scope.lookup(name)?, rest).cloned()
}

/// Walks `path` inside JSON text, indexing only the levels on the way.
pub fn resolve_raw<'a>(mut value: &'a RawJson, path: &[Segment]) -> Option<&'a RawJson> {
    for segment in path {
        value = match segment {
            Segment::Key(k) => value.get(k)?,
            Segment::Index(i) => value.element(*i)?,
        };
    }
    Some(value)
}

/// Walks `path` from `value`.
pub fn resolve_in<'a>(mut value: &'a J, path: &[Segment]) -> Option<&'a J> {
    for segment in path {
        value = match (segment, value) {
            (Segment::Key(k), J::Object(o)) => o.get(k)?,
            (Segment::Index(i), J::Array(a)) => {
                let i = if *i < 0 { a.len() as i64 + i } else { *i };
                a.get(usize::try_from(i).ok()?)?
            }
            (Segment::Key(k), J::Array(a)) if k == "size" => return None,
            _ => return None,
        };
    }
    Some(value)
}

impl Tree {
    pub fn render(&self, scope: &Scope<'_>) -> Result<J, RenderError> {
        Ok(match self {
            Tree::Value(v) => v.clone(),
            Tree::Field(f) => f.render(scope)?,
            Tree::Array(items) => J::Array(items.iter().map(|t| t.render(scope)).collect::<Result<_, _>>()?),
            Tree::Object(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, t)| Ok((k.clone(), t.render(scope)?)))
                    .collect::<Result<_, RenderError>>()?,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::runtime::event::Event;
    use crate::runtime::scope::Globals;

    fn event(slug: &str, parents: Vec<Arc<Event>>, output: J) -> Arc<Event> {
        let run = crate::runtime::event::RunId::default();
        Arc::new(Event::new(run, "s".into(), slug.into(), parents, output, 0))
    }

    fn render(text: &str, input: &Arc<Event>) -> J {
        let parser = TemplateParser::new();
        let field = Compiler::new(&parser)
            .field("f", text, Span::default())
            .expect("compiles");
        let globals = Globals {
            credentials: json!({"graph": "tok3n"}).into(),
            resources: json!({"base": "https://graph.microsoft.com"}),
            story: json!({"id": "triage", "name": "Triage"}),
            ..Globals::default()
        };
        field.render(&Scope::new(&globals, Some(input))).expect("renders")
    }

    #[test]
    fn a_loop_bomb_fails_its_field_instead_of_the_process() {
        let parser = TemplateParser::new();
        // A literal range too large is refused before it runs (check and build alike).
        let refused = Compiler::new(&parser)
            .field("f", "{% for i in (1..100000000) %}x{% endfor %}", Span::default())
            .expect_err("refused");
        assert!(
            refused.message.contains("more than 100000 numbers"),
            "{}",
            refused.message
        );
        // Output beyond the limit fails the field: 3,000 × 8 kB > 16 MiB.
        let field = Compiler::new(&parser)
            .field(
                "payload.text",
                "{% for i in (1..3000) %}{{ hook.big }}{% endfor %}",
                Span::default(),
            )
            .expect("compiles");
        let globals = Globals::default();
        let input = event("hook", vec![], json!({"big": "x".repeat(8192)}));
        let err = field
            .render(&Scope::new(&globals, Some(&input)))
            .expect_err("the render is bounded");
        assert_eq!(err.field, "payload.text");
        assert!(err.message.contains("more than 16 MiB"), "{}", err.message);
    }

    #[test]
    fn reads_upstream_outputs_nearest_first() {
        let hook = event(
            "receive",
            vec![],
            json!({"body": {"id": "a1", "items": [1, 2, 3], "n": 2.5}}),
        );
        let first = event("step", vec![hook.clone()], json!({"v": "far"}));
        let second = event("step", vec![first], json!({"v": "near"}));
        let here = event("other", vec![second], json!({}));
        assert_eq!(render("id={{ receive.body.id }}", &here), json!("id=a1"));
        assert_eq!(render("{{ .receive.body.id }}", &here), json!("a1"));
        assert_eq!(render("{{ step.v }}", &here), json!("near"));
        assert_eq!(render("[{{ receive.body.missing.deeper }}]", &here), json!("[]"));
        assert_eq!(render("[{{ nobody.at.all }}]", &here), json!("[]"));
        // Liquid renders an array as its elements one after another.
        assert_eq!(render("{{ receive.body.items }}", &here), json!("123"));
        assert_eq!(render("{{ receive.body.items | size }}", &here), json!("3"));
    }

    #[test]
    fn as_object_keeps_the_type() {
        let hook = event(
            "receive",
            vec![],
            json!({"body": {"items": [1, {"a": true}], "n": 2.5, "s": "x"}}),
        );
        assert_eq!(
            render("{{ receive.body.items | as_object }}", &hook),
            json!([1, {"a": true}])
        );
        assert_eq!(
            render("{{ receive.body['items'][1] | as_object }}", &hook),
            json!({"a": true})
        );
        assert_eq!(render(" {{ receive.body.n | as_object }} ", &hook), json!(2.5));
        assert_eq!(render("{{ receive.body.items | size | as_object }}", &hook), json!(2));
        assert_eq!(render("{{ receive.body.s | as_object }}", &hook), json!("x"));
        assert_eq!(render("{{ receive.body.none | as_object }}", &hook), J::Null);
        assert_eq!(render("n: {{ receive.body.n | as_object }}", &hook), json!("n: 2.5"));
    }

    #[test]
    fn tags_that_write_nothing_may_compute_a_typed_value() {
        let hook = event("receive", vec![], json!({"body": {"items": [1, 2], "n": 3}}));
        // What `tale import` writes for `=IF(receive.body.n > 2, receive.body.items, [])`.
        assert_eq!(
            render(
                "{% if receive.body.n > 2 %}{% assign v = receive.body.items %}{% else %}{% assign v = '' | split: ',' %}{% endif %}{{ v | as_object }}",
                &hook
            ),
            json!([1, 2])
        );
        assert_eq!(
            render(
                "{% capture t %}n={{ receive.body.n }}{% endcapture %} {{ t | as_object }}",
                &hook
            ),
            json!("n=3")
        );
        assert_eq!(
            render(
                "{% for i in receive.body.items %}{% assign last = i %}{% endfor %}{{ last | as_object }}",
                &hook
            ),
            json!(2)
        );
        // Text, an output or a writing tag before the value: the field is text.
        assert_eq!(render("{% assign v = 1 %}v: {{ v | as_object }}", &hook), json!("v: 1"));
        assert_eq!(
            render("{{ receive.body.n }}{{ receive.body.items | as_object }}", &hook),
            json!("312")
        );
        assert_eq!(
            render("{% line_break %}{{ receive.body.n | as_object }}", &hook),
            json!("\n3")
        );
    }

    #[test]
    fn namespaces_and_tags() {
        let hook = event("receive", vec![], json!({}));
        assert_eq!(render("Bearer {{ CREDENTIAL.graph }}", &hook), json!("Bearer tok3n"));
        assert_eq!(render("Bearer {% credential graph %}", &hook), json!("Bearer tok3n"));
        assert_eq!(
            render("{% global_resource base %}/v1.0", &hook),
            json!("https://graph.microsoft.com/v1.0")
        );
        assert_eq!(render("{{ STORY.name }}", &hook), json!("Triage"));
        assert_eq!(render("a{% line_break %}b", &hook), json!("a\nb"));
    }

    #[test]
    fn liquid_control_flow_over_outputs() {
        let hook = event("receive", vec![], json!({"body": {"value": [{"id": 1}, {"id": 2}]}}));
        let t = "{% for a in receive.body.value %}{{ a.id }}{% unless forloop.last %},{% endunless %}{% endfor %}";
        assert_eq!(render(t, &hook), json!("1,2"));
        assert_eq!(
            render("{% if receive.body.value.size > 1 %}many{% endif %}", &hook),
            json!("many")
        );
    }
}
