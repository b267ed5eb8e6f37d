//! `explode`: one event per element of a list, emitted lazily as the
//! executor's queue drains.

use std::sync::Arc;

use tale_core::runtime::event::Event;
use tale_core::runtime::render::{Segment, resolve_in, resolve_raw};

use super::*;

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

impl Explode {
    pub(super) fn templates<'a>(&'a self, out: &mut Vec<TemplateField<'a>>) {
        push(out, "path", &self.path);
    }

    pub(super) fn check(&self, cx: &mut ValueCx<'_>) {
        if self.to.value.trim().is_empty() {
            cx.report(
                Code::InvalidValue,
                self.to.span,
                "`to` names the key each element is emitted under; it cannot be empty",
            );
        }
        if let Some(l) = &self.limit {
            cx.range("limit", l, 1, MAX_EXPLODE, "elements");
        }
    }

    pub(super) fn build(&self, c: &Compiler<'_>) -> Result<Box<dyn Executable>, CompileError> {
        Ok(Box::new(ExplodeExec {
            path: field(c, "path", &self.path)?,
            to: self.to.value.clone(),
            limit: self.limit.as_ref().map_or(500, |l| l.value as usize),
        }))
    }
}

type Elements = Box<dyn Iterator<Item = J> + Send>;

/// The elements of the list at `path` in `event`, each copied (or parsed)
/// when the executor pulls it, and how many there are; `None` when the
/// path holds no list. The element is looked up again each time: the
/// iterator owns the event, so it cannot hold a borrow of its list.
fn in_place((event, path): (Arc<Event>, Vec<Segment>)) -> Option<(Elements, usize)> {
    if let Some(raw) = event.held_output().raw() {
        let list = resolve_raw(raw, &path).filter(|l| l.is_array())?;
        let total = list.len();
        let walk = (0..total).map(move |i| {
            let list = event.held_output().raw().and_then(|raw| resolve_raw(raw, &path));
            list.and_then(|l| l.element(i as i64)).map_or(J::Null, |e| e.to_json())
        });
        return Some((Box::new(walk), total));
    }
    let total = match resolve_in(event.output(), &path) {
        Some(J::Array(a)) => a.len(),
        _ => return None,
    };
    let walk = (0..total).map(move |i| match resolve_in(event.output(), &path) {
        Some(J::Array(a)) => a.get(i).cloned().unwrap_or(J::Null),
        _ => J::Null,
    });
    Some((Box::new(walk), total))
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
            // whole; kept as text, it is not even parsed whole); anything
            // else is rendered.
            let (items, total) = match self.path.source(&cx.scope).and_then(in_place) {
                Some(walk) => walk,
                None => {
                    let items = as_list(self.path.render(&cx.scope)?, "the explode `path`")?;
                    let total = items.len();
                    (Box::new(items.into_iter()) as Elements, total)
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
