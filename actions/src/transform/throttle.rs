//! `throttle`: lets at most so many events through per interval; the passes
//! are action state, a refused event a stored wake-up.

use super::*;

/// `throttle`: lets through at most so many runs per interval.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    pub mode: Spanned<String>,
    /// The interval in seconds.
    pub interval: Spanned<u64>,
    /// Releases per interval (default 1).
    pub runs_per_interval: Option<Spanned<u64>>,
    /// Events per release (default 1): `runs_per_interval × events_per_run`
    /// events pass per interval.
    pub events_per_run: Option<Spanned<u64>>,
    /// Throttle separately per value of this template.
    pub throttle_key: Option<Spanned<String>>,
}

impl Throttle {
    pub(super) fn templates<'a>(&'a self, out: &mut Vec<TemplateField<'a>>) {
        if let Some(k) = &self.throttle_key {
            push(out, "throttle_key", k);
        }
    }

    pub(super) fn check(&self, cx: &mut ValueCx<'_>) {
        cx.range("interval", &self.interval, 1, MAX_SECONDS, "seconds");
        for (name, v) in [
            ("runs_per_interval", &self.runs_per_interval),
            ("events_per_run", &self.events_per_run),
        ] {
            if let Some(v) = v {
                cx.range(name, v, 1, MAX_PER_INTERVAL, "");
            }
        }
    }

    pub(super) fn build(&self, c: &Compiler<'_>) -> Result<Box<dyn Executable>, CompileError> {
        Ok(Box::new(ThrottleExec {
            interval_ms: secs_to_ms(self.interval.value),
            runs_per_interval: self.runs_per_interval.as_ref().map_or(1, |r| r.value as usize),
            events_per_run: self.events_per_run.as_ref().map_or(1, |r| r.value as usize),
            key: self
                .throttle_key
                .as_ref()
                .map(|k| field(c, "throttle_key", k))
                .transpose()?,
        }))
    }
}

struct ThrottleExec {
    interval_ms: i64,
    runs_per_interval: usize,
    events_per_run: usize,
    key: Option<Field>,
}

impl ThrottleExec {
    /// Lets the event through now, or says when to try again: per interval
    /// and per key, `runs_per_interval × events_per_run` events pass; every
    /// event counts, also several of one story run.
    async fn admit(&self, cx: &ExecCx<'_>) -> Result<Outcome, ActionError> {
        let key_value = match &self.key {
            Some(f) => f.render_text(&cx.scope)?,
            None => String::new(),
        };
        let key = cx.state_key(&format!("throttle/{key_value}"));
        let now = cx.clock.now_ms();
        let mut passes: Vec<i64> = cx
            .store
            .state(&key)
            .await?
            .and_then(|s| serde_json::from_value(s).ok())
            .unwrap_or_default();
        passes.retain(|at| *at > now.saturating_sub(self.interval_ms));
        let capacity = self.runs_per_interval.saturating_mul(self.events_per_run);
        if passes.len() < capacity {
            passes.push(now);
            return Ok(Outcome {
                emits: vec![cx.passed_on(None)?],
                state: vec![StatePut::set(key, json!(passes))],
                ..Outcome::default()
            });
        }
        // Try again when the oldest pass leaves the window.
        let oldest = passes.iter().copied().min().unwrap_or(now);
        Ok(Outcome {
            emits: vec![Emit::Later {
                at_ms: oldest.saturating_add(self.interval_ms),
                payload: J::Null,
            }],
            ..Outcome::default()
        })
    }
}

impl Executable for ThrottleExec {
    fn stateful(&self) -> bool {
        true
    }

    fn execute<'a>(&'a self, cx: &'a ExecCx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        Box::pin(self.admit(cx))
    }

    fn wake<'a>(&'a self, cx: &'a ExecCx<'a>, _payload: J) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        Box::pin(self.admit(cx))
    }
}
