//! Runs in process (`tale run`, `dry-run`, `test`, `record`) on the one
//! executor, the durable one of `tale serve`, over the memory store
//! (`memory::MemoryDurableStore`) and whatever clock the runtime has
//! (virtual in dry runs and tests: timers fire in order when nothing else
//! runs). A run goes on until no work is left — sub-story calls included,
//! as stored runs their callers wait for — so a story test proves what
//! `tale serve` does.

use std::sync::{Arc, Mutex};

use serde_json::Value as J;

use super::build::BuiltStory;
use super::durable::{Delivery, Durable, Executed, Loaded, Observer};
use super::event::{Event, EventId, RunId};
use super::exec::{RunError, RunReport, Runtime, TraceEntry, WebhookRequest};
use super::memory::{MemoryDurableStore, RunStatus};
use super::redact::Redactor;
use super::store::{StatePut, StateStore, story_state_key};

/// How often a long run says how far it got (`Runtime::progress`).
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// What the executor reports, kept for the run's report.
#[derive(Default)]
struct Recorder {
    trace: bool,
    on_event: Option<super::exec::EventFn>,
    /// The story run: `on_event` sees its events (the runs it calls are
    /// their own; `check` refuses a story that calls itself).
    story: Arc<str>,
    /// Every execution, of every run (sub-runs too), with its run.
    steps: Mutex<Vec<(RunId, TraceEntry)>>,
    /// `log_error` details, by run: (action, message).
    logged: Mutex<Vec<(RunId, String, String)>>,
    events: std::sync::atomic::AtomicUsize,
}

impl Observer for Recorder {
    fn events(&self, count: usize) {
        self.events.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
    }

    fn wants_steps(&self) -> bool {
        // Logged problems are reported by `tale run` (which prints events)
        // and dry runs (which trace); a test or a benchmark pays nothing.
        self.trace || self.on_event.is_some()
    }

    fn wants_outputs(&self) -> bool {
        self.trace
    }

    fn executed(&self, step: Executed) {
        for d in &step.details {
            if let Some(message) = d.get("log_error").and_then(J::as_str) {
                let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
                logged.push((step.run_id, step.action.to_string(), message.to_owned()));
            }
        }
        if !self.trace {
            return;
        }
        let entry = TraceEntry {
            action: step.action.to_string(),
            input: step.input.as_ref().map(|e| e.id),
            input_output: step.input.as_ref().map_or(J::Null, |e| e.output().clone()),
            details: step.details,
            emitted: step.emitted,
            skipped: step.skipped,
            error: step.error,
            at_ms: step.at_ms,
        };
        self.steps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((step.run_id, entry));
    }

    fn emitted_more(&self, run: RunId, action: &str, input: Option<EventId>, events: &[Arc<Event>]) {
        let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, entry)) = steps
            .iter_mut()
            .rev()
            .find(|(r, t)| *r == run && t.action == action && t.input == input)
        {
            entry
                .emitted
                .extend(events.iter().map(|e| (e.branch, e.output().clone())));
        }
    }

    fn committed(&self, events: &[Arc<Event>]) {
        if let Some(f) = &self.on_event {
            for e in events.iter().filter(|e| e.story == self.story) {
                f(e);
            }
        }
    }
}

