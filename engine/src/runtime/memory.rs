//! The durable store contract kept in memory: what the SQLite store does
//! with its tables, done on maps behind one lock. For runs that need no
//! durability across processes (dry runs, story tests) on the executor of
//! `tale serve`, and as the reference the store conformance suite holds
//! every backend to (`tests/it/store_conformance.rs`).

use std::collections::{BTreeMap, HashMap};
use std::future::ready;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use serde_json::{Value as J, json};
use uuid::Uuid;

use super::durable::{Applied, CLEAN_STOP, DurableStore, PARKED, Transaction, WorkItem, called_ended, called_exit};
use super::event::{Event, RunId};
use super::store::{StateMaps, StateStore, StoreError};

/// A run's status in the memory store.
#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
    Running,
    Succeeded,
    /// At least one action failed (its error is recorded); the rest went on.
    Failed(Vec<String>),
}

/// One run as the store keeps it.
#[derive(Debug, Clone)]
struct Run {
    story: String,
    status: RunStatus,
    errors: Vec<String>,
    /// Items not finished yet (waiting, ready, running or parked): the run
    /// ends when this reaches zero.
    pending: usize,
    /// The caller's parked item, for a run a `send_to_story` started.
    caller_item: Option<Uuid>,
    /// The first exit fired (or the run ended): the caller was woken.
    exit_fired: bool,
}

#[derive(Debug, Default)]
struct Inner {
    runs: HashMap<RunId, Run>,
    /// Events by run, in the order they were committed.
    events: HashMap<RunId, Vec<Arc<Event>>>,
    /// Ordered by id (UUIDv7: by creation), as `recover` returns them.
    items: BTreeMap<Uuid, WorkItem>,
    state: StateMaps,
    ticks: HashMap<String, i64>,
}

/// The durable store in memory (see the module comment).
#[derive(Debug)]
pub struct MemoryDurableStore {
    inner: Mutex<Inner>,
    /// Keep committed events (traces, tests); `tale run` prints them as
    /// they commit instead, and memory follows the work in progress.
    keep_events: bool,
}

impl Default for MemoryDurableStore {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            keep_events: true,
        }
    }
}

