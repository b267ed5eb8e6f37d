//! `transform`: reshapes events without leaving tale. One struct per `mode`,
//! decoded in two steps (first `mode`, then that mode's keys) so that keys
//! of another mode are reported as unknown. Each mode is a file: its keys,
//! their checks, its build and its execution.

use schemars::JsonSchema;
use serde::Deserialize;
use tale_core::action::{ActionConfig, DecodeCx, TemplateField, ValueCx};
use tale_core::diagnostic::{Code, did_you_mean, one_of};
use tale_core::span::Spanned;
use tale_core::yaml::{Node, NodeKind};

pub const MODES: &[&str] = &[
    "message_only",
    "explode",
    "implode",
    "extract",
    "deduplicate",
    "delay",
    "throttle",
];

const LOOP_NAMES: &[&str] = &["LOOP"];

/// The largest values `check` accepts: a year of seconds for delays,
/// windows and intervals; counts no run could use.
const MAX_SECONDS: u64 = 366 * 24 * 3600;
const MAX_EXPLODE: u64 = 100_000_000;
const MAX_LOOKBACK: u64 = 10_000_000;
const MAX_PER_INTERVAL: u64 = 1_000_000;

mod deduplicate;
mod delay;
mod explode;
mod extract;
mod implode;
mod message_only;
mod throttle;

pub use deduplicate::Deduplicate;
pub use delay::Delay;
pub use explode::Explode;
pub use extract::{Extract, Matcher};
pub use implode::Implode;
pub use message_only::MessageOnly;
pub use throttle::Throttle;

#[derive(Debug)]
pub enum TransformConfig {
    MessageOnly(MessageOnly),
    Explode(Explode),
    Implode(Implode),
    Extract(Extract),
    Deduplicate(Deduplicate),
    Delay(Delay),
    Throttle(Throttle),
}

/// Reads `mode`, then that mode's keys.
pub fn decode(body: &Node, cx: &mut DecodeCx<'_>) -> Option<TransformConfig> {
    let Some((_, mode)) = body.entry("mode") else {
        cx.report(
            Code::MissingKey,
            cx.slug_span,
            format!("{} is missing the required key `mode`", cx.what),
        )
        .help = Some(format!("transform modes are {}", one_of(MODES)));
        return None;
    };
    let Some(name) = mode.as_str() else {
        cx.report(
            Code::WrongType,
            mode.span,
            format!("`mode` is a string, found {}", mode.type_name()),
        );
        return None;
    };
    cx.what = format!("{name} transform `{}`", cx.what.rsplit('`').nth(1).unwrap_or(""));
    Some(match name {
        "message_only" => TransformConfig::MessageOnly(cx.decode(body)?),
        "explode" => TransformConfig::Explode(cx.decode(body)?),
        "implode" => TransformConfig::Implode(cx.decode(body)?),
        "extract" => TransformConfig::Extract(cx.decode(body)?),
        "deduplicate" => TransformConfig::Deduplicate(cx.decode(body)?),
        "delay" => TransformConfig::Delay(cx.decode(body)?),
        "throttle" => TransformConfig::Throttle(cx.decode(body)?),
        other => {
            let help = did_you_mean(other, MODES.iter().copied())
                .unwrap_or_else(|| format!("transform modes are {}", one_of(MODES)));
            let d = cx.report(
                Code::UnknownMode,
                mode.span,
                format!("unknown transform mode `{other}`"),
            );
            d.label = Some("unknown mode".into());
            d.help = Some(help);
            return None;
        }
    })
}

fn push<'a>(out: &mut Vec<TemplateField<'a>>, field: &str, s: &'a Spanned<String>) {
    out.push(TemplateField::new(field, &s.value, s.span));
}

/// A template field of the mode's config, compiled.
fn field(c: &Compiler<'_>, name: &str, s: &Spanned<String>) -> Result<Field, CompileError> {
    c.field(name, &s.value, s.span)
}

impl ActionConfig for TransformConfig {
    fn type_name(&self) -> &'static str {
        "transform"
    }

    fn is_exit(&self) -> bool {
        matches!(self, TransformConfig::MessageOnly(_))
    }

    fn templates<'a>(&'a self, out: &mut Vec<TemplateField<'a>>) {
        match self {
            TransformConfig::MessageOnly(m) => m.templates(out),
            TransformConfig::Explode(e) => e.templates(out),
            TransformConfig::Implode(i) => i.templates(out),
            TransformConfig::Extract(x) => x.templates(out),
            TransformConfig::Deduplicate(d) => d.templates(out),
            TransformConfig::Delay(d) => d.templates(out),
            TransformConfig::Throttle(t) => t.templates(out),
        }
    }

    fn build(&self, c: &Compiler<'_>) -> Result<Box<dyn Executable>, CompileError> {
        match self {
            TransformConfig::MessageOnly(m) => m.build(c),
            TransformConfig::Explode(e) => e.build(c),
            TransformConfig::Implode(i) => i.build(c),
            TransformConfig::Extract(x) => x.build(c),
            TransformConfig::Deduplicate(d) => d.build(c),
            TransformConfig::Delay(d) => d.build(c),
            TransformConfig::Throttle(t) => t.build(c),
        }
    }

    fn check(&self, cx: &mut ValueCx<'_>) {
        match self {
            TransformConfig::MessageOnly(_) => {}
            TransformConfig::Explode(e) => e.check(cx),
            TransformConfig::Implode(i) => i.check(cx),
            TransformConfig::Extract(x) => x.check(cx),
            TransformConfig::Deduplicate(d) => d.check(cx),
            TransformConfig::Delay(d) => d.check(cx),
            TransformConfig::Throttle(t) => t.check(cx),
        }
    }
}

// ---------------------------------------------------------------------------
// What the modes' executions share.

// ---------------------------------------------------------------------------
// Execution, one struct per mode.

use futures_util::future::BoxFuture;
use serde_json::{Value as J, json};
use tale_core::action::{ActionError, CompileError, Compiler, Emit, ExecCx, Executable, Inline, Outcome};
use tale_core::runtime::render::{Field, Tree};
use tale_core::runtime::store::StatePut;

fn ready<'a>(r: Result<Outcome, ActionError>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
    Box::pin(std::future::ready(r))
}

fn failed(message: impl Into<String>) -> ActionError {
    ActionError::Failed(message.into())
}

/// A rendered value as a list: arrays as they are, JSON text parsed.
fn as_list(value: J, what: &str) -> Result<Vec<J>, ActionError> {
    match value {
        J::Array(items) => Ok(items),
        J::String(s) => match serde_json::from_str::<J>(&s) {
            Ok(J::Array(items)) => Ok(items),
            _ if s.trim().is_empty() => Ok(Vec::new()),
            _ => Err(failed(format!(
                "{what} is text, not a list (add `| as_object` to keep its type)"
            ))),
        },
        J::Null => Ok(Vec::new()),
        other => Err(failed(format!("{what} is {}, not a list", type_name(&other)))),
    }
}

fn type_name(v: &J) -> &'static str {
    match v {
        J::Null => "null",
        J::Bool(_) => "a boolean",
        J::Number(_) => "a number",
        J::String(_) => "text",
        J::Array(_) => "a list",
        J::Object(_) => "an object",
    }
}

/// Seconds as milliseconds, saturating (a story may write any number).
fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000)
}

/// A finite number, from JSON or text (`NaN` and `inf` are not numbers here).
fn number(value: &J) -> Option<f64> {
    match value {
        J::Number(n) => n.as_f64(),
        J::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
}
