//! The store: where events, runs and action state live. `run` and `dry-run`
//! use the in-memory store; the SQLite and PostgreSQL stores implement the
//! same trait, so the executor does not change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value as J;

use super::event::{Event, RunId};

/// Why a store refused or failed an operation. Whether trying again can
/// help is part of the answer: `Full` and `Busy` pass, `Conflict` never does
/// (the write contradicts what is stored), `Failed` is the store broken.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// No room for more work now (a webhook answers 503).
    #[error("the store is full: {0}")]
    Full(String),
    /// Busy or out of reach for a moment (a lock, a connection): retryable.
    #[error("the store is busy: {0}")]
    Busy(String),
    /// The write conflicts with what is stored (the same id twice, a
    /// constraint): trying again gives the same answer.
    #[error("the write conflicts with what is stored: {0}")]
    Conflict(String),
    #[error("store failure: {0}")]
    Failed(String),
}

impl StoreError {
    /// Whether the same operation may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Full(_) | StoreError::Busy(_) | StoreError::Failed(_))
    }
}

/// A change of action state, applied with the events of the same step.
#[derive(Debug, Clone, PartialEq)]
pub struct StatePut {
    pub key: String,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Set(J),
    /// Appends to the list at the key (an implode's items): O(1), where
    /// rewriting the whole list for every item would be O(n²).
    Push(J),
    Delete,
}

impl StatePut {
    pub fn set(key: impl Into<String>, value: J) -> Self {
        Self {
            key: key.into(),
            change: Change::Set(value),
        }
    }
    pub fn push(key: impl Into<String>, value: J) -> Self {
        Self {
            key: key.into(),
            change: Change::Push(value),
        }
    }
    pub fn delete(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            change: Change::Delete,
        }
    }
}

/// What one executed work item produced: applied as one unit.
#[derive(Debug, Default)]
pub struct Commit {
    pub events: Vec<Arc<Event>>,
    pub state: Vec<StatePut>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
    Running,
    Succeeded,
    /// At least one action failed (its error is recorded); the rest went on.
    Failed(Vec<String>),
}

pub trait Store: Send + Sync {
    fn start_run(&self, run_id: RunId, story: &str) -> Result<(), StoreError>;
    fn finish_run(&self, run_id: RunId, status: RunStatus) -> Result<(), StoreError>;
    /// Applies one step: its events and its state changes, together.
    fn commit(&self, commit: Commit) -> Result<(), StoreError>;
    /// Action state (implode, deduplicate, throttle), by key.
    fn state(&self, key: &str) -> Result<Option<J>, StoreError>;
    /// The list built by `Change::Push` at a key (empty when none).
    fn state_list(&self, key: &str) -> Result<Vec<J>, StoreError>;
    /// The events of a run, in the order they were committed.
    fn run_events(&self, run_id: RunId) -> Result<Vec<Arc<Event>>, StoreError>;
}

/// Action state kept in memory: values by key and `Change::Push` lists.
/// The memory stores (this one and the durable one) apply changes here.
#[derive(Debug, Default)]
pub struct StateMaps {
    values: HashMap<String, J>,
    lists: HashMap<String, Vec<J>>,
}

