//! `send_to_story`: calls another story through its `entry` webhook and
//! emits the output of the exit that fired.

use futures_util::future::BoxFuture;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value as J, json};
use tale_core::action::{
    ActionConfig, ActionError, CompileError, Compiler, Emit, ExecCx, Executable, Outcome, StoryCall, TemplateField,
};
use tale_core::runtime::render::{Field, Tree};
use tale_core::span::Spanned;
use tale_core::yaml::Node;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendToStoryConfig {
    /// The story's id (its file stem or `id:`), a path ending in `.yaml`,
    /// or `{% story Name %}`.
    pub story: Spanned<String>,
    /// What the sub-story receives; its keys are checked against the
    /// sub-story's `inputs`.
    pub payload: Option<Node>,
    /// Deliver the payload under `body` like an HTTP request (default true).
    pub send_payload_as_body: Option<bool>,
}

impl ActionConfig for SendToStoryConfig {
    fn type_name(&self) -> &'static str {
        "send_to_story"
    }

    fn branches(&self) -> &'static [&'static str] {
        &["failure"]
    }

    fn build(&self, compiler: &Compiler<'_>) -> Result<Box<dyn Executable>, CompileError> {
        self.build_exec(compiler)
    }

    fn templates<'a>(&'a self, out: &mut Vec<TemplateField<'a>>) {
        out.push(TemplateField::new("story", &self.story.value, self.story.span));
        if let Some(p) = &self.payload {
            TemplateField::collect_node("payload", p, out);
        }
    }

    fn story_call(&self) -> Option<StoryCall<'_>> {
        Some(StoryCall {
            story: &self.story.value,
            story_span: self.story.span,
            payload: self.payload.as_ref(),
        })
    }
}

struct SendToStoryExec {
    story: Field,
    payload: Option<Tree>,
    as_body: bool,
}

impl Executable for SendToStoryExec {
    /// The stored call's result: `{"called": {story, run_id, output}}` when
    /// an exit fired, `output: null` with the run's `errors` when it ended
    /// without one, `refused` when it could not start. The same outcomes
    /// as a call in memory.
    fn wake<'a>(&'a self, _cx: &'a ExecCx<'a>, payload: J) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        Box::pin(async move {
            let called = &payload["called"];
            let id = called["story"].as_str().unwrap_or_default().to_owned();
            let failure = |error: String| Outcome {
                emits: vec![Emit::Branch("failure", json!({"story": id, "error": error}))],
                ..Outcome::default()
            };
            if let Some(why) = called["refused"].as_str() {
                return Ok(failure(why.to_owned()));
            }
            let trace = vec![json!({"sub_story": id, "run_id": called["run_id"]})];
            let mut outcome = if called["exit"] == J::Bool(true) {
                Outcome::main(called["output"].clone())
            } else {
                let errors: Vec<String> = called["errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect();
                without_exit(&id, &errors)?
            };
            outcome.trace = trace;
            Ok(outcome)
        })
    }

    fn execute<'a>(&'a self, cx: &'a ExecCx<'a>) -> BoxFuture<'a, Result<Outcome, ActionError>> {
        Box::pin(async move {
            let target = self.story.render_text(&cx.scope)?;
            // `{% story Name %}` and paths name a story the way `check` reads them.
            let id = tale_core::template::call_target(&target)
                .map(|t| {
                    let stem = t.rsplit('/').next().unwrap_or(&t);
                    stem.trim_end_matches(".yaml").trim_end_matches(".yml").to_owned()
                })
                .unwrap_or(target);
            let payload = match &self.payload {
                Some(p) => p.render(&cx.scope)?,
                None => json!({}),
            };
            // The call is a stored run this action waits for: it comes back
            // in `wake` with the result.
            Ok(Outcome {
                emits: vec![Emit::Call {
                    story: id,
                    payload,
                    as_body: self.as_body,
                }],
                ..Outcome::default()
            })
        })
    }
}

/// A sub-story that ended without reaching an exit. Quietly, or on
/// `failure` branches nobody in it followed: the caller's `failure` branch,
/// with the reasons. With actions that failed: the call fails too, so that
/// the error travels up to the run that started it all.
fn without_exit(id: &str, errors: &[String]) -> Result<Outcome, ActionError> {
    let unhandled = |e: &String| e.contains(tale_core::runtime::contract::UNHANDLED_FAILURE);
    if errors.iter().all(unhandled) {
        let error = if errors.is_empty() {
            format!("story `{id}` ended without reaching an exit")
        } else {
            format!("story `{id}` ended without reaching an exit ({})", errors.join("; "))
        };
        return Ok(Outcome {
            emits: vec![Emit::Branch("failure", json!({"story": id, "error": error}))],
            ..Outcome::default()
        });
    }
    Err(ActionError::Failed(format!(
        "story `{id}` failed without reaching an exit ({})",
        errors.join("; ")
    )))
}

impl SendToStoryConfig {
    fn build_exec(&self, c: &Compiler<'_>) -> Result<Box<dyn Executable>, CompileError> {
        Ok(Box::new(SendToStoryExec {
            story: c.field("story", &self.story.value, self.story.span)?,
            payload: self.payload.as_ref().map(|p| c.tree("payload", p)).transpose()?,
            as_body: self.send_payload_as_body.unwrap_or(true),
        }))
    }
}
