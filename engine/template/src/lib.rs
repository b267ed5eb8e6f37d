//! tale's template layer: Liquid with Tines' additions. The parser
//! (standard library plus the Tines filters and tags), parsing with
//! positions, the scan of what a template refers to, and JSON⇄Liquid values
//! in one place (`value`).
//!
//! **Boundary:** no IO and no async runtime (a test holds it).

pub mod conditions;
pub mod filters;
pub mod held;
pub mod loops;
pub mod raw;
pub mod scan;
mod tags;
pub mod value;

use tale_syntax::values;

pub use scan::{Scan, has_markup, scan};
pub use tags::story_slug;

/// Namespaces every template may read.
pub const NAMESPACES: &[&str] = &["CREDENTIAL", "RESOURCE", "LOCAL", "STATE", "STORY", "META"];

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
    language: std::sync::Arc<liquid_core::Language>,
}

/// A parsed template. It renders the way Ruby Liquid and Tines do where the
/// `liquid` crate is stricter: a key a value does not have (`{{ x.missing
/// }}` of an assigned or loop variable, `.first` of a text) is empty, not
/// an "Unknown index" error that fails the whole action.
#[derive(Debug)]
pub struct Template(liquid_core::runtime::Template);

impl Template {
    pub fn render_to(
        &self,
        writer: &mut dyn std::io::Write,
        globals: &dyn liquid_core::ObjectView,
    ) -> liquid_core::Result<()> {
        let runtime = liquid_core::runtime::RuntimeBuilder::new().set_globals(globals).build();
        liquid_core::Renderable::render_to(&self.0, writer, &Lenient(&runtime))
    }

    pub fn render(&self, globals: &dyn liquid_core::ObjectView) -> liquid_core::Result<String> {
        let mut out = Vec::new();
        self.render_to(&mut out, globals)?;
        String::from_utf8(out).map_err(|_| liquid_core::Error::with_msg("the template rendered invalid UTF-8"))
    }
}

/// A runtime (or a frame of one) whose lookups of a missing key of a known
/// variable give nil; an unknown variable is still an error that names it.
pub(crate) struct Lenient<R>(pub(crate) R);

impl<R: liquid_core::Runtime> liquid_core::Runtime for Lenient<R> {
    fn partials(&self) -> &dyn liquid_core::runtime::PartialStore {
        self.0.partials()
    }
    fn name(&self) -> Option<liquid_core::model::KStringRef<'_>> {
        self.0.name()
    }
    fn roots(&self) -> std::collections::BTreeSet<liquid_core::model::KStringCow<'_>> {
        self.0.roots()
    }
    fn try_get(&self, path: &[liquid_core::model::ScalarCow<'_>]) -> Option<liquid_core::ValueCow<'_>> {
        self.0.try_get(path)
    }
    fn get(&self, path: &[liquid_core::model::ScalarCow<'_>]) -> liquid_core::Result<liquid_core::ValueCow<'_>> {
        if let Some(found) = self.0.try_get(path) {
            // A list or an object is read in place: filters take views, and
            // the views render as Liquid's own values do. Copying it (what
            // the runtime's own `get` does) cost a million-element list's
            // size in Liquid values for `{{ list | size }}`.
            let view = found.as_view();
            if view.as_array().is_some() || (view.as_object().is_some() && !view.is_nil()) {
                return Ok(found);
            }
            return Ok(liquid_core::ValueCow::Owned(found.into_owned()));
        }
        if path.len() > 1 && self.0.try_get(&path[..1]).is_some() {
            return Ok(liquid_core::ValueCow::Owned(liquid_core::Value::Nil));
        }
        self.0.get(path)
    }
    fn set_global(&self, name: liquid_core::model::KString, val: liquid_core::Value) -> Option<liquid_core::Value> {
        self.0.set_global(name, val)
    }
    fn set_index(&self, name: liquid_core::model::KString, val: liquid_core::Value) -> Option<liquid_core::Value> {
        self.0.set_index(name, val)
    }
    fn get_index<'a>(&'a self, name: &str) -> Option<liquid_core::ValueCow<'a>> {
        self.0.get_index(name)
    }
    fn registers(&self) -> &liquid_core::runtime::Registers {
        self.0.registers()
    }
}

impl std::fmt::Debug for TemplateParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TemplateParser")
    }
}

