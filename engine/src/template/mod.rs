//! Liquid templates with Tines' additions: the parser (standard library plus
//! the Tines filters and tags), parsing with positions, and the scan of what a
//! template refers to.

pub mod filters;
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
    // pest's explanation is the `= expected …` line; otherwise the first line.
    let explanation = full.lines().map(str::trim).find_map(|l| l.strip_prefix("= "));
    let first = full.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("liquid:").unwrap_or(first).trim();
    let message = match explanation {
        Some(e) => e.to_owned(),
        None if !first.is_empty() && !first.starts_with("-->") => first.to_owned(),
        None => "invalid template".to_owned(),
    };
    TemplateError {
        unknown_filter: full.contains("Unknown filter") || full.contains("unknown filter"),
        message,
        offset: offset.min(text.len()),
    }
}
