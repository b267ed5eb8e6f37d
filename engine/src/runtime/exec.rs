//! The executor: runs a story's graph on tokio. A work item is (action,
//! input event); items of all branches run concurrently up to a bound;
//! delays and implode windows wait on the clock (virtual in a dry run).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::{Value as J, json};

use super::build::{BuiltAction, BuiltStory};
use super::call::{CallError, CallResult, MAX_DEPTH, StoryCaller, prepare_call};
use super::clock::Clock;
pub use super::contract::{
    ActionError, Emit, ExecCx, LazyEmits, Outcome, UNHANDLED_FAILURE, WebhookRequest, WebhookResponse, WebhookResult,
};
use super::event::{Event, EventId, RunId};
use super::http::HttpClient;
use super::mail::Mailer;
use super::scope::Scope;
use super::store::{Commit, RunStatus, Store, StoreError};
use crate::story::Edge;
use futures_util::future::BoxFuture;

/// Progress of a long run: (events so far, action runs waiting).
pub type ProgressFn = Arc<dyn Fn(usize, usize) + Send + Sync>;
/// Sees every event as it is committed.
pub type EventFn = Arc<dyn Fn(&Event) + Send + Sync>;

/// Lazy emits are pulled while fewer items than this wait in the queue.
const QUEUE_LOW: usize = 1024;

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
    pub store: Arc<dyn Store>,
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
    /// How deep in sub-story calls this runtime runs (0: the top story).
    pub depth: usize,
    /// Sub-story calls are stored runs the caller waits for (the durable
    /// executor of `tale serve`), not runs in memory.
    pub durable_calls: bool,
}

/// How often a long run reports progress.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

struct Item {
    action: usize,
    input: Option<Arc<Event>>,
    wake: Option<J>,
}

