//! A light lexer over Liquid markup that finds what a template refers to:
//! variable roots (`get_alert` in `{{ get_alert.body.id }}`), filters with
//! their literal arguments, and Tines tags. The `liquid` crate's parsed
//! template is opaque, so `check` reads these facts here instead.
//!
//! It also finds Tines' leading-dot form (`{{ .get_alert.body }}`,
//! `{{ .x.['#id'] }}`), which standard Liquid rejects, so that the template can
//! be normalized before it is parsed.

/// A variable path in a template.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    pub root: String,
    /// The second segment when it is a literal name: `graph` in `CREDENTIAL.graph`.
    pub member: Option<String>,
    /// Byte offset of the root in the template.
    pub offset: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FilterUse {
    pub name: String,
    pub offset: usize,
    /// The first argument when it is a string literal, with its offset.
    pub literal_arg: Option<(String, usize)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TagUse {
    pub name: String,
    pub offset: usize,
    /// The first word after the tag name: `graph` in `{% credential graph %}`.
    pub arg: Option<(String, usize)>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scan {
    pub references: Vec<Reference>,
    pub filters: Vec<FilterUse>,
    pub tags: Vec<TagUse>,
    /// Names the template defines itself (`assign`, `capture`, `for`…).
    pub locals: Vec<String>,
    /// Byte offsets of Tines leading dots to delete before parsing.
    pub leading_dots: Vec<usize>,
}

impl Scan {
    /// The template with the Tines leading dots removed.
    pub fn normalized<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        if self.leading_dots.is_empty() {
            return text.into();
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for &dot in &self.leading_dots {
            out.push_str(&text[last..dot]);
            last = dot + 1;
        }
        out.push_str(&text[last..]);
        out.into()
    }
}

/// True when the text has any Liquid markup at all.
pub fn has_markup(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

pub fn scan(text: &str) -> Scan {
    let mut scan = Scan::default();
    let mut pos = 0;
    let bytes = text.as_bytes();
    while let Some(rel) = text[pos..].find('{') {
        let open = pos + rel;
        let next = bytes.get(open + 1).copied();
        let (close_pat, is_tag) = match next {
            Some(b'{') => ("}}", false),
            Some(b'%') => ("%}", true),
            _ => {
                pos = open + 1;
                continue;
            }
        };
        let mut inner_start = open + 2;
        if bytes.get(inner_start) == Some(&b'-') {
            inner_start += 1;
        }
        let Some(close_rel) = text[inner_start..].find(close_pat) else {
            break;
        };
        let mut inner_end = inner_start + close_rel;
        if inner_end > inner_start && bytes[inner_end - 1] == b'-' {
            inner_end -= 1;
        }
        pos = inner_start + close_rel + 2;
        let tokens = lex(&text[inner_start..inner_end], inner_start);
        if is_tag {
            let name = tokens.first().and_then(|t| t.ident()).unwrap_or("");
            if name == "raw" || name == "comment" {
                let end_tag = if name == "raw" { "endraw" } else { "endcomment" };
                pos = skip_block(text, pos, end_tag);
                continue;
            }
            tag(&tokens, &mut scan);
        } else {
            expression(&tokens, 0, &mut scan);
        }
    }
    scan
}

/// Position after `{% end_tag %}`, or the end of the text.
fn skip_block(text: &str, mut pos: usize, end_tag: &str) -> usize {
    while let Some(rel) = text[pos..].find("{%") {
        let start = pos + rel + 2;
        let Some(close) = text[start..].find("%}") else {
            return text.len();
        };
        let inner = text[start..start + close].trim_matches(|c: char| c == '-' || c.is_whitespace());
        pos = start + close + 2;
        if inner == end_tag {
            return pos;
        }
    }
    text.len()
}

#[derive(Clone, Debug, PartialEq)]
enum Tok<'a> {
    Ident(&'a str),
    Str(&'a str),
    Num,
    Dot,
    DotDot,
    LBracket,
    RBracket,
    LParen,
    RParen,
    Pipe,
    Colon,
    Comma,
    Op,
}

#[derive(Clone, Debug)]
struct Token<'a> {
    tok: Tok<'a>,
    offset: usize,
}

impl<'a> Token<'a> {
    fn ident(&self) -> Option<&'a str> {
        match self.tok {
            Tok::Ident(s) => Some(s),
            _ => None,
        }
    }
}

fn lex(src: &str, base: usize) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'\'' | b'"' => {
                let end = src[i + 1..].find(c as char).map_or(b.len(), |e| i + 1 + e);
                i = (end + 1).min(b.len());
                Tok::Str(&src[start + 1..end.min(b.len())])
            }
            b'0'..=b'9' => {
                while i < b.len() && (b[i].is_ascii_digit() || (b[i] == b'.' && b.get(i + 1) != Some(&b'.'))) {
                    i += 1;
                }
                Tok::Num
            }
            b'-' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i += 1;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                    i += 1;
                }
                Tok::Num
            }
            b'.' if b.get(i + 1) == Some(&b'.') => {
                i += 2;
                Tok::DotDot
            }
            b'.' => {
                i += 1;
                Tok::Dot
            }
            b'[' => {
                i += 1;
                Tok::LBracket
            }
            b']' => {
                i += 1;
                Tok::RBracket
            }
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b'|' => {
                i += 1;
                Tok::Pipe
            }
            b':' => {
                i += 1;
                Tok::Colon
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'-' || b[i] >= 0x80) {
                    i += 1;
                }
                if b.get(i) == Some(&b'?') {
                    i += 1;
                }
                Tok::Ident(&src[start..i])
            }
            _ => {
                i += 1;
                Tok::Op
            }
        };
        out.push(Token {
            tok,
            offset: base + start,
        });
    }
    out
}

