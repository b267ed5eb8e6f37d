//! `implode`: collects the events of one explode back into one list; the
//! window's count and items are action state, its deadline a stored wake-up.

use tale_core::runtime::event::Output;
use tale_core::runtime::store::append_json;

use super::*;

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

impl Implode {
    pub(super) fn templates<'a>(&'a self, out: &mut Vec<TemplateField<'a>>) {
        push(out, "guid_path", &self.guid_path);
        push(out, "size_path", &self.size_path);
        if let Some(p) = &self.item_path {
            push(out, "item_path", p);
        }
    }

    pub(super) fn check(&self, cx: &mut ValueCx<'_>) {
        if let Some(s) = &self.seconds {
            cx.range("seconds", s, 0, MAX_SECONDS, "seconds");
        }
    }

    pub(super) fn build(&self, c: &Compiler<'_>) -> Result<Box<dyn Executable>, CompileError> {
        Ok(Box::new(ImplodeExec {
            guid_path: field(c, "guid_path", &self.guid_path)?,
            size_path: field(c, "size_path", &self.size_path)?,
            item_path: self.item_path.as_ref().map(|p| field(c, "item_path", p)).transpose()?,
            seconds: self.seconds.as_ref().map_or(60, |s| s.value),
        }))
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
        // Joined as text: a large list stays text, read in place by the
        // templates after it (a million items parsed would take ~1 GB).
        let stored = cx.store.state_list_text(&list).await?;
        let text = append_json(&stored, last.as_slice());
        let items = Output::from_text(text).map_err(|e| failed(format!("the stored items do not parse: {e}")))?;
        Ok(Outcome {
            emits: vec![items.into()],
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
