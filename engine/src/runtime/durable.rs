//! Durable execution (`tale serve`, SPEC §7). Every work item — an action and
//! its input event — is stored before it runs; executing it commits its
//! events, its next work items and its state changes as one transaction, so
//! a crash never loses or repeats an internal step. A webhook's run exists
//! once its first transaction is committed, and not before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures_util::future::BoxFuture;
use serde_json::Value as J;
use uuid::Uuid;

use super::build::{BuiltAction, BuiltStory};
use super::event::{Event, Output, RunId, new_id};
use super::exec::{Emit, RunError, Runtime, WebhookRequest, WebhookResponse, WebhookResult};
use super::redact::Redactor;
use super::store::{Overlay, StatePut, StateStore, StoreError};
use crate::action::Inline;

/// An action to run on an input event, at or after `due_ms`.
#[derive(Debug, Clone)]
pub struct WorkItem {
    pub id: Uuid,
    pub run_id: RunId,
    pub story: Arc<str>,
    /// The action's slug (slugs survive a reload; positions may not).
    pub action: Arc<str>,
    /// `None` for a scheduled action's start.
    pub input: Option<Arc<Event>>,
    /// The payload of a delay or implode window that fell due.
    pub wake: Option<J>,
    /// When it may run (ms since the epoch); 0: at once.
    pub due_ms: i64,
    /// How many times it was started after a restart that followed a crash
    /// (counted durably before it ran): past [`MAX_CRASHED_STARTS`] it is
    /// failed instead of crashing the server again.
    pub attempts: u32,
    /// Count this start durably before running it (recovered items).
    pub mark: bool,
    /// Which incarnation of this process holds it (see
    /// [`DurableStore::incarnation`]): an item held before this process was
    /// declared dead is another node's now, and does not run here.
    pub holder: u64,
}

/// Recovered starts after which an item that keeps dying with the process
/// fails instead: the crash before it was known (not counted), one start
/// among the other recovered items, one start alone; the next start fails
/// it. An item that merely ran beside the culprit is counted once at most.
pub const MAX_CRASHED_STARTS: u32 = 2;

/// The state key a clean stop leaves for the next start: the steps it finds
/// were not running when a crash happened.
pub const CLEAN_STOP: &str = "#tale:clean-stop";

/// The due time of an item that waits for a sub-story's run: the store
/// makes it due when the run's first exit fires, or when the run ends
/// without one. Nothing holds it in memory meanwhile.
pub const PARKED: i64 = i64::MAX;

/// What a parked caller is woken with when the called run's first exit
/// fires: every store builds it the same way (`send_to_story` reads it).
pub fn called_exit(story: &str, run: RunId, output: J) -> J {
    serde_json::json!({"called": {"story": story, "run_id": run.to_string(), "exit": true, "output": output}})
}

/// What a parked caller is woken with when the called run ends without an
/// exit: its errors (a JSON list of `action: reason`).
pub fn called_ended(story: &str, run: RunId, errors: J) -> J {
    serde_json::json!({"called": {"story": story, "run_id": run.to_string(), "output": null, "errors": errors}})
}

/// A sub-story run a call started, and the item of the caller that waits.
#[derive(Debug, Clone, PartialEq)]
pub struct CallLink {
    pub child: RunId,
    pub parent: RunId,
    /// The event the calling action received.
    pub parent_event: Option<super::event::EventId>,
    /// The caller's parked item (due at [`PARKED`]).
    pub caller_item: Uuid,
    /// How deep in calls the child runs (kept in memory once committed).
    pub depth: usize,
}

/// What one step writes, all or nothing.
#[derive(Debug, Default, Clone)]
pub struct Transaction {
    /// Runs this transaction starts: (run, story id, started at).
    pub started: Vec<(RunId, Arc<str>, i64)>,
    /// The work items this transaction completes.
    pub done: Vec<(Uuid, RunId)>,
    pub events: Vec<Arc<Event>>,
    pub items: Vec<WorkItem>,
    pub state: Vec<StatePut>,
    /// Waiting items no longer needed (an implode that completed early).
    pub cancelled: Vec<Uuid>,
    /// Action failures, recorded on their runs.
    pub errors: Vec<(RunId, String)>,
    /// A schedule tick `(key, tick_ms)`: the transaction applies only when
    /// the tick is later than the last one fired, so no tick fires twice.
    pub tick: Option<(String, i64)>,
    /// Sub-story runs started here (their `started` entries are above).
    pub calls: Vec<CallLink>,
    /// Events of exit actions, by run: the first of a called run wakes its
    /// caller with the event's stored output.
    pub exits: Vec<(RunId, super::event::EventId)>,
    /// Which of `items` belong to a stateful action: on a cluster they run
    /// on the node holding that action's lane, maybe another one.
    pub stateful: Vec<Uuid>,
    /// One per action execution, when the store keeps traces.
    pub traces: Vec<super::trace::StepTrace>,
    /// Prompts a person answered: each wakes its execution's waiting item
    /// (if it still waits) with the answer.
    pub answers: Vec<PromptAnswer>,
}

/// A click on a prompt link: the waiting item of (run, action, input)
/// becomes due now with `payload` (`{"prompt": {"status": …}}`).
#[derive(Debug, Clone)]
pub struct PromptAnswer {
    pub run: RunId,
    pub action: Arc<str>,
    pub input: Option<super::event::EventId>,
    pub payload: J,
}

/// The wake payload a prompted execution's waiting item is stored with,
/// as the stores find it.
pub fn prompt_waiting_text() -> String {
    super::links::prompt_waiting().to_string()
}

/// What applying a transaction did.
#[derive(Debug, Default, Clone)]
pub struct Applied {
    /// Runs that have no work left: (run, story id, succeeded).
    pub finished: Vec<(RunId, String, bool)>,
    /// False when a schedule tick had already fired: nothing was written.
    pub fired: bool,
    /// Parked callers this step made due (a sub-story's exit fired, or
    /// its run ended without one).
    pub woken: Vec<WorkItem>,
    /// New items the store gave to another node (a stateful action whose
    /// lane another node holds): not run here.
    pub handed_off: Vec<Uuid>,
    /// The incarnation of this process that committed the step (it holds
    /// the new items).
    pub holder: u64,
    /// Prompt answers that found their waiting item (in `woken`).
    pub answered: usize,
}

/// The work queue: a store that keeps work items, runs and their events
/// (SQLite; memory for dry runs and tests). Every call is async, as a
/// database is; the executor never blocks a thread on it.
pub trait DurableStore: StateStore {
    /// Applies a transaction. Errs with `StoreError::Full` at once when the
    /// store cannot take more and `wait` is false (a webhook answers 503).
    fn apply(&self, tx: Transaction, wait: bool) -> BoxFuture<'static, Result<Applied, StoreError>>;
    /// Counts one more start of a recovered item, durably, before it runs.
    fn mark_started(&self, item: Uuid) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Whether the last process stopped cleanly (see [`CLEAN_STOP`]); when it
    /// did, forgets the marker and every item's count of crashed starts.
    fn clean_restart(&self) -> BoxFuture<'_, Result<bool, StoreError>>;
    /// Work items left by a process that stopped, with their input events.
    fn recover(&self) -> BoxFuture<'_, Result<Vec<WorkItem>, StoreError>>;
    /// The last tick a schedule fired (ms since the epoch).
    fn last_tick<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<i64>, StoreError>>;
    /// The events of a run, in the order they were committed.
    fn run_events(&self, run: RunId) -> BoxFuture<'_, Result<Vec<Arc<Event>>, StoreError>>;

