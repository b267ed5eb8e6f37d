//! `delay`: holds each event for a while; the due time is a stored wake-up.

use super::*;

/// `delay`: holds each event for a while.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Delay {
    pub mode: Spanned<String>,
    /// Seconds to wait: a number or a template.
    pub seconds: Option<Node>,
    /// Or: a time to wait for, a template rendering a date.
    pub until: Option<Spanned<String>>,
}

impl Delay {
    pub(super) fn templates<'a>(&'a self, out: &mut Vec<TemplateField<'a>>) {
        if let Some(s) = &self.seconds {
            TemplateField::collect_node("seconds", s, out);
        }
        if let Some(u) = &self.until {
            push(out, "until", u);
        }
    }

    pub(super) fn check(&self, cx: &mut ValueCx<'_>) {
        match (&self.seconds, &self.until) {
            (None, None) => {
                cx.report(Code::MissingKey, self.mode.span, "a delay needs `seconds` or `until`");
            }
            (Some(_), Some(u)) => {
                cx.report(Code::InvalidValue, u.span, "give `seconds` or `until`, not both");
            }
            (Some(s), None) => match &s.kind {
                NodeKind::Int(n) if *n < 0 => {
                    cx.report(Code::InvalidValue, s.span, "`seconds` cannot be negative");
                }
                NodeKind::Float(f) if *f < 0.0 => {
                    cx.report(Code::InvalidValue, s.span, "`seconds` cannot be negative");
                }
                NodeKind::Int(_) | NodeKind::UInt(_) | NodeKind::Float(_) => {
                    let secs = match s.kind {
                        NodeKind::Int(n) => n as f64,
                        NodeKind::UInt(n) => n as f64,
                        NodeKind::Float(f) => f,
                        _ => 0.0,
                    };
                    // Non-finite numbers are reported once for the whole story.
                    if secs.is_finite() {
                        cx.range(
                            "seconds",
                            &Spanned::new(secs, s.span),
                            0.0,
                            MAX_SECONDS as f64,
                            "seconds",
                        );
                    }
                }
                NodeKind::Str(_) => {}
                other => {
                    cx.report(
                        Code::WrongType,
                        s.span,
                        format!("`seconds` is a number or a template, found {}", other.type_name()),
                    );
                }
            },
            (None, Some(_)) => {}
        }
    }

    pub(super) fn build(&self, c: &Compiler<'_>) -> Result<Box<dyn Executable>, CompileError> {
        Ok(Box::new(DelayExec {
            seconds: self.seconds.as_ref().map(|s| c.tree("seconds", s)).transpose()?,
            until: self.until.as_ref().map(|u| field(c, "until", u)).transpose()?,
        }))
    }
}

struct DelayExec {
    seconds: Option<Tree>,
    until: Option<Field>,
}

impl Executable for DelayExec {
    fn execute<'a>(&'a self, cx: &'a ExecCx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        ready((|| {
            let now = cx.clock.now_ms();
            let (at_ms, output) = match (&self.seconds, &self.until) {
                (Some(s), _) => {
                    let value = s.render(&cx.scope)?;
                    let secs = number(&value)
                        .filter(|n| *n >= 0.0)
                        .ok_or_else(|| failed(format!("the delay `seconds` is not a number of seconds: {value}")))?;
                    if secs > MAX_SECONDS as f64 {
                        return Err(failed(format!(
                            "the delay `seconds` is {secs}: at most {MAX_SECONDS} (a year)"
                        )));
                    }
                    let shown = if secs.fract() == 0.0 {
                        json!(secs as i64)
                    } else {
                        json!(secs)
                    };
                    (now.saturating_add((secs * 1000.0) as i64), json!({"seconds": shown}))
                }
                (None, Some(u)) => {
                    let text = u.render_text(&cx.scope)?;
                    let at = parse_time(&text).ok_or_else(|| {
                        failed(format!(
                            "the delay `until` is not a time (RFC 3339, HTTP date or unix seconds): {text}"
                        ))
                    })?;
                    (at.max(now), json!({"until": text}))
                }
                (None, None) => return Err(failed("a delay needs `seconds` or `until`")),
            };
            Ok(Outcome {
                emits: vec![Emit::Later { at_ms, payload: output }],
                ..Outcome::default()
            })
        })())
    }

    fn wake<'a>(&'a self, _cx: &'a ExecCx<'a>, payload: J) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        ready(Ok(Outcome::main(payload)))
    }
}

/// RFC 3339, an HTTP date, or unix seconds, as milliseconds.
fn parse_time(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        // Finite only: `NaN` or `inf` is not a time.
        return secs.is_finite().then_some((secs * 1000.0) as i64);
    }
    if let Ok(at) = httpdate::parse_http_date(t) {
        return at
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_millis() as i64);
    }
    let at = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod time_tests {
    use super::parse_time;

    #[test]
    fn times() {
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T23:13:20+01:00"), Some(1_700_000_000_000));
        assert_eq!(parse_time("Tue, 14 Nov 2023 22:13:20 GMT"), Some(1_700_000_000_000));
        assert_eq!(parse_time("tomorrow"), None);
        assert_eq!(parse_time("NaN"), None);
        assert_eq!(parse_time("inf"), None);
        assert_eq!(parse_time("2023-01-01T00:00:1e30Z"), None);
        assert_eq!(parse_time("2023-01-01T9999999999999999:00:00Z"), None);
    }
}
