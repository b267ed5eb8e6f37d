//! What actions see of the store: action state read by key
//! ([`StateStore`]), the changes a step writes with it ([`StatePut`]), and
//! how a store says it failed ([`StoreError`]). The durable work queue, the
//! run log and the backends live in the engine above.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value as J;

use futures_util::future::BoxFuture;

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

/// Where a story's state name (`state:`, `STATE.name`) is kept: beside its
/// actions' state (`<story>/<slug>/…`), under a name no slug can take.
pub fn story_state_key(story: &str, name: &str) -> String {
    format!("{story}/STATE/{name}")
}

/// Reads action state (implode, deduplicate, throttle) by key: all a
/// stateful action sees of the store. Async, as a database is; what a step
/// changes is written with the step (`StatePut`), never through here.
pub trait StateStore: Send + Sync {
    fn state<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<J>, StoreError>>;
    /// The list built by `Change::Push` at a key (empty when none).
    fn state_list<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<J>, StoreError>>;

    /// The same list as the text of one JSON array, its elements as stored
    /// (a database joins their texts without parsing them: an implode of a
    /// million items). By default the parsed list, serialised.
    fn state_list_text<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<String, StoreError>> {
        Box::pin(async move {
            let list = self.state_list(key).await?;
            serde_json::to_string(&list).map_err(|e| StoreError::Failed(e.to_string()))
        })
    }
}

/// The text of a JSON array with `items` added at its end.
pub fn append_json(list: &str, items: &[J]) -> String {
    if items.is_empty() {
        return list.to_owned();
    }
    let items: Vec<String> = items.iter().map(J::to_string).collect();
    // One bracket off each end: the items may be lists themselves.
    let list = list.trim();
    let inner = list
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .map_or("", str::trim);
    join_json_texts(
        std::iter::once(inner)
            .filter(|t| !t.is_empty())
            .chain(items.iter().map(String::as_str)),
    )
}

/// JSON texts as the text of one array.
pub fn join_json_texts<'t>(texts: impl IntoIterator<Item = &'t str>) -> String {
    let mut out = String::from("[");
    for (i, t) in texts.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(t);
    }
    out.push(']');
    out
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

/// Action state in memory: the placeholder store of a `Runtime` before an
/// executor gives it its own, and the base of tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<StateMaps>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StateMaps> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies state changes, as a committed step would.
    pub fn apply(&self, puts: Vec<StatePut>) {
        self.lock().apply(puts);
    }
}

impl StateStore for MemoryStore {
    fn state<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<J>, StoreError>> {
        Box::pin(std::future::ready(Ok(self.lock().get(key).cloned())))
    }

    fn state_list<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<J>, StoreError>> {
        Box::pin(std::future::ready(Ok(self.lock().list(key))))
    }
}

/// State changes not committed yet, over a store: the items of a stateful
/// action that `tale serve` runs in one step see each other's changes.
pub struct Overlay {
    base: Arc<dyn StateStore>,
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
    pub fn new(base: Arc<dyn StateStore>) -> Self {
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

impl StateStore for Overlay {
    fn state<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<J>, StoreError>> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values
            .get(key)
            .cloned();
        match pending {
            Some(v) => Box::pin(std::future::ready(Ok(v))),
            None => self.base.state(key),
        }
    }

    fn state_list<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<J>, StoreError>> {
        let (cleared, extra) = match self.pending.lock().unwrap_or_else(|e| e.into_inner()).lists.get(key) {
            Some((cleared, extra)) => (*cleared, extra.clone()),
            None => (false, Vec::new()),
        };
        Box::pin(async move {
            let mut list = if cleared {
                Vec::new()
            } else {
                self.base.state_list(key).await?
            };
            list.extend(extra);
            Ok(list)
        })
    }

    fn state_list_text<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<String, StoreError>> {
        let (cleared, extra) = match self.pending.lock().unwrap_or_else(|e| e.into_inner()).lists.get(key) {
            Some((cleared, extra)) => (*cleared, extra.clone()),
            None => (false, Vec::new()),
        };
        Box::pin(async move {
            let base = if cleared {
                "[]".to_owned()
            } else {
                self.base.state_list_text(key).await?
            };
            Ok(append_json(&base, &extra))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn an_overlay_reads_its_own_changes_over_the_base() {
        let base = Arc::new(MemoryStore::new());
        base.apply(vec![
            StatePut::set("a", json!(1)),
            StatePut::push("l", json!("x")),
            StatePut::push("gone", json!("y")),
        ]);
        let overlay = Overlay::new(base.clone());
        overlay.apply(&[
            StatePut::set("a", json!(2)),
            StatePut::push("l", json!("z")),
            StatePut::delete("gone"),
            StatePut::push("gone", json!("w")),
        ]);
        assert_eq!(overlay.state("a").await.expect("a"), Some(json!(2)));
        assert_eq!(overlay.state_list("l").await.expect("l"), vec![json!("x"), json!("z")]);
        assert_eq!(overlay.state_list("gone").await.expect("gone"), vec![json!("w")]);
        assert_eq!(overlay.state("gone").await.expect("gone"), None);
        // The base is untouched until the step commits.
        assert_eq!(base.state("a").await.expect("a"), Some(json!(1)));
    }
}