    /// A store shared by several processes (a cluster): told when work may
    /// be waiting to be claimed ([`DurableStore::claim`]). `None`: this
    /// process owns the whole store, and has all its work from `recover`.
    fn work_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
    /// Items nobody runs (left by a dead node, handed over to this one),
    /// now this process's, with their input events; a bounded batch.
    fn claim(&self) -> BoxFuture<'_, Result<Vec<WorkItem>, StoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// Changes whenever this process was declared dead by the others and
    /// joined again: what it held is no longer its own.
    fn incarnation(&self) -> u64 {
        0
    }
    /// Whether this process still holds items of incarnation `holder`,
    /// asked before one runs: false when it was declared dead since. A
    /// node that has not renewed its lease lately (it was paused, cut off)
    /// renews it first.
    fn holds(&self, _holder: u64) -> BoxFuture<'_, bool> {
        Box::pin(async { true })
    }
    /// Leaves a cluster after a clean stop: what this process still holds
    /// goes back to the others, not counted as crashed. False when the
    /// store is not shared (it records a clean stop instead).
    fn leave(&self) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async { Ok(false) })
    }
    /// Whether it stores [`Transaction::traces`] (a database does; the
    /// memory store of dry runs and tests has its own trace).
    fn keeps_traces(&self) -> bool {
        false
    }
}

/// Sees what the executor does (metrics, logs; the trace of a dry run).
pub trait Observer: Send + Sync {
    fn action_done(&self, _story: &str, _action: &BuiltAction, _seconds: f64, _ok: bool) {}
    fn events(&self, _count: usize) {}
    fn run_finished(&self, _story: &str, _succeeded: bool) {}
    /// Whether [`Observer::executed`] and [`Observer::committed`] are
    /// wanted (they copy what they report).
    fn wants_steps(&self) -> bool {
        false
    }
    /// Whether [`Executed::emitted`] and [`Observer::emitted_more`] are
    /// wanted too (a trace): every output is copied for them.
    fn wants_outputs(&self) -> bool {
        false
    }
    /// One execution of an action, as a dry-run trace shows it.
    fn executed(&self, _step: Executed) {}
    /// More events of an execution (the chunks of a long explode).
    fn emitted_more(&self, _run: RunId, _action: &str, _input: Option<super::event::EventId>, _events: &[Arc<Event>]) {}
    /// Events, once committed.
    fn committed(&self, _events: &[Arc<Event>]) {}
}

/// One execution of an action, for [`Observer::executed`].
#[derive(Debug)]
pub struct Executed {
    pub run_id: RunId,
    pub action: Arc<str>,
    pub input: Option<Arc<Event>>,
    pub at_ms: i64,
    pub skipped: Option<&'static str>,
    pub error: Option<String>,
    /// What the action reported besides its output (rendered requests).
    pub details: Vec<J>,
    pub emitted: Vec<(Option<&'static str>, J)>,
}

/// A reserved place in the queue; given back when dropped.
struct Slot<'a>(&'a Durable);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.dequeued(1);
    }
}

/// The stories being served, and a runtime that can call them.
#[derive(Clone)]
pub struct Loaded {
    pub runtime: Runtime,
    /// Keeps credential values out of logs (the store has its own).
    pub redactor: Arc<Redactor>,
    /// Webhook path → (story id, action).
    pub hooks: Arc<HashMap<String, (Arc<BuiltStory>, usize)>>,
}

impl Loaded {
    /// Indexes the webhooks of the runtime's library.
    pub fn new(runtime: Runtime, redactor: Arc<Redactor>) -> Self {
        let mut hooks = HashMap::new();
        let mut stories: Vec<&Arc<BuiltStory>> = runtime.library.values().collect();
        stories.sort_by(|a, b| a.id.cmp(&b.id));
        for story in stories {
            for (i, a) in story.actions.iter().enumerate() {
                if let (true, Some(path)) = (a.is_webhook, &a.webhook_path) {
                    hooks.entry(path.clone()).or_insert_with(|| (story.clone(), i));
                }
            }
        }
        Self {
            runtime,
            redactor,
            hooks: Arc::new(hooks),
        }
    }
}

/// What a webhook request came to.
#[derive(Debug)]
pub enum Delivery {
    /// A run started (committed) and this is the answer.
    Started {
        run_id: RunId,
        response: WebhookResponse,
    },
    /// Answered; no run (the rules did not match).
    Ignored(WebhookResponse),
    Refused {
        status: u16,
        message: String,
    },
    NoSuchWebhook,
}

#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("{0}")]
    Gone(String),
}

/// Items waiting on a timer, by id. The map holds them (not the timer
/// task), so that a cancelled item and the events it holds go at once.
type Waiting = HashMap<Uuid, WorkItem>;
/// The items of each stateful action, run by one task per action, in
/// batches that commit together.
type StatefulQueues = HashMap<(Arc<str>, Arc<str>), StatefulQueue>;

#[derive(Default)]
struct StatefulQueue {
    items: std::collections::VecDeque<WorkItem>,
    running: bool,
}

/// Items of one stateful action that run in one step at most.
const STATEFUL_BATCH: usize = 512;

/// How long a webhook waits for room before it is refused (503).
const ADMISSION_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// At most this many actions run inline in one step.
const INLINE_BUDGET: usize = 32;
/// Pure actions that may run before a webhook's answer, and the largest
/// body for which they do.
const WEBHOOK_INLINE_BUDGET: usize = 4;
const WEBHOOK_INLINE_BODY: usize = 64 * 1024;
/// A long explode pauses while more items than this are queued: memory
/// follows the items in flight, not the length of the list.
const EXPLODE_HIGH: usize = 2 * CHUNK;
/// Emits of a long explode are committed in chunks of this many.
const CHUNK: usize = 1024;

/// The executor of `tale serve`.
pub struct Durable {
    loaded: RwLock<Loaded>,
    store: Arc<dyn DurableStore>,
    ready: tokio::sync::mpsc::UnboundedSender<WorkItem>,
    /// Items ready or running (not waiting on a timer).
    queued: AtomicUsize,
    /// Beyond this many queued items, webhooks answer 503 and long explodes wait.
    pub max_queued: usize,
    /// Items that run at once.
    workers: usize,
    /// The store is shared with other processes (a cluster's database).
    clustered: bool,
    /// The store keeps a trace of every execution (`--no-traces` stops it).
    traces: std::sync::atomic::AtomicBool,
    /// Items waiting on a timer, with what cancels them.
    waiting: Mutex<Waiting>,
    /// Stateful actions' items: one at a time, each seeing the state the
    /// previous one left (through an overlay until their step commits).
    stateful: Mutex<StatefulQueues>,
    observer: Option<Arc<dyn Observer>>,
    /// One permit per running item (`workers`).
    permits: Arc<tokio::sync::Semaphore>,
    /// How deep in calls each running called run is (a loop through a
    /// templated target stops at [`super::call::MAX_DEPTH`]); forgotten when
    /// the run finishes. After a restart a loop gets that many more levels.
    call_depth: Mutex<HashMap<RunId, usize>>,
    /// Told whenever `queued` goes down: admission, an explode's back-pressure
    /// and the shutdown drain wait on it instead of polling.
    drained: tokio::sync::Notify,
    /// Recovered items marked and not finished yet, and who waits for none.
    recovering: AtomicUsize,
    recovered: tokio::sync::Notify,
}

/// One recovered item finished (however: also by a panic).
struct Recovered<'a>(&'a Durable);

impl Drop for Recovered<'_> {
    fn drop(&mut self) {
        self.0.recovering.fetch_sub(1, Ordering::AcqRel);
        self.0.recovered.notify_waiters();
    }
}

/// Gives `n` back to `queued` when dropped: also when the work panics, so a
/// panicking action cannot shrink the queue's room for good.
struct Dequeue<'a>(&'a Durable, usize);

impl Drop for Dequeue<'_> {
    fn drop(&mut self) {
        self.0.dequeued(self.1);
    }
}

impl Durable {
    /// Stops storing a trace per execution (`tale serve --no-traces`).
    pub fn without_traces(&self) {
        self.traces.store(false, Ordering::Relaxed);
    }