const KEYWORDS: &[&str] = &[
    "and", "or", "contains", "in", "true", "false", "nil", "null", "empty", "blank", "with", "as", "reversed", "limit",
    "offset", "cols", "not",
];

fn tag(tokens: &[Token<'_>], scan: &mut Scan) {
    let Some(first) = tokens.first() else { return };
    let Some(name) = first.ident() else { return };
    let rest = &tokens[1..];
    match name {
        "assign" | "capture" | "increment" | "decrement" => {
            if let Some(var) = rest.first().and_then(|t| t.ident()) {
                scan.locals.push(var.to_owned());
            }
            // `assign x = expr`: the expression follows `=`.
            if let Some(eq) = rest.iter().position(|t| t.tok == Tok::Op) {
                expression(rest, eq + 1, scan);
            }
        }
        "for" | "tablerow" => {
            if let Some(var) = rest.first().and_then(|t| t.ident()) {
                scan.locals.push(var.to_owned());
            }
            scan.locals.push("forloop".into());
            scan.locals.push("tablerowloop".into());
            if let Some(i) = rest.iter().position(|t| t.ident() == Some("in")) {
                expression(rest, i + 1, scan);
            }
        }
        "if" | "elsif" | "unless" | "case" | "when" | "echo" | "cycle" => expression(rest, 0, scan),
        _ => {
            let arg = rest.first().map(|t| {
                let word = match t.tok {
                    Tok::Ident(s) | Tok::Str(s) => s.to_owned(),
                    _ => String::new(),
                };
                (word, t.offset)
            });
            scan.tags.push(TagUse {
                name: name.to_owned(),
                offset: first.offset,
                arg,
            });
        }
    }
}

/// Reads value positions from `tokens[start..]`: variables, filters, arguments.
fn expression(tokens: &[Token<'_>], start: usize, scan: &mut Scan) {
    let mut i = start;
    let mut value_pos = true;
    while i < tokens.len() {
        let t = &tokens[i];
        match &t.tok {
            Tok::Pipe => {
                i += 1;
                if let Some(name) = tokens.get(i).and_then(|t| t.ident()) {
                    let offset = tokens[i].offset;
                    let mut literal_arg = None;
                    if tokens.get(i + 1).map(|t| &t.tok) == Some(&Tok::Colon) {
                        if let Some(Token {
                            tok: Tok::Str(s),
                            offset,
                        }) = tokens.get(i + 2)
                        {
                            literal_arg = Some(((*s).to_owned(), offset + 1));
                        }
                        i += 1;
                    }
                    scan.filters.push(FilterUse {
                        name: name.to_owned(),
                        offset,
                        literal_arg,
                    });
                    i += 1;
                }
                value_pos = true;
                continue;
            }
            Tok::Dot if value_pos => {
                // Tines' leading dot: `.slug.path` or `.['key']`.
                if let Some(next) = tokens.get(i + 1) {
                    if matches!(next.tok, Tok::Ident(_)) && next.offset == t.offset + 1 {
                        scan.leading_dots.push(t.offset);
                        i += 1;
                        continue;
                    }
                }
                i += 1;
            }
            Tok::Ident(word) if value_pos => {
                // `key: value` keyword argument of a filter.
                if tokens.get(i + 1).map(|t| &t.tok) == Some(&Tok::Colon) {
                    i += 2;
                    continue;
                }
                if KEYWORDS.contains(word) {
                    i += 1;
                    continue;
                }
                i = path(tokens, i, scan);
                value_pos = false;
            }
            Tok::Ident(word) => {
                // Operators spelled as words start a new value.
                value_pos = KEYWORDS.contains(word);
                i += 1;
            }
            Tok::Op | Tok::Comma | Tok::Colon | Tok::LParen | Tok::DotDot | Tok::LBracket => {
                value_pos = true;
                i += 1;
            }
            _ => {
                value_pos = false;
                i += 1;
            }
        }
    }
}

/// Reads a variable path starting at `tokens[i]` (an identifier) and records it.
fn path(tokens: &[Token<'_>], mut i: usize, scan: &mut Scan) -> usize {
    let root = &tokens[i];
    let mut member = None;
    i += 1;
    let mut first_segment = true;
    loop {
        match tokens.get(i).map(|t| &t.tok) {
            Some(Tok::Dot) => {
                if let Some(Tok::Ident(name)) = tokens.get(i + 1).map(|t| &t.tok) {
                    if first_segment {
                        member = Some((*name).to_owned());
                    }
                    i += 2;
                } else if tokens.get(i + 1).map(|t| &t.tok) == Some(&Tok::LBracket) {
                    // `x.['key']`: Tines' spelling of `x['key']`.
                    scan.leading_dots.push(tokens[i].offset);
                    i += 1;
                    continue;
                } else {
                    i += 1;
                }
            }
            Some(Tok::LBracket) => {
                if let (Some(Tok::Str(s)), Some(Tok::RBracket)) =
                    (tokens.get(i + 1).map(|t| &t.tok), tokens.get(i + 2).map(|t| &t.tok))
                {
                    if first_segment {
                        member = Some((*s).to_owned());
                    }
                    i += 3;
                } else {
                    // A computed index: its inside is an expression of its own.
                    let close = matching_bracket(tokens, i).unwrap_or(tokens.len());
                    expression(&tokens[i + 1..close], 0, scan);
                    i = close + 1;
                }
            }
            _ => break,
        }
        first_segment = false;
    }
    if let Some(name) = root.ident() {
        scan.references.push(Reference {
            root: name.to_owned(),
            member,
            offset: root.offset,
        });
    }
    i
}

fn matching_bracket(tokens: &[Token<'_>], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (j, t) in tokens.iter().enumerate().skip(open) {
        match t.tok {
            Tok::LBracket => depth += 1,
            Tok::RBracket => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(text: &str) -> Vec<String> {
        scan(text).references.into_iter().map(|r| r.root).collect()
    }

    #[test]
    fn finds_roots_and_members() {
        let s = scan("{{ get_alert.body.severity | default: 'low' }} {{ CREDENTIAL.graph }}");
        assert_eq!(s.references[0].root, "get_alert");
        assert_eq!(s.references[0].member.as_deref(), Some("body"));
        assert_eq!(s.references[1].member.as_deref(), Some("graph"));
        assert_eq!(s.filters[0].name, "default");
    }

    #[test]
    fn tines_leading_dot_is_a_reference_and_is_normalized() {
        let text = "{{ .receive.body.value | as_object }} {{ .x.['#agent_id'] }}";
        let s = scan(text);
        assert_eq!(roots(text), vec!["receive", "x"]);
        assert_eq!(
            s.normalized(text),
            "{{ receive.body.value | as_object }} {{ x['#agent_id'] }}"
        );
    }

    #[test]
    fn locals_keywords_and_strings_are_not_references() {
        let text = "{% assign n = a.b | size %}{% for x in list.items limit: 2 %}{{ x.id }}{{ forloop.index }}{% endfor %}{% if n > 0 and flag contains 'y' %}{% endif %}";
        let s = scan(text);
        assert_eq!(roots(text), vec!["a", "list", "x", "forloop", "n", "flag"]);
        assert!(s.locals.contains(&"n".to_owned()) && s.locals.contains(&"x".to_owned()));
    }

    #[test]
    fn filter_arguments_are_values() {
        let text = "{{ a | where: 'k', b.v | jsonpath: '$.x[*]' | replace: 'a', c }}";
        let s = scan(text);
        assert_eq!(roots(text), vec!["a", "b", "c"]);
        assert_eq!(s.filters[1].literal_arg.as_ref().map(|a| a.0.as_str()), Some("$.x[*]"));
    }

    #[test]
    fn unbalanced_markup_does_not_panic() {
        for text in [
            "{{ w.body[ }}",
            "{{ a[b[c }}",
            "{{ ]] }}",
            "{{ .[ }}",
            "{{ a.[ }}",
            "{{ | }}",
            "{{ x | f: }}",
            "{%",
            "{{",
        ] {
            scan(text);
        }
    }

    #[test]
    fn tags_raw_and_computed_indexes() {
        let text = "{% credential graph %}{% raw %}{{ not_a_ref }}{% endraw %}{{ a[b.key] }}";
        let s = scan(text);
        assert_eq!(s.tags[0].name, "credential");
        assert_eq!(s.tags[0].arg.as_ref().map(|a| a.0.as_str()), Some("graph"));
        assert_eq!(roots(text), vec!["b", "a"]);
    }
}
