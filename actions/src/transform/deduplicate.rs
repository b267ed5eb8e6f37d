//! `deduplicate`: drops events already seen; the values seen are action
//! state, read and written one item at a time.

use super::*;

/// `deduplicate`: drops events already seen.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deduplicate {
    pub mode: Spanned<String>,
    /// What makes two events the same, a template.
    pub path: Spanned<String>,
    /// How many past values to remember (default 1000).
    pub lookback: Option<Spanned<u64>>,
    /// Or: forget values after this many seconds.
    pub period_secs: Option<Spanned<u64>>,
    /// Emit duplicates too, marked `unique_event: false` (default false).
    pub emit_duplicates: Option<bool>,
}

impl Deduplicate {
    pub(super) fn templates<'a>(&'a self, out: &mut Vec<TemplateField<'a>>) {
        push(out, "path", &self.path);
    }

    pub(super) fn check(&self, cx: &mut ValueCx<'_>) {
        if let (Some(_), Some(p)) = (&self.lookback, &self.period_secs) {
            cx.report(Code::InvalidValue, p.span, "give `lookback` or `period_secs`, not both");
        }
        if let Some(l) = &self.lookback {
            cx.range("lookback", l, 1, MAX_LOOKBACK, "values");
        }
        if let Some(p) = &self.period_secs {
            cx.range("period_secs", p, 1, MAX_SECONDS, "seconds");
        }
    }

    pub(super) fn build(&self, c: &Compiler<'_>) -> Result<Box<dyn Executable>, CompileError> {
        Ok(Box::new(DeduplicateExec {
            path: field(c, "path", &self.path)?,
            lookback: self.lookback.as_ref().map_or(1000, |l| l.value as usize),
            period_secs: self.period_secs.as_ref().map(|p| p.value),
            emit_duplicates: self.emit_duplicates.unwrap_or(false),
        }))
    }
}

struct DeduplicateExec {
    path: Field,
    lookback: usize,
    period_secs: Option<u64>,
    emit_duplicates: bool,
}

impl Executable for DeduplicateExec {
    fn stateful(&self) -> bool {
        true
    }

    fn execute<'a>(&'a self, cx: &'a ExecCx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        Box::pin(async move {
            let value = self.path.render_text(&cx.scope)?;
            let key = cx.state_key("deduplicate");
            let now = cx.clock.now_ms();
            let mut seen: Vec<(String, i64)> = cx
                .store
                .state(&key)
                .await?
                .and_then(|s| serde_json::from_value(s).ok())
                .unwrap_or_default();
            if let Some(period) = self.period_secs {
                let horizon = now.saturating_sub(secs_to_ms(period));
                seen.retain(|(_, at)| *at >= horizon);
            }
            let unique = !seen.iter().any(|(v, _)| *v == value);
            if unique {
                seen.push((value, now));
                if self.period_secs.is_none() && seen.len() > self.lookback {
                    let excess = seen.len() - self.lookback;
                    seen.drain(..excess);
                }
            }
            let mut outcome = Outcome {
                state: vec![StatePut::set(key, json!(seen))],
                ..Outcome::default()
            };
            if unique || self.emit_duplicates {
                outcome
                    .emits
                    .push(cx.passed_on(Some(("unique_event", J::Bool(unique))))?);
            }
            Ok(outcome)
        })
    }
}
