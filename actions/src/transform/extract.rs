//! `extract`: regex captures from text, as Ruby's `scan`.

use super::*;

/// `extract`: regex captures from text.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Extract {
    pub mode: Spanned<String>,
    pub matchers: Spanned<Vec<Matcher>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    /// The text to search, a template.
    pub path: Spanned<String>,
    /// The regular expression.
    pub regexp: Spanned<String>,
    /// The output key holding the matches.
    pub to: Spanned<String>,
}

impl Extract {
    pub(super) fn templates<'a>(&'a self, out: &mut Vec<TemplateField<'a>>) {
        for (n, m) in self.matchers.value.iter().enumerate() {
            push(out, &format!("matchers[{n}].path"), &m.path);
            push(out, &format!("matchers[{n}].regexp"), &m.regexp);
        }
    }

    pub(super) fn check(&self, cx: &mut ValueCx<'_>) {
        if self.matchers.value.is_empty() {
            cx.report(Code::InvalidValue, self.matchers.span, "`matchers` is empty");
        }
        for m in &self.matchers.value {
            cx.regex(&m.regexp.value, m.regexp.span);
        }
    }

    pub(super) fn build(&self, c: &Compiler<'_>) -> Result<Box<dyn Executable>, CompileError> {
        let matchers = self
            .matchers
            .value
            .iter()
            .enumerate()
            .map(|(n, m)| {
                let re = regex::Regex::new(&m.regexp.value).map_err(|e| CompileError {
                    field: format!("matchers[{n}].regexp"),
                    message: e.to_string(),
                })?;
                Ok((
                    field(c, &format!("matchers[{n}].path"), &m.path)?,
                    re,
                    m.to.value.clone(),
                ))
            })
            .collect::<Result<_, CompileError>>()?;
        Ok(Box::new(ExtractExec { matchers }))
    }
}

struct ExtractExec {
    matchers: Vec<(Field, regex::Regex, String)>,
}

impl Executable for ExtractExec {
    fn inline(&self) -> Inline {
        Inline::Pure
    }

    fn execute<'a>(&'a self, cx: &'a ExecCx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        ready((|| {
            let mut out = serde_json::Map::new();
            let mut any = false;
            for (path, re, to) in &self.matchers {
                let text = path.render_text(&cx.scope)?;
                // As Ruby's `scan` (Tines): without groups each match is its
                // text; with groups, the list of its groups (`null` for a
                // group that took no part).
                let groups = re.captures_len() > 1;
                let found: Vec<J> = re
                    .captures_iter(&text)
                    .map(|c| {
                        if groups {
                            J::Array(
                                c.iter()
                                    .skip(1)
                                    .map(|g| g.map_or(J::Null, |g| J::String(g.as_str().to_owned())))
                                    .collect(),
                            )
                        } else {
                            J::String(c.get(0).map_or("", |m| m.as_str()).to_owned())
                        }
                    })
                    .collect();
                any |= !found.is_empty();
                out.insert(to.clone(), J::Array(found));
            }
            Ok(if any {
                Outcome::main(J::Object(out))
            } else {
                Outcome::default()
            })
        })())
    }
}
