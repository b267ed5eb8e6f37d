//! Text: `regex_replace` (Ruby regex semantics), `to_snake_case`,
//! `pluralize` and `transliterate`.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use heck::ToSnakeCase;
use liquid_core::{Result, Value, ValueView};
use regex::{Captures, Regex, RegexBuilder};

use super::{Kind, arg_text, fail, input_text, kind};

// ---------------------------------------------------------------------------
// regex_replace

/// Compiles a pattern the way Ruby (and so Tines) reads it:
/// - `^` and `$` always match at line boundaries (Ruby has no other mode);
/// - flags: `i` ignores case, `m` lets `.` match newlines (Ruby's `m`, which
///   is `s` in most other engines), `x` allows whitespace and comments;
/// - `\h` / `\H` (hex digit / not one) are rewritten, `\Z` is read as `\z`.
///
/// Character classes follow Unicode (`\w` matches `é`), where Ruby's are
/// ASCII-only. `tale check` should compile literal patterns with this too.
pub fn ruby_regex(pattern: &str, flags: &str) -> std::result::Result<Regex, String> {
    let translated = translate_ruby_escapes(pattern);
    let mut builder = RegexBuilder::new(&translated);
    builder.multi_line(true);
    for flag in flags.chars() {
        match flag {
            'i' => {
                builder.case_insensitive(true);
            }
            'm' => {
                builder.dot_matches_new_line(true);
            }
            'x' => {
                builder.ignore_whitespace(true);
            }
            c if c.is_whitespace() || c == ',' => {}
            other => return Err(format!("unknown flag `{other}` (the flags are i, m and x)")),
        }
    }
    builder.build().map_err(|e| {
        let detail = e.to_string();
        detail
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("")
            .trim_start_matches("error:")
            .trim()
            .to_owned()
    })
}

fn translate_ruby_escapes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str("[0-9a-fA-F]"),
            Some('H') => out.push_str("[^0-9a-fA-F]"),
            Some('Z') => out.push_str("\\z"),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Compiled patterns, so that a template inside a loop compiles once.
fn cached_regex(pattern: &str, flags: &str) -> std::result::Result<Regex, String> {
    static CACHE: LazyLock<Mutex<HashMap<(String, String), Regex>>> = LazyLock::new(|| Mutex::new(HashMap::new()));
    let key = (pattern.to_owned(), flags.to_owned());
    if let Ok(cache) = CACHE.lock() {
        if let Some(re) = cache.get(&key) {
            return Ok(re.clone());
        }
    }
    let re = ruby_regex(pattern, flags)?;
    if let Ok(mut cache) = CACHE.lock() {
        if cache.len() >= 256 {
            cache.clear();
        }
        cache.insert(key, re.clone());
    }
    Ok(re)
}

/// A piece of a Ruby replacement string.
enum Piece {
    Text(String),
    Group(usize),
    Named(String),
}

/// Ruby's replacement syntax: `\1`…`\9` and `\0` or `\&` (the whole match),
/// `\k<name>`, `\\` (a backslash). Anything else is literal, `$` included.
fn parse_replacement(replacement: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = replacement;
    while let Some(c) = rest.chars().next() {
        if c != '\\' {
            text.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let after = &rest[1..];
        let piece = match after.chars().next() {
            Some(d) if d.is_ascii_digit() => {
                rest = &after[1..];
                Some(Piece::Group(d.to_digit(10).map_or(0, |n| n as usize)))
            }
            Some('&') => {
                rest = &after[1..];
                Some(Piece::Group(0))
            }
            Some('\\') => {
                text.push('\\');
                rest = &after[1..];
                None
            }
            Some('k') if after[1..].starts_with('<') => match after[2..].find('>') {
                Some(end) => {
                    let name = after[2..2 + end].to_owned();
                    rest = &after[3 + end..];
                    Some(Piece::Named(name))
                }
                None => {
                    text.push('\\');
                    rest = after;
                    None
                }
            },
            _ => {
                text.push('\\');
                rest = after;
                None
            }
        };
        if let Some(piece) = piece {
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(piece);
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    pieces
}

fn expand(pieces: &[Piece], caps: &Captures<'_>) -> String {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Group(n) => {
                if let Some(m) = caps.get(*n) {
                    out.push_str(m.as_str());
                }
            }
            Piece::Named(name) => {
                if let Some(m) = caps.name(name) {
                    out.push_str(m.as_str());
                }
            }
        }
    }
    out
}

