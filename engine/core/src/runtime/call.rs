//! Calls into sub-stories (`send_to_story`): the payload reaches the
//! sub-story's entry webhook, declared inputs are validated, and the output
//! is the payload of the first exit that fires. A sub-run is a run of its own,
//! linked to its caller's in traces.

use std::sync::Arc;

use serde_json::Value as J;

use super::build::BuiltStory;
use super::contract::WebhookRequest;
use crate::model::InputType;

/// How deep calls may nest at run time (`check` already refuses recursion).
pub const MAX_DEPTH: usize = 16;

/// Why a call cannot go on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// Calls nest too deep: the calling action fails, so that the error
    /// travels up through every caller.
    #[error("calls nest deeper than {MAX_DEPTH} stories (a loop between stories?)")]
    TooDeep,
}

/// The story a call reaches, its entry webhook, and the request it gets:
/// refused (why) for an unknown story, one without `entry`, or inputs the
/// payload does not satisfy. Shared by calls in memory and stored calls.
pub fn prepare_call(
    library: &Library,
    story_id: &str,
    payload: &J,
    as_body: bool,
) -> Result<(Arc<BuiltStory>, usize, WebhookRequest), String> {
    let story = library
        .get(story_id)
        .cloned()
        .ok_or_else(|| format!("story `{story_id}` is not available (is it in the story's folder or --stories?)"))?;
    let entry = story
        .entry
        .ok_or_else(|| format!("story `{story_id}` cannot be called: it has no `entry`"))?;
    validate_inputs(&story, payload)?;
    let request = WebhookRequest {
        method: "post".into(),
        path: story.actions[entry].webhook_path.clone().unwrap_or_default(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::to_vec(payload).map_err(|e| e.to_string())?,
        trusted: true,
        whole_output: !as_body,
        ..WebhookRequest::default()
    };
    Ok((story, entry, request))
}

/// The callable stories, by id.
pub type Library = std::collections::HashMap<String, Arc<BuiltStory>>;

/// Checks a payload against the sub-story's declared inputs.
pub fn validate_inputs(story: &BuiltStory, payload: &J) -> Result<(), String> {
    let Some(inputs) = &story.inputs else { return Ok(()) };
    let J::Object(given) = payload else {
        return Err(format!(
            "story `{}` takes inputs: the payload must be an object",
            story.id
        ));
    };
    for (name, input) in inputs {
        match given.get(name) {
            // A template that rendered nothing is as good as absent.
            None | Some(J::Null) if input.required => {
                return Err(format!(
                    "the call leaves out the required input `{name}` of `{}`",
                    story.id
                ));
            }
            Some(J::String(s)) if input.required && s.is_empty() => {
                return Err(format!(
                    "the call leaves out the required input `{name}` of `{}`",
                    story.id
                ));
            }
            Some(value) if !value.is_null() => {
                if let Some(kind) = &input.kind {
                    let ok = match kind.value {
                        InputType::String => value.is_string(),
                        InputType::Number => value.is_number(),
                        InputType::Boolean => value.is_boolean(),
                        InputType::Object => value.is_object(),
                        InputType::Array => value.is_array(),
                    };
                    if !ok {
                        return Err(format!(
                            "input `{name}` of `{}` is a {}, the call passes {}",
                            story.id,
                            kind.value.as_str(),
                            value
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(unknown) = given.keys().find(|k| !inputs.contains_key(*k)) {
        return Err(format!("story `{}` has no input `{unknown}`", story.id));
    }
    Ok(())
}
