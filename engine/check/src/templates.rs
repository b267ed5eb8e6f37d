//! Phase 4: templates. Every template of every action is parsed with the
//! story parser (syntax, filters, tags) and its references are resolved:
//! an action may read only actions upstream of it, namespaces, and the
//! names its field provides.

use std::path::PathBuf;
use std::sync::Arc;

use crate::action::TemplateField;
use crate::diagnostic::{Code, Diagnostic, closest, did_you_mean};
use crate::span::{LineIndex, Span};
use crate::story::Story;
use crate::template::{self, NAMESPACES, TemplateError, TemplateParser, filters};
use std::cell::RefCell;
use std::collections::HashMap;

use super::{Environment, graph};
use crate::values;

/// Maps offsets inside a YAML string value to spans in the file.
pub(crate) struct SourceMap<'a> {
    text: &'a str,
    index: LineIndex,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            text,
            index: LineIndex::new(text),
        }
    }

    /// The span of bytes `offset..offset+len` of `value`, the string read at
    /// `span`: exact for plain, quoted (escapes included) and literal block
    /// scalars; otherwise the whole value.
    pub(crate) fn inner(&self, span: Span, value: &str, offset: usize, len: usize) -> Span {
        let Some(raw) = self.text.get(span.start..span.end.max(span.start)) else {
            return span;
        };
        let start = if raw.starts_with('"') {
            quoted_offset(raw, offset, true).map(|o| span.start + o)
        } else if raw.starts_with('\'') {
            quoted_offset(raw, offset, false).map(|o| span.start + o)
        } else if !value.is_empty() && raw.starts_with(value) {
            Some(span.start + offset)
        } else if value.contains('\n') && raw.starts_with(value.lines().next().unwrap_or("\u{0}")) {
            // A literal block scalar (`|`): its span starts at the first
            // content line; the others are indented like it.
            literal_block_offset(raw, value, offset, (span.col as usize).saturating_sub(1)).map(|o| span.start + o)
        } else if !value.is_empty() && raw.starts_with(value) {
            Some(span.start + offset)
        } else if raw.is_empty() {
            // Some scalars come with an empty span: search the line.
            let line = self.index.line_range(self.text, span.line);
            self.text[line.clone()].find(value).map(|i| line.start + i + offset)
        } else {
            None
        };
        match start {
            Some(s) if s <= self.text.len() => {
                // Offsets come from byte arithmetic: keep them on characters.
                let mut s = s;
                while s > 0 && !self.text.is_char_boundary(s) {
                    s -= 1;
                }
                let mut e = (s + len).min(self.text.len());
                while e < self.text.len() && !self.text.is_char_boundary(e) {
                    e += 1;
                }
                self.index.span(self.text, s, e)
            }
            _ => span,
        }
    }
}

/// The byte in a quoted scalar's source where byte `offset` of its value is.
fn quoted_offset(raw: &str, offset: usize, double: bool) -> Option<usize> {
    let mut value_pos = 0;
    let mut chars = raw.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if value_pos >= offset {
            return Some(i);
        }
        match c {
            '\n' => return None, // folded lines: give up, the whole value is shown
            '\\' if double => {
                let (_, e) = chars.next()?;
                let (digits, produced) = match e {
                    'x' => (2, None),
                    'u' => (4, None),
                    'U' => (8, None),
                    // An escaped line break folds the next line: give up.
                    '\n' | '\r' => return None,
                    other => (0, Some(other)),
                };
                let decoded = match produced {
                    // \N (U+0085), \_ (U+00A0), \L (U+2028), \P (U+2029).
                    Some('N' | '_') => 2,
                    Some('L' | 'P') => 3,
                    Some(_) => 1,
                    None => {
                        let hex: String = (0..digits).filter_map(|_| chars.next().map(|(_, h)| h)).collect();
                        u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .map_or(1, char::len_utf8)
                    }
                };
                value_pos += decoded;
            }
            '\'' if !double => {
                if chars.peek().is_some_and(|&(_, n)| n == '\'') {
                    chars.next();
                }
                value_pos += 1;
            }
            c => value_pos += c.len_utf8(),
        }
    }
    None
}