impl TemplateParser {
    pub fn new() -> Self {
        use liquid_core::parser::{ParseBlock, ParseFilter, ParseTag};
        use liquid_lib::stdlib;
        let mut lang = liquid_core::Language::empty();
        let mut block = |b: Box<dyn ParseBlock>| {
            lang.blocks.register(b.reflection().start_tag().to_owned(), b);
        };
        // The standard blocks, with our loops (limits), `capture` (a
        // budget of bytes held) and conditions (Ruby's nil) in place of theirs.
        block(Box::new(stdlib::RawBlock));
        block(Box::new(conditions::IfBlock));
        block(Box::new(conditions::UnlessBlock));
        block(Box::new(stdlib::IfChangedBlock));
        block(Box::new(stdlib::CommentBlock));
        block(Box::new(stdlib::CaseBlock));
        block(Box::new(loops::ForBlock));
        block(Box::new(loops::TableRowBlock));
        block(Box::new(held::CaptureBlock));
        let mut tag = |t: Box<dyn ParseTag>| {
            lang.tags.register(t.reflection().tag().to_owned(), t);
        };
        tag(Box::new(stdlib::BreakTag));
        tag(Box::new(stdlib::ContinueTag));
        tag(Box::new(stdlib::CycleTag));
        tag(Box::new(stdlib::IncludeTag));
        tag(Box::new(stdlib::IncrementTag));
        tag(Box::new(stdlib::DecrementTag));
        tag(Box::new(stdlib::RenderTag));
        tag(Box::new(held::AssignTag));
        for t in tags::ALL_TAGS {
            tag(Box::new(*t));
        }
        let mut filter = |f: Box<dyn ParseFilter>| {
            lang.filters.register(f.reflection().name().to_owned(), f);
        };
        let standard: Vec<Box<dyn ParseFilter>> = vec![
            Box::new(stdlib::Abs),
            Box::new(stdlib::Append),
            Box::new(stdlib::AtLeast),
            Box::new(stdlib::AtMost),
            Box::new(stdlib::Capitalize),
            Box::new(stdlib::Ceil),
            Box::new(stdlib::Compact),
            Box::new(stdlib::Concat),
            Box::new(stdlib::Date),
            Box::new(stdlib::Default),
            Box::new(stdlib::DividedBy),
            Box::new(stdlib::Downcase),
            Box::new(stdlib::Escape),
            Box::new(stdlib::EscapeOnce),
            Box::new(stdlib::First),
            Box::new(stdlib::Floor),
            Box::new(stdlib::Join),
            Box::new(stdlib::Last),
            Box::new(stdlib::Lstrip),
            Box::new(stdlib::Map),
            Box::new(stdlib::Minus),
            Box::new(stdlib::Modulo),
            Box::new(stdlib::NewlineToBr),
            Box::new(stdlib::Plus),
            Box::new(stdlib::Prepend),
            Box::new(stdlib::Remove),
            Box::new(stdlib::RemoveFirst),
            Box::new(stdlib::Replace),
            Box::new(stdlib::ReplaceFirst),
            Box::new(stdlib::Reverse),
            Box::new(stdlib::Round),
            Box::new(stdlib::Rstrip),
            Box::new(stdlib::Size),
            Box::new(stdlib::Slice),
            Box::new(stdlib::Sort),
            Box::new(stdlib::SortNatural),
            Box::new(stdlib::Split),
            Box::new(stdlib::Strip),
            Box::new(stdlib::StripHtml),
            Box::new(stdlib::StripNewlines),
            Box::new(stdlib::Times),
            Box::new(stdlib::Truncate),
            Box::new(stdlib::TruncateWords),
            Box::new(stdlib::Uniq),
            Box::new(stdlib::Upcase),
            Box::new(stdlib::UrlDecode),
            Box::new(stdlib::UrlEncode),
            Box::new(stdlib::Where),
        ];
        for f in standard {
            filter(f);
        }
        // Tines' filters replace a standard one of the same name.
        for spec in filters::TINES_FILTERS {
            filter(Box::new(filters::TinesFilter(spec)));
        }
        // Internal: captures the value of a whole-field `| as_object` template.
        filter(Box::new(filters::TypedValue));
        Self {
            language: std::sync::Arc::new(lang),
        }
    }