    /// Starts the executor: `workers` items run at once.
    pub fn start(
        loaded: Loaded,
        store: Arc<dyn DurableStore>,
        workers: usize,
        max_queued: usize,
        observer: Option<Arc<dyn Observer>>,
    ) -> Arc<Self> {
        let clustered = store.work_signal().is_some();
        let traces = std::sync::atomic::AtomicBool::new(store.keeps_traces());
        let (ready, mut rx) = tokio::sync::mpsc::unbounded_channel::<WorkItem>();
        let this = Arc::new(Self {
            loaded: RwLock::new(loaded),
            store,
            ready,
            queued: AtomicUsize::new(0),
            max_queued,
            workers: workers.max(1),
            clustered,
            traces,
            waiting: Mutex::default(),
            stateful: Mutex::default(),
            observer,
            permits: Arc::new(tokio::sync::Semaphore::new(workers.max(1))),
            call_depth: Mutex::default(),
            drained: tokio::sync::Notify::new(),
            recovering: AtomicUsize::new(0),
            recovered: tokio::sync::Notify::new(),
        });
        let weak = Arc::downgrade(&this);
        let permits = this.permits.clone();
        tokio::spawn(async move {
            while let Some(item) = rx.recv().await {
                let Some(this) = weak.upgrade() else { break };
                if this.is_stateful(&item) {
                    // A reload made it stateful since it was counted: it
                    // runs as before, and no longer holds up the suspects.
                    if item.mark {
                        drop(Recovered(&this));
                    }
                    this.enqueue_stateful(item);
                    continue;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                tokio::spawn(async move {
                    let _done = Dequeue(&this, 1);
                    if item.mark {
                        let _recovered = Recovered(&this);
                        // Counted before it runs: if it takes the process
                        // down, the next start knows. A store that cannot
                        // count it now is tried again until it can.
                        let mut wait = std::time::Duration::from_millis(50);
                        while let Err(e) = this.store.mark_started(item.id).await {
                            tracing::warn!(run = %item.run_id, "cannot count a recovered step's start: {e}; trying again");
                            tokio::time::sleep(wait).await;
                            wait = (wait * 2).min(std::time::Duration::from_secs(5));
                        }
                        this.process(item, permit).await;
                    } else {
                        this.process(item, permit).await;
                    }
                });
            }
        });
        this
    }

    pub fn loaded(&self) -> Loaded {
        self.loaded.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The clock, without copying the whole `Loaded` (every commit dispatches).
    fn clock(&self) -> Arc<dyn super::clock::Clock> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .runtime
            .clock
            .clone()
    }

    /// Serves new versions of the stories; work in progress continues on them.
    pub fn replace(&self, loaded: Loaded) {
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = loaded;
    }

    /// Items ready or running.
    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Items waiting on a timer.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Takes back the work a stopped process left, and runs it.
    /// Resumes the stored work. Items ready now may have been running when
    /// the process died, and one of them may be what killed it: each is
    /// counted durably before it runs again; one counted before (a suspect)
    /// runs alone once the others are done, so a crash then is its own; one
    /// counted [`MAX_CRASHED_STARTS`] times fails its run with the reason,
    /// and a restart is not a crash loop. (Timers and stateful actions'
    /// items are resumed as they are.)
    pub async fn resume(self: &Arc<Self>) -> Result<usize, StoreError> {
        let items = self.store.recover().await?;
        let n = items.len();
        // After a clean stop nothing found was running when a crash hit.
        if self.store.clean_restart().await? {
            self.dispatch(items);
        } else {
            self.adopt(items);
        }
        if let Some(signal) = self.store.work_signal() {
            let this = Arc::downgrade(self);
            tokio::spawn(claim_loop(this, signal, self.store.incarnation()));
        }
        Ok(n)
    }

    /// Runs items another process left (or this one before a crash): each
    /// may be what killed it, so each is counted before it runs (see
    /// [`Durable::resume`]).
    fn adopt(self: &Arc<Self>, items: Vec<WorkItem>) {
        let now = self.clock().now_ms();
        let (mut now_items, mut suspects, mut condemned) = (Vec::new(), Vec::new(), Vec::new());
        for mut item in items {
            if item.due_ms > now || self.is_stateful(&item) {
                now_items.push(item);
            } else if item.attempts >= MAX_CRASHED_STARTS {
                condemned.push(item);
            } else if item.attempts > 0 {
                suspects.push(item);
            } else {
                item.mark = true;
                self.recovering.fetch_add(1, Ordering::AcqRel);
                now_items.push(item);
            }
        }
        self.dispatch(now_items);
        if !condemned.is_empty() || !suspects.is_empty() {
            let this = self.clone();
            tokio::spawn(async move { this.resume_suspects(condemned, suspects).await });
        }
    }

    /// This process was declared dead and joined again: the others run what
    /// it held. Drops the items waiting on a timer or in a stateful queue
    /// (those running finish, and their commits are refused).
    fn forget_held(&self) {
        let timers = std::mem::take(&mut *self.lock_waiting()).len();
        let queued: usize = {
            let mut queues = self.stateful.lock().unwrap_or_else(|p| p.into_inner());
            queues.values_mut().map(|q| std::mem::take(&mut q.items).len()).sum()
        };
        if queued > 0 {
            self.dequeued(queued);
        }
        tracing::warn!(
            "this node was declared dead by the others: {timers} waiting and {queued} queued items are theirs now"
        );
    }

    async fn resume_suspects(self: Arc<Self>, condemned: Vec<WorkItem>, suspects: Vec<WorkItem>) {
        for item in condemned {
            let why = format!(
                "{}: this step was running each time tale serve died, {} times in a row; it is not retried",
                item.action,
                item.attempts + 1
            );
            tracing::error!(run = %item.run_id, action = %item.action, "{why}");
            let tx = Transaction {
                done: vec![(item.id, item.run_id)],
                errors: vec![(item.run_id, why)],
                ..Transaction::default()
            };
            self.commit_logged(tx).await;
        }
        self.all_recovered().await;
        for mut item in suspects {
            tracing::warn!(run = %item.run_id, action = %item.action, "running alone a step that was running when tale serve died");
            // Every other worker's permit is held while it runs: a crash
            // then is its own (new items wait a moment).
            let others = u32::try_from(self.workers.saturating_sub(1)).unwrap_or(u32::MAX);
            let hold = if others > 0 {
                self.permits.clone().acquire_many_owned(others).await.ok()
            } else {
                None
            };
            item.mark = true;
            self.recovering.fetch_add(1, Ordering::AcqRel);
            self.dispatch(vec![item]);
            self.all_recovered().await;
            drop(hold);
        }
    }

    /// `n` items left the queue.
    fn dequeued(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
        self.drained.notify_waiters();
    }

    /// Waits until fewer than `limit` items are ready or running, or until
    /// `deadline`; true when the queue got there.
    pub async fn wait_queue_below(&self, limit: usize, deadline: Option<tokio::time::Instant>) -> bool {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.queue_depth() < limit {
                return true;
            }
            match deadline {
                Some(at) => tokio::select! {
                    () = &mut drained => {}
                    () = tokio::time::sleep_until(at) => return self.queue_depth() < limit,
                },
                None => drained.await,
            }
        }
    }

    /// Records that this process stops cleanly (after its drain): the next
    /// start does not count the steps it finds as crashed ones.
    pub async fn stopped_cleanly(self: &Arc<Self>) -> bool {
        match self.store.leave().await {
            Ok(true) => return true,
            Ok(false) => {}
            Err(e) => {
                tracing::error!("cannot leave the cluster cleanly: {e}; the others take over when its lease ends");
                return false;
            }
        }
        let tx = Transaction {
            state: vec![StatePut::set(CLEAN_STOP.to_owned(), serde_json::json!(true))],
            ..Transaction::default()
        };
        self.commit_logged(tx).await
    }