/// `regex_replace: pattern, replacement, flags?`: Ruby's `gsub`.
pub(super) fn regex_replace(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    const NAME: &str = "regex_replace";
    let pattern = arg_text(NAME, args, 0, "pattern")?.ok_or_else(|| fail(NAME, "the pattern is nil"))?;
    let replacement = arg_text(NAME, args, 1, "replacement")?.unwrap_or_default();
    let flags = arg_text(NAME, args, 2, "flags")?.unwrap_or_default();
    let Some(text) = input_text(NAME, input)? else {
        return Ok(Value::Nil);
    };
    let re = cached_regex(&pattern, &flags).map_err(|why| {
        if why.starts_with("unknown flag") {
            fail(NAME, why)
        } else {
            fail(NAME, format!("invalid regular expression `{pattern}`: {why}"))
        }
    })?;
    let pieces = parse_replacement(&replacement);
    let out = re.replace_all(&text, |caps: &Captures<'_>| expand(&pieces, caps));
    Ok(Value::scalar(out.into_owned()))
}

// ---------------------------------------------------------------------------
// to_snake_case, transliterate

/// `to_snake_case`: words split at spaces, punctuation and case changes
/// (`Alert Title`, `alertTitle`, `XMLHttpRequest` → `xml_http_request`).
pub(super) fn to_snake_case(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    let Some(text) = input_text("to_snake_case", input)? else {
        return Ok(Value::Nil);
    };
    Ok(Value::scalar(text.to_snake_case()))
}

/// `transliterate`: each non-ASCII character becomes its ASCII approximation
/// (`é` → `e`, `Æ` → `AE`, `ß` → `ss`), or `?` when there is none, as Tines
/// documents. (The approximations come from the `deunicode` tables, which
/// also cover scripts such as Greek, Cyrillic and Han.)
pub(super) fn transliterate(input: &dyn ValueView, _: &[Value]) -> Result<Value> {
    let Some(text) = input_text("transliterate", input)? else {
        return Ok(Value::Nil);
    };
    Ok(Value::scalar(deunicode::deunicode_with_tofu(&text, "?")))
}

// ---------------------------------------------------------------------------
// pluralize

/// `pluralize`. Tines' form takes the count as input and the word as
/// argument: `{{ count | pluralize: 'item' }}` is `item` when the count is 1
/// and `items` otherwise; `{{ 5 | pluralize: 'bonus', 'bonuses' }}` gives the
/// plural explicitly. The Rails form is accepted too: `{{ 'item' | pluralize }}`
/// is `items`, `{{ 'item' | pluralize: count }}` follows the count.
/// Plurals follow Rails' English rules (`query` → `queries`, `box` → `boxes`,
/// `person` → `people`; `bonus` stays `bonus`, which is why Tines' example
/// passes `bonuses`).
pub(super) fn pluralize(input: &dyn ValueView, args: &[Value]) -> Result<Value> {
    const NAME: &str = "pluralize";
    let first = arg_text(NAME, args, 0, "word")?;
    let plural = arg_text(NAME, args, 1, "plural")?;
    let input_count = count_of(input);
    if let Some(word) = first.as_deref().filter(|w| number(w).is_none()) {
        // Tines' form: the input is the count.
        if !input.is_nil() && input_count.is_none() {
            return Err(fail(
                NAME,
                "the input must be a count when a word is given (`{{ count | pluralize: 'item' }}`)",
            ));
        }
        let out = if input_count == Some(1.0) {
            word.to_owned()
        } else {
            plural.unwrap_or_else(|| plural_of(word))
        };
        return Ok(Value::scalar(out));
    }
    // Rails' form: the input is the word, the argument an optional count.
    if input_count.is_some() {
        return Err(fail(
            NAME,
            "give the word to pluralize: `{{ count | pluralize: 'item' }}`",
        ));
    }
    let Some(word) = input_text(NAME, input)? else {
        return Ok(Value::Nil);
    };
    let count = first.as_deref().and_then(number);
    let out = if count == Some(1.0) {
        word
    } else {
        plural.unwrap_or_else(|| plural_of(&word))
    };
    Ok(Value::scalar(out))
}

/// A number written as text (`"2"`, `" 1.0 "`); words such as `nan` are not.
fn number(text: &str) -> Option<f64> {
    let t = text.trim();
    if !t.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse::<f64>().ok()
}

/// The input as a count: a number, or text that is one.
fn count_of(input: &dyn ValueView) -> Option<f64> {
    match kind(input) {
        Kind::Scalar(s) => match s.type_name() {
            "whole number" | "fractional number" => s.to_float(),
            "string" => number(&s.into_cow_str()),
            _ => None,
        },
        _ => None,
    }
}

const UNCOUNTABLE: &[&str] = &[
    "equipment",
    "information",
    "rice",
    "money",
    "species",
    "series",
    "fish",
    "sheep",
    "jeans",
    "police",
];

const IRREGULAR: &[(&str, &str)] = &[
    ("person", "people"),
    ("man", "men"),
    ("woman", "women"),
    ("child", "children"),
    ("sex", "sexes"),
    ("move", "moves"),
    ("zombie", "zombies"),
];

/// Rails' plural rules, most specific first (the first that matches wins).
static RULES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (r"(?i)(quiz)$", "${1}zes"),
        (r"(?i)^(oxen)$", "${1}"),
        (r"(?i)^(ox)$", "${1}en"),
        (r"(?i)^(m|l)ice$", "${1}ice"),
        (r"(?i)^(m|l)ouse$", "${1}ice"),
        (r"(?i)(matr|vert|ind)(?:ix|ex)$", "${1}ices"),
        (r"(?i)(x|ch|ss|sh)$", "${1}es"),
        (r"(?i)([^aeiouy]|qu)y$", "${1}ies"),
        (r"(?i)(hive)$", "${1}s"),
        (r"(?i)(?:([^f])fe|([lr])f)$", "${1}${2}ves"),
        (r"(?i)sis$", "ses"),
        (r"(?i)([ti])a$", "${1}a"),
        (r"(?i)([ti])um$", "${1}a"),
        (r"(?i)(buffal|tomat)o$", "${1}oes"),
        (r"(?i)(bu)s$", "${1}ses"),
        (r"(?i)(alias|status)$", "${1}es"),
        (r"(?i)(octop|vir)i$", "${1}i"),
        (r"(?i)(octop|vir)us$", "${1}i"),
        (r"(?i)^(ax|test)is$", "${1}es"),
        (r"(?i)s$", "s"),
    ]
    .into_iter()
    .filter_map(|(re, rep)| Regex::new(re).ok().map(|re| (re, rep)))
    .collect()
});

