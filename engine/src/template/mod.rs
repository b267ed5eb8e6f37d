//! Liquid templates with Tines' additions: the parser (standard library plus
//! the Tines filters and tags), parsing with positions, and the scan of what a
//! template refers to.

pub mod filters;
pub mod held;
pub mod loops;
pub mod scan;
mod tags;

pub use scan::{Scan, has_markup, scan};
pub use tags::story_slug;

/// Namespaces every template may read.
pub const NAMESPACES: &[&str] = &["CREDENTIAL", "RESOURCE", "LOCAL", "STORY", "META"];

/// A template that does not parse: the message and the byte offset in the template.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
    pub offset: usize,
    /// The error is about an unknown filter (reported from the scan instead).
    pub unknown_filter: bool,
}

/// The liquid parser with everything a story template may use, built once.
pub struct TemplateParser {
    parser: liquid::Parser,
}

impl std::fmt::Debug for TemplateParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TemplateParser")
    }
}

impl TemplateParser {
    pub fn new() -> Self {
        let mut builder = liquid::ParserBuilder::with_stdlib();
        for spec in filters::TINES_FILTERS {
            builder = builder.filter(filters::TinesFilter(spec));
        }
        for tag in tags::ALL_TAGS {
            builder = builder.tag(*tag);
        }
        // Loops with limits (replacing the standard ones), and variables
        // with a budget of bytes held.
        builder = builder.block(loops::ForBlock).block(loops::TableRowBlock);
        builder = builder.tag(held::AssignTag).block(held::CaptureBlock);
        // Internal: captures the value of a whole-field `| as_object` template.
        builder = builder.filter(filters::TypedValue);
        let parser = builder
            .build()
            .unwrap_or_else(|e| panic!("the built-in template parser is invalid: {e}"));
        Self { parser }
    }

    /// Parses a template (already normalized by [`Scan::normalized`]).
    pub fn parse(&self, text: &str) -> Result<liquid::Template, TemplateError> {
        self.parser.parse(text).map_err(|e| convert_error(text, &e))
    }
}

impl Default for TemplateParser {
    fn default() -> Self {
        Self::new()
    }
}

/// liquid's errors embed pest's `--> line:col` and a drawing of the line;
/// keep the message and turn the position into a byte offset.
fn convert_error(text: &str, e: &liquid::Error) -> TemplateError {
    let full = e.to_string();
    let mut offset = 0;
    if let Some(arrow) = full.find("--> ") {
        let pos: String = full[arrow + 4..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ':')
            .collect();
        let mut parts = pos.split(':').filter_map(|p| p.parse::<usize>().ok());
        if let (Some(line), Some(col)) = (parts.next(), parts.next()) {
            offset = text
                .split_inclusive('\n')
                .take(line.saturating_sub(1))
                .map(str::len)
                .sum::<usize>();
            let line_text = text[offset..].lines().next().unwrap_or("");
            offset += line_text
                .char_indices()
                .nth(col.saturating_sub(1))
                .map_or(line_text.len(), |(i, _)| i);
        }
    }
    let message = crate::check::values::pest_message(full.trim_start_matches("liquid:"))
        .map(|m| match m.as_str() {
            "expected Literal" | "expected Value" => {
                "an expression is incomplete: is a `}}` or a value missing?".to_owned()
            }
            "Invalid number of arguments" => "a filter is given the wrong number of arguments".to_owned(),
            _ => m,
        })
        .unwrap_or_else(|| "invalid template".to_owned());
    TemplateError {
        unknown_filter: full.contains("Unknown filter") || full.contains("unknown filter"),
        message,
        offset: offset.min(text.len()),
    }
}

/// The credentials a template reads (`CREDENTIAL.x`, `{% credential x %}`),
/// with their offsets.
pub fn credential_names(text: &str) -> Vec<(String, usize)> {
    let scan = scan::scan(text);
    let mut out: Vec<(String, usize)> = scan
        .references
        .iter()
        .filter(|r| r.root == "CREDENTIAL")
        .filter_map(|r| r.member.clone().map(|m| (m, r.offset + "CREDENTIAL.".len())))
        .collect();
    out.extend(
        scan.tags
            .iter()
            .filter(|t| t.name == "credential")
            .filter_map(|t| t.arg.clone()),
    );
    out
}

/// Most levels of `[…]`/`(…)` and of block tags a template may nest: deeper
/// templates are refused before they reach the parser, whose recursion
/// would otherwise exhaust the stack.
pub const MAX_NESTING: usize = 32;
/// Longest template accepted.
pub const MAX_TEMPLATE_BYTES: usize = 256 * 1024;

/// Largest literal range (`(1..100000)`): Liquid builds the whole list
/// before a `for` starts, so `(1..100000000)` would take gigabytes.
pub const MAX_LITERAL_RANGE: i64 = 100_000;

/// Why a template is refused before parsing, if it is.
pub fn check_budget(text: &str) -> Result<(), String> {
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(format!(
            "the template is {} bytes, more than {MAX_TEMPLATE_BYTES}",
            text.len()
        ));
    }
    static RANGE: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\(\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*\)").expect("a valid regex"));
    for c in RANGE.captures_iter(text) {
        let bound = |i: usize| c[i].parse::<i64>().unwrap_or(i64::MAX);
        let size = bound(2).saturating_sub(bound(1));
        if size > MAX_LITERAL_RANGE {
            return Err(format!(
                "the range `{}` has more than {MAX_LITERAL_RANGE} numbers (Liquid builds the whole list first)",
                &c[0]
            ));
        }
    }
    let bytes = text.as_bytes();
    let (mut brackets, mut blocks, mut deepest) = (0usize, 0usize, 0usize);
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'\'' | b'"' if brackets > 0 => quote = Some(b),
                b'[' | b'(' => brackets += 1,
                b']' | b')' => brackets = brackets.saturating_sub(1),
                b'{' if bytes.get(i + 1) == Some(&b'%') => {
                    let rest = text[i + 2..].trim_start_matches(['-', ' ', '\t', '\n', '\r']);
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    match name.as_str() {
                        "if" | "unless" | "for" | "case" | "capture" | "tablerow" | "comment" | "raw" | "ifchanged" => {
                            blocks += 1
                        }
                        n if n.starts_with("end") => blocks = blocks.saturating_sub(1),
                        _ => {}
                    }
                }
                _ => {}
            },
        }
        deepest = deepest.max(brackets).max(blocks);
        if deepest > MAX_NESTING {
            return Err(format!("the template nests deeper than {MAX_NESTING} levels"));
        }
        i += 1;
    }
    Ok(())
}
