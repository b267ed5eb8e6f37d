//! `transform`: reshapes events without leaving tale. One struct per `mode`,
//! decoded in two steps (first `mode`, then that mode's keys) so that keys
//! of another mode are reported as unknown.

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
    /// Emit duplicates too, marked `unique_event: false` (default false).
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
    /// Releases per interval (default 1).
    pub runs_per_interval: Option<Spanned<u64>>,
    /// Events per release (default 1): `runs_per_interval × events_per_run`
    /// events pass per interval.
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
                    push(out, &format!("matchers[{n}].regexp"), &m.regexp);
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

    fn build(&self, compiler: &Compiler<'_>) -> Result<Box<dyn Executable>, CompileError> {
        self.build_exec(compiler)
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
                if let Some(l) = &e.limit {
                    cx.range("limit", l, 1, MAX_EXPLODE, "elements");
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
                if let Some(l) = &d.lookback {
                    cx.range("lookback", l, 1, MAX_LOOKBACK, "values");
                }
                if let Some(p) = &d.period_secs {
                    cx.range("period_secs", p, 1, MAX_SECONDS, "seconds");
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
            },
            TransformConfig::Throttle(t) => {
                cx.range("interval", &t.interval, 1, MAX_SECONDS, "seconds");
                for (name, v) in [
                    ("runs_per_interval", &t.runs_per_interval),
                    ("events_per_run", &t.events_per_run),
                ] {
                    if let Some(v) = v {
                        cx.range(name, v, 1, MAX_PER_INTERVAL, "");
                    }
                }
            }
            TransformConfig::Implode(i) => {
                if let Some(s) = &i.seconds {
                    cx.range("seconds", s, 0, MAX_SECONDS, "seconds");
                }
            }
            TransformConfig::MessageOnly(_) => {}
        }
    }
}

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

struct MessageOnlyExec {
    payload: Option<Tree>,
    loop_over: Option<Field>,
}

impl Executable for MessageOnlyExec {
    fn inline(&self) -> Inline {
        Inline::Pure
    }

    fn execute<'a>(&'a self, cx: &'a ExecCx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        ready((|| {
            let Some(loop_field) = &self.loop_over else {
                let output = match &self.payload {
                    Some(p) => p.render(&cx.scope)?,
                    None => json!({}),
                };
                return Ok(Outcome::main(output));
            };
            let over = loop_field.render(&cx.scope)?;
            let elements: Vec<(J, J)> = match over {
                J::Object(o) => o.into_iter().map(|(k, v)| (J::String(k), v)).collect(),
                other => as_list(other, "`loop`")?.into_iter().map(|v| (J::Null, v)).collect(),
            };
            let mut results = Vec::with_capacity(elements.len());
            for (index, (key, value)) in elements.into_iter().enumerate() {
                let lp = json!({"value": value, "index": index, "key": key});
                let extra = [("LOOP", &lp)];
                let mut scope = cx.scope.clone_with_extra(&extra);
                scope.local = cx.scope.local;
                results.push(match &self.payload {
                    Some(p) => p.render(&scope)?,
                    None => lp.clone(),
                });
            }
            Ok(Outcome::main(J::Array(results)))
        })())
    }
}

struct ExplodeExec {
    path: Field,
    to: String,
    limit: usize,
}