/// The byte in a literal block scalar where byte `offset` of its value is;
/// `raw` starts at the first content line, the next ones are indented by `indent`.
fn literal_block_offset(raw: &str, value: &str, offset: usize, indent: usize) -> Option<usize> {
    let before = value.get(..offset)?;
    let line_no = before.matches('\n').count();
    let col = offset - before.rfind('\n').map_or(0, |i| i + 1);
    let mut line_start = 0;
    for (n, line) in raw.split_inclusive('\n').enumerate() {
        if n == line_no {
            let at = line_start + if n == 0 { 0 } else { indent } + col;
            let rest_of_line = &value[offset..value[offset..].find('\n').map_or(value.len(), |e| offset + e)];
            let want: String = rest_of_line.chars().take(8).collect();
            return raw.get(at..).filter(|rest| rest.starts_with(&want)).map(|_| at);
        }
        line_start += line.len();
    }
    None
}

pub(crate) struct TemplateCx<'a> {
    pub(crate) parser: &'a TemplateParser,
    pub(crate) env: &'a Environment,
    pub(crate) filters: &'a [&'static str],
    /// Parse results by normalized text: the same template (a credential
    /// header, a resource URL) recurs across actions and stories.
    pub(crate) parsed: RefCell<HashMap<String, Result<(), TemplateError>>>,
}

impl TemplateCx<'_> {
    fn parse(&self, text: &str) -> Result<(), TemplateError> {
        if let Some(r) = self.parsed.borrow().get(text) {
            return r.clone();
        }
        let r = self.parser.parse(text).map(drop);
        self.parsed.borrow_mut().insert(text.to_owned(), r.clone());
        r
    }
}

