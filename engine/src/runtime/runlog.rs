//! The run log and the secret store: what the API, the CLI and the UI read
//! about runs, and the credentials and resources set through the API. Each
//! a trait every store backend implements (SQLite today), so that the
//! server and the commands never name a backend; `backend::open` picks one
//! from the `--db` URL, once.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value as J;
use uuid::Uuid;

use super::event::{Event, EventId, RunId};
use super::sealed::SealKey;
use super::store::StoreError;
use super::stored::{StoredCredential, StoredResource, Table};
use super::trace::StepTrace;

/// A stored run's status (the `status` column's three words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
}

impl RunState {
    pub const ALL: [RunState; 3] = [RunState::Running, RunState::Succeeded, RunState::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for RunState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        RunState::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            format!(
                "unknown status `{s}`: one of {}",
                RunState::ALL.map(RunState::as_str).join(", ")
            )
        })
    }
}

/// A run as the API and `tale runs` show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub id: String,
    pub story: String,
    pub status: RunState,
    pub errors: J,
    pub events: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// The run whose `send_to_story` started this one, and the event that
    /// action received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_run: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_event: Option<String>,
}

/// Which runs to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub story: Option<String>,
    pub status: Option<RunState>,
    /// Started at or after (ms).
    pub since: Option<i64>,
    /// Started before (ms).
    pub until: Option<i64>,
    /// Paging: runs older than this run id.
    pub after: Option<Uuid>,
    pub limit: usize,
}

/// How a story's runs went since a time (the UI's list of stories).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StoryActivity {
    pub story: String,
    pub runs: i64,
    pub failed: i64,
    pub running: i64,
    pub last_started: Option<i64>,
}

/// One action over a story's latest runs: events it emitted, executions
/// that failed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ActionActivity {
    pub action: String,
    pub events: i64,
    pub failures: i64,
}

/// What runs did: listed, one by one, their events, the runs they called.
/// Async, as a database is: the API and the UI read it from async handlers.
pub trait RunLog: Send + Sync {
    /// Runs newest first, as `filter` says.
    fn runs<'a>(&'a self, filter: &'a RunFilter) -> BoxFuture<'a, Result<Vec<RunRow>, StoreError>>;
    fn run(&self, id: RunId) -> BoxFuture<'_, Result<Option<RunRow>, StoreError>>;
    /// A run's events as JSON, in the order they were committed.
    fn events_json(&self, run: RunId) -> BoxFuture<'_, Result<Vec<J>, StoreError>>;
    /// One event with its ancestry (re-emit).
    fn event(&self, id: EventId) -> BoxFuture<'_, Result<Option<Arc<Event>>, StoreError>>;
    /// The runs a run's `send_to_story` calls started.
    fn called_by(&self, run: RunId) -> BoxFuture<'_, Result<Vec<RunRow>, StoreError>>;
    /// A run's action executions in the order they were committed (none
    /// in a database older than traces).
    fn traces(&self, run: RunId) -> BoxFuture<'_, Result<Vec<StepTrace>, StoreError>>;
    /// Runs per story started at or after `since_ms`.
    fn activity(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<StoryActivity>, StoreError>>;
    /// Events and failures per action over the story's latest `runs` runs:
    /// bounded work however large the database.
    fn action_activity<'a>(
        &'a self,
        story: &'a str,
        runs: usize,
    ) -> BoxFuture<'a, Result<Vec<ActionActivity>, StoreError>>;
    /// An action's newest events (at most `limit`) among the story's latest
    /// `runs` runs, newest first.
    fn action_events<'a>(
        &'a self,
        story: &'a str,
        action: &'a str,
        runs: usize,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<J>, StoreError>>;
}

/// Credentials (sealed) and resources set through the API.
pub trait SecretStore: Send + Sync {
    fn stored_credentials(&self) -> BoxFuture<'_, Result<Vec<StoredCredential>, StoreError>>;
    /// Seals every credential sealed with `previous` again with `current`,
    /// all or none; how many.
    fn reseal_credentials<'a>(
        &'a self,
        previous: &'a SealKey,
        current: &'a SealKey,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<usize, StoreError>>;
    fn put_credential(&self, c: StoredCredential) -> BoxFuture<'_, Result<(), StoreError>>;
    fn stored_resources(&self) -> BoxFuture<'_, Result<Vec<StoredResource>, StoreError>>;
    fn put_resource(&self, r: StoredResource) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Deletes a stored credential or resource; whether it existed.
    fn delete_stored(&self, table: Table, name: String) -> BoxFuture<'_, Result<bool, StoreError>>;
}