impl MemoryDurableStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that keeps work, runs and state, but not events.
    pub fn without_events() -> Self {
        Self {
            inner: Mutex::default(),
            keep_events: false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A run's committed events (none when the store keeps no events).
    pub fn events(&self, run: RunId) -> Vec<Arc<Event>> {
        self.lock().events.get(&run).cloned().unwrap_or_default()
    }

    /// Sets state before a run (a story test's `state:`).
    pub fn seed(&self, puts: Vec<super::store::StatePut>) {
        self.lock().state.apply(puts);
    }

    /// A run's status, if the store knows the run.
    pub fn run_status(&self, run: RunId) -> Option<RunStatus> {
        self.lock().runs.get(&run).map(|r| r.status.clone())
    }
}

impl Inner {
    /// Makes a parked caller due now with `result` as its wake payload.
    fn wake(&mut self, caller: Uuid, result: J) -> Option<WorkItem> {
        let item = self.items.get_mut(&caller).filter(|i| i.due_ms == PARKED)?;
        item.due_ms = 0;
        item.wake = Some(result);
        Some(item.clone())
    }

    fn apply(&mut self, tx: Transaction, keep_events: bool) -> Result<Applied, StoreError> {
        // All or nothing: what would conflict is found before anything changes.
        if let Some((run, _, _)) = tx.started.iter().find(|(run, _, _)| self.runs.contains_key(run)) {
            return Err(StoreError::Conflict(format!("run {run} is already started")));
        }
        if let Some(item) = tx.items.iter().find(|i| self.items.contains_key(&i.id)) {
            return Err(StoreError::Conflict(format!("work item {} is already stored", item.id)));
        }
        let mut applied = Applied {
            fired: true,
            ..Applied::default()
        };
        if let Some((key, tick)) = &tx.tick {
            if self.ticks.get(key).is_some_and(|last| last >= tick) {
                applied.fired = false;
                return Ok(applied);
            }
            self.ticks.insert(key.clone(), *tick);
        }
        let mut settle: Vec<RunId> = Vec::new();
        for (run, story, _) in &tx.started {
            self.runs.insert(
                *run,
                Run {
                    story: story.to_string(),
                    status: RunStatus::Running,
                    errors: Vec::new(),
                    pending: 0,
                    caller_item: None,
                    exit_fired: false,
                },
            );
            settle.push(*run);
        }
        for (id, run) in &tx.done {
            if let Some(item) = self.items.remove(id) {
                if let Some(r) = self.runs.get_mut(&item.run_id) {
                    r.pending = r.pending.saturating_sub(1);
                }
            }
            settle.push(*run);
        }
        if keep_events {
            for e in &tx.events {
                self.events.entry(e.run_id).or_default().push(e.clone());
            }
        }
        let new_work: Vec<RunId> = tx.items.iter().map(|i| i.run_id).collect();
        for item in tx.items {
            if let Some(r) = self.runs.get_mut(&item.run_id) {
                r.pending += 1;
            }
            self.items.insert(item.id, item);
        }
        // A cancelled item may be another run's: that run may end too.
        for id in &tx.cancelled {
            if let Some(item) = self.items.remove(id) {
                if let Some(r) = self.runs.get_mut(&item.run_id) {
                    r.pending = r.pending.saturating_sub(1);
                }
                settle.push(item.run_id);
            }
        }
        self.state.apply(tx.state);
        for (run, error) in tx.errors {
            if let Some(r) = self.runs.get_mut(&run) {
                r.errors.push(error);
            }
        }
        for call in &tx.calls {
            if let Some(r) = self.runs.get_mut(&call.child) {
                r.caller_item = Some(call.caller_item);
            }
        }
        // The first exit of a called run wakes its caller with its output.
        for (run, event) in &tx.exits {
            let Some(r) = self.runs.get_mut(run).filter(|r| !r.exit_fired) else {
                continue;
            };
            let Some(caller) = r.caller_item else { continue };
            r.exit_fired = true;
            let story = r.story.clone();
            // The exit's event is in this step (or kept from an earlier one).
            let output = tx
                .events
                .iter()
                .chain(self.events.get(run).into_iter().flatten())
                .find(|e| e.id == *event)
                .map_or(J::Null, |e| e.output().clone());
            let result = called_exit(&story, *run, output);
            applied.woken.extend(self.wake(caller, result));
        }
        // A prompt answered: its execution's waiting item, if it still waits.
        // (Its runs keep virtual time: a waiting item is one not yet due,
        // which the executor removes when it runs it.)
        let waiting = super::links::prompt_waiting();
        for a in &tx.answers {
            let found = self.items.values_mut().find(|i| {
                i.run_id == a.run
                    && *i.action == *a.action
                    && i.input.as_ref().map(|e| e.id) == a.input
                    && i.wake.as_ref() == Some(&waiting)
                    && i.due_ms > 0
            });
            if let Some(item) = found {
                item.due_ms = 0;
                item.wake = Some(a.payload.clone());
                applied.answered += 1;
                applied.woken.push(item.clone());
            }
        }
        settle.sort_unstable();
        settle.dedup();
        for run in settle {
            // New work for the run in this very step: it is not finished.
            if new_work.contains(&run) {
                continue;
            }
            let Some(r) = self.runs.get_mut(&run) else { continue };
            if r.pending > 0 || r.status != RunStatus::Running {
                continue;
            }
            let succeeded = r.errors.is_empty();
            r.status = if succeeded {
                RunStatus::Succeeded
            } else {
                RunStatus::Failed(r.errors.clone())
            };
            let story = r.story.clone();
            // A called run that ends without an exit wakes its caller too.
            if let Some(caller) = r.caller_item.filter(|_| !r.exit_fired) {
                r.exit_fired = true;
                let result = called_ended(&story, run, json!(r.errors));
                applied.woken.extend(self.wake(caller, result));
            }
            applied.finished.push((run, story, succeeded));
        }
        Ok(applied)
    }
}

impl StateStore for MemoryDurableStore {
    fn state<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<J>, StoreError>> {
        Box::pin(ready(Ok(self.lock().state.get(key).cloned())))
    }

    fn state_list<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<J>, StoreError>> {
        Box::pin(ready(Ok(self.lock().state.list(key))))
    }
}

impl DurableStore for MemoryDurableStore {
    fn apply(&self, tx: Transaction, _wait: bool) -> BoxFuture<'static, Result<Applied, StoreError>> {
        let applied = self.lock().apply(tx, self.keep_events);
        Box::pin(ready(applied))
    }

    fn mark_started(&self, item: Uuid) -> BoxFuture<'static, Result<(), StoreError>> {
        if let Some(i) = self.lock().items.get_mut(&item) {
            i.attempts += 1;
        }
        Box::pin(ready(Ok(())))
    }

    fn clean_restart(&self) -> BoxFuture<'_, Result<bool, StoreError>> {
        let mut inner = self.lock();
        let clean = inner.state.remove(CLEAN_STOP).is_some();
        if clean {
            for item in inner.items.values_mut() {
                item.attempts = 0;
            }
        }
        Box::pin(ready(Ok(clean)))
    }

    fn recover(&self) -> BoxFuture<'_, Result<Vec<WorkItem>, StoreError>> {
        // Parked callers stay in the store until a sub-story wakes them.
        let items = self
            .lock()
            .items
            .values()
            .filter(|i| i.due_ms < PARKED)
            .map(|i| WorkItem {
                mark: false,
                ..i.clone()
            })
            .collect();
        Box::pin(ready(Ok(items)))
    }

    fn last_tick<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<i64>, StoreError>> {
        Box::pin(ready(Ok(self.lock().ticks.get(key).copied())))
    }

    fn run_events(&self, run: RunId) -> BoxFuture<'_, Result<Vec<Arc<Event>>, StoreError>> {
        Box::pin(ready(Ok(self.events(run))))
    }
}