pub(crate) fn check_story(story: &Story, source: &SourceMap<'_>, cx: &TemplateCx<'_>, out: &mut Vec<Diagnostic>) {
    let file = &story.file;
    for (i, action) in story.actions.iter().enumerate() {
        let mut fields: Vec<TemplateField<'_>> = Vec::new();
        if let Some(config) = &action.config {
            config.templates(&mut fields);
        }
        for (r, rule) in action.rules.iter().enumerate() {
            fields.push(TemplateField::new(
                format!("rules[{r}].path"),
                &rule.path.value,
                rule.path.span,
            ));
            if let Some(v) = &rule.value {
                TemplateField::collect_node(&format!("rules[{r}].value"), v, &mut fields);
            }
        }
        for (name, node) in &action.local {
            TemplateField::collect_node(&format!("local.{name}"), node, &mut fields);
        }
        for (name, node) in &action.state {
            TemplateField::collect_node(&format!("state.{name}"), node, &mut fields);
        }
        if fields.iter().all(|f| !template::has_markup(f.text)) {
            continue;
        }
        let upstream = graph::ancestors(story, i);
        for field in &fields {
            if !template::has_markup(field.text) {
                continue;
            }
            check_field(story, i, &upstream, field, source, cx, file, out);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_field(
    story: &Story,
    action_index: usize,
    upstream: &[bool],
    field: &TemplateField<'_>,
    source: &SourceMap<'_>,
    cx: &TemplateCx<'_>,
    file: &Arc<PathBuf>,
    out: &mut Vec<Diagnostic>,
) {
    let action = &story.actions[action_index];
    let text = field.text;
    if let Err(why) = template::check_budget(text) {
        out.push(
            Diagnostic::new(
                Code::TemplateSyntax,
                file,
                field.span,
                format!("invalid template in `{}`: {why}", field.field),
            )
            .help("split the template, or move the logic into several actions"),
        );
        return;
    }
    let scan = template::scan(text);
    let at = |offset: usize, len: usize| source.inner(field.span, text, offset, len);

    let mut unknown_filter = false;
    for f in &scan.filters {
        if !cx.filters.contains(&f.name.as_str()) {
            unknown_filter = true;
            let alias = FILTER_ALIASES
                .iter()
                .find(|(a, _)| *a == f.name)
                .map(|(_, t)| format!("did you mean `{t}`?"));
            let help = alias
                .or_else(|| did_you_mean(&f.name, cx.filters.iter().copied()))
                .unwrap_or_else(|| "see docs/templates.md for the filters tale knows".into());
            out.push(
                Diagnostic::new(
                    Code::UnknownFilter,
                    file,
                    at(f.offset, f.name.len()),
                    format!("unknown filter `{}`", f.name),
                )
                .label("unknown filter")
                .help(help),
            );
        } else if f.name == "jsonpath" {
            if let Some((path, offset)) = &f.literal_arg {
                if let Err(e) = values::jsonpath(path) {
                    out.push(
                        Diagnostic::new(
                            Code::InvalidJsonPath,
                            file,
                            at(*offset, path.len()),
                            format!("invalid JSONPath `{path}`: {e}"),
                        )
                        .label("this JSONPath"),
                    );
                }
            }
        } else if f.name == "regex_replace" {
            if let Some((re, offset)) = &f.literal_arg {
                if let Some(why) = values::regex_error(re) {
                    out.push(
                        Diagnostic::new(
                            Code::InvalidRegex,
                            file,
                            at(*offset, re.len()),
                            format!("invalid regular expression: {why}"),
                        )
                        .label("this regex"),
                    );
                }
            }
        }
    }

    // Tags: liquid's own message ("Unknown tag.") does not name the tag.
    let mut unknown_tag = false;
    for tag in &scan.tags {
        if !KNOWN_TAGS.contains(&tag.name.as_str()) {
            unknown_tag = true;
            let help = did_you_mean(&tag.name, KNOWN_TAGS.iter().copied())
                .unwrap_or_else(|| "see docs/templates.md for the tags tale knows".into());
            out.push(
                Diagnostic::new(
                    Code::TemplateSyntax,
                    file,
                    at(tag.offset, tag.name.len()),
                    format!("unknown tag `{{% {} %}}`", tag.name),
                )
                .label("unknown tag")
                .help(help),
            );
        }
    }

    let normalized = scan.normalized(text);
    if let Err(e) = cx.parse(&normalized) {
        // A slug Liquid cannot read (`1_receive`) was reported as E107.
        let bad_slug = story.actions.iter().any(|a| {
            let slug = a.slug.value.as_str();
            values::check_slug(slug).is_err()
                && text
                    .match_indices(slug)
                    .any(|(at, _)| (at..=at + slug.len() + 1).contains(&offset_guess(&scan, e.offset)))
        });
        let explained =
            (unknown_filter && e.unknown_filter) || (unknown_tag && e.message.contains("Unknown tag")) || bad_slug;
        if !explained {
            // Offsets in the normalized text are at most the removed dots away.
            let removed_before = scan.leading_dots.iter().filter(|&&d| d <= e.offset).count();
            let offset = (e.offset + removed_before).min(text.len());
            let mut d = Diagnostic::new(
                Code::TemplateSyntax,
                file,
                at(offset, 1),
                format!("invalid template in `{}`: {}", field.field, e.message),
            )
            .label("here");
            if let Some(hint) = jinja_hint(text) {
                d = d.help(hint);
            }
            out.push(d);
        }
    }

    for tag in &scan.tags {
        if let Some((name, offset)) = &tag.arg {
            match tag.name.as_str() {
                "credential" => check_credential(name, at(*offset, name.len()), cx, file, out),
                "global_resource" => check_resource(name, at(*offset, name.len()), cx, file, out),
                _ => {}
            }
        }
    }

    for r in &scan.references {
        let root = r.root.as_str();
        let span = at(r.offset, root.len());
        if scan.locals.iter().any(|l| l == root) || field.extra_names.contains(&root) {
            continue;
        }
        if NAMESPACES.contains(&root) {
            let Some(member) = &r.member else { continue };
            let member_span = at(r.offset + root.len() + 1, member.len());
            match root {
                "CREDENTIAL" => check_credential(member, member_span, cx, file, out),
                "RESOURCE" => check_resource(member, member_span, cx, file, out),
                "LOCAL" => {
                    if !action.local.contains_key(member) {
                        let help = did_you_mean(member, action.local.keys().map(String::as_str))
                            .unwrap_or_else(|| format!("define it under `local:` of `{}`", action.slug.value));
                        out.push(
                            Diagnostic::new(
                                Code::UnknownLocal,
                                file,
                                member_span,
                                format!("`LOCAL.{member}` is not defined by this action"),
                            )
                            .label("not in `local`")
                            .help(help),
                        );
                    }
                }
                "STATE" if action.is_webhook() => {
                    out.push(
                        Diagnostic::new(
                            Code::InvalidValue,
                            file,
                            member_span,
                            format!("a webhook does not read story state (`STATE.{member}`)"),
                        )
                        .label("not read here")
                        .help("a webhook answers before any action runs: read the state in the action after it"),
                    );
                }
                "STATE" => {
                    if !story.actions.iter().any(|a| a.state.contains_key(member)) {
                        let written = story.actions.iter().flat_map(|a| a.state.keys().map(String::as_str));
                        let help = did_you_mean(member, written).unwrap_or_else(|| {
                            format!("an action sets it with `state: {{{member}: \"{{{{ … }}}}\"}}`; until then it reads as nil")
                        });
                        out.push(
                            Diagnostic::new(
                                Code::UnwrittenState,
                                file,
                                member_span,
                                format!("`STATE.{member}` is never set by an action of this story"),
                            )
                            .label("never set")
                            .help(help),
                        );
                    }
                }
                _ => {}
            }
            continue;
        }
        match story.action(root) {
            Some(j) if upstream[j] => {}
            // `state` renders with the action's own last event.
            Some(j) if j == action_index && field.field.starts_with("state.") => {}
            Some(j)
                if j == action_index
                    && action.is_webhook()
                    && (field.field.starts_with("rules") || field.field.starts_with("local")) => {}
            // The graph around this action is incomplete: already reported.
            Some(_) if action.unresolved_from => {}
            Some(j) => {
                let other = &story.actions[j];
                let why = if j == action_index {
                    format!("an action cannot read its own output; `{root}` is this action")
                } else {
                    format!("`{root}` does not run before `{}`", action.slug.value)
                };
                out.push(
                    Diagnostic::new(
                        Code::NotUpstream,
                        file,
                        span,
                        format!("`{}` reads `{root}`, which is not upstream of it", action.slug.value),
                    )
                    .label("not upstream")
                    .secondary(file, other.slug.span, format!("`{root}` is defined here"))
                    .help(format!(
                        "{why}: a template reads the output of actions that lead to it through `from`"
                    )),
                );
            }
            None => {
                let mut candidates: Vec<&str> = story
                    .actions
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| upstream[*j])
                    .map(|(_, a)| a.slug.value.as_str())
                    .collect();
                candidates.extend(NAMESPACES);
                candidates.extend(field.extra_names);
                let help = match closest(root, candidates.iter().copied()) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None if root.eq_ignore_ascii_case("credential") || root.eq_ignore_ascii_case("resource") => {
                        format!("namespaces are upper case: `{}`", root.to_ascii_uppercase())
                    }
                    None => format!(
                        "a template reads upstream actions by slug and the namespaces {}",
                        crate::diagnostic::one_of(NAMESPACES)
                    ),
                };
                out.push(
                    Diagnostic::new(
                        Code::UnknownReference,
                        file,
                        span,
                        format!("`{root}` is not an action of this story or a namespace"),
                    )
                    .label("unknown name")
                    .help(help),
                );
            }
        }
    }
}

pub(crate) fn check_credential(
    name: &str,
    span: Span,
    cx: &TemplateCx<'_>,
    file: &Arc<PathBuf>,
    out: &mut Vec<Diagnostic>,
) {
    if cx.env.credential(name).is_none() {
        out.push(missing_credential(name, span, cx.env, file));
    }
}

pub(crate) fn missing_credential(name: &str, span: Span, env: &Environment, file: &Arc<PathBuf>) -> Diagnostic {
    let help = did_you_mean(name, env.credentials.keys().map(String::as_str)).unwrap_or_else(|| {
        format!(
            "set TALE_CREDENTIAL_{} (and TALE_CREDENTIAL_{}_ALLOWED_HOSTS) or add it to the credentials file",
            name.to_ascii_uppercase(),
            name.to_ascii_uppercase()
        )
    });
    Diagnostic::new(
        Code::MissingCredential,
        file,
        span,
        format!("credential `{name}` is not configured"),
    )
    .label("not configured")
    .help(help)
}

fn check_resource(name: &str, span: Span, cx: &TemplateCx<'_>, file: &Arc<PathBuf>, out: &mut Vec<Diagnostic>) {
    if !cx.env.has_resource(name) {
        let help = did_you_mean(name, cx.env.resources.iter().map(String::as_str)).unwrap_or_else(|| {
            format!(
                "add `{name}` to resources.yaml or set TALE_RESOURCE_{}",
                name.to_ascii_uppercase()
            )
        });
        out.push(
            Diagnostic::new(
                Code::MissingResource,
                file,
                span,
                format!("resource `{name}` is not configured"),
            )
            .label("not configured")
            .help(help),
        );
    }
}

/// Where a parse error sits in the original text (before leading dots were removed).
fn offset_guess(scan: &template::Scan, normalized_offset: usize) -> usize {
    normalized_offset + scan.leading_dots.iter().filter(|&&d| d <= normalized_offset).count()
}

/// Tags a template may use: Liquid's and Tines'.
const KNOWN_TAGS: &[&str] = &[
    "assign",
    "break",
    "capture",
    "case",
    "comment",
    "continue",
    "cycle",
    "decrement",
    "echo",
    "else",
    "elsif",
    "endcapture",
    "endcase",
    "endcomment",
    "endfor",
    "endif",
    "endraw",
    "endtablerow",
    "endunless",
    "for",
    "if",
    "ifchanged",
    "endifchanged",
    "include",
    "increment",
    "raw",
    "render",
    "tablerow",
    "unless",
    "when",
    "credential",
    "global_resource",
    "story",
    "line_break",
    "story_run_guid",
    "story_run_link",
    "prompt",
];

/// Names people bring from other template languages.
const FILTER_ALIASES: &[(&str, &str)] = &[
    ("upper", "upcase"),
    ("lower", "downcase"),
    ("tojson", "to_json"),
    ("json", "to_json"),
    ("length", "size"),
    ("trim", "strip"),
    ("parse_json", "json_parse"),
    ("from_json", "json_parse"),
    ("b64encode", "base64_encode"),
    ("b64decode", "base64_decode"),
];

/// Filters a template may use.
pub(crate) fn filter_names() -> Vec<&'static str> {
    filters::all_filter_names()
}

