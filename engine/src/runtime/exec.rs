//! The executor: runs a story's graph on tokio. A work item is (action,
//! input event); items of all branches run concurrently up to a bound;
//! delays and implode windows wait on the clock (virtual in a dry run).

use std::sync::Arc;

use serde_json::{Value as J, json};

use super::build::{BuiltAction, BuiltStory};
use super::clock::Clock;
pub use super::contract::{
    ActionError, Emit, ExecCx, LazyEmits, Outcome, UNHANDLED_FAILURE, WebhookRequest, WebhookResponse, WebhookResult,
};
use super::event::{Event, EventId, Output, RunId};
use super::http::HttpClient;
use super::mail::Mailer;
use super::scope::{LazyMeta, Scope};
use super::store::{StateStore, StoreError};
use crate::story::Edge;

/// Progress of a long run: (events so far, action runs waiting).
pub type ProgressFn = Arc<dyn Fn(usize, usize) + Send + Sync>;
/// Sees every event as it is committed.
pub type EventFn = Arc<dyn Fn(&Event) + Send + Sync>;

/// One action run of a story run, for traces.
#[derive(Debug, Clone)]
pub struct TraceEntry {
    pub action: String,
    pub input: Option<EventId>,
    pub input_output: J,
    pub details: Vec<J>,
    pub emitted: Vec<(Option<&'static str>, J)>,
    pub skipped: Option<&'static str>,
    pub error: Option<String>,
    pub at_ms: i64,
}

impl TraceEntry {
    pub fn to_json(&self) -> J {
        json!({
            "action": self.action,
            "input_event": self.input.map(|i| i.to_string()),
            "input": self.input_output,
            "requests": self.details,
            "emitted": self.emitted.iter().map(|(b, o)| json!({"branch": b, "output": o})).collect::<Vec<_>>(),
            "skipped": self.skipped,
            "error": self.error,
            "at_ms": self.at_ms,
        })
    }
}

/// The result of one run.
#[derive(Debug)]
pub struct RunReport {
    pub run_id: RunId,
    /// The run's events, when `Runtime::keep_events`.
    pub events: Vec<Arc<Event>>,
    /// How many events the run produced.
    pub event_count: usize,
    /// Actions that failed, with why; the rest of the run went on.
    pub errors: Vec<(String, String)>,
    /// Problems logged without failing (`log_error_on_status`).
    pub logged: Vec<(String, String)>,
    pub trace: Vec<TraceEntry>,
    pub response: Option<WebhookResponse>,
    /// The story state after the run (`STATE`), by name: the names its
    /// actions set or read.
    pub state: serde_json::Map<String, J>,
}

impl RunReport {
    pub fn succeeded(&self) -> bool {
        self.errors.is_empty()
    }
}

/// What a run needs: the HTTP client, the clock, the store.
#[derive(Clone)]
pub struct Runtime {
    pub http: Arc<dyn HttpClient>,
    pub mail: Arc<dyn Mailer>,
    pub clock: Arc<dyn Clock>,
    pub store: Arc<dyn StateStore>,
    /// Work items in flight at once within a run (1: strictly in order).
    pub max_in_flight: usize,
    pub trace: bool,
    /// Called now and then during a long run with (events so far, items waiting).
    pub progress: Option<ProgressFn>,
    /// Called with every event as it is committed (`tale run` prints them).
    pub on_event: Option<EventFn>,
    /// Keep the run's events in the report (traces, tests); without it a long
    /// run holds only the events still needed by pending work.
    pub keep_events: bool,
    /// Stories `send_to_story` may call, by id.
    pub library: Arc<super::call::Library>,
    /// Where `{% story_run_link %}` and `{% prompt %}` links point (none:
    /// they render empty).
    pub links: Option<Arc<super::links::Links>>,
    /// The story state an in-process run starts with (`STATE`), by name.
    pub story_state: serde_json::Map<String, J>,
}

struct Item {
    action: usize,
    input: Option<Arc<Event>>,
    wake: Option<J>,
}

struct Step {
    result: Result<Outcome, ActionError>,
    skipped: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    #[error("the story has no action `{0}`")]
    NoSuchAction(String),
    #[error("`{0}` is not a webhook")]
    NotAWebhook(String),
    #[error("the webhook refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Failed(String),
}

impl Runtime {
    /// A self-contained run over an in-memory store, one work item at a time,
    /// keeping every event for the report: what dry runs, story tests and
    /// benchmarks need. Change a field with `Runtime { trace: true, ..contained }`.
    pub fn contained(http: Arc<dyn HttpClient>, mail: Arc<dyn Mailer>, clock: Arc<dyn Clock>) -> Self {
        Runtime {
            http,
            mail,
            clock,
            store: Arc::new(super::store::MemoryStore::new()),
            max_in_flight: 1,
            trace: false,
            progress: None,
            on_event: None,
            keep_events: true,
            library: Default::default(),
            links: None,
            story_state: Default::default(),
        }
    }