impl Executable for ExplodeExec {
    fn execute<'a>(&'a self, cx: &'a ExecCx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        ready((|| {
            // A list read in place in an upstream event is walked there, one
            // element copied at a time (a million-item body is not copied
            // whole); anything else is rendered.
            let in_place = self.path.source(&cx.scope).and_then(|(event, path)| {
                match tale_core::runtime::render::resolve_in(&event.output, &path) {
                    Some(J::Array(a)) => Some(a.len()),
                    _ => None,
                }
                .map(|total| (event, path, total))
            });
            let (items, total): (Box<dyn Iterator<Item = J> + Send>, usize) = match in_place {
                Some((event, path, total)) => {
                    // The element is looked up again each time: the iterator
                    // owns the event, so it cannot hold a borrow of its list.
                    let walk =
                        (0..total).map(
                            move |i| match tale_core::runtime::render::resolve_in(&event.output, &path) {
                                Some(J::Array(a)) => a.get(i).cloned().unwrap_or(J::Null),
                                _ => J::Null,
                            },
                        );
                    (Box::new(walk), total)
                }
                _ => {
                    let items = as_list(self.path.render(&cx.scope)?, "the explode `path`")?;
                    let total = items.len();
                    (Box::new(items.into_iter()), total)
                }
            };
            let size = total.min(self.limit);
            // Dropping elements is never silent: the run logs it.
            let trace = if total > self.limit {
                vec![json!({"log_error": format!(
                    "the list has {total} elements; only the first {} are exploded (`limit`)",
                    self.limit
                )})]
            } else {
                Vec::new()
            };
            // Derived from the input event and the action: when a crash makes
            // the explode run again, the elements not yet committed carry the
            // same guid as those that were (an implode still closes).
            let origin = cx
                .scope
                .input
                .map_or_else(|| cx.run_id.to_string(), |e| e.id.to_string());
            let guid = tale_core::runtime::event::derived_id(&[&origin, cx.slug, "explode"]).to_string();
            let to = self.to.clone();
            // Lazily: the executor pulls elements as its queue drains.
            let rest = items.take(self.limit).enumerate().map(move |(index, item)| {
                let mut o = serde_json::Map::new();
                o.insert(to.clone(), item);
                o.insert("index".into(), json!(index));
                o.insert("size".into(), json!(size));
                o.insert("guid".into(), json!(guid));
                Emit::Main(J::Object(o))
            });
            Ok(Outcome {
                rest: Some(Box::new(rest)),
                trace,
                ..Outcome::default()
            })
        })())
    }
}

struct ImplodeExec {
    guid_path: Field,
    size_path: Field,
    item_path: Option<Field>,
    seconds: u64,
}

impl ImplodeExec {
    /// The window's bookkeeping `{count, done}` and where its items are kept.
    fn keys(cx: &ExecCx<'_>, guid: &str) -> (String, String) {
        (
            cx.state_key(&format!("implode/{guid}")),
            cx.state_key(&format!("implode/{guid}/items")),
        )
    }

    /// Emits the items and closes the window.
    async fn close(cx: &ExecCx<'_>, guid: &str, last: Option<J>) -> Result<Outcome, ActionError> {
        let (meta, list) = Self::keys(cx, guid);
        let mut items = cx.store.state_list(&list).await?;
        items.extend(last);
        Ok(Outcome {
            emits: vec![Emit::Main(J::Array(items))],
            state: vec![StatePut::set(meta, json!({"done": true})), StatePut::delete(list)],
            cancel: vec![json!({"guid": guid})],
            ..Outcome::default()
        })
    }
}

impl Executable for ImplodeExec {
    fn stateful(&self) -> bool {
        true
    }

