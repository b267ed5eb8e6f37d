//! Rendering diagnostics: human (rustc style, through annotate-snippets),
//! JSON (stable field names, documented in docs/diagnostics.md) and GitHub
//! workflow commands.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde_json::json;

use crate::diagnostic::{Diagnostic, Severity};
use crate::span::Span;

/// The texts of the files diagnostics point into.
pub type Sources = HashMap<Arc<PathBuf>, Arc<str>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
    Github,
}

/// Renders for a terminal (colour when `color`) or a log.
pub fn human(diagnostics: &[Diagnostic], sources: &Sources, color: bool) -> String {
    let renderer = if color { Renderer::styled() } else { Renderer::plain() };
    let mut out = String::new();
    for d in diagnostics {
        let level = match d.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let title = level.primary_title(d.message.as_str()).id(d.code.code());
        let path = d.file.display().to_string();
        let mut groups: Vec<Group<'_>> = Vec::new();
        let mut group = Group::with_title(title);
        match sources.get(&d.file) {
            Some(text) if !text.is_empty() => {
                let mut spans = vec![d.span];
                spans.extend(d.secondary.iter().filter(|l| l.file == d.file).map(|l| l.span));
                let window = Window::new(text, &spans);
                let mut snippet = Snippet::source(window.text)
                    .line_start(window.first_line)
                    .path(path.clone())
                    .fold(true);
                let mut primary = AnnotationKind::Primary.span(window.range(d.span));
                if let Some(label) = &d.label {
                    primary = primary.label(label.as_str());
                }
                snippet = snippet.annotation(primary);
                let mut others = Vec::new();
                for l in &d.secondary {
                    if l.file == d.file {
                        snippet = snippet.annotation(
                            AnnotationKind::Context
                                .span(window.range(l.span))
                                .label(l.message.as_str()),
                        );
                    } else {
                        others.push(l);
                    }
                }
                group = group.element(snippet);
                for l in others {
                    if let Some(other) = sources.get(&l.file) {
                        let w = Window::new(other, &[l.span]);
                        group = group.element(
                            Snippet::source(w.text)
                                .line_start(w.first_line)
                                .path(l.file.display().to_string())
                                .fold(true)
                                .annotation(AnnotationKind::Context.span(w.range(l.span)).label(l.message.as_str())),
                        );
                    }
                }
            }
            _ => {
                group = group.element(
                    annotate_snippets::Origin::path(path.clone())
                        .line(d.span.line as usize)
                        .char_column(d.span.col as usize),
                );
            }
        }
        groups.push(group);
        if let Some(help) = &d.help {
            groups.push(Group::with_title(Level::HELP.secondary_title(help.as_str())));
        }
        out.push_str(&renderer.render(&groups));
        out.push_str("\n\n");
    }
    out
}

/// The lines a diagnostic shows, so that rendering does not scan the whole
/// file for every diagnostic.
/// Bytes of a long line kept after a diagnostic's spans.
const WINDOW_CONTEXT: usize = 120;

struct Window<'a> {
    text: &'a str,
    offset: usize,
    first_line: usize,
    full: &'a str,
}

impl<'a> Window<'a> {
    /// The lines the spans cover, cut [`WINDOW_CONTEXT`] bytes after them
    /// on a long line. Linear in the window, not in the file: the line
    /// number comes from the span (a file of 16,000 diagnostics rendered in
    /// quadratic time before).
    fn new(full: &'a str, spans: &[Span]) -> Self {
        let lo = spans.iter().map(|s| s.start.min(full.len())).min().unwrap_or(0);
        let hi = spans
            .iter()
            .map(|s| s.end.min(full.len()).max(s.start.min(full.len())))
            .max()
            .unwrap_or(0);
        let lo = floor_char(full, lo);
        let hi = ceil_char(full, hi);
        let line_start = full[..lo].rfind('\n').map_or(0, |i| i + 1);
        let line_end = full[hi..].find('\n').map_or(full.len(), |i| hi + i);
        // The start stays at the line's start (the renderer counts columns
        // from it and trims the left itself); the end is cut.
        let start = line_start;
        let end = ceil_char(full, line_end.min(hi.saturating_add(WINDOW_CONTEXT)));
        let first_line = spans
            .iter()
            .filter(|s| s.start.min(full.len()) == lo || floor_char(full, s.start.min(full.len())) == lo)
            .map(|s| s.line as usize)
            .find(|l| *l > 0)
            .unwrap_or_else(|| full[..line_start].matches('\n').count() + 1);
        Window {
            text: &full[start..end],
            offset: start,
            first_line,
            full,
        }
    }