    /// Waits until no recovered item is running.
    async fn all_recovered(&self) {
        loop {
            let notified = self.recovered.notified();
            if self.recovering.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Delivers a request to the webhook at `path`. Answers only once the run's
    /// root event and first work items are committed.
    pub async fn deliver(self: &Arc<Self>, path: &str, request: WebhookRequest) -> Result<Delivery, DurableError> {
        let Some((story, action)) = self.loaded().hooks.get(path).cloned() else {
            return Ok(Delivery::NoSuchWebhook);
        };
        self.deliver_to(story, action, request).await
    }

    /// Delivers a request to the webhook `action` of `story` (`tale run --db`).
    pub async fn deliver_to(
        self: &Arc<Self>,
        story: Arc<BuiltStory>,
        action: usize,
        request: WebhookRequest,
    ) -> Result<Delivery, DurableError> {
        let loaded = self.loaded();
        let _slot = self.admit().await?;
        let run_id = RunId::new();
        let request_len = request.body.len();
        let (output, response) = match loaded.runtime.accept(&story, action, &request, run_id)? {
            WebhookResult::Refused { status, message } => return Ok(Delivery::Refused { status, message }),
            WebhookResult::Ignored { response } => return Ok(Delivery::Ignored(response)),
            WebhookResult::Accepted { output, response } => (output, response),
        };
        // The output holds what it needs of the body: a large one is not
        // held twice while the step commits.
        drop(request);
        let now = loaded.runtime.clock.now_ms();
        let root = Arc::new(Event::new(
            run_id,
            story.id.clone(),
            story.actions[action].slug.clone(),
            Vec::new(),
            output,
            now,
        ));
        let mut tx = Transaction {
            started: vec![(run_id, story.id.clone(), now)],
            ..Transaction::default()
        };
        push_downstream(&story, action, None, &root, &mut tx.items);
        tx.events.push(root);
        // The pure actions right after a small webhook (a transform, a
        // trigger) run before the first commit and are stored with it: one
        // work item and one hand-off less per event. No request runs before
        // the answer, and a large body keeps its answer prompt.
        if request_len <= WEBHOOK_INLINE_BODY {
            self.run_inline(&loaded, &story, true, false, WEBHOOK_INLINE_BUDGET, &mut tx)
                .await;
        }
        self.commit(tx, false).await?;
        Ok(Delivery::Started { run_id, response })
    }

    /// Emits a stored event again, as the root of a new run: the actions
    /// downstream of it run once more (with its ancestry for templates).
    /// The prompted executions waiting for an answer: (run, action, input).
    pub fn waiting_prompts(&self) -> Vec<(RunId, Arc<str>, Option<super::event::EventId>)> {
        let waiting = super::links::prompt_waiting();
        self.lock_waiting()
            .values()
            .filter(|i| i.wake.as_ref() == Some(&waiting))
            .map(|i| (i.run_id, i.action.clone(), i.input.as_ref().map(|e| e.id)))
            .collect()
    }

    /// A person answered a prompt: the execution that rendered the link
    /// emits `{"prompt": {"status": …}}` and its run goes on. False when
    /// that execution no longer waits (answered already, or expired).
    pub async fn answer_prompt(self: &Arc<Self>, claim: &super::links::PromptClaim) -> Result<bool, DurableError> {
        let gone = |what: &str| DurableError::Gone(format!("the prompt names {what}"));
        let run = claim.run.parse::<RunId>().map_err(|_| gone("no run"))?;
        let input = match &claim.input {
            Some(id) => Some(id.parse::<super::event::EventId>().map_err(|_| gone("no event"))?),
            None => None,
        };
        let tx = Transaction {
            answers: vec![PromptAnswer {
                run,
                action: claim.action.as_str().into(),
                input,
                payload: serde_json::json!({"prompt": {"status": claim.status}}),
            }],
            ..Transaction::default()
        };
        let applied = self.commit(tx, true).await?;
        Ok(applied.answered > 0)
    }

    pub async fn reemit(self: &Arc<Self>, event: &Event) -> Result<RunId, DurableError> {
        let loaded = self.loaded();
        let story = loaded
            .runtime
            .library
            .get(&*event.story)
            .cloned()
            .ok_or_else(|| DurableError::Gone(format!("story `{}` is not served", event.story)))?;
        let action = story.action(&event.action).ok_or_else(|| {
            DurableError::Gone(format!(
                "story `{}` has no action `{}` any more",
                event.story, event.action
            ))
        })?;
        let run_id = RunId::new();
        let now = loaded.runtime.clock.now_ms();
        let root = Arc::new(
            Event::new(
                run_id,
                story.id.clone(),
                story.actions[action].slug.clone(),
                event.parents.clone(),
                event.held_output().clone(),
                now,
            )
            .with_branch(event.branch),
        );
        let mut tx = Transaction {
            started: vec![(run_id, story.id.clone(), now)],
            ..Transaction::default()
        };
        push_downstream(&story, action, event.branch, &root, &mut tx.items);
        tx.events.push(root);
        self.commit(tx, false).await?;
        Ok(run_id)
    }

    /// Holds a new run back while the work queued is over half the limit (a
    /// sender then slows down to what tale can do, instead of piling up
    /// work); refuses it when the queue stays full. The slot is reserved
    /// atomically, so a burst cannot all slip in at once; it is released
    /// when the returned guard drops (after the run's items are queued).
    async fn admit(&self) -> Result<Slot<'_>, StoreError> {
        let soft = (self.max_queued / 2).min(self.workers * 2).max(1);
        let deadline = tokio::time::Instant::now() + ADMISSION_WAIT;
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if let Some(slot) = self.reserve(soft) {
                return Ok(slot);
            }
            tokio::select! {
                () = &mut drained => {}
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.reserve(self.max_queued.max(1))
            .ok_or_else(|| StoreError::Full(format!("{} work items are waiting", self.queue_depth())))
    }

    /// Takes one slot of `queued` if fewer than `limit` are taken.
    fn reserve(&self, limit: usize) -> Option<Slot<'_>> {
        let mut current = self.queued.load(Ordering::Acquire);
        while current < limit {
            match self
                .queued
                .compare_exchange_weak(current, current + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(Slot(self)),
                Err(now) => current = now,
            }
        }
        None
    }

    /// Fires the scheduled action `action` of `story` for the tick `tick_ms`,
    /// once: false when that tick (or a later one) already fired.
    pub async fn fire(
        self: &Arc<Self>,
        story: &Arc<BuiltStory>,
        action: usize,
        tick_ms: i64,
    ) -> Result<bool, StoreError> {
        let (applied, _) = self.start_action(story, action, Some(tick_ms)).await?;
        Ok(applied.fired)
    }

    /// Starts a run at the scheduled action `action` now, outside its schedule
    /// (`tale run --db`): no tick is recorded.
    pub async fn run_now(self: &Arc<Self>, story: &Arc<BuiltStory>, action: usize) -> Result<RunId, StoreError> {
        self.start_action(story, action, None).await.map(|(_, run)| run)
    }

    async fn start_action(
        self: &Arc<Self>,
        story: &Arc<BuiltStory>,
        action: usize,
        tick_ms: Option<i64>,
    ) -> Result<(Applied, RunId), StoreError> {
        let run_id = RunId::new();
        let item = WorkItem {
            id: new_id(),
            run_id,
            story: story.id.clone(),
            action: story.actions[action].slug.clone(),
            input: None,
            wake: None,
            due_ms: 0,
            attempts: 0,
            mark: false,
            holder: 0,
        };
        let started = tick_ms.unwrap_or_else(|| self.clock().now_ms());
        let tx = Transaction {
            started: vec![(run_id, story.id.clone(), started)],
            items: vec![item],
            tick: tick_ms.map(|t| (schedule_key(story, action), t)),
            ..Transaction::default()
        };
        Ok((self.commit(tx, true).await?, run_id))
    }

    pub async fn last_tick(&self, story: &BuiltStory, action: usize) -> Result<Option<i64>, StoreError> {
        self.store.last_tick(&schedule_key(story, action)).await
    }

    /// Commits, then starts the new items.
    async fn commit(self: &Arc<Self>, tx: Transaction, wait: bool) -> Result<Applied, StoreError> {
        // Apply and dispatch in a task of their own: a caller that goes away
        // (a webhook whose client hung up, a schedule aborted by a reload)
        // must not leave committed items that nothing runs.
        let this = self.clone();
        let task = tokio::spawn(async move { this.apply(tx, wait).await });
        task.await
            .map_err(|e| StoreError::Failed(format!("the commit task failed: {e}")))?
    }

    /// Applies `tx` and starts the items it stored. Only for callers that
    /// are not dropped midway (the executor's own tasks); others go through
    /// [`Durable::commit`].
    async fn apply(self: &Arc<Self>, mut tx: Transaction, wait: bool) -> Result<Applied, StoreError> {
        // Only a shared store places items by lane; the others need not know.
        if self.clustered {
            tx.stateful = tx.items.iter().filter(|i| self.is_stateful(i)).map(|i| i.id).collect();
        }
        let mut items = tx.items.clone();
        let events = tx.events.len();
        let committed = self
            .observer
            .as_ref()
            .filter(|o| o.wants_steps())
            .map(|_| tx.events.clone());
        let calls: Vec<(RunId, usize)> = tx.calls.iter().map(|c| (c.child, c.depth)).collect();
        let redactor = self.loaded.read().unwrap_or_else(|p| p.into_inner()).redactor.clone();
        let mut applied = self.store.apply(redacted(&redactor, tx), wait).await?;
        if !calls.is_empty() && applied.fired {
            // Only once the child runs exist: an abandoned step leaves none.
            self.call_depth.lock().unwrap_or_else(|p| p.into_inner()).extend(calls);
        }
        if applied.fired {
            if let Some(o) = &self.observer {
                o.events(events);
                if let Some(committed) = &committed {
                    o.committed(committed);
                }
            }
            if !applied.handed_off.is_empty() {
                items.retain(|i| !applied.handed_off.contains(&i.id));
            }
            for item in &mut items {
                item.holder = applied.holder;
            }
            self.dispatch(items);
            self.dispatch(std::mem::take(&mut applied.woken));
        }
        if let Some(o) = &self.observer {
            for (_, story, ok) in &applied.finished {
                o.run_finished(story, *ok);
            }
        }
        if !applied.finished.is_empty() {
            let mut depths = self.call_depth.lock().unwrap_or_else(|p| p.into_inner());
            if !depths.is_empty() {
                for (run, _, _) in &applied.finished {
                    depths.remove(run);
                }
            }
        }
        Ok(applied)
    }

    /// Starts items now, or when they fall due.
    fn dispatch(self: &Arc<Self>, items: Vec<WorkItem>) {
        let clock = self.clock();
        let now = clock.now_ms();
        for item in items {
            // Waiting for a sub-story: the store wakes it.
            if item.due_ms == PARKED {
                continue;
            }
            // On a virtual clock timers do not sleep: the runner releases
            // them when nothing else is left (`release_next_timers`).
            if item.due_ms > now && clock.is_virtual() {
                self.lock_waiting().insert(item.id, item);
                continue;
            }
            if item.due_ms > now {
                let (id, due) = (item.id, item.due_ms);
                self.lock_waiting().insert(id, item);
                let this = Arc::downgrade(self);
                let clock = clock.clone();
                tokio::spawn(async move {
                    clock.sleep_until(due).await;
                    let Some(this) = this.upgrade() else { return };
                    // A cancelled item is gone from `waiting`.
                    let Some(item) = this.lock_waiting().remove(&id) else {
                        return;
                    };
                    this.queued.fetch_add(1, Ordering::Relaxed);
                    let _ = this.ready.send(item);
                });
                continue;
            }
            // An answered prompt: its expiry timer has nothing left to do.
            if item.wake.as_ref().is_some_and(|w| w.get("prompt").is_some()) {
                self.lock_waiting().remove(&item.id);
            }
            self.queued.fetch_add(1, Ordering::Relaxed);
            // A worker free now (so none is awaited: the semaphore hands
            // released permits to waiters first): the item starts here, not
            // through the dispatcher's queue, one hand-off fewer. Recovered
            // and stateful items keep the dispatcher's accounting and lanes.
            // Not strictly first come, first served: in the moment between
            // the dispatcher taking a permit and waiting again, a new item
            // may take a freed permit before one queued in `ready`.
            if !item.mark
                && !self.is_stateful(&item)
                && let Ok(permit) = self.permits.clone().try_acquire_owned()
            {
                let this = self.clone();
                tokio::spawn(async move {
                    let _done = Dequeue(&this, 1);
                    this.process(item, permit).await;
                });
                continue;
            }
            let _ = self.ready.send(item);
        }
    }

    /// Virtual time (dry runs, story tests): the clock jumps to the
    /// earliest timer and every item due then is released, in order (ties
    /// by id: by creation). The runner calls it when nothing is ready or
    /// running; false when no timer is left.
    pub async fn release_next_timers(self: &Arc<Self>) -> bool {
        let due: Vec<WorkItem> = {
            let mut waiting = self.lock_waiting();
            let Some(at) = waiting.values().map(|i| i.due_ms).min() else {
                return false;
            };
            let mut ids: Vec<(i64, Uuid)> = waiting
                .values()
                .filter(|i| i.due_ms <= at)
                .map(|i| (i.due_ms, i.id))
                .collect();
            ids.sort_unstable();
            ids.into_iter().filter_map(|(_, id)| waiting.remove(&id)).collect()
        };
        if let Some(last) = due.last() {
            self.clock().sleep_until(last.due_ms).await;
        }
        self.queued.fetch_add(due.len(), Ordering::Relaxed);
        for item in due {
            let _ = self.ready.send(item);
        }
        true
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_stateful(&self, item: &WorkItem) -> bool {
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        loaded
            .runtime
            .library
            .get(&*item.story)
            .and_then(|s| s.action(&item.action).map(|a| s.actions[a].exec.stateful()))
            .unwrap_or(false)
    }

    fn enqueue_stateful(self: &Arc<Self>, item: WorkItem) {
        let key = (item.story.clone(), item.action.clone());
        let start = {
            let mut queues = self.stateful.lock().unwrap_or_else(|p| p.into_inner());
            let queue = queues.entry(key.clone()).or_default();
            queue.items.push_back(item);
            !std::mem::replace(&mut queue.running, true)
        };
        if start {
            let this = self.clone();
            tokio::spawn(async move { this.run_stateful(key).await });
        }
    }

    /// Runs a stateful action's items in batches until none is left.
    async fn run_stateful(self: Arc<Self>, key: (Arc<str>, Arc<str>)) {
        /// Marks the action idle if the runner stops, also by a panic: new
        /// items then start a new runner instead of waiting for this one.
        struct Idle<'a>(&'a Durable, &'a (Arc<str>, Arc<str>));
        impl Drop for Idle<'_> {
            fn drop(&mut self) {
                // A normal stop already marked it (under the lock, so that a
                // new runner cannot start twice); only a panic gets here first.
                if !std::thread::panicking() {
                    return;
                }
                let mut queues = self.0.stateful.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(queue) = queues.get_mut(self.1) {
                    queue.running = false;
                }
            }
        }
        let _idle = Idle(&self, &key);
        loop {
            let batch: Vec<WorkItem> = {
                let mut queues = self.stateful.lock().unwrap_or_else(|p| p.into_inner());
                let Some(queue) = queues.get_mut(&key) else { return };
                if queue.items.is_empty() {
                    queue.running = false;
                    return;
                }
                let n = queue.items.len().min(STATEFUL_BATCH);
                queue.items.drain(..n).collect()
            };
            let _done = Dequeue(&self, batch.len());
            self.process_batch(batch).await;
        }
    }

    /// The story and action of an item, or why it cannot run.
    fn find(&self, loaded: &Loaded, item: &WorkItem) -> Result<(Arc<BuiltStory>, usize), String> {
        loaded
            .runtime
            .library
            .get(&*item.story)
            .and_then(|s| s.action(&item.action).map(|a| (s.clone(), a)))
            .ok_or_else(|| {
                format!(
                    "{}: the action is no longer in story `{}` (reloaded); its work item is dropped",
                    item.action, item.story
                )
            })
    }

    /// Items of one stateful action, one after the other, in one step.
    async fn process_batch(self: &Arc<Self>, items: Vec<WorkItem>) {
        let loaded = self.loaded();
        let overlay = Arc::new(Overlay::new(loaded.runtime.store.clone()));
        let runtime = Runtime {
            store: overlay.clone(),
            ..loaded.runtime.clone()
        };
        let mut tx = Transaction::default();
        let mut story_seen = None;
        let mut items = items;
        let mut holders: Vec<u64> = items.iter().map(|i| i.holder).collect();
        holders.sort_unstable();
        holders.dedup();
        for holder in holders {
            // The action's lane went to another node with these items.
            if !self.store.holds(holder).await {
                tracing::info!("not run here: another node holds this action's items now");
                items.retain(|i| i.holder != holder);
            }
        }
        let n = items.len();
        for item in items {
            tx.done.push((item.id, item.run_id));
            let (story, action) = match self.find(&loaded, &item) {
                Ok(found) => found,
                Err(message) => {
                    tracing::warn!(run = %item.run_id, "{message}");
                    tx.errors.push((item.run_id, message));
                    continue;
                }
            };
            let before = tx.state.len();
            if let Some(rest) = self
                .execute_into(&loaded, &runtime, &story, action, &item, &mut tx)
                .await
            {
                let now = loaded.runtime.clock.now_ms();
                self.add_more(&story, action, &item, rest.collect(), now, &mut tx);
            }
            overlay.apply(&tx.state[before..]);
            story_seen = Some(story);
        }
        if let Some(story) = story_seen {
            self.run_inline(&loaded, &story, false, true, INLINE_BUDGET * n, &mut tx)
                .await;
        }
        self.commit_logged(tx).await;
    }

    /// Runs one item and folds what it did into `tx`: its events and next
    /// items, state changes, cancelled timers, or its error. Returns the
    /// emits still to pull (a long explode).
    async fn execute_into(
        self: &Arc<Self>,
        loaded: &Loaded,
        runtime: &Runtime,
        story: &Arc<BuiltStory>,
        action: usize,
        item: &WorkItem,
        tx: &mut Transaction,
    ) -> Option<super::exec::LazyEmits> {
        let built = &story.actions[action];
        let started = std::time::Instant::now();
        let at_ms = loaded.runtime.clock.now_ms();
        let (result, skipped) = runtime
            .execute_item(
                story.clone(),
                item.run_id,
                action,
                item.input.clone(),
                item.wake.clone(),
            )
            .await;
        if let Some(o) = &self.observer {
            // Taking the `failure` branch counts as failing (handled or not).
            let ok = result
                .as_ref()
                .is_ok_and(|o| !o.emits.iter().any(|e| matches!(e, Emit::Branch("failure", _))));
            o.action_done(&story.id, built, started.elapsed().as_secs_f64(), ok);
        }
        if let Some(o) = self.observer.as_ref().filter(|o| o.wants_steps()) {
            let (error, details, emitted) = match &result {
                Ok(outcome) => (
                    None,
                    outcome.trace.clone(),
                    if o.wants_outputs() {
                        outcome
                            .emits
                            .iter()
                            .filter_map(|e| match e {
                                Emit::Main(o) => Some((None, o.clone())),
                                Emit::Text(raw) => Some((None, raw.to_json())),
                                Emit::Branch(b, o) => Some((Some(*b), o.clone())),
                                _ => None,
                            })
                            .collect()
                    } else {
                        Vec::new()
                    },
                ),
                Err(e) => (Some(e.to_string()), Vec::new(), Vec::new()),
            };
            o.executed(Executed {
                run_id: item.run_id,
                action: item.action.clone(),
                input: item.input.clone(),
                at_ms,
                skipped,
                error,
                details,
                emitted,
            });
        }
        if self.traces.load(Ordering::Relaxed) {
            tx.traces
                .push(step_trace(loaded, item, at_ms, started.elapsed(), skipped, &result));
        }
        let mut outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => {
                let message = loaded.redactor.text(&format!("{}: {e}", item.action));
                tracing::warn!(story = %item.story, run = %item.run_id, "action failed: {message}");
                tx.errors.push((item.run_id, message));
                return None;
            }
        };
        self.log_details(loaded, item, &outcome);
        tx.state.append(&mut outcome.state);
        if !outcome.cancel.is_empty() {
            // This action's timers whose payload it no longer needs.
            let cancelled = |w: &WorkItem| {
                w.story == item.story
                    && w.action == item.action
                    && w.due_ms > 0
                    && w.wake.as_ref().is_some_and(|p| outcome.cancel.contains(p))
            };
            let mut waiting = self.lock_waiting();
            let ids: Vec<Uuid> = waiting.values().filter(|w| cancelled(w)).map(|w| w.id).collect();
            for id in &ids {
                waiting.remove(id);
            }
            tx.cancelled.extend(ids);
            drop(waiting);
            // A window opened earlier in this same step (a batch of a
            // stateful action) is not stored yet: it is simply not stored.
            tx.items.retain(|w| !cancelled(w));
        }
        let now = loaded.runtime.clock.now_ms();
        let emits = std::mem::take(&mut outcome.emits);
        let before = tx.events.len();
        self.add_emits(story, action, item, emits, now, tx);
        if self.traces.load(Ordering::Relaxed)
            && let Some(t) = tx.traces.last_mut()
        {
            // Events, not emits: a lazy explode's first chunk is here.
            t.emitted = (tx.events.len() - before) as i64;
        }
        outcome.rest.take()
    }