/// A Jinja (or Python) habit in a Liquid template: a filter called with
/// parentheses (`default('x')`) — Liquid passes arguments after a colon.
fn jinja_hint(text: &str) -> Option<String> {
    static CALL: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\|\s*([a-z_][a-z0-9_]*)\(").expect("a valid regex"));
    let name = CALL.captures(text)?.get(1)?.as_str().to_owned();
    Some(format!(
        "Liquid filters take their arguments after a colon, not in parentheses: `{name}: 'x'`, not `{name}('x')`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{self, Limits};

    /// The text a template offset maps to, for a key of a one-level document.
    fn mapped(text: &str, key: &str, needle: &str) -> String {
        let root = yaml::parse(text, &Limits::default()).expect("valid YAML");
        let node = root.get(key).expect("key");
        let value = node.as_str().expect("string");
        let offset = value.find(needle).expect("needle in value");
        let map = SourceMap::new(text);
        let span = map.inner(node.span, value, offset, needle.len());
        text[span.start..span.end].to_owned()
    }

    #[test]
    fn offsets_map_into_every_scalar_style() {
        assert_eq!(mapped("a: x {{ y | f }}\n", "a", "f"), "f");
        assert_eq!(mapped("a: \"x {{ y | f }}\"\n", "a", "f"), "f");
        assert_eq!(mapped("a: \"\\\"q\\\" {{ y | f }}\"\n", "a", "f"), "f");
        assert_eq!(mapped("a: \"\\u00e9 {{ y | f }}\"\n", "a", "f"), "f");
        assert_eq!(mapped("a: 'it''s {{ y | f }}'\n", "a", "f"), "f");
        assert_eq!(mapped("a: |\n  one {{ x }}\n  two {{ y | f }}\nb: 1\n", "a", "f"), "f");
        assert_eq!(mapped("a: |\n  é {{ x }}\n  ü {{ y | ff }}\n", "a", "ff"), "ff");
    }

    #[test]
    fn folded_scalars_fall_back_to_the_whole_value() {
        let text = "a: >\n  one {{ x }}\n  two {{ y | f }}\n";
        let root = yaml::parse(text, &Limits::default()).expect("valid YAML");
        let node = root.get("a").expect("key");
        let value = node.as_str().expect("string");
        let span = SourceMap::new(text).inner(node.span, value, value.find('f').expect("f"), 1);
        assert!(span.start <= node.span.start + 4, "{span:?}");
    }
}