impl StateMaps {
    /// Applies a step's state changes, in order.
    pub fn apply(&mut self, puts: Vec<StatePut>) {
        for put in puts {
            match put.change {
                Change::Set(v) => {
                    self.values.insert(put.key, v);
                }
                Change::Push(v) => self.lists.entry(put.key).or_default().push(v),
                Change::Delete => {
                    self.values.remove(&put.key);
                    self.lists.remove(&put.key);
                }
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&J> {
        self.values.get(key)
    }

    /// The list pushed at `key` (empty when none).
    pub fn list(&self, key: &str) -> Vec<J> {
        self.lists.get(key).cloned().unwrap_or_default()
    }

    /// Takes a value out (a marker read once).
    pub fn remove(&mut self, key: &str) -> Option<J> {
        self.values.remove(key)
    }
}

/// Everything in memory, behind one lock: the placeholder store of a
/// `Runtime` before an executor gives it its own, and the base of tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Memory>,
}

#[derive(Debug, Default)]
struct Memory {
    runs: HashMap<RunId, (String, RunStatus)>,
    events: HashMap<RunId, Vec<Arc<Event>>>,
    state: StateMaps,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn run_status(&self, run_id: RunId) -> Option<RunStatus> {
        self.lock().runs.get(&run_id).map(|(_, s)| s.clone())
    }
}

impl Store for MemoryStore {
    fn start_run(&self, run_id: RunId, story: &str) -> Result<(), StoreError> {
        self.lock().runs.insert(run_id, (story.to_owned(), RunStatus::Running));
        Ok(())
    }

    fn finish_run(&self, run_id: RunId, status: RunStatus) -> Result<(), StoreError> {
        if let Some(run) = self.lock().runs.get_mut(&run_id) {
            run.1 = status;
        }
        Ok(())
    }

    fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        let mut m = self.lock();
        for e in commit.events {
            m.events.entry(e.run_id).or_default().push(e);
        }
        m.state.apply(commit.state);
        Ok(())
    }

    fn state(&self, key: &str) -> Result<Option<J>, StoreError> {
        Ok(self.lock().state.get(key).cloned())
    }

    fn state_list(&self, key: &str) -> Result<Vec<J>, StoreError> {
        Ok(self.lock().state.list(key))
    }

    fn run_events(&self, run_id: RunId) -> Result<Vec<Arc<Event>>, StoreError> {
        Ok(self.lock().events.get(&run_id).cloned().unwrap_or_default())
    }
}

/// State changes not committed yet, over a store: the items of a stateful
/// action that `tale serve` runs in one step see each other's changes.
pub struct Overlay {
    base: Arc<dyn Store>,
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    /// `None`: deleted.
    values: HashMap<String, Option<J>>,
    /// (the list was deleted first, the items pushed since).
    lists: HashMap<String, (bool, Vec<J>)>,
}

impl Overlay {
    pub fn new(base: Arc<dyn Store>) -> Self {
        Self {
            base,
            pending: Mutex::default(),
        }
    }

    /// Adds changes made by an item of the step.
    pub fn apply(&self, puts: &[StatePut]) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for put in puts {
            match &put.change {
                Change::Set(v) => {
                    p.values.insert(put.key.clone(), Some(v.clone()));
                }
                Change::Push(v) => p.lists.entry(put.key.clone()).or_default().1.push(v.clone()),
                Change::Delete => {
                    p.values.insert(put.key.clone(), None);
                    p.lists.insert(put.key.clone(), (true, Vec::new()));
                }
            }
        }
    }
}

impl Store for Overlay {
    fn start_run(&self, run_id: RunId, story: &str) -> Result<(), StoreError> {
        self.base.start_run(run_id, story)
    }

    fn finish_run(&self, run_id: RunId, status: RunStatus) -> Result<(), StoreError> {
        self.base.finish_run(run_id, status)
    }

    fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        self.base.commit(commit)
    }

    fn state(&self, key: &str) -> Result<Option<J>, StoreError> {
        if let Some(v) = self.pending.lock().unwrap_or_else(|e| e.into_inner()).values.get(key) {
            return Ok(v.clone());
        }
        self.base.state(key)
    }

    fn state_list(&self, key: &str) -> Result<Vec<J>, StoreError> {
        let (cleared, extra) = match self.pending.lock().unwrap_or_else(|e| e.into_inner()).lists.get(key) {
            Some((cleared, extra)) => (*cleared, extra.clone()),
            None => (false, Vec::new()),
        };
        let mut list = if cleared {
            Vec::new()
        } else {
            self.base.state_list(key)?
        };
        list.extend(extra);
        Ok(list)
    }

    fn run_events(&self, run_id: RunId) -> Result<Vec<Arc<Event>>, StoreError> {
        self.base.run_events(run_id)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_overlay_reads_its_own_changes_over_the_base() {
        let base = Arc::new(MemoryStore::new());
        base.commit(Commit {
            events: Vec::new(),
            state: vec![
                StatePut::set("a", json!(1)),
                StatePut::push("l", json!("x")),
                StatePut::push("gone", json!("y")),
            ],
        })
        .expect("commit");
        let overlay = Overlay::new(base.clone());
        overlay.apply(&[
            StatePut::set("a", json!(2)),
            StatePut::push("l", json!("z")),
            StatePut::delete("gone"),
            StatePut::push("gone", json!("w")),
        ]);
        assert_eq!(overlay.state("a").expect("a"), Some(json!(2)));
        assert_eq!(overlay.state_list("l").expect("l"), vec![json!("x"), json!("z")]);
        assert_eq!(overlay.state_list("gone").expect("gone"), vec![json!("w")]);
        assert_eq!(overlay.state("gone").expect("gone"), None);
        // The base is untouched until the step commits.
        assert_eq!(base.state("a").expect("a"), Some(json!(1)));
    }
}
