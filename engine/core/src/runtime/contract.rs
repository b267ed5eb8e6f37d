//! The contract between the engine and an action at run time: what an
//! action may use while it runs (`ExecCx`) and what it gives back
//! (`Outcome`, `Emit`, `ActionError`); what a webhook receives and answers.

use serde_json::Value as J;
use tale_template::raw::RawJson;

use super::clock::Clock;
use super::event::{EventId, Output, RunId};
use super::http::HttpClient;
use super::mail::Mailer;
use super::render::RenderError;
use super::rules::Rules;
use super::scope::Scope;
use super::store::{StatePut, StateStore, StoreError};

/// What an action produced for one input.
#[derive(Debug)]
pub enum Emit {
    /// An event on the main output.
    Main(J),
    /// An event on the main output kept as JSON text (a large list: an
    /// implode's items), read in place by the templates after it.
    Text(RawJson),
    /// An event on a named branch (`failure`, `no_match`).
    Branch(&'static str, J),
    /// Come back at `at_ms` with `payload` (delay, implode window).
    Later { at_ms: i64, payload: J },
    /// Call the sub-story `story` with `payload` and come back (`wake`)
    /// with what it did: `{"called": {...}}`. Only the durable executor
    /// takes it; the action's `wake` gets the result.
    Call { story: String, payload: J, as_body: bool },
}

/// An output on the main branch: parsed, or kept as text.
impl From<super::event::Output> for Emit {
    fn from(output: super::event::Output) -> Self {
        match output {
            super::event::Output::Json(j) => Emit::Main(j),
            super::event::Output::Raw { raw, .. } => Emit::Text(raw),
        }
    }
}

#[derive(Default)]
pub struct Outcome {
    pub emits: Vec<Emit>,
    pub state: Vec<StatePut>,
    /// What a dry-run trace shows besides input and output (rendered requests).
    pub trace: Vec<J>,
    /// Payloads of this action's pending `Later`s that are no longer needed
    /// (an implode that completed before its window closed).
    pub cancel: Vec<J>,
    /// More emits, pulled only as the queue drains (an explode of a long
    /// list): the queue stays bounded instead of holding every element.
    pub rest: Option<LazyEmits>,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome")
            .field("emits", &self.emits)
            .field("state", &self.state)
            .field("rest", &self.rest.is_some())
            .finish()
    }
}

/// Emits produced on demand (an explode of a long list).
pub type LazyEmits = Box<dyn Iterator<Item = Emit> + Send>;
impl Outcome {
    pub fn main(output: J) -> Self {
        Self {
            emits: vec![Emit::Main(output)],
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything an action may use while it runs.
pub struct ExecCx<'a> {
    pub scope: Scope<'a>,
    pub http: &'a dyn HttpClient,
    pub mail: &'a dyn Mailer,
    pub clock: &'a dyn Clock,
    pub store: &'a dyn StateStore,
    /// The action's `rules` (a trigger evaluates them itself).
    pub rules: &'a Rules,
    pub story_id: &'a str,
    pub slug: &'a str,
    pub run_id: RunId,
}

impl ExecCx<'_> {
    /// The output of the event the action received (`null` for a start).
    pub fn input(&self) -> &J {
        self.scope.input.map_or(&J::Null, |e| e.output())
    }

    /// The input's output passed on, with the member `key` added when one
    /// is given (inside an object, else as `{"value": input, key: value}`).
    /// A large input kept as JSON text stays text instead of being parsed
    /// whole.
    pub fn passed_on(&self, member: Option<(&str, J)>) -> Result<Emit, ActionError> {
        if let Some(raw) = self.scope.input.and_then(|e| e.held_output().raw()) {
            return Ok(Emit::Text(match member {
                Some((key, value)) => raw
                    .with_member(key, &value)
                    .map_err(|e| ActionError::Failed(e.to_string()))?,
                None => raw.clone(),
            }));
        }
        Ok(Emit::Main(match member {
            Some((key, value)) => with_member(self.input(), key, value),
            None => self.input().clone(),
        }))
    }

    pub fn input_id(&self) -> Option<EventId> {
        self.scope.input.map(|e| e.id)
    }

    /// A key for this action's state in the store.
    pub fn state_key(&self, suffix: &str) -> String {
        format!("{}/{}/{suffix}", self.story_id, self.slug)
    }
}

/// `value` with the member `key` added (inside an object, else as
/// `{"value": value, key: member}`): what a trigger or a deduplicate adds.
pub fn with_member(value: &J, key: &str, member: J) -> J {
    match value {
        J::Object(o) => {
            let mut o = o.clone();
            o.insert(key.to_owned(), member);
            J::Object(o)
        }
        other => {
            let mut o = serde_json::Map::with_capacity(2);
            o.insert("value".to_owned(), other.clone());
            o.insert(key.to_owned(), member);
            J::Object(o)
        }
    }
}

/// An HTTP request arriving at a webhook (or synthesized by `tale run`).
#[derive(Debug, Clone, Default)]
pub struct WebhookRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The secret presented in the URL or as `Authorization: Bearer`.
    pub secret: Option<String>,
    /// Trusted callers (`tale run`, sub-story calls) skip the secret check.
    pub trusted: bool,
    /// The body is the webhook's whole output (a sub-story call with
    /// `send_payload_as_body: false`).
    pub whole_output: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookResponse {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WebhookResult {
    /// The request starts a run with this output.
    Accepted { output: Output, response: WebhookResponse },
    /// Answered, but no run starts (the rules did not match).
    Ignored { response: WebhookResponse },
    /// Refused: wrong verb, secret or signature, body too large…
    Refused { status: u16, message: String },
}

/// Ends the reason a run failed on a `failure` branch nobody follows (a
/// caller of that run tells such a failure from an action's error by it).
pub const UNHANDLED_FAILURE: &str = "(the `failure` branch, which no action follows)";
