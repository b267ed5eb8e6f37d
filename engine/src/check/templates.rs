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

use super::{Environment, graph, values};

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
    /// `span`. Exact for plain and quoted single-line scalars; otherwise the
    /// whole value.
    pub(crate) fn inner(&self, span: Span, value: &str, offset: usize, len: usize) -> Span {
        let Some(raw) = self.text.get(span.start..span.end.max(span.start)) else {
            return span;
        };
        let start = if raw.starts_with(value) && !value.is_empty() {
            Some(span.start)
        } else if (raw.starts_with('"') || raw.starts_with('\''))
            && raw[1..].starts_with(&value[..offset.min(value.len())])
        {
            Some(span.start + 1)
        } else if raw.is_empty() {
            // Some scalars come with an empty span: search the line.
            let line = self.index.line_range(self.text, span.line);
            self.text[line.clone()].find(value).map(|i| line.start + i)
        } else {
            None
        };
        match start {
            Some(s) => self.index.span(self.text, s + offset, s + offset + len),
            None => span,
        }
    }
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
    let scan = template::scan(text);
    let at = |offset: usize, len: usize| source.inner(field.span, text, offset, len);

    let mut unknown_filter = false;
    for f in &scan.filters {
        if !cx.filters.contains(&f.name.as_str()) {
            unknown_filter = true;
            let help = did_you_mean(&f.name, cx.filters.iter().copied())
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
                if let Err(e) = regex::Regex::new(re) {
                    let detail = e.to_string();
                    let last = detail.lines().last().unwrap_or("").trim().to_owned();
                    out.push(
                        Diagnostic::new(
                            Code::InvalidRegex,
                            file,
                            at(*offset, re.len()),
                            format!("invalid regular expression: {last}"),
                        )
                        .label("this regex"),
                    );
                }
            }
        }
    }

    let normalized = scan.normalized(text);
    if let Err(e) = cx.parse(&normalized) {
        if !(unknown_filter && e.unknown_filter) {
            // Offsets in the normalized text are at most the removed dots away.
            let removed_before = scan.leading_dots.iter().filter(|&&d| d <= e.offset).count();
            let offset = (e.offset + removed_before).min(text.len());
            out.push(
                Diagnostic::new(
                    Code::TemplateSyntax,
                    file,
                    at(offset, 1),
                    format!("invalid template in `{}`: {}", field.field, e.message),
                )
                .label("here"),
            );
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
                _ => {}
            }
            continue;
        }
        match story.action(root) {
            Some(j) if upstream[j] => {}
            Some(j) if j == action_index && action.is_webhook() && field.field.starts_with("rules") => {}
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
    if !cx.env.credentials.contains_key(name) {
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
    if !cx.env.resources.contains(name) {
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

/// Filters a template may use.
pub(crate) fn filter_names() -> Vec<&'static str> {
    filters::all_filter_names()
}