    /// Runs one item and commits what it produced. A store failure leaves the
    /// item stored: it runs again when `tale serve` restarts.
    async fn process(self: &Arc<Self>, item: WorkItem, permit: tokio::sync::OwnedSemaphorePermit) {
        // Fault injection for the crash-loop test (debug builds only): the
        // process dies the way a stack overflow or an OOM kill would.
        #[cfg(debug_assertions)]
        if std::env::var("TALE_TEST_ABORT_IN").is_ok_and(|slug| *slug == *item.action) {
            std::process::abort();
        }
        if !self.store.holds(item.holder).await {
            tracing::info!(run = %item.run_id, action = %item.action, "not run here: another node holds it now");
            return;
        }
        let mut permit = Some(permit);
        let loaded = self.loaded();
        let mut tx = Transaction {
            done: vec![(item.id, item.run_id)],
            ..Transaction::default()
        };
        let (story, action) = match self.find(&loaded, &item) {
            Ok(found) => found,
            Err(message) => {
                tracing::warn!(run = %item.run_id, "{message}");
                tx.errors.push((item.run_id, message));
                self.commit_logged(tx).await;
                return;
            }
        };
        let effect = story.actions[action].exec.inline() == Inline::Effect;
        let rest = self
            .execute_into(&loaded, &loaded.runtime, &story, action, &item, &mut tx)
            .await;
        let Some(mut rest) = rest else {
            self.run_inline(&loaded, &story, effect, true, INLINE_BUDGET, &mut tx)
                .await;
            self.commit_logged(tx).await;
            return;
        };
        // A long explode: chunks go out as the queue drains; the item is done
        // with the last chunk. How many elements are out is committed with
        // each chunk, so after a crash the explode resumes after them
        // instead of sending them again.
        let done = std::mem::take(&mut tx.done);
        let now = loaded.runtime.clock.now_ms();
        let progress = format!("explode-progress/{}", item.id);
        // How far an earlier attempt got. A read that fails is not "nothing
        // sent" (that would send every element again): it is tried again,
        // and after the last try the item stays stored for the next start.
        let mut sent = None;
        for wait_ms in [0, 50, 500, 2_000] {
            tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
            match loaded.runtime.store.state(&progress).await {
                Ok(v) => {
                    sent = Some(v.and_then(|v| v.as_u64()).unwrap_or(0) as usize);
                    break;
                }
                Err(e) => tracing::warn!(run = %item.run_id, "cannot read an explode's progress: {e}"),
            }
        }
        let Some(mut sent) = sent else {
            tracing::error!(run = %item.run_id, action = %item.action, "an explode's progress cannot be read: it resumes at the next start");
            return;
        };
        if sent > 0 {
            rest.by_ref().take(sent).for_each(drop);
            tracing::info!(run = %item.run_id, action = %item.action, sent, "resuming an explode");
        }
        loop {
            let chunk: Vec<Emit> = rest.by_ref().take(CHUNK).collect();
            let last = chunk.len() < CHUNK;
            sent += chunk.len();
            self.add_more(&story, action, &item, chunk, now, &mut tx);
            // Pure actions after an explode run in the chunk's step; requests
            // stay items of their own, to run in parallel.
            self.run_inline(&loaded, &story, true, true, CHUNK * 4, &mut tx).await;
            if last {
                tx.done = done;
                tx.state.push(StatePut::delete(progress));
                self.commit_logged(tx).await;
                return;
            }
            tx.state.push(StatePut::set(progress.clone(), serde_json::json!(sent)));
            if !self.commit_logged(std::mem::take(&mut tx)).await {
                return;
            }
            if self.queue_depth() > EXPLODE_HIGH {
                // Wait for the queue to drain without holding a worker: the
                // items waited on need workers (several long explodes at once
                // would otherwise hold them all).
                drop(permit.take());
                self.wait_queue_below(EXPLODE_HIGH + 1, None).await;
                match self.permits.clone().acquire_owned().await {
                    Ok(p) => permit = Some(p),
                    Err(_) => return,
                }
            }
        }
    }

