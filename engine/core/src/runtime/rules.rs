//! Rules (`rules:` + `must_match` on any action, and a trigger's rules),
//! compiled once and evaluated against a scope.

use regex::{Regex, RegexBuilder};
use serde_json::Value as J;

use super::render::{CompileError, Compiler, Field, RenderError, Tree};
use super::scope::Scope;
use crate::model::Rule;
use crate::template::value::render_json;

#[derive(Debug)]
pub struct Rules {
    rules: Vec<CompiledRule>,
    must_match: usize,
}

#[derive(Debug)]
struct CompiledRule {
    kind: String,
    path: Field,
    value: Option<Tree>,
    /// A literal regex, compiled once per case mode.
    regex: Option<(Regex, Regex)>,
    value_span: crate::span::Span,
    /// The rule's own `case_sensitive`.
    case_sensitive: Option<bool>,
}

impl Rules {
    pub fn compile(compiler: &Compiler<'_>, rules: &[Rule], must_match: Option<usize>) -> Result<Self, CompileError> {
        let compiled = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let value = r
                    .value
                    .as_ref()
                    .map(|v| compiler.tree(&format!("rules[{i}].value"), v))
                    .transpose()?;
                let literal = r
                    .value
                    .as_ref()
                    .and_then(|v| v.as_str())
                    .filter(|s| !crate::template::has_markup(s));
                let regex = match (r.kind.value.ends_with("regex"), literal) {
                    (true, Some(text)) => {
                        let sensitive = Regex::new(text).map_err(|e| CompileError {
                            field: format!("rules[{i}].value"),
                            message: e.to_string(),
                        })?;
                        let insensitive =
                            RegexBuilder::new(text)
                                .case_insensitive(true)
                                .build()
                                .map_err(|e| CompileError {
                                    field: format!("rules[{i}].value"),
                                    message: e.to_string(),
                                })?;
                        Some((sensitive, insensitive))
                    }
                    _ => None,
                };
                Ok(CompiledRule {
                    case_sensitive: r.case_sensitive,
                    value_span: r.value.as_ref().map_or(r.path.span, |v| v.span),
                    kind: r.kind.value.clone(),
                    path: compiler.field(&format!("rules[{i}].path"), &r.path.value, r.path.span)?,
                    value,
                    regex,
                })
            })
            .collect::<Result<Vec<_>, CompileError>>()?;
        let must_match = must_match.unwrap_or(compiled.len());
        Ok(Self {
            rules: compiled,
            must_match,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether enough rules match. `case_sensitive` is the trigger's
    /// setting when it has one; a rule's own wins over it, and without
    /// either, regexes ignore case (as Tines) and comparisons do not.
    pub fn matches(&self, scope: &Scope<'_>, case_sensitive: Option<bool>) -> Result<bool, RenderError> {
        if self.rules.is_empty() {
            return Ok(true);
        }
        let mut matched = 0;
        for rule in &self.rules {
            if rule.eval(scope, case_sensitive)? {
                matched += 1;
                if matched >= self.must_match {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

impl Rules {
    /// [`Rules::matches`], with every rule evaluated and told: its type,
    /// its rendered path and value, whether it matched (stored traces, dry
    /// runs). Costs every rule; only a trigger and a skipped action pay it.
    pub fn explain(&self, scope: &Scope<'_>, case_sensitive: Option<bool>) -> Result<(bool, Vec<J>), RenderError> {
        let mut matched = 0;
        let mut told = Vec::with_capacity(self.rules.len());
        for rule in &self.rules {
            let (ok, left, right) = rule.eval_told(scope, case_sensitive)?;
            matched += usize::from(ok);
            let mut entry = serde_json::Map::new();
            entry.insert("rule".into(), J::String(rule.kind.clone()));
            entry.insert("path".into(), J::String(left));
            if rule.value.is_some() {
                entry.insert("value".into(), J::String(right));
            }
            entry.insert("matched".into(), J::Bool(ok));
            told.push(J::Object(entry));
        }
        let needed = self.must_match.min(self.rules.len());
        Ok((self.rules.is_empty() || matched >= needed, told))
    }
}

fn text(v: &J) -> String {
    let mut s = String::new();
    render_json(v, &mut s);
    s
}

fn is_empty(v: &J) -> bool {
    match v {
        J::Null => true,
        J::String(s) => s.trim().is_empty(),
        J::Array(a) => a.is_empty(),
        J::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// A finite decimal number (`NaN`, `inf` and words are text).
fn decimal(s: &str) -> Option<f64> {
    let s = s.trim();
    if !s.bytes().any(|b| b.is_ascii_digit()) || s.bytes().any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Numbers compare as numbers when both sides parse; otherwise as text.
fn compare(a: &str, b: &str, case_sensitive: bool) -> std::cmp::Ordering {
    match (decimal(a), decimal(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ if case_sensitive => a.cmp(b),
        _ => a.to_lowercase().cmp(&b.to_lowercase()),
    }
}

/// Whether `text` contains `part` (an empty `part` is in nothing); numbers
/// equal as numbers count too (`3` in `3.0`).
fn contains(text: &str, part: &str, case_sensitive: bool) -> bool {
    if part.is_empty() {
        return false;
    }
    if compare(text, part, case_sensitive) == std::cmp::Ordering::Equal {
        return true;
    }
    if case_sensitive {
        text.contains(part)
    } else {
        text.to_lowercase().contains(&part.to_lowercase())
    }
}

impl CompiledRule {
    fn eval(&self, scope: &Scope<'_>, trigger: Option<bool>) -> Result<bool, RenderError> {
        self.eval_told(scope, trigger).map(|(ok, _, _)| ok)
    }

    /// Whether it matched, with the rendered path and value as text.
    fn eval_told(&self, scope: &Scope<'_>, trigger: Option<bool>) -> Result<(bool, String, String), RenderError> {
        let is_regex = self.kind.ends_with("regex");
        let case_sensitive = self.case_sensitive.or(trigger).unwrap_or(!is_regex);
        let actual = self.path.render(scope)?;
        let value = self.value.as_ref().map(|v| v.render(scope)).transpose()?;
        let left = text(&actual);
        let right = value.as_ref().map(text).unwrap_or_default();
        use std::cmp::Ordering::*;
        let matched = match self.kind.as_str() {
            "is_empty" => is_empty(&actual),
            "is_present" => !is_empty(&actual),
            "regex" | "!regex" => {
                let found = match &self.regex {
                    Some((s, i)) => if case_sensitive { s } else { i }.is_match(&left),
                    None => RegexBuilder::new(&right)
                        .case_insensitive(!case_sensitive)
                        .build()
                        .map(|r| r.is_match(&left))
                        .map_err(|e| RenderError {
                            field: self.path.name.replace(".path", ".value"),
                            span: self.value_span,
                            message: format!("the rendered regex does not compile: {e}"),
                        })?,
                };
                found == (self.kind == "regex")
            }
            "field==value" => compare(&left, &right, case_sensitive) == Equal,
            "field!=value" => compare(&left, &right, case_sensitive) != Equal,
            "field<value" => compare(&left, &right, case_sensitive) == Less,
            "field<=value" => compare(&left, &right, case_sensitive) != Greater,
            "field>value" => compare(&left, &right, case_sensitive) == Greater,
            "field>=value" => compare(&left, &right, case_sensitive) != Less,
            // Tines: the path contains the value (any of a list's values).
            "in" | "not in" => {
                let list: Vec<String> = match &value {
                    Some(J::Array(items)) => items.iter().map(text).collect(),
                    Some(other) => vec![text(other)],
                    None => Vec::new(),
                };
                let found = list.iter().any(|v| contains(&left, v, case_sensitive));
                found == (self.kind == "in")
            }
            _ => false,
        };
        Ok((matched, left, right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn numbers_compare_as_numbers_and_words_as_text() {
        assert_eq!(compare("10", "9", true), Greater);
        assert_eq!(compare("1.0", "1", true), Equal);
        assert_eq!(compare("-2e3", "-1000", true), Less);
        // Not numbers: `NaN` must not equal everything, `inf` is a word.
        assert_ne!(compare("NaN", "5", true), Equal);
        assert_ne!(compare("inf", "Infinity", true), Equal);
        assert_eq!(compare("High", "high", false), Equal);
        assert_ne!(compare("High", "high", true), Equal);
    }
}