    /// Asks the webhook `action` whether it takes `request`: the output of the
    /// run it would start, and the answer to give (nothing is stored yet).
    pub fn accept(
        &self,
        story: &BuiltStory,
        action: usize,
        request: &WebhookRequest,
        run_id: RunId,
    ) -> Result<WebhookResult, RunError> {
        let a = story
            .actions
            .get(action)
            .ok_or_else(|| RunError::NoSuchAction(action.to_string()))?;
        let build = || {
            json!({
                "run": {"id": run_id.to_string()},
                "action": {"slug": &*a.slug, "name": a.name},
                "story": {"id": &*story.id, "name": story.name},
            })
        };
        let meta = LazyMeta::new(&build);
        let mut scope = Scope::new(&story.globals, None);
        scope.meta = Some(&meta);
        scope.now_ms = Some(self.clock.now_ms());
        let cx = self.cx(scope, story, a, run_id);
        a.exec
            .accept(request, &cx)
            .ok_or_else(|| RunError::NotAWebhook(a.slug.to_string()))
    }

    /// Delivers a request to the webhook `action` and runs the story to
    /// completion, on the one executor (see [`super::local`]).
    pub async fn run_webhook(
        &self,
        story: Arc<BuiltStory>,
        action: usize,
        request: WebhookRequest,
    ) -> Result<RunReport, RunError> {
        super::local::run_local(self, story, action, Some(request)).await
    }

    /// Executes one work item outside a run loop (the durable executor of
    /// `tale serve`): the action's outcome, or why it was skipped.
    pub async fn execute_item(
        &self,
        story: Arc<BuiltStory>,
        run_id: RunId,
        action: usize,
        input: Option<Arc<Event>>,
        wake: Option<J>,
    ) -> (Result<Outcome, ActionError>, Option<&'static str>) {
        let step = self.clone().step(story, run_id, Item { action, input, wake }).await;
        (step.result, step.skipped)
    }

    /// Runs a story from its scheduled action `action`, as one tick of its
    /// schedule: the action runs with no input event.
    pub async fn run_scheduled(&self, story: Arc<BuiltStory>, action: usize) -> Result<RunReport, RunError> {
        super::local::run_local(self, story, action, None).await
    }

    fn cx<'a>(&'a self, scope: Scope<'a>, story: &'a BuiltStory, action: &'a BuiltAction, run_id: RunId) -> ExecCx<'a> {
        ExecCx {
            scope,
            http: &*self.http,
            mail: &*self.mail,
            clock: &*self.clock,
            store: &*self.store,
            rules: &action.rules,
            story_id: &story.id,
            slug: &action.slug,
            run_id,
        }
    }

    /// The actions an event of `action` on `branch` goes to.
    /// Why the run fails when `action` took its `failure` branch and no
    /// action follows that branch (a handled failure is a normal outcome).
    /// The reason ends with [`UNHANDLED_FAILURE`].
    pub fn unhandled_failure(story: &BuiltStory, action: usize, branch: Option<&str>, event: &Event) -> Option<String> {
        if branch != Some("failure") || Self::downstream(story, action, branch).next().is_some() {
            return None;
        }
        Some(match event.output().get("error").and_then(J::as_str) {
            Some(e) => format!("{e} {UNHANDLED_FAILURE}"),
            None => format!("took the `failure` branch {UNHANDLED_FAILURE}"),
        })
    }

    pub fn downstream(story: &BuiltStory, action: usize, branch: Option<&str>) -> impl Iterator<Item = usize> {
        story.actions[action]
            .downstream
            .iter()
            .filter(move |(_, edge)| match (edge, branch) {
                (Edge::Main, None) => true,
                (Edge::Branch(b), Some(x)) => b == x,
                _ => false,
            })
            .map(|(target, _)| *target)
    }