    /// Runs the new items of `tx` that may share its step (pure actions, and
    /// one outside effect per step) right away, so that a chain such as
    /// transform → request commits once instead of once per action.
    /// `effect`: an outside effect already ran (none may). Without
    /// `fetch_tokens` (before a webhook's answer) an action whose templates
    /// need an OAuth2 token stays an item: fetching it is a request.
    async fn run_inline(
        self: &Arc<Self>,
        loaded: &Loaded,
        story: &Arc<BuiltStory>,
        mut effect: bool,
        fetch_tokens: bool,
        mut budget: usize,
        tx: &mut Transaction,
    ) {
        let mut queue: std::collections::VecDeque<WorkItem> = std::mem::take(&mut tx.items).into();
        let mut keep = Vec::new();
        while let Some(item) = queue.pop_front() {
            let action = match story.action(&item.action) {
                Some(a) if budget > 0 && item.due_ms == 0 && item.wake.is_none() && *item.story == *story.id => a,
                _ => {
                    keep.push(item);
                    continue;
                }
            };
            let built = &story.actions[action];
            let allowed = match built.exec.inline() {
                Inline::Pure => true,
                Inline::Effect => !effect,
                Inline::Never => false,
            };
            // An action that reads story state runs in a step of its own, so
            // it reads what the steps before it committed (an inline one
            // would read the state of before this step's own changes).
            let reads_state = !built.state_reads.is_empty();
            if !allowed || reads_state || built.disabled || (!fetch_tokens && !built.tokens.is_empty()) {
                keep.push(item);
                continue;
            }
            effect |= built.exec.inline() == Inline::Effect;
            budget -= 1;
            if let Some(rest) = self
                .execute_into(loaded, &loaded.runtime, story, action, &item, tx)
                .await
            {
                let now = loaded.runtime.clock.now_ms();
                self.add_more(story, action, &item, rest.collect(), now, tx);
            }
            // Its next items may run inline too.
            queue.extend(tx.items.drain(..));
        }
        tx.items = keep;
    }

