//! `send_to_story`: calls another story through its `entry` webhook and
//! emits the output of the exit that fired.

use schemars::JsonSchema;
use serde::Deserialize;
use tale_engine::action::{ActionConfig, StoryCall, TemplateField};
use tale_engine::span::Spanned;
use tale_engine::yaml::Node;

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

    fn build(
        &self,
        _compiler: &tale_engine::action::Compiler<'_>,
    ) -> Result<Box<dyn tale_engine::action::Executable>, tale_engine::action::CompileError> {
        Ok(Box::new(NotYet))
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

/// Refuses to run, clearly, until the feature lands (the checker already
/// validates the action).
struct NotYet;

impl tale_engine::action::Executable for NotYet {
    fn execute<'a>(
        &'a self,
        _cx: &'a tale_engine::action::ExecCx<'a>,
    ) -> futures_util::future::BoxFuture<'a, Result<tale_engine::action::Outcome, tale_engine::action::ActionError>>
    {
        Box::pin(std::future::ready(Err(tale_engine::action::ActionError::Failed(
            "send_to_story runs sub-stories from the sub-story milestone on; this version checks calls but cannot make them".into(),
        ))))
    }
}