    async fn step(self, story: Arc<BuiltStory>, run_id: RunId, item: Item) -> Step {
        let at_ms = self.clock.now_ms();
        let action = &story.actions[item.action];
        if action.disabled {
            return Step {
                result: Ok(Outcome::default()),
                skipped: Some("disabled"),
            };
        }
        // A prompted execution's wait ended: a click, or its expiry.
        if let Some(prompt) = item.wake.as_ref().and_then(|w| w.get("prompt")) {
            return Step {
                result: Ok(prompt_answered(prompt)),
                skipped: None,
            };
        }
        // How long a prompted execution waits for its answer.
        let expires = at_ms.saturating_add(self.links.as_ref().map_or(0, |l| l.prompt_ttl_ms));
        let prompt_expires = self
            .links
            .as_ref()
            .filter(|l| l.wait && !action.prompts.is_empty())
            .map(|_| expires);
        // `META`, with its page in the web UI and a signed link per prompt
        // status.
        let build = || {
            let mut meta = json!({
                "run": {"id": run_id.to_string()},
                "event": {"id": item.input.as_ref().map(|e| e.id.to_string())},
                "action": {"slug": &*action.slug, "name": action.name},
                "story": {"id": &*story.id, "name": story.name},
            });
            if let Some(links) = &self.links {
                if action.run_link {
                    meta["run"]["link"] = J::String(links.run_link(run_id));
                }
                if !action.prompts.is_empty() {
                    let prompts: serde_json::Map<String, J> = action
                        .prompts
                        .iter()
                        .map(|status| {
                            let claim = super::links::PromptClaim {
                                run: run_id.to_string(),
                                action: action.slug.to_string(),
                                input: item.input.as_ref().map(|e| e.id.to_string()),
                                status: status.clone(),
                                expires_ms: expires,
                            };
                            (status.clone(), J::String(links.prompt_link(&claim)))
                        })
                        .collect();
                    meta["prompt"] = J::Object(prompts);
                }
            }
            meta
        };
        let meta = LazyMeta::new(&build);
        // OAuth2 tokens its templates read, fetched (or cached) now.
        let mut with_tokens = None;
        let mut tokens = Vec::new();
        if !action.tokens.is_empty() {
            let mut credentials = story.globals.credentials.clone();
            for name in &action.tokens {
                match story.globals.vault.token_for(name, &*self.http, &*self.clock).await {
                    Ok(token) => {
                        if let J::Object(o) = &mut *credentials {
                            o.insert(name.clone(), J::String(token.clone()));
                        }
                        tokens.push((name.clone(), token));
                    }
                    Err(e) => {
                        return Step {
                            result: Err(ActionError::Failed(e.to_string())),
                            skipped: None,
                        };
                    }
                }
            }
            with_tokens = Some(credentials);
        }
        let mut scope = Scope::new(&story.globals, item.input.as_ref());
        if let Some(credentials) = &with_tokens {
            scope.credentials = &**credentials;
        }
        scope.meta = Some(&meta);
        scope.now_ms = Some(at_ms);
        let state = match self.read_state(&story, action).await {
            Ok(state) => state,
            Err(e) => {
                return Step {
                    result: Err(e.into()),
                    skipped: None,
                };
            }
        };
        scope.state = state.as_ref();
        let local = match &action.local {
            Some(tree) => match render_local(tree, &action.local_order, &scope) {
                Ok(v) => Some(v),
                Err(e) => {
                    return Step {
                        result: Err(e.into()),
                        skipped: None,
                    };
                }
            },
            None => None,
        };
        scope.local = local.as_ref();
        let cx = self.cx(scope, &story, action, run_id);
        let rules = if item.wake.is_none() && !action.handles_rules && !action.rules.is_empty() {
            action.rules.matches(&cx.scope, None)
        } else {
            Ok(true)
        };
        let (result, skipped) = match rules {
            Ok(true) => {
                let result = match &item.wake {
                    Some(payload) => action.exec.wake(&cx, payload.clone()).await,
                    None => action.exec.execute(&cx).await,
                };
                (result, None)
            }
            Ok(false) => {
                // Which rules did not match, for the trace.
                let told = action.rules.explain(&cx.scope, None).map(|(_, rules)| rules);
                let trace = told.map(|rules| vec![json!({ "rules": rules })]).unwrap_or_default();
                (
                    Ok(Outcome {
                        trace,
                        ..Outcome::default()
                    }),
                    Some("rules did not match"),
                )
            }
            Err(e) => (Err(e.into()), None),
        };
        // `state:` renders with the last event it emitted.
        let result = match result {
            Ok(mut outcome) if action.state.is_some() && skipped.is_none() => {
                match write_state(&story, action, &cx.scope, run_id, at_ms, &outcome) {
                    Ok(puts) => outcome.state.extend(puts),
                    // What the action did stands (a request was sent): the
                    // state keeps its values and the problem is logged.
                    Err(e) => outcome
                        .trace
                        .push(json!({"log_error": format!("`state` was not set: {e}")})),
                }
                Ok(outcome)
            }
            result => result,
        };
        // A token is fetched after the redactor was built: what the action
        // made of it is hidden here.
        let result = if tokens.is_empty() {
            result
        } else {
            let redactor = super::redact::Redactor::from_pairs(tokens.iter().map(|(n, t)| (n.as_str(), t.as_str())));
            result
                .map(|outcome| redactor.outcome(outcome))
                .map_err(|e| ActionError::Failed(redactor.text(&e.to_string())))
        };
        // It rendered prompt links: it waits for a click (until they expire).
        let result = match (result, prompt_expires) {
            (Ok(mut outcome), Some(at_ms)) if skipped.is_none() && item.wake.is_none() => {
                outcome.emits.push(Emit::Later {
                    at_ms,
                    payload: super::links::prompt_waiting(),
                });
                Ok(outcome)
            }
            (result, _) => result,
        };
        Step { result, skipped }
    }
}

impl Runtime {
    /// The story state an action's templates read (`STATE`), as it is now.
    async fn read_state(&self, story: &BuiltStory, action: &BuiltAction) -> Result<Option<J>, StoreError> {
        if action.state_reads.is_empty() {
            return Ok(None);
        }
        let mut state = serde_json::Map::new();
        for name in &action.state_reads {
            let key = super::store::story_state_key(&story.id, name);
            if let Some(value) = self.store.state(&key).await? {
                state.insert(name.clone(), value);
            }
        }
        Ok(Some(J::Object(state)))
    }
}

/// An action's `local` values, each rendered after those it reads, which
/// its `LOCAL` sees (Tines' template actions build one local from others:
/// `final_payload: =REJECT(LOCAL.all_options, …)`).
fn render_local(
    tree: &super::render::Tree,
    order: &[(usize, bool)],
    scope: &Scope<'_>,
) -> Result<J, super::render::RenderError> {
    let super::render::Tree::Object(entries) = tree else {
        return tree.render(scope);
    };
    // The values rendered so far, which a value reading `LOCAL` sees.
    let mut so_far = J::Object(serde_json::Map::with_capacity(entries.len()));
    for &(i, reads_local) in order {
        let (name, template) = &entries[i];
        let value = if reads_local {
            let mut with_local = scope.clone_with_extra(scope.extra);
            with_local.local = Some(&so_far);
            template.render(&with_local)?
        } else {
            template.render(scope)?
        };
        if let J::Object(values) = &mut so_far {
            values.insert(name.clone(), value);
        }
    }
    // In the written order.
    let J::Object(mut values) = so_far else {
        return Ok(J::Null);
    };
    Ok(J::Object(
        entries
            .iter()
            .map(|(name, _)| (name.clone(), values.remove(name).unwrap_or(J::Null)))
            .collect(),
    ))
}

/// The story state an action sets (`state:`), rendered with the last event
/// it emitted (read by its slug); nothing when it emitted none. A name
/// whose value renders null or empty text is removed.
fn write_state(
    story: &BuiltStory,
    action: &BuiltAction,
    scope: &Scope<'_>,
    run_id: RunId,
    at_ms: i64,
    outcome: &Outcome,
) -> Result<Vec<super::store::StatePut>, super::render::RenderError> {
    let Some(tree) = &action.state else {
        return Ok(Vec::new());
    };
    let last = outcome.emits.iter().rev().find_map(|e| match e {
        Emit::Main(output) | Emit::Branch(_, output) => Some(Output::Json(output.clone())),
        Emit::Text(raw) => Some(Output::from(raw.clone())),
        _ => None,
    });
    let Some(output) = last else {
        return Ok(Vec::new());
    };
    let event = Arc::new(Event::new(
        run_id,
        story.id.clone(),
        action.slug.clone(),
        scope.input.cloned().into_iter().collect(),
        output,
        at_ms,
    ));
    let mut own = Scope::new(scope.globals, Some(&event));
    own.credentials = scope.credentials;
    own.local = scope.local;
    own.state = scope.state;
    own.meta = scope.meta;
    own.now_ms = scope.now_ms;
    let J::Object(values) = tree.render(&own)? else {
        return Ok(Vec::new());
    };
    Ok(values
        .into_iter()
        .map(|(name, value)| {
            let key = super::store::story_state_key(&story.id, &name);
            match value {
                J::Null => super::store::StatePut::delete(key),
                J::String(s) if s.is_empty() => super::store::StatePut::delete(key),
                value => super::store::StatePut::set(key, value),
            }
        })
        .collect())
}

/// What a prompted action emits when its wait ends: on a click, an event
/// with the status (`{"prompt": {"status": "contain"}}`, as Tines); on
/// expiry, nothing (the trace says so).
fn prompt_answered(prompt: &J) -> Outcome {
    match prompt.get("status") {
        Some(status) => Outcome {
            emits: vec![Emit::Main(json!({"prompt": {"status": status}}))],
            ..Outcome::default()
        },
        None => Outcome {
            trace: vec![json!({"note": "the prompt expired unanswered"})],
            ..Outcome::default()
        },
    }
}