    fn execute<'a>(&'a self, cx: &'a ExecCx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        Box::pin(async move {
            let guid = self.guid_path.render_text(&cx.scope)?;
            if guid.is_empty() {
                return Err(failed(
                    "the implode `guid_path` rendered empty: is it the explode's guid?",
                ));
            }
            let size_value = self.size_path.render(&cx.scope)?;
            let size = number(&size_value)
                .filter(|n| *n >= 0.0)
                .ok_or_else(|| failed(format!("the implode `size_path` is not a number: {size_value}")))?
                as usize;
            let item = match &self.item_path {
                Some(f) => f.render(&cx.scope)?,
                None => cx.input().clone(),
            };
            let (meta, list) = Self::keys(cx, &guid);
            let state = cx
                .store
                .state(&meta)
                .await?
                .unwrap_or_else(|| json!({"count": 0, "done": false}));
            if state["done"] == J::Bool(true) {
                // The window closed: a late item is dropped, as Tines does.
                return Ok(Outcome::default());
            }
            let count = state["count"].as_u64().unwrap_or(0) as usize + 1;
            if count >= size {
                return Self::close(cx, &guid, Some(item)).await;
            }
            let mut outcome = Outcome {
                state: vec![
                    StatePut::set(meta, json!({"count": count, "done": false})),
                    StatePut::push(list, item),
                ],
                ..Outcome::default()
            };
            if count == 1 {
                outcome.emits.push(Emit::Later {
                    at_ms: cx.clock.now_ms().saturating_add(secs_to_ms(self.seconds)),
                    payload: json!({"guid": guid}),
                });
            }
            Ok(outcome)
        })
    }

    fn wake<'a>(&'a self, cx: &'a ExecCx<'a>, payload: J) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        Box::pin(async move {
            let guid = payload["guid"].as_str().unwrap_or_default().to_owned();
            let (meta, _) = Self::keys(cx, &guid);
            match cx.store.state(&meta).await? {
                Some(state) if state["done"] != J::Bool(true) => Self::close(cx, &guid, None).await,
                // Completed, or never started.
                _ => Ok(Outcome::default()),
            }
        })
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
                let output = match cx.input() {
                    J::Object(o) => {
                        let mut o = o.clone();
                        o.insert("unique_event".into(), J::Bool(unique));
                        J::Object(o)
                    }
                    other => json!({"value": other, "unique_event": unique}),
                };
                outcome.emits.push(Emit::Main(output));
            }
            Ok(outcome)
        })
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
                emits: vec![Emit::Main(cx.input().clone())],
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

impl TransformConfig {
    pub(crate) fn build_exec(&self, c: &Compiler<'_>) -> Result<Box<dyn Executable>, CompileError> {
        let field = |name: &str, s: &Spanned<String>| c.field(name, &s.value, s.span);
        Ok(match self {
            TransformConfig::MessageOnly(m) => Box::new(MessageOnlyExec {
                payload: m.payload.as_ref().map(|p| c.tree("payload", p)).transpose()?,
                loop_over: m.loop_over.as_ref().map(|l| field("loop", l)).transpose()?,
            }),
            TransformConfig::Explode(e) => Box::new(ExplodeExec {
                path: field("path", &e.path)?,
                to: e.to.value.clone(),
                limit: e.limit.as_ref().map_or(500, |l| l.value as usize),
            }),
            TransformConfig::Implode(i) => Box::new(ImplodeExec {
                guid_path: field("guid_path", &i.guid_path)?,
                size_path: field("size_path", &i.size_path)?,
                item_path: i.item_path.as_ref().map(|p| field("item_path", p)).transpose()?,
                seconds: i.seconds.as_ref().map_or(60, |s| s.value),
            }),
            TransformConfig::Extract(x) => Box::new(ExtractExec {
                matchers: x
                    .matchers
                    .value
                    .iter()
                    .enumerate()
                    .map(|(n, m)| {
                        let re = regex::Regex::new(&m.regexp.value).map_err(|e| CompileError {
                            field: format!("matchers[{n}].regexp"),
                            message: e.to_string(),
                        })?;
                        Ok((field(&format!("matchers[{n}].path"), &m.path)?, re, m.to.value.clone()))
                    })
                    .collect::<Result<_, CompileError>>()?,
            }),
            TransformConfig::Deduplicate(d) => Box::new(DeduplicateExec {
                path: field("path", &d.path)?,
                lookback: d.lookback.as_ref().map_or(1000, |l| l.value as usize),
                period_secs: d.period_secs.as_ref().map(|p| p.value),
                emit_duplicates: d.emit_duplicates.unwrap_or(false),
            }),
            TransformConfig::Delay(d) => Box::new(DelayExec {
                seconds: d.seconds.as_ref().map(|s| c.tree("seconds", s)).transpose()?,
                until: d.until.as_ref().map(|u| field("until", u)).transpose()?,
            }),
            TransformConfig::Throttle(t) => Box::new(ThrottleExec {
                interval_ms: secs_to_ms(t.interval.value),
                runs_per_interval: t.runs_per_interval.as_ref().map_or(1, |r| r.value as usize),
                events_per_run: t.events_per_run.as_ref().map_or(1, |r| r.value as usize),
                key: t.throttle_key.as_ref().map(|k| field("throttle_key", k)).transpose()?,
            }),
        })
    }
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