    fn log_details(&self, loaded: &Loaded, item: &WorkItem, outcome: &super::exec::Outcome) {
        for detail in &outcome.trace {
            if let Some(message) = detail.get("log_error").and_then(J::as_str) {
                let message = loaded.redactor.text(message);
                tracing::warn!(story = %item.story, action = %item.action, run = %item.run_id, "{message}");
            }
        }
    }

    /// [`Durable::add_emits`] for emits pulled after the execution (a long
    /// explode's), told to an observer that traces.
    fn add_more(
        &self,
        story: &BuiltStory,
        action: usize,
        item: &WorkItem,
        emits: Vec<Emit>,
        now: i64,
        tx: &mut Transaction,
    ) {
        let before = tx.events.len();
        self.add_emits(story, action, item, emits, now, tx);
        // The first chunk of a long explode counts in its execution's trace.
        if let Some(t) = tx.traces.last_mut()
            && t.action == item.action
            && t.input == item.input.as_ref().map(|e| e.id)
        {
            t.emitted += (tx.events.len() - before) as i64;
        }
        if let Some(o) = self.observer.as_ref().filter(|o| o.wants_outputs()) {
            let input = item.input.as_ref().map(|e| e.id);
            o.emitted_more(item.run_id, &item.action, input, &tx.events[before..]);
        }
    }

    /// Events and next items for what an action emitted.
    fn add_emits(
        &self,
        story: &BuiltStory,
        action: usize,
        item: &WorkItem,
        emits: Vec<Emit>,
        now: i64,
        tx: &mut Transaction,
    ) {
        let parents: Vec<Arc<Event>> = item.input.iter().cloned().collect();
        let is_exit = story.exits.contains(&action);
        for emit in emits {
            let (branch, output) = match emit {
                Emit::Main(o) => (None, Output::Json(o)),
                Emit::Text(raw) => (None, Output::from(raw)),
                Emit::Branch(b, o) => (Some(b), Output::Json(o)),
                Emit::Call {
                    story: called,
                    payload,
                    as_body,
                } => {
                    self.start_call(item, called, payload, as_body, now, tx);
                    continue;
                }
                Emit::Later { at_ms, payload } => {
                    tx.items.push(WorkItem {
                        id: new_id(),
                        run_id: item.run_id,
                        story: item.story.clone(),
                        action: item.action.clone(),
                        input: item.input.clone(),
                        wake: Some(payload),
                        due_ms: at_ms,
                        attempts: 0,
                        mark: false,
                        holder: 0,
                    });
                    continue;
                }
            };
            let event = Arc::new(
                Event::new(
                    item.run_id,
                    story.id.clone(),
                    story.actions[action].slug.clone(),
                    parents.clone(),
                    output,
                    now,
                )
                .with_branch(branch),
            );
            push_downstream(story, action, branch, &event, &mut tx.items);
            if let Some(why) = Runtime::unhandled_failure(story, action, branch, &event) {
                tx.errors.push((item.run_id, format!("{}: {why}", item.action)));
            }
            if is_exit {
                tx.exits.push((item.run_id, event.id));
            }
            tx.events.push(event);
        }
    }

    /// Starts the sub-story run a call asks for, in the caller's step: its
    /// root event and first items, linked to the caller, whose item waits
    /// parked until the store wakes it with the run's first exit. A call
    /// that cannot start (unknown story, bad inputs, the entry refusing)
    /// wakes the caller at once with why.
    fn start_call(&self, item: &WorkItem, called: String, payload: J, as_body: bool, now: i64, tx: &mut Transaction) {
        let loaded = self.loaded();
        let caller = |wake: J, due_ms: i64, id: Uuid| WorkItem {
            id,
            run_id: item.run_id,
            story: item.story.clone(),
            action: item.action.clone(),
            input: item.input.clone(),
            wake: Some(wake),
            due_ms,
            attempts: 0,
            mark: false,
            holder: 0,
        };
        let refused = |why: String| {
            caller(
                serde_json::json!({"called": {"story": called, "refused": why}}),
                0,
                new_id(),
            )
        };
        let depth = {
            let depths = self.call_depth.lock().unwrap_or_else(|p| p.into_inner());
            depths.get(&item.run_id).copied().unwrap_or(0) + 1
        };
        if depth > super::call::MAX_DEPTH {
            // The calling action fails: its run ends with the error, which
            // travels up through every caller.
            let e = super::call::CallError::TooDeep;
            tx.errors.push((item.run_id, format!("{}: {e}", item.action)));
            return;
        }
        let (child, entry, request) =
            match super::call::prepare_call(&loaded.runtime.library, &called, &payload, as_body) {
                Ok(found) => found,
                Err(why) => {
                    tx.items.push(refused(why));
                    return;
                }
            };
        let child_run = RunId::new();
        let output = match loaded.runtime.accept(&child, entry, &request, child_run) {
            Ok(WebhookResult::Accepted { output, .. }) => output,
            // Its entry's rules did not match: it ends at once, without an exit.
            Ok(WebhookResult::Ignored { .. }) => {
                let ended = serde_json::json!({"called": {"story": called, "output": null, "errors": []}});
                tx.items.push(caller(ended, 0, new_id()));
                return;
            }
            Ok(WebhookResult::Refused { message, .. }) => {
                tx.items.push(refused(message));
                return;
            }
            Err(e) => {
                tx.items.push(refused(e.to_string()));
                return;
            }
        };
        let root = Arc::new(Event::new(
            child_run,
            child.id.clone(),
            child.actions[entry].slug.clone(),
            Vec::new(),
            output,
            now,
        ));
        let parked = new_id();
        tx.started.push((child_run, child.id.clone(), now));
        push_downstream(&child, entry, None, &root, &mut tx.items);
        if child.exits.contains(&entry) {
            tx.exits.push((child_run, root.id));
        }
        tx.events.push(root);
        tx.calls.push(CallLink {
            child: child_run,
            parent: item.run_id,
            parent_event: item.input.as_ref().map(|e| e.id),
            caller_item: parked,
            depth,
        });
        let waits = serde_json::json!({"call": {"story": child.id.as_ref(), "run_id": child_run.to_string()}});
        tx.items.push(caller(waits, PARKED, parked));
    }