/// The English plural of the last word of `text` ("failed login" →
/// "failed logins").
fn plural_of(text: &str) -> String {
    let start = text
        .char_indices()
        .rev()
        .find(|(_, c)| !c.is_alphanumeric())
        .map_or(0, |(i, c)| i + c.len_utf8());
    let (head, last) = text.split_at(start);
    if last.is_empty() {
        return text.to_owned();
    }
    let lower = last.to_lowercase();
    if UNCOUNTABLE.contains(&lower.as_str()) || IRREGULAR.iter().any(|(_, p)| *p == lower) {
        return text.to_owned();
    }
    if let Some((_, plural)) = IRREGULAR.iter().find(|(s, _)| *s == lower) {
        return format!("{head}{}", same_case(last, plural));
    }
    for (re, replacement) in RULES.iter() {
        if re.is_match(last) {
            return format!("{head}{}", re.replace(last, *replacement));
        }
    }
    format!("{text}s")
}

/// `plural` with the case of `original` (`Person` → `People`, `MAN` → `MEN`).
fn same_case(original: &str, plural: &str) -> String {
    let letters = original.chars().filter(|c| c.is_alphabetic()).count();
    if letters > 1 && original.chars().all(|c| !c.is_lowercase()) {
        return plural.to_uppercase();
    }
    match original.chars().next() {
        Some(c) if c.is_uppercase() => {
            let mut chars = plural.chars();
            chars
                .next()
                .map(|f| f.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        }
        _ => plural.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{fails, table};
    use super::*;

    #[test]
    fn regex_replace_follows_ruby() {
        table(
            json!({"lines": "a\nb", "tabbed": "a\tb", "crlf": "a\r\nb", "url": "https://x.example/a/b", "n": null, "num": 12345}),
            &[
                // Tines' documented example
                (
                    r#"{{ "hello hello!" | regex_replace: "h\w+", "goodbye" }}"#,
                    "goodbye goodbye!",
                ),
                (
                    r"{{ 'John Smith' | regex_replace: '(\w+) (\w+)', '\2, \1' }}",
                    "Smith, John",
                ),
                (r"{{ 'abc' | regex_replace: 'b', '[\0]' }}", "a[b]c"),
                (r"{{ 'abc' | regex_replace: 'b', '<\&>' }}", "a<b>c"),
                (
                    r"{{ '2024-01-02' | regex_replace: '(?<y>\d+)-(?<m>\d+)-(?<d>\d+)', '\k<d>/\k<m>/\k<y>' }}",
                    "02/01/2024",
                ),
                // `$` is literal in a Ruby replacement; `\\` is one backslash
                ("{{ 'cost' | regex_replace: 'cost', '$1 $$' }}", "$1 $$"),
                (r"{{ 'a' | regex_replace: 'a', '\\1' }}", r"\1"),
                (r"{{ 'ab' | regex_replace: '(a)(b)', '\2\9\1' }}", "ba"),
                ("{{ 'Hello HELLO' | regex_replace: 'hello', 'x', 'i' }}", "x x"),
                // `^` and `$` are line anchors, as in Ruby
                ("{{ lines | regex_replace: '^', '> ' }}", "> a\n> b"),
                ("{{ lines | regex_replace: '$', ';' }}", "a;\nb;"),
                // Ruby's `m` flag lets `.` match a newline
                ("{{ lines | regex_replace: 'a.b', 'X' }}", "a\nb"),
                ("{{ lines | regex_replace: 'a.b', 'X', 'm' }}", "X"),
                (r"{{ 'id: 0xBEEF' | regex_replace: '0x\h+', 'HEX' }}", "id: HEX"),
                // patterns seen in exported stories
                ("{{ url | regex_replace: '.*/', '' }}", "b"),
                (r#"{{ tabbed | regex_replace: "\t", " " }}"#, "a b"),
                (r#"{{ crlf | regex_replace: "\r\n", "," }}"#, "a,b"),
                ("{{ num | regex_replace: '3', '-' }}", "12-45"),
                ("{{ 'naïve café' | regex_replace: 'é', 'e' }}", "naïve cafe"),
                ("{{ n | regex_replace: 'a', 'b' }}", ""),
            ],
        );
    }

    #[test]
    fn regex_replace_errors() {
        let data = json!({"a": [1], "n": null});
        fails(
            "{{ 'x' | regex_replace: '(', '' }}",
            data.clone(),
            "regex_replace: invalid regular expression `(`",
        );
        fails(
            "{{ 'x' | regex_replace: 'x', '', 'q' }}",
            data.clone(),
            "regex_replace: unknown flag `q`",
        );
        fails(
            "{{ 'x' | regex_replace: n, '' }}",
            data.clone(),
            "regex_replace: the pattern is nil",
        );
        fails(
            "{{ a | regex_replace: 'x', '' }}",
            data,
            "regex_replace: expected text, got an array",
        );
    }

    #[test]
    fn ruby_regex_translation() {
        let re = ruby_regex(r"\h\H\\h", "").expect("valid");
        assert!(re.is_match(r"fz\h"));
        assert!(ruby_regex("a", "imx").is_ok());
        assert!(ruby_regex("a", "y").is_err());
    }

    #[test]
    fn snake_case() {
        table(
            json!({"n": null, "num": 42}),
            &[
                ("{{ 'Alert Title' | to_snake_case }}", "alert_title"),
                ("{{ 'alertTitle' | to_snake_case }}", "alert_title"),
                ("{{ 'XMLHttpRequest' | to_snake_case }}", "xml_http_request"),
                ("{{ 'already_snake' | to_snake_case }}", "already_snake"),
                ("{{ '  Hello   World! ' | to_snake_case }}", "hello_world"),
                ("{{ 'Café Déjà' | to_snake_case }}", "café_déjà"),
                ("{{ '' | to_snake_case }}", ""),
                ("{{ num | to_snake_case }}", "42"),
                ("{{ n | to_snake_case }}", ""),
            ],
        );
    }

    #[test]
    fn transliteration() {
        table(
            json!({"n": null, "private": "a\u{F199}b"}),
            &[
                ("{{ 'Zürich' | transliterate }}", "Zurich"),
                ("{{ 'naïve café' | transliterate }}", "naive cafe"),
                ("{{ 'Æsir' | transliterate }}", "AEsir"),
                ("{{ 'Straße' | transliterate }}", "Strasse"),
                ("{{ 'plain ASCII' | transliterate }}", "plain ASCII"),
                // no approximation: `?`
                ("{{ private | transliterate }}", "a?b"),
                ("{{ n | transliterate }}", ""),
            ],
        );
    }

    #[test]
    fn pluralize_tines_form() {
        table(
            json!({"one": 1, "two": 2, "n": null, "text_one": "1", "c": 3}),
            &[
                // Tines' documented examples
                ("{{ two | pluralize: 'item' }}", "items"),
                ("{{ one | pluralize: 'item' }}", "item"),
                ("{{ 5 | pluralize: 'bonus', 'bonuses' }}", "bonuses"),
                ("{{ 1 | pluralize: 'bonus', 'bonuses' }}", "bonus"),
                ("{{ 0 | pluralize: 'alert' }}", "alerts"),
                ("{{ 1.0 | pluralize: 'alert' }}", "alert"),
                ("{{ text_one | pluralize: 'alert' }}", "alert"),
                ("{{ n | pluralize: 'alert' }}", "alerts"),
                ("{{ c | pluralize: 'query' }}", "queries"),
            ],
        );
    }

    #[test]
    fn pluralize_word_form_and_rules() {
        table(
            json!({"count": 2, "n": null}),
            &[
                ("{{ 'alert' | pluralize }}", "alerts"),
                ("{{ 'alert' | pluralize: 1 }}", "alert"),
                ("{{ 'alert' | pluralize: count }}", "alerts"),
                ("{{ 'failed login' | pluralize }}", "failed logins"),
                ("{{ 'Person' | pluralize }}", "People"),
                ("{{ 'child' | pluralize }}", "children"),
                ("{{ 'people' | pluralize }}", "people"),
                ("{{ 'sheep' | pluralize }}", "sheep"),
                ("{{ 'day' | pluralize }}", "days"),
                ("{{ 'box' | pluralize }}", "boxes"),
                ("{{ 'match' | pluralize }}", "matches"),
                ("{{ 'address' | pluralize }}", "addresses"),
                ("{{ 'knife' | pluralize }}", "knives"),
                ("{{ 'wolf' | pluralize }}", "wolves"),
                ("{{ 'analysis' | pluralize }}", "analyses"),
                ("{{ 'datum' | pluralize }}", "data"),
                ("{{ 'index' | pluralize }}", "indices"),
                ("{{ 'mouse' | pluralize }}", "mice"),
                ("{{ 'status' | pluralize }}", "statuses"),
                ("{{ 'bus' | pluralize }}", "buses"),
                ("{{ 'bonus' | pluralize }}", "bonus"),
                ("{{ 'quiz' | pluralize }}", "quizzes"),
                ("{{ 'potato' | pluralize }}", "potatos"),
                ("{{ 'tomato' | pluralize }}", "tomatoes"),
                ("{{ 'ox' | pluralize }}", "oxen"),
                ("{{ 'item' | pluralize: 2, 'things' }}", "things"),
                ("{{ 'héros' | pluralize }}", "héros"),
                ("{{ '' | pluralize }}", ""),
                ("{{ n | pluralize }}", ""),
            ],
        );
    }

    #[test]
    fn pluralize_errors() {
        let data = json!({"o": {}});
        fails("{{ 2 | pluralize }}", data.clone(), "pluralize: give the word");
        fails(
            "{{ 'cat' | pluralize: 'dog' }}",
            data.clone(),
            "pluralize: the input must be a count",
        );
        fails(
            "{{ 2 | pluralize: o }}",
            data,
            "pluralize: the word must be text, got an object",
        );
    }
}