/// Runs `story` from `entry` (a webhook given `request`, or an action that
/// starts without input) until no work is left, as `runtime` says: its
/// clock, HTTP client and mailer; `max_in_flight` items at once; a trace
/// when `trace`; events kept when `keep_events`, told to `on_event` as they
/// commit; `progress` now and then.
pub async fn run_local(
    runtime: &Runtime,
    story: Arc<BuiltStory>,
    entry: usize,
    request: Option<WebhookRequest>,
) -> Result<RunReport, RunError> {
    if entry >= story.actions.len() {
        return Err(RunError::NoSuchAction(entry.to_string()));
    }
    let store = Arc::new(if runtime.keep_events {
        MemoryDurableStore::new()
    } else {
        MemoryDurableStore::without_events()
    });
    store.seed(
        runtime
            .story_state
            .iter()
            .map(|(name, value)| StatePut::set(story_state_key(&story.id, name), value.clone()))
            .collect(),
    );
    let mut library = (*runtime.library).clone();
    library.insert(story.id.to_string(), story.clone());
    let recorder = Arc::new(Recorder {
        trace: runtime.trace,
        on_event: runtime.on_event.clone(),
        story: story.id.clone(),
        ..Recorder::default()
    });
    let local = Runtime {
        store: store.clone(),
        library: Arc::new(library),
        ..runtime.clone()
    };
    let durable = Durable::start(
        Loaded::new(local, Arc::new(Redactor::default())),
        store.clone(),
        runtime.max_in_flight.max(1),
        usize::MAX / 4,
        Some(recorder.clone()),
    );
    let (run_id, response) = match request {
        Some(request) => match durable.deliver_to(story.clone(), entry, request).await {
            Ok(Delivery::Started { run_id, response }) => (run_id, Some(response)),
            Ok(Delivery::Ignored(response)) => {
                return Ok(RunReport {
                    run_id: RunId::new(),
                    events: Vec::new(),
                    event_count: 0,
                    errors: Vec::new(),
                    logged: Vec::new(),
                    trace: Vec::new(),
                    response: Some(response),
                    state: runtime.story_state.clone(),
                });
            }
            Ok(Delivery::Refused { status, message }) => return Err(RunError::Refused { status, message }),
            Ok(Delivery::NoSuchWebhook) => return Err(RunError::NotAWebhook(story.actions[entry].slug.to_string())),
            Err(e) => return Err(RunError::Failed(e.to_string())),
        },
        None => (durable.run_now(&story, entry).await?, None),
    };
    // Until nothing is ready, running or waiting on a timer (a virtual
    // clock's timers are released as soon as the rest is idle).
    let mut said = std::time::Instant::now();
    let virtual_clock = runtime.clock.is_virtual();
    loop {
        let soon = tokio::time::Instant::now() + std::time::Duration::from_millis(100);
        durable.wait_queue_below(1, Some(soon)).await;
        if durable.waiting() == 0 && durable.queue_depth() == 0 {
            break;
        }
        if virtual_clock && durable.queue_depth() == 0 {
            // A story test's answers go before time moves on.
            if answer_prompts(&durable, runtime).await {
                continue;
            }
            durable.release_next_timers().await;
            continue;
        }
        if let Some(progress) = runtime.progress.as_ref().filter(|_| said.elapsed() >= PROGRESS_EVERY) {
            said = std::time::Instant::now();
            let events = recorder.events.load(std::sync::atomic::Ordering::Relaxed);
            progress(events, durable.queue_depth() + durable.waiting());
        }
        if durable.queue_depth() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    let events = store.events(run_id);
    let errors = match store.run_status(run_id) {
        Some(RunStatus::Failed(errors)) => errors
            .iter()
            .map(|e| match e.split_once(": ") {
                Some((action, why)) => (action.to_owned(), why.to_owned()),
                None => (String::new(), e.clone()),
            })
            .collect(),
        _ => Vec::new(),
    };
    let logged = std::mem::take(&mut *recorder.logged.lock().unwrap_or_else(|p| p.into_inner()))
        .into_iter()
        .filter(|(run, _, _)| *run == run_id)
        .map(|(_, action, message)| (action, message))
        .collect();
    // The story state now, for the names the story sets or reads.
    let mut state = serde_json::Map::new();
    let names = story
        .actions
        .iter()
        .flat_map(|a| a.state_reads.iter().cloned().chain(a.state_names()))
        .collect::<std::collections::BTreeSet<String>>();
    for name in names {
        if let Some(value) = store.state(&story_state_key(&story.id, &name)).await? {
            state.insert(name, value);
        }
    }
    let steps = std::mem::take(&mut *recorder.steps.lock().unwrap_or_else(|p| p.into_inner()));
    let trace = nest(run_id, &steps, 0);
    Ok(RunReport {
        run_id,
        event_count: if runtime.keep_events {
            events.len()
        } else {
            recorder.events.load(std::sync::atomic::Ordering::Relaxed)
        },
        events,
        errors,
        logged,
        trace,
        response,
        state,
    })
}

/// Answers the waiting prompts a story test gives answers for (its
/// `prompts:`); whether it answered any.
async fn answer_prompts(durable: &Arc<Durable>, runtime: &Runtime) -> bool {
    let Some(links) = runtime.links.as_ref().filter(|l| !l.answers.is_empty()) else {
        return false;
    };
    let mut answered = false;
    for (run, action, input) in durable.waiting_prompts() {
        let Some(status) = links.answers.get(&*action) else {
            continue;
        };
        let claim = super::links::PromptClaim {
            run: run.to_string(),
            action: action.to_string(),
            input: input.map(|i| i.to_string()),
            status: status.clone(),
            expires_ms: i64::MAX,
        };
        answered |= durable.answer_prompt(&claim).await.unwrap_or(false);
    }
    answered
}

/// The trace of `run`: its executions in order, a sub-story call as one
/// entry whose request detail holds the called run's own trace (as a dry
/// run shows it). A stored call executes twice — the call, then the wake
/// with the result — and reads as one.
fn nest(run: RunId, steps: &[(RunId, TraceEntry)], depth: usize) -> Vec<TraceEntry> {
    let mut out: Vec<TraceEntry> = Vec::new();
    for (r, entry) in steps {
        if *r != run {
            continue;
        }
        let mut entry = entry.clone();
        let mut called = false;
        for detail in &mut entry.details {
            let child = detail
                .get("sub_story")
                .and_then(|_| detail.get("run_id"))
                .and_then(J::as_str)
                .and_then(|id| id.parse::<RunId>().ok());
            if let (Some(child), Some(o)) = (child, detail.as_object_mut()) {
                called = true;
                let sub = if depth < super::call::MAX_DEPTH {
                    nest(child, steps, depth + 1)
                } else {
                    Vec::new()
                };
                o.insert("trace".into(), J::Array(sub.iter().map(TraceEntry::to_json).collect()));
            }
        }
        // The wake replaces the call's first execution (which only asked
        // for the call): one entry per call, with its result.
        if called {
            if let Some(first) = out.iter_mut().rev().find(|t| {
                t.action == entry.action && t.input == entry.input && t.emitted.is_empty() && t.details.is_empty()
            }) {
                entry.at_ms = first.at_ms;
                *first = entry;
                continue;
            }
        }
        out.push(entry);
    }
    out
}