    fn range(&self, span: Span) -> std::ops::Range<usize> {
        let r = range(self.full, span);
        let start = r.start.clamp(self.offset, self.offset + self.text.len()) - self.offset;
        let end = r.end.clamp(self.offset, self.offset + self.text.len()) - self.offset;
        start..end.max(start)
    }
}

/// A byte range of at least one character, inside the text.
fn range(text: &str, span: Span) -> std::ops::Range<usize> {
    let start = floor_char(text, span.start.min(text.len()));
    let mut end = ceil_char(text, span.end.min(text.len()).max(start));
    if end == start {
        end = text[start..].chars().next().map_or(start, |c| start + c.len_utf8());
        if text[start..end].starts_with('\n') {
            end = start;
        }
    }
    start..end
}

fn floor_char(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(text: &str, mut i: usize) -> usize {
    while i < text.len() && !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

pub fn summary(diagnostics: &[Diagnostic], files: usize) -> String {
    let errors = diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    let warnings = diagnostics.len() - errors;
    format!(
        "{} file{} checked: {} error{}, {} warning{}",
        files,
        plural(files),
        errors,
        plural(errors),
        warnings,
        plural(warnings)
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// One JSON document: `{version, files, errors, warnings, diagnostics: [...]}`.
pub fn json(diagnostics: &[Diagnostic], sources: &Sources, files: usize) -> serde_json::Value {
    let mut ends = Ends::new(sources);
    let items: Vec<_> = diagnostics
        .iter()
        .map(|d| {
            let end = ends.end(&d.file, d.span);
            json!({
                "code": d.code.code(),
                "name": d.code.name(),
                "severity": d.severity.as_str(),
                "message": d.message,
                "file": d.file.display().to_string(),
                "line": d.span.line,
                "column": d.span.col,
                "end_line": end.0,
                "end_column": end.1,
                "label": d.label,
                "help": d.help,
                "related": d.secondary.iter().map(|l| json!({
                    "file": l.file.display().to_string(),
                    "line": l.span.line,
                    "column": l.span.col,
                    "message": l.message,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let errors = diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    json!({
        "version": 1,
        "files": files,
        "errors": errors,
        "warnings": diagnostics.len() - errors,
        "diagnostics": items,
    })
}

/// End positions, with one line index per file.
struct Ends<'a> {
    sources: &'a Sources,
    indexes: HashMap<Arc<PathBuf>, crate::span::LineIndex>,
}

impl<'a> Ends<'a> {
    fn new(sources: &'a Sources) -> Self {
        Self {
            sources,
            indexes: HashMap::new(),
        }
    }

    fn end(&mut self, file: &Arc<PathBuf>, span: Span) -> (u32, u32) {
        let Some(text) = self.sources.get(file) else {
            return (span.line, span.col);
        };
        let index = self
            .indexes
            .entry(file.clone())
            .or_insert_with(|| crate::span::LineIndex::new(text));
        let r = range(text, span);
        index.line_col(text, r.end)
    }
}

/// GitHub Actions workflow commands: one `::error file=…::` line each.
pub fn github(diagnostics: &[Diagnostic], sources: &Sources) -> String {
    let mut out = String::new();
    let mut ends = Ends::new(sources);
    for d in diagnostics {
        let level = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let end = ends.end(&d.file, d.span);
        let mut message = d.message.clone();
        if let Some(help) = &d.help {
            message.push_str("\nhelp: ");
            message.push_str(help);
        }
        out.push_str(&format!(
            "::{level} file={},line={},col={},endLine={},endColumn={},title={}::{}\n",
            escape_property(&d.file.display().to_string()),
            d.span.line,
            d.span.col,
            end.0,
            end.1,
            escape_property(&format!("{} {}", d.code.code(), d.code.name())),
            escape_data(&message)
        ));
    }
    out
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}
