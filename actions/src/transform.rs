//! `transform`: reshapes events without leaving tale. One struct per `mode`,
//! decoded in two steps (first `mode`, then that mode's keys) so that keys
//! of another mode are reported as unknown.

use schemars::JsonSchema;
use serde::Deserialize;
use tale_engine::action::{ActionConfig, DecodeCx, TemplateField, ValueCx};
use tale_engine::diagnostic::{Code, did_you_mean, one_of};
use tale_engine::span::Spanned;
use tale_engine::yaml::{Node, NodeKind};

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

/// `message_only`: emits `payload`, once or once per element of `loop`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageOnly {
    pub mode: Spanned<String>,
    /// What to emit: any structure whose strings are templates.
    pub payload: Option<Node>,
    /// A list to loop over; the payload is built for each element as
    /// `LOOP.value`, `LOOP.index`, `LOOP.key`, and the output is the list.
    #[serde(rename = "loop")]
    pub loop_over: Option<Spanned<String>>,
}

/// `explode`: one event per element of a list.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Explode {
    pub mode: Spanned<String>,
    /// The list, such as `"{{ receive.body.value | as_object }}"`.
    pub path: Spanned<String>,
    /// The key each element is emitted under: `{<to>: element, index, size, guid}`.
    pub to: Spanned<String>,
    /// Most elements exploded (default 500).
    pub limit: Option<Spanned<u64>>,
}

/// `implode`: collects the events of an explode back into one.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Implode {
    pub mode: Spanned<String>,
    /// The explode's `guid`, shared by the items of one list.
    pub guid_path: Spanned<String>,
    /// The explode's `size`: how many items to wait for.
    pub size_path: Spanned<String>,
    /// What to collect of each event (default: the whole event).
    pub item_path: Option<Spanned<String>>,
    /// How long to wait for missing items before emitting what arrived (default 60).
    pub seconds: Option<Spanned<u64>>,
}

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
    /// Emit duplicates too, marked `unique: false` (default false).
    pub emit_duplicates: Option<bool>,
}

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

/// `throttle`: lets through at most so many runs per interval.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    pub mode: Spanned<String>,
    /// The interval in seconds.
    pub interval: Spanned<u64>,
    /// Runs let through per interval (default 1).
    pub runs_per_interval: Option<Spanned<u64>>,
    /// Events per run let through (default: all).
    pub events_per_run: Option<Spanned<u64>>,
    /// Throttle separately per value of this template.
    pub throttle_key: Option<Spanned<String>>,
}

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

impl ActionConfig for TransformConfig {
    fn type_name(&self) -> &'static str {
        "transform"
    }

    fn is_exit(&self) -> bool {
        matches!(self, TransformConfig::MessageOnly(_))
    }

    fn templates<'a>(&'a self, out: &mut Vec<TemplateField<'a>>) {
        match self {
            TransformConfig::MessageOnly(m) => {
                if let Some(l) = &m.loop_over {
                    push(out, "loop", l);
                }
                if let Some(p) = &m.payload {
                    let names = if m.loop_over.is_some() { LOOP_NAMES } else { &[] };
                    TemplateField::collect_node_with("payload", p, names, out);
                }
            }
            TransformConfig::Explode(e) => push(out, "path", &e.path),
            TransformConfig::Implode(i) => {
                push(out, "guid_path", &i.guid_path);
                push(out, "size_path", &i.size_path);
                if let Some(p) = &i.item_path {
                    push(out, "item_path", p);
                }
            }
            TransformConfig::Extract(x) => {
                for (n, m) in x.matchers.value.iter().enumerate() {
                    push(out, &format!("matchers[{n}].path"), &m.path);
                }
            }
            TransformConfig::Deduplicate(d) => push(out, "path", &d.path),
            TransformConfig::Delay(d) => {
                if let Some(s) = &d.seconds {
                    TemplateField::collect_node("seconds", s, out);
                }
                if let Some(u) = &d.until {
                    push(out, "until", u);
                }
            }
            TransformConfig::Throttle(t) => {
                if let Some(k) = &t.throttle_key {
                    push(out, "throttle_key", k);
                }
            }
        }
    }

    fn check(&self, cx: &mut ValueCx<'_>) {
        match self {
            TransformConfig::Explode(e) => {
                if e.to.value.trim().is_empty() {
                    cx.report(
                        Code::InvalidValue,
                        e.to.span,
                        "`to` names the key each element is emitted under; it cannot be empty",
                    );
                }
                if let Some(l) = &e.limit
                    && l.value == 0
                {
                    cx.report(Code::InvalidValue, l.span, "`limit` must be at least 1");
                }
            }
            TransformConfig::Extract(x) => {
                if x.matchers.value.is_empty() {
                    cx.report(Code::InvalidValue, x.matchers.span, "`matchers` is empty");
                }
                for m in &x.matchers.value {
                    cx.regex(&m.regexp.value, m.regexp.span);
                }
            }
            TransformConfig::Deduplicate(d) => {
                if let (Some(_), Some(p)) = (&d.lookback, &d.period_secs) {
                    cx.report(Code::InvalidValue, p.span, "give `lookback` or `period_secs`, not both");
                }
            }
            TransformConfig::Delay(d) => match (&d.seconds, &d.until) {
                (None, None) => {
                    cx.report(Code::MissingKey, d.mode.span, "a delay needs `seconds` or `until`");
                }
                (Some(_), Some(u)) => {
                    cx.report(Code::InvalidValue, u.span, "give `seconds` or `until`, not both");
                }
                (Some(s), None) => match &s.kind {
                    NodeKind::Int(n) if *n < 0 => {
                        cx.report(Code::InvalidValue, s.span, "`seconds` cannot be negative");
                    }
                    NodeKind::Int(_) | NodeKind::UInt(_) | NodeKind::Float(_) | NodeKind::Str(_) => {}
                    other => {
                        cx.report(
                            Code::WrongType,
                            s.span,
                            format!("`seconds` is a number or a template, found {}", other.type_name()),
                        );
                    }
                },
                (None, Some(_)) => {}
            },
            TransformConfig::Throttle(t) => {
                if t.interval.value == 0 {
                    cx.report(
                        Code::InvalidValue,
                        t.interval.span,
                        "`interval` must be at least 1 second",
                    );
                }
            }
            TransformConfig::MessageOnly(_) | TransformConfig::Implode(_) => {}
        }
    }
}
