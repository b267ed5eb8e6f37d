//! `message_only`: emits a payload built from templates, once or once per
//! element of `loop`.

use super::*;

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

impl MessageOnly {
    pub(super) fn templates<'a>(&'a self, out: &mut Vec<TemplateField<'a>>) {
        if let Some(l) = &self.loop_over {
            push(out, "loop", l);
        }
        if let Some(p) = &self.payload {
            let names = if self.loop_over.is_some() { LOOP_NAMES } else { &[] };
            TemplateField::collect_node_with("payload", p, names, out);
        }
    }

    pub(super) fn build(&self, c: &Compiler<'_>) -> Result<Box<dyn Executable>, CompileError> {
        Ok(Box::new(MessageOnlyExec {
            payload: self.payload.as_ref().map(|p| c.tree("payload", p)).transpose()?,
            loop_over: self.loop_over.as_ref().map(|l| field(c, "loop", l)).transpose()?,
        }))
    }
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