struct Step {
    item: Item,
    result: Result<Outcome, ActionError>,
    skipped: Option<&'static str>,
    at_ms: i64,
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
            depth: 0,
            durable_calls: false,
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
        let meta = json!({
            "run": {"id": run_id.to_string()},
            "action": {"slug": &*a.slug, "name": a.name},
            "story": {"id": &*story.id, "name": story.name},
        });
        let mut scope = Scope::new(&story.globals, None);
        scope.meta = Some(&meta);
        scope.now_ms = Some(self.clock.now_ms());
        let cx = self.cx(scope, story, a, run_id);
        a.exec
            .accept(request, &cx)
            .ok_or_else(|| RunError::NotAWebhook(a.slug.to_string()))
    }

    /// Delivers a request to the webhook `action` and runs the story to completion.
    pub async fn run_webhook(
        &self,
        story: Arc<BuiltStory>,
        action: usize,
        request: WebhookRequest,
    ) -> Result<RunReport, RunError> {
        let run_id = super::event::new_id();
        let (output, response) = match self.accept(&story, action, &request, run_id)? {
            WebhookResult::Refused { status, message } => return Err(RunError::Refused { status, message }),
            WebhookResult::Ignored { response } => {
                return Ok(RunReport {
                    run_id,
                    events: Vec::new(),
                    event_count: 0,
                    errors: Vec::new(),
                    logged: Vec::new(),
                    trace: Vec::new(),
                    response: Some(response),
                });
            }
            WebhookResult::Accepted { output, response } => (output, response),
        };
        self.store.start_run(run_id, &story.id)?;
        let root = Arc::new(Event::new(
            run_id,
            story.id.clone(),
            story.actions[action].slug.clone(),
            Vec::new(),
            output,
            self.clock.now_ms(),
        ));
        self.store.commit(Commit {
            events: vec![root.clone()],
            state: Vec::new(),
        })?;
        let mut report = self.run_from(story, run_id, vec![(action, root)]).await?;
        report.response = Some(response);
        Ok(report)
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
        if action >= story.actions.len() {
            return Err(RunError::NoSuchAction(action.to_string()));
        }
        let run_id = super::event::new_id();
        self.store.start_run(run_id, &story.id)?;
        self.run_items(story, run_id, Vec::new(), vec![action]).await
    }

    /// Runs from root events already committed (a webhook's, a schedule tick's).
    pub async fn run_from(
        &self,
        story: Arc<BuiltStory>,
        run_id: RunId,
        roots: Vec<(usize, Arc<Event>)>,
    ) -> Result<RunReport, RunError> {
        self.run_items(story, run_id, roots, Vec::new()).await
    }

    /// Runs from root events, and from actions that start with no input.
    async fn run_items(
        &self,
        story: Arc<BuiltStory>,
        run_id: RunId,
        roots: Vec<(usize, Arc<Event>)>,
        starts: Vec<usize>,
    ) -> Result<RunReport, RunError> {
        let mut report = RunReport {
            run_id,
            events: if self.keep_events {
                roots.iter().map(|(_, e)| e.clone()).collect()
            } else {
                Vec::new()
            },
            event_count: roots.len(),
            errors: Vec::new(),
            logged: Vec::new(),
            trace: Vec::new(),
            response: None,
        };
        let mut queue: VecDeque<Item> = VecDeque::new();
        for (action, event) in roots {
            if let Some(f) = &self.on_event {
                f(&event);
            }
            self.enqueue_downstream(&story, action, None, &event, &mut queue);
        }
        for action in starts {
            queue.push_back(Item {
                action,
                input: None,
                wake: None,
            });
        }
        // Lazy emits not pulled yet: (action, its input, what remains).
        let mut emitters: VecDeque<(usize, Option<Arc<Event>>, LazyEmits)> = VecDeque::new();
        let mut timers: BinaryHeap<Reverse<(i64, u64)>> = BinaryHeap::new();
        let mut waiting: std::collections::HashMap<u64, Item> = Default::default();
        let mut seq = 0u64;
        let mut in_flight = FuturesUnordered::new();
        let cap = self.max_in_flight.max(1);
        let mut last_progress = std::time::Instant::now();
        let mut steps = 0u64;
        // Stateful actions (implode, deduplicate, throttle) run one item at a
        // time: each must see what the previous one committed.
        let mut busy: Vec<bool> = vec![false; story.actions.len()];
        let mut parked: Vec<VecDeque<Item>> = (0..story.actions.len()).map(|_| VecDeque::new()).collect();
        let mut parked_total = 0usize;
        loop {
            // Pull lazy emits while little work waits (parked items count too:
            // a slow stateful action must hold the explode back).
            while queue.len() + parked_total < QUEUE_LOW {
                let Some((action, input, mut rest)) = emitters.pop_front() else {
                    break;
                };
                let mut pulled = Vec::new();
                for emit in rest.by_ref().take(QUEUE_LOW) {
                    pulled.push(emit);
                }
                let exhausted = pulled.len() < QUEUE_LOW;
                let events = self.emit_events(&story, run_id, action, &input, pulled, &mut queue, &mut report);
                if self.trace {
                    // The trace entry of the step that returned these emits.
                    let slug = &story.actions[action].slug;
                    let input_id = input.as_ref().map(|e| e.id);
                    if let Some(entry) = report
                        .trace
                        .iter_mut()
                        .rev()
                        .find(|t| *t.action == **slug && t.input == input_id)
                    {
                        entry
                            .emitted
                            .extend(events.iter().map(|e| (e.branch, e.output.clone())));
                    }
                }
                self.store.commit(Commit {
                    events,
                    state: Vec::new(),
                })?;
                if !exhausted {
                    emitters.push_front((action, input, rest));
                }
            }
            while in_flight.len() < cap {
                let Some(item) = queue.pop_front() else { break };
                let stateful = story.actions[item.action].exec.stateful();
                if stateful && busy[item.action] {
                    parked[item.action].push_back(item);
                    parked_total += 1;
                    continue;
                }
                if stateful {
                    busy[item.action] = true;
                }
                in_flight.push(self.clone().step(story.clone(), run_id, item));
            }
            if in_flight.is_empty() && !emitters.is_empty() && queue.is_empty() {
                continue;
            }
            if in_flight.is_empty() {
                let Some(Reverse((at, id))) = timers.pop() else { break };
                if !waiting.contains_key(&id) {
                    continue; // cancelled: nothing to wait for
                }
                self.clock.sleep_until(at).await;
                if let Some(item) = waiting.remove(&id) {
                    queue.push_back(item);
                }
                // Everything due at the same instant goes together, in order.
                while let Some(Reverse((next, id))) = timers.peek().copied() {
                    if next > at {
                        break;
                    }
                    timers.pop();
                    if let Some(item) = waiting.remove(&id) {
                        queue.push_back(item);
                    }
                }
                continue;
            }
            // On the real clock a timer falls due while work is in flight (a
            // delay beside a slow request): wake it then, not after the work.
            let next_due = timers.peek().map(|Reverse((at, _))| *at);
            let step = match next_due {
                Some(at) if !self.clock.is_virtual() => {
                    tokio::select! {
                        biased;
                        step = in_flight.next() => step,
                        () = self.clock.sleep_until(at) => {
                            while let Some(Reverse((due, id))) = timers.peek().copied() {
                                if due > self.clock.now_ms() {
                                    break;
                                }
                                timers.pop();
                                if let Some(item) = waiting.remove(&id) {
                                    queue.push_back(item);
                                }
                            }
                            continue;
                        }
                    }
                }
                _ => in_flight.next().await,
            };
            let Some(step) = step else { break };
            // Steps that complete at once never yield: let the tasks beside
            // the run (printing its events) keep up now and then.
            steps += 1;
            if steps.is_multiple_of(64) {
                tokio::task::yield_now().await;
            }
            if let Some(progress) = &self.progress {
                if last_progress.elapsed() >= PROGRESS_EVERY {
                    last_progress = std::time::Instant::now();
                    progress(report.event_count, queue.len() + in_flight.len() + waiting.len());
                }
            }
            if busy[step.item.action] {
                busy[step.item.action] = false;
                // The next item of that action goes first.
                if let Some(next) = parked[step.item.action].pop_front() {
                    parked_total -= 1;
                    queue.push_front(next);
                }
            }
            let slug = story.actions[step.item.action].slug.to_string();
            let mut entry = TraceEntry {
                action: slug.clone(),
                input: step.item.input.as_ref().map(|e| e.id),
                input_output: if self.trace {
                    step.item.input.as_ref().map_or(J::Null, |e| e.output.clone())
                } else {
                    J::Null
                },
                details: Vec::new(),
                emitted: Vec::new(),
                skipped: step.skipped,
                error: None,
                at_ms: step.at_ms,
            };
            match step.result {
                Err(e) => {
                    entry.error = Some(e.to_string());
                    report.errors.push((slug, e.to_string()));
                }
                Ok(outcome) => {
                    let mut commit = Commit {
                        events: Vec::new(),
                        state: outcome.state,
                    };
                    for payload in &outcome.cancel {
                        waiting.retain(|_, w| !(w.action == step.item.action && w.wake.as_ref() == Some(payload)));
                    }
                    let mut emitted = Vec::new();
                    for emit in outcome.emits {
                        match emit {
                            Emit::Main(output) => emitted.push((None, output)),
                            Emit::Branch(b, output) => emitted.push((Some(b), output)),
                            Emit::Later { at_ms, payload } => {
                                seq += 1;
                                timers.push(Reverse((at_ms, seq)));
                                waiting.insert(
                                    seq,
                                    Item {
                                        action: step.item.action,
                                        input: step.item.input.clone(),
                                        wake: Some(payload),
                                    },
                                );
                            }
                            // Not asked for here (`durable_calls` is off):
                            // the action calls in memory instead.
                            Emit::Call { story, .. } => {
                                let e = format!("a stored call of `{story}` outside the durable executor");
                                entry.error = Some(e.clone());
                                report.errors.push((slug.clone(), e));
                            }
                        }
                    }
                    let emits: Vec<Emit> = emitted
                        .into_iter()
                        .map(|(b, o)| match b {
                            Some(b) => Emit::Branch(b, o),
                            None => Emit::Main(o),
                        })
                        .collect();
                    let events = self.emit_events(
                        &story,
                        run_id,
                        step.item.action,
                        &step.item.input,
                        emits,
                        &mut queue,
                        &mut report,
                    );
                    if self.trace {
                        for e in &events {
                            entry.emitted.push((e.branch, e.output.clone()));
                        }
                    }
                    commit.events = events;
                    if let Some(rest) = outcome.rest {
                        emitters.push_back((step.item.action, step.item.input.clone(), rest));
                    }
                    for d in &outcome.trace {
                        if let Some(message) = d.get("log_error").and_then(J::as_str) {
                            report.logged.push((slug.clone(), message.to_owned()));
                        }
                    }
                    entry.details = outcome.trace;
                    self.store.commit(commit)?;
                }
            }
            if self.trace {
                report.trace.push(entry);
            }
        }
        let status = if report.errors.is_empty() {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed(report.errors.iter().map(|(a, e)| format!("{a}: {e}")).collect())
        };
        self.store.finish_run(run_id, status)?;
        Ok(report)
    }

    /// Events for `emits` of `action` (Main/Branch only), committed by the
    /// caller; their downstream items are queued.
    #[allow(clippy::too_many_arguments)]
    fn emit_events(
        &self,
        story: &BuiltStory,
        run_id: RunId,
        action: usize,
        input: &Option<Arc<Event>>,
        emits: Vec<Emit>,
        queue: &mut VecDeque<Item>,
        report: &mut RunReport,
    ) -> Vec<Arc<Event>> {
        let parents: Vec<Arc<Event>> = input.iter().cloned().collect();
        let now = self.clock.now_ms();
        let mut events = Vec::with_capacity(emits.len());
        for emit in emits {
            let (branch, output) = match emit {
                Emit::Main(o) => (None, o),
                Emit::Branch(b, o) => (Some(b), o),
                Emit::Later { .. } | Emit::Call { .. } => continue,
            };
            if let Some(why) = Self::unhandled_failure(story, action, branch, &output) {
                report.errors.push((story.actions[action].slug.to_string(), why));
            }
            let event = Arc::new(
                Event::new(
                    run_id,
                    story.id.clone(),
                    story.actions[action].slug.clone(),
                    parents.clone(),
                    output,
                    now,
                )
                .with_branch(branch),
            );
            self.enqueue_downstream(story, action, branch, &event, queue);
            if let Some(f) = &self.on_event {
                f(&event);
            }
            report.event_count += 1;
            if self.keep_events {
                report.events.push(event.clone());
            }
            events.push(event);
        }
        events
    }

    fn cx<'a>(&'a self, scope: Scope<'a>, story: &'a BuiltStory, action: &'a BuiltAction, run_id: RunId) -> ExecCx<'a> {
        ExecCx {
            scope,
            http: &*self.http,
            mail: &*self.mail,
            calls: self,
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
    pub fn unhandled_failure(story: &BuiltStory, action: usize, branch: Option<&str>, output: &J) -> Option<String> {
        if branch != Some("failure") || Self::downstream(story, action, branch).next().is_some() {
            return None;
        }
        Some(match output.get("error").and_then(J::as_str) {
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

    fn enqueue_downstream(
        &self,
        story: &BuiltStory,
        action: usize,
        branch: Option<&str>,
        event: &Arc<Event>,
        queue: &mut VecDeque<Item>,
    ) {
        for target in Self::downstream(story, action, branch) {
            queue.push_back(Item {
                action: target,
                input: Some(event.clone()),
                wake: None,
            });
        }
    }

    async fn step(self, story: Arc<BuiltStory>, run_id: RunId, item: Item) -> Step {
        let at_ms = self.clock.now_ms();
        let action = &story.actions[item.action];
        if action.disabled {
            return Step {
                item,
                result: Ok(Outcome::default()),
                skipped: Some("disabled"),
                at_ms,
            };
        }
        let meta = json!({
            "run": {"id": run_id.to_string()},
            "event": {"id": item.input.as_ref().map(|e| e.id.to_string())},
            "action": {"slug": &*action.slug, "name": action.name},
            "story": {"id": &*story.id, "name": story.name},
        });
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
                            item,
                            result: Err(ActionError::Failed(e.to_string())),
                            skipped: None,
                            at_ms,
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
        let local = match &action.local {
            Some(tree) => match tree.render(&scope) {
                Ok(v) => Some(v),
                Err(e) => {
                    return Step {
                        item,
                        result: Err(e.into()),
                        skipped: None,
                        at_ms,
                    };
                }
            },
            None => None,
        };
        scope.local = local.as_ref();
        let cx = self.cx(scope, &story, action, run_id);
        let rules = if item.wake.is_none() && !action.handles_rules && !action.rules.is_empty() {
            action.rules.matches(&cx.scope, true)
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
            Ok(false) => (Ok(Outcome::default()), Some("rules did not match")),
            Err(e) => (Err(e.into()), None),
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
        Step {
            item,
            result,
            skipped,
            at_ms,
        }
    }
}

/// Sub-story calls in memory (run, dry-run, test): the child runs to its
/// end inside the calling action.
impl StoryCaller for Runtime {
    fn defers(&self) -> bool {
        self.durable_calls
    }

    fn call<'a>(
        &'a self,
        story_id: &'a str,
        payload: J,
        as_body: bool,
    ) -> BoxFuture<'a, Result<CallResult, CallError>> {
        Box::pin(async move {
            if self.depth >= MAX_DEPTH {
                return Err(CallError::TooDeep);
            }
            let (story, entry, request) =
                prepare_call(&self.library, story_id, &payload, as_body).map_err(CallError::Refused)?;
            let mut sub = self.clone();
            sub.depth += 1;
            // Only the first exit's output is needed: record it as the events
            // go by instead of keeping every event of the sub-run.
            let first_exit: Arc<std::sync::Mutex<Option<J>>> = Arc::default();
            let exits: Vec<Arc<str>> = story.exits.iter().map(|&x| story.actions[x].slug.clone()).collect();
            let slot = first_exit.clone();
            sub.keep_events = false;
            sub.on_event = Some(Arc::new(move |e: &Event| {
                if exits.iter().any(|x| **x == *e.action) {
                    let mut first = slot.lock().unwrap_or_else(|p| p.into_inner());
                    first.get_or_insert_with(|| e.output.clone());
                }
            }));
            let report = sub
                .run_webhook(story.clone(), entry, request)
                .await
                .map_err(|e| CallError::Refused(e.to_string()))?;
            let output = first_exit.lock().unwrap_or_else(|p| p.into_inner()).take();
            Ok(CallResult {
                run_id: report.run_id.to_string(),
                output,
                events: report.event_count,
                errors: report.errors,
                trace: report.trace.iter().map(|t| t.to_json()).collect(),
            })
        })
    }
}