    /// Commits an internal step, waiting for room. A failed commit (the disk
    /// full, the database busy) is tried again with back-off; after the last
    /// try the item stays stored, and runs again when `tale serve` restarts.
    /// Only the executor's own tasks call it, which no client hanging up
    /// cancels: the commit needs no task of its own.
    async fn commit_logged(self: &Arc<Self>, tx: Transaction) -> bool {
        const BACKOFF_MS: [u64; 5] = [50, 200, 1_000, 5_000, 20_000];
        for (attempt, wait) in BACKOFF_MS.iter().enumerate() {
            match self.apply(tx.clone(), true).await {
                Ok(_) => return true,
                // Another try gives the same answer: the step stays stored.
                Err(e) if !e.is_retryable() => {
                    tracing::error!("cannot commit a step: {e}; it runs again at the next start");
                    return false;
                }
                Err(e) if attempt + 1 < BACKOFF_MS.len() => {
                    tracing::warn!("cannot commit a step (try {}): {e}; trying again", attempt + 1);
                    tokio::time::sleep(std::time::Duration::from_millis(*wait)).await;
                }
                Err(e) => tracing::error!("cannot commit a step: {e}; it runs again at the next start"),
            }
        }
        false
    }
}

/// How long a node of a cluster waits between claims when nothing tells it
/// that work is waiting (a lost notification, a poll-only connection).
const CLAIM_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Claims work others left or handed over, whenever the store says some may
/// be waiting and at least every [`CLAIM_POLL`]; forgets what this process
/// held when it was declared dead. Ends with the executor.
async fn claim_loop(this: std::sync::Weak<Durable>, signal: Arc<tokio::sync::Notify>, mut incarnation: u64) {
    loop {
        let _ = tokio::time::timeout(CLAIM_POLL, signal.notified()).await;
        let Some(this) = this.upgrade() else { return };
        let now = this.store.incarnation();
        if now != incarnation {
            incarnation = now;
            this.forget_held();
        }
        loop {
            match this.store.claim().await {
                Ok(items) if items.is_empty() => break,
                Ok(items) => this.adopt(items),
                Err(e) => {
                    tracing::warn!("cannot claim waiting work: {e}");
                    break;
                }
            }
        }
        // Debounce: a burst of notifications makes one claim.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// What a step writes with every credential value hidden: the store keeps
/// what it is given (SQLite, memory, any other). The events in memory keep
/// their values for the actions after them; only copies are redacted, and
/// only those that hold a secret.
fn redacted(redactor: &Redactor, mut tx: Transaction) -> Transaction {
    if redactor.is_empty() {
        return tx;
    }
    for event in &mut tx.events {
        let hidden = match event.held_output().raw() {
            // Kept as text: parsed (a copy, dropped here) only when the text
            // may hold a secret; a secret found turns it into a redacted value.
            Some(raw) if redactor.text_may_hold_secret(raw.text()) => redactor.json_if_secret(&raw.to_json()),
            Some(_) => None,
            None => redactor.json_if_secret(event.output()),
        };
        if let Some(output) = hidden {
            *event = Arc::new(event.with_output(output));
        }
    }
    for item in &mut tx.items {
        if let Some(wake) = item.wake.as_mut() {
            if let Some(hidden) = redactor.json_if_secret(wake) {
                *wake = hidden;
            }
        }
    }
    for put in &mut tx.state {
        match &mut put.change {
            super::store::Change::Set(v) | super::store::Change::Push(v) => {
                if let Some(hidden) = redactor.json_if_secret(v) {
                    *v = hidden;
                }
            }
            super::store::Change::Delete => {}
        }
    }
    for (_, error) in &mut tx.errors {
        *error = redactor.text(error);
    }
    tx
}

/// The stored trace of one execution: its detail and error redacted here,
/// as the events of its step are in [`redacted`].
fn step_trace(
    loaded: &Loaded,
    item: &WorkItem,
    at_ms: i64,
    took: std::time::Duration,
    skipped: Option<&'static str>,
    result: &Result<super::exec::Outcome, super::exec::ActionError>,
) -> super::trace::StepTrace {
    use super::trace::StepStatus;
    let (status, branch, emitted, error, detail) = match result {
        Err(e) => (StepStatus::Failed, None, 0, Some(e.to_string()), None),
        Ok(outcome) if skipped.is_some() => (
            StepStatus::Skipped,
            None,
            0,
            skipped.map(str::to_owned),
            traced_detail(loaded, &outcome.trace),
        ),
        Ok(outcome) => {
            let mut branch = None;
            let mut error = None;
            let mut emitted = 0;
            for emit in &outcome.emits {
                match emit {
                    Emit::Main(_) | Emit::Text(_) => emitted += 1,
                    Emit::Branch(b, out) => {
                        emitted += 1;
                        branch.get_or_insert(*b);
                        if *b == "failure" && error.is_none() {
                            error = out.get("error").and_then(J::as_str).map(str::to_owned);
                        }
                    }
                    _ => {}
                }
            }
            let status = if branch == Some("failure") {
                StepStatus::Failed
            } else {
                StepStatus::Succeeded
            };
            (status, branch, emitted, error, traced_detail(loaded, &outcome.trace))
        }
    };
    super::trace::StepTrace {
        run_id: item.run_id,
        action: item.action.clone(),
        input: item.input.as_ref().map(|e| e.id),
        at_ms,
        duration_us: i64::try_from(took.as_micros()).unwrap_or(i64::MAX),
        status,
        branch,
        emitted,
        error: error.map(|e| loaded.redactor.text(&super::trace::excerpt(&e))),
        detail,
    }
}

/// An outcome's detail entries, redacted and bounded.
fn traced_detail(loaded: &Loaded, entries: &[J]) -> Option<String> {
    use super::trace::bound_detail;
    if entries.is_empty() {
        return None;
    }
    // Each entry scanned once; copies only when one holds a secret.
    let hidden: Vec<Option<J>> = entries.iter().map(|e| loaded.redactor.json_if_secret(e)).collect();
    if hidden.iter().all(Option::is_none) {
        return bound_detail(entries);
    }
    let entries: Vec<J> = hidden
        .into_iter()
        .zip(entries)
        .map(|(h, e)| h.unwrap_or_else(|| e.clone()))
        .collect();
    bound_detail(&entries)
}

/// Where a schedule's ticks are recorded.
fn schedule_key(story: &BuiltStory, action: usize) -> String {
    format!("{}/{}", story.id, story.actions[action].slug)
}

/// Queues the actions downstream of `event`.
fn push_downstream(
    story: &BuiltStory,
    action: usize,
    branch: Option<&str>,
    event: &Arc<Event>,
    out: &mut Vec<WorkItem>,
) {
    for target in Runtime::downstream(story, action, branch) {
        out.push(WorkItem {
            id: new_id(),
            run_id: event.run_id,
            story: story.id.clone(),
            action: story.actions[target].slug.clone(),
            input: Some(event.clone()),
            wake: None,
            due_ms: 0,
            attempts: 0,
            mark: false,
            holder: 0,
        });
    }
}