    /// Parses a template (already normalized by [`Scan::normalized`]).
    pub fn parse(&self, text: &str) -> Result<Template, TemplateError> {
        liquid_core::parser::parse(text, &self.language)
            .map(|elements| Template(liquid_core::runtime::Template::new(elements)))
            .map_err(|e| convert_error(text, &e))
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
    let message = crate::values::pest_message(full.trim_start_matches("liquid:"))
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

/// The statuses of the `{% prompt status %}` tags in `text`.
pub fn prompt_statuses(text: &str) -> Vec<String> {
    scan::scan(text)
        .tags
        .into_iter()
        .filter(|t| t.name == "prompt")
        .filter_map(|t| t.arg.map(|(a, _)| a))
        .collect()
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

/// The story id a `story:` value names, when it is knowable before running.
pub fn call_target(value: &str) -> Option<String> {
    let trimmed = value.trim();
    if let Some(inner) = trimmed.strip_prefix("{%").and_then(|s| s.strip_suffix("%}")) {
        let inner = inner.trim();
        return inner.strip_prefix("story ").map(story_slug);
    }
    if has_markup(trimmed) {
        return None;
    }
    Some(trimmed.to_owned())
}

#[cfg(test)]
mod lenient_tests {
    use serde_json::json;

    use super::filters::testing::{fails, ok};

    /// Ruby Liquid (and Tines) render a key a value lacks as nothing; the
    /// `liquid` crate failed the whole action with "Unknown index".
    #[test]
    fn a_missing_key_of_an_assigned_or_loop_variable_is_empty() {
        let data = json!({"hook": {"body": {"items": [{"a": 1}], "list": ["example.com"]}}});
        let cases = [
            (
                "{% assign x = hook.body.items[0] %}[{{ x.missing }}][{{ x.a }}]",
                "[][1]",
            ),
            (
                "{% assign x = hook.body.items[0] %}{% if x.missing %}yes{% else %}no{% endif %}",
                "no",
            ),
            ("[{{ hook.body.list.first.first }}]", "[]"),
            (
                "{% for i in hook.body.items %}[{{ i.nope }}|{{ i.a }}]{% endfor %}",
                "[|1]",
            ),
            ("{% assign s = 'text' %}[{{ s.size }}][{{ s.first }}]", "[4][]"),
            ("{% capture c %}x{% endcapture %}[{{ c.deep.er }}]", "[]"),
        ];
        for (template, expected) in cases {
            assert_eq!(ok(template, data.clone()), expected, "{template}");
        }
        // An unknown variable is still an error that names it.
        fails("{{ nothing_here.x }}", json!({}), "Unknown variable");
    }

    /// `{% credential a.b %}` reads what `{{ CREDENTIAL.a.b }}` reads, the
    /// credential `a` (the name `check` looks for).
    #[test]
    fn the_credential_tag_reads_a_dotted_name_as_the_variable_does() {
        let data = json!({"CREDENTIAL": {"urlscan": "k-1234", "nested": {"io": "inner"}}});
        assert_eq!(ok("[{% credential urlscan %}]", data.clone()), "[k-1234]");
        assert_eq!(
            ok(
                "[{% credential urlscan.io %}|{{ CREDENTIAL.urlscan.io }}]",
                data.clone()
            ),
            "[|]"
        );
        assert_eq!(
            ok("[{% credential nested.io %}|{{ CREDENTIAL.nested.io }}]", data),
            "[inner|inner]"
        );
        assert_eq!(
            super::credential_names("{% credential urlscan.io %}")
                .into_iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>(),
            vec!["urlscan"]
        );
    }
}
