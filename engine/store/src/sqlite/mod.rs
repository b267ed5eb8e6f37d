//! The SQLite store of `tale serve`: one file in WAL mode. One writer thread
//! owns the write connection and applies the transactions that arrive
//! together as one SQLite commit (one fsync for many steps, not one each);
//! reads go through a connection of their own. A lock file beside the
//! database keeps a second `tale serve` away, so whoever holds it may take
//! back every work item at start: their previous owner is gone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::Value as J;
use uuid::Uuid;

use tale_engine::runtime::durable::{Applied, DurableStore, Transaction, WorkItem};
use tale_engine::runtime::event::{Event, EventId, Output, RunId};
use tale_engine::runtime::runlog::{ActionActivity, StoryActivity};
pub use tale_engine::runtime::runlog::{RunFilter, RunLog, RunRow, RunState, SecretStore};
use tale_engine::runtime::sealed::SealKey;
use tale_engine::runtime::store::{Change, StatePut, StateStore, StoreError};
use tale_engine::runtime::stored::{StoredCredential, StoredResource, Table};
use tale_engine::runtime::trace::{StepStatus, StepTrace};

mod secrets;

/// Versioned schema: migration `i` takes `user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE runs (
    id BLOB PRIMARY KEY,
    story TEXT NOT NULL,
    status TEXT NOT NULL,             -- running | succeeded | failed
    errors TEXT NOT NULL DEFAULT '[]',
    events INTEGER NOT NULL DEFAULT 0,
    started_at INTEGER NOT NULL,
    finished_at INTEGER
) WITHOUT ROWID;
CREATE INDEX runs_by_story ON runs (story, started_at);
CREATE INDEX runs_by_time ON runs (started_at);
CREATE TABLE events (
    id BLOB NOT NULL UNIQUE,
    run_id BLOB NOT NULL,
    story TEXT NOT NULL,
    action TEXT NOT NULL,
    parents BLOB NOT NULL,            -- parent ids, 16 bytes each
    branch TEXT,
    output TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX events_by_run ON events (run_id);
CREATE TABLE items (
    id BLOB PRIMARY KEY,
    run_id BLOB NOT NULL,
    story TEXT NOT NULL,
    action TEXT NOT NULL,
    input BLOB,                       -- the input event's id
    wake TEXT,
    due_at INTEGER NOT NULL,
    lease_owner TEXT NOT NULL,
    lease_until INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX items_by_run ON items (run_id);
CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE state_lists (
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (key, seq)
) WITHOUT ROWID;
CREATE TABLE schedules (key TEXT PRIMARY KEY, last_tick INTEGER NOT NULL) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE credentials (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    allowed_hosts TEXT,               -- JSON list; NULL: anywhere
    key_id TEXT NOT NULL,             -- which TALE_SECRET_KEY sealed it
    nonce BLOB NOT NULL,
    sealed BLOB NOT NULL,             -- XChaCha20-Poly1305 of the entry's JSON
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE resources (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at INTEGER NOT NULL) WITHOUT ROWID;
"#,
    // Starts of a recovered item, counted before it runs (crash loops).
    r#"
ALTER TABLE items ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
"#,
    // Stored sub-story calls: a called run knows its caller, and whether
    // its first exit fired (which wakes the caller's parked item).
    r#"
ALTER TABLE runs ADD COLUMN parent_run BLOB;
ALTER TABLE runs ADD COLUMN parent_event BLOB;
ALTER TABLE runs ADD COLUMN caller_item BLOB;
ALTER TABLE runs ADD COLUMN exit_fired INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_by_parent ON runs (parent_run) WHERE parent_run IS NOT NULL;
"#,
    // A run's completion is a counter kept with its items, not a probe of
    // the items table (which races once two workers finish a run's last
    // two items at once).
    r#"
ALTER TABLE runs ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET pending = (SELECT COUNT(*) FROM items WHERE items.run_id = runs.id);
"#,
    // A trace per action execution (docs/ui.md), pruned with its run.
    r#"
CREATE TABLE traces (
    run_id BLOB NOT NULL,
    action TEXT NOT NULL,
    input BLOB,
    at INTEGER NOT NULL,
    duration_us INTEGER NOT NULL,
    status TEXT NOT NULL,             -- succeeded | failed | skipped
    branch TEXT,
    emitted INTEGER NOT NULL,
    error TEXT,
    detail TEXT                       -- JSON: requests and attempts, rules
);
CREATE INDEX traces_by_run ON traces (run_id);
"#,
    // The trace of a succeeded execution that emitted one event is kept on
    // that event's row (most executions: W1's every step), not as a row of
    // its own with a second index entry (`fold_traces`).
    r#"
ALTER TABLE events ADD COLUMN trace_at INTEGER;
ALTER TABLE events ADD COLUMN trace_us INTEGER;
ALTER TABLE events ADD COLUMN trace_detail TEXT;
"#,
    // Items are looked up by run only to answer a prompt (`wake_prompt`),
    // and only a waiting item has a wake payload: most items (W1's every
    // request) then come and go without an index entry.
    r#"
DROP INDEX items_by_run;
CREATE INDEX items_waiting_by_run ON items (run_id) WHERE wake IS NOT NULL;
"#,
    // Traces in rows and traces on events, read back in the order they were
    // written: within one millisecond, start time alone cannot tell (an
    // explode's trace row comes before its folded transforms).
    r#"
ALTER TABLE traces ADD COLUMN seq INTEGER;
ALTER TABLE events ADD COLUMN trace_seq INTEGER;
"#,
];

/// How long a lease lasts; for SQLite only a marker (the lock file decides).
const LEASE_MS: i64 = 30_000;
/// Transactions waiting for the writer beyond which webhooks get a 503.
const JOB_CAPACITY: usize = 8192;
/// The name of the thread that applies every write (profiles, `/proc`).
pub const WRITER_THREAD: &str = "tale-sqlite-writer";
/// At most this many transactions per SQLite commit.
const BATCH: usize = 2048;
/// The shortest time between the starts of two commits while steps arrive
/// together. A commit costs about the same for one step as for twenty (it
/// rewrites the last page of every table and index it touches), so under
/// load a millisecond's wait saves more CPU than it costs the webhooks that
/// wait: on W1, 7 to 16 % less CPU per event and a lower p99 at
/// saturation (bench/results/2026-12-07-group-commit.md).
const GROUP_COMMIT: std::time::Duration = std::time::Duration::from_millis(1);
/// How often the checkpointer thread copies the WAL into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// WAL pages beyond which the writer checkpoints itself (SQLite's own
/// default is 1,000): the WAL is restarted from its beginning only by a
/// writer that finds it all copied, which a checkpoint running beside
/// steady commits seldom leaves.
const WAL_BACKSTOP_PAGES: i64 = 8192;
/// The WAL file's size kept when it restarts (`journal_size_limit`): twice
/// the backstop's.
const WAL_KEPT_BYTES: i64 = 64 << 20;

/// `PRAGMA synchronous`: `full` syncs the WAL at every commit (safe against
/// power loss); `normal` syncs at checkpoints (safe against a process crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sync {
    #[default]
    Full,
    Normal,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the database {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("another `tale serve` uses the database {0} (its lock file is held)")]
    Locked(PathBuf),
    #[error("cannot create the lock file {path}: {source}")]
    LockFile { path: PathBuf, source: std::io::Error },
    #[error("the database {path} has schema version {found}; this tale knows up to {known}")]
    TooNew { path: PathBuf, found: i64, known: usize },
}

fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(e.to_string())
}

/// A SQLite error as the store contract says it: a constraint is a
/// conflict, a busy or locked database is worth another try.
fn classify(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            rusqlite::ErrorCode::ConstraintViolation => StoreError::Conflict(e.to_string()),
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => StoreError::Busy(e.to_string()),
            _ => StoreError::Failed(e.to_string()),
        },
        _ => StoreError::Failed(e.to_string()),
    }
}

/// A run's `status` column as the enum.
fn run_state(r: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<RunState> {
    let text: String = r.get(column)?;
    text.parse()
        .map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e.into()))
}

enum Work {
    Step(Box<Prepared>),
    Prune { story: String, before_ms: i64 },
    MarkStarted([u8; 16]),
    CleanRestart,
}

struct Job {
    work: Work,
    reply: tokio::sync::oneshot::Sender<Result<Applied, StoreError>>,
}

/// A transaction in the form the writer stores (serialized off its thread).
/// (child run, parent run, parent event, caller item).
type PreparedCall = ([u8; 16], [u8; 16], Option<[u8; 16]>, [u8; 16]);

#[derive(Default)]
struct Prepared {
    started: Vec<([u8; 16], Arc<str>, i64)>,
    calls: Vec<PreparedCall>,
    /// (run, an exit event of it).
    exits: Vec<([u8; 16], [u8; 16])>,
    /// Runs whose completion this transaction decides (durable runs).
    settle: Vec<[u8; 16]>,
    /// (item, its run).
    done: Vec<([u8; 16], [u8; 16])>,
    events: Vec<PreparedEvent>,
    items: Vec<PreparedItem>,
    state: Vec<(String, Option<Result<String, String>>)>,
    cancelled: Vec<[u8; 16]>,
    errors: Vec<([u8; 16], String)>,
    tick: Option<(String, i64)>,
    /// With their place in the write order ([`TRACE_SEQ`]).
    traces: Vec<(i64, StepTrace)>,
    answers: Vec<PreparedAnswer>,
    now: i64,
}

struct PreparedAnswer {
    run: [u8; 16],
    action: String,
    input: Option<[u8; 16]>,
    payload: J,
}

struct PreparedEvent {
    id: [u8; 16],
    run: [u8; 16],
    story: Arc<str>,
    action: Arc<str>,
    parents: Vec<u8>,
    branch: Option<&'static str>,
    output: PreparedOutput,
    at: i64,
    /// The trace of the execution that emitted it, kept on its row.
    trace: Option<FoldedTrace>,
}

/// What a trace stored on its event's row keeps; the rest is the event's
/// (action, branch, its only parent as the input) or implied (succeeded,
/// one event emitted, no error).
struct FoldedTrace {
    at: i64,
    /// Its place among the traces written ([`TRACE_SEQ`]).
    seq: i64,
    duration_us: i64,
    detail: Option<String>,
}

/// An event's output as the writer binds it: serialised here, or (a large
/// one kept as JSON text) the event itself, its text bound without a copy.
enum PreparedOutput {
    Text(String),
    Held(Arc<Event>),
}

impl PreparedOutput {
    fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            PreparedOutput::Text(t) => std::borrow::Cow::Borrowed(t),
            PreparedOutput::Held(e) => e.output_text(),
        }
    }
}

struct PreparedItem {
    id: [u8; 16],
    run: [u8; 16],
    story: Arc<str>,
    action: Arc<str>,
    input: Option<[u8; 16]>,
    wake: Option<String>,
    due: i64,
}

/// Whether the database on disk is still the one this store writes: a file
/// removed or replaced under a running server keeps accepting writes (to an
/// unlinked inode) that the next start never sees. Checked by the writer
/// after each commit and by `/readyz`; a failed write is reported too.
#[derive(Debug)]
struct Watch {
    /// The database file and its WAL, with their (device, inode) at open.
    files: Vec<(PathBuf, Option<(u64, u64)>)>,
    /// Set once the files are gone or replaced (for good: a restart decides).
    lost: Mutex<Option<String>>,
    /// The last write's failure, cleared by the next write that succeeds.
    write_error: Mutex<Option<String>>,
}

/// The (device, inode) of a file; `Ok(None)` when it does not exist (any
/// other error says nothing about it).
fn identity(path: &Path) -> std::io::Result<Option<(u64, u64)>> {
    match std::fs::metadata(path) {
        #[cfg(unix)]
        Ok(m) => {
            use std::os::unix::fs::MetadataExt;
            Ok(Some((m.dev(), m.ino())))
        }
        #[cfg(not(unix))]
        Ok(_) => Ok(Some((0, 0))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Watch {
    fn new(path: &Path) -> Self {
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        let files = [path.to_path_buf(), wal]
            .into_iter()
            .map(|p| {
                let id = identity(&p).ok().flatten();
                (p, id)
            })
            .collect();
        Self {
            files,
            lost: Mutex::new(None),
            write_error: Mutex::new(None),
        }
    }

    /// Why the files on disk are no longer the store's, if they are not.
    fn check(&self) -> Option<String> {
        let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        if lost.is_none() {
            #[cfg(unix)]
            for (path, at_open) in &self.files {
                let Some(at_open) = at_open else { continue };
                let why = match identity(path) {
                    Ok(None) => "was removed",
                    Ok(Some(now)) if now != *at_open => "was replaced",
                    _ => continue,
                };
                *lost = Some(format!(
                    "the database file {} {why} while serving: writes would be lost; restart tale serve",
                    path.display()
                ));
                break;
            }
        }
        lost.clone()
    }

    /// What [`Watch::check`] found last, without looking at the files.
    fn found_lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn wrote(&self, result: Result<(), String>) {
        *self.write_error.lock().unwrap_or_else(|p| p.into_inner()) = result.err();
    }
}

pub struct SqliteStore {
    watch: Arc<Watch>,
    jobs: tokio::sync::mpsc::Sender<Job>,
    read: Arc<Mutex<Connection>>,
    /// The run log, read on `read`.
    log: SqliteReader,
    owner: String,
    path: PathBuf,
    /// Held while the store lives: the lock file.
    _lock: std::fs::File,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

/// Opens (creating and migrating) a database for reading and writing.
fn connect(path: &Path, sync: Sync) -> Result<Connection, OpenError> {
    let sqlite = |source| OpenError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let mut conn = Connection::open(path).map_err(sqlite)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sqlite)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sqlite)?;
    conn.pragma_update(
        None,
        "synchronous",
        match sync {
            Sync::Full => "FULL",
            Sync::Normal => "NORMAL",
        },
    )
    .map_err(sqlite)?;
    conn.pragma_update(None, "foreign_keys", "OFF").map_err(sqlite)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sqlite)?;
    if version as usize > MIGRATIONS.len() {
        return Err(OpenError::TooNew {
            path: path.to_owned(),
            found: version,
            known: MIGRATIONS.len(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(sqlite)?;
        tx.execute_batch(sql).map_err(sqlite)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
    }
    Ok(conn)
}

impl SqliteStore {
    /// Opens the database at `path` for `tale serve`: takes its lock file,
    /// migrates the schema, starts the writer thread.
    pub fn open(path: &Path, sync: Sync) -> Result<Arc<Self>, OpenError> {
        let lock_path = PathBuf::from(format!("{}.lock", path.display()));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| OpenError::LockFile {
                path: lock_path.clone(),
                source,
            })?;
        // A previous owner that is still exiting gets a moment to let go.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while lock.try_lock().is_err() {
            if std::time::Instant::now() >= deadline {
                return Err(OpenError::Locked(path.to_owned()));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let write = connect(path, sync)?;
        // The writer checkpoints only when the WAL has grown far: the
        // checkpointer thread copies it into the database meanwhile, so a
        // commit never waits for a checkpoint's copy and fsync.
        // A WAL grown past the backstop (a long read holding the copy back)
        // is cut back to this size when it restarts.
        write
            .pragma_update(None, "wal_autocheckpoint", WAL_BACKSTOP_PAGES)
            .and_then(|()| write.pragma_update(None, "journal_size_limit", WAL_KEPT_BYTES))
            .map_err(|source| OpenError::Sqlite {
                path: path.to_owned(),
                source,
            })?;
        let checkpoints = connect(path, sync)?;
        let read = Arc::new(Mutex::new(connect(path, sync)?));
        let watch = Arc::new(Watch::new(path));
        let (jobs, rx) = tokio::sync::mpsc::channel(JOB_CAPACITY);
        let owner = tale_engine::runtime::event::new_id().to_string();
        let writer_owner = owner.clone();
        let writer_watch = watch.clone();
        let commits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (writer_gone, gone) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("tale-sqlite-ckpt".into())
            .spawn({
                let commits = commits.clone();
                move || checkpointer(checkpoints, &commits, &gone)
            })
            .and_then(|_| {
                std::thread::Builder::new().name(WRITER_THREAD.into()).spawn(move || {
                    let _gone = writer_gone;
                    writer(write, rx, writer_owner, &writer_watch, &commits)
                })
            });
        spawned.map_err(|source| OpenError::LockFile {
            path: lock_path,
            source,
        })?;
        Ok(Arc::new(Self {
            watch,
            jobs,
            log: SqliteReader {
                conn: read.clone(),
                columns: RUN_COLUMNS,
                layout: TraceLayout::Sequenced,
            },
            read,
            owner,
            path: path.to_owned(),
            _lock: lock,
        }))
    }

    /// `Err` with the reason when the store cannot be trusted with writes:
    /// its database file was removed or replaced while serving, or the last
    /// write failed (a full disk, a corrupted file).
    pub fn health(&self) -> Result<(), String> {
        if let Some(lost) = self.watch.check() {
            return Err(lost);
        }
        match self.watch.write_error.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            Some(e) => Err(format!("the last write to the database failed: {e}")),
            None => Ok(()),
        }
    }

    /// Runs `f` on the reading connection, off the async threads.
    fn reading<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        on_connection(&self.read, f)
    }

    /// Deletes the finished runs of `story` that started before `before_ms`,
    /// with their events, 500 runs per writer transaction (the writer serves
    /// webhooks in between). Returns how many runs went.
    pub async fn prune(&self, story: &str, before_ms: i64) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let n = self.prune_some(story, before_ms).await?;
            total += n;
            if n < 500 {
                return Ok(total);
            }
        }
    }

    async fn prune_some(&self, story: &str, before_ms: i64) -> Result<usize, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Job {
            work: Work::Prune {
                story: story.to_owned(),
                before_ms,
            },
            reply: tx,
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| failed("the writer has stopped"))?;
        let applied = rx.await.map_err(|_| failed("the writer has stopped"))??;
        Ok(applied.finished.len())
    }

    fn prepare(&self, tx: Transaction, settle: bool) -> Result<Prepared, StoreError> {
        let now = tale_engine::runtime::event::now_millis();
        let mut p = Prepared {
            now,
            ..Prepared::default()
        };
        for (run, story, at) in tx.started {
            if settle {
                p.settle.push(run.into_bytes());
            }
            p.started.push((run.into_bytes(), story, at));
        }
        for (id, run) in tx.done {
            p.done.push((id.into_bytes(), run.into_bytes()));
            p.settle.push(run.into_bytes());
        }
        p.settle.sort_unstable();
        p.settle.dedup();
        for e in &tx.events {
            p.events.push(prepare_event(e)?);
        }
        for item in tx.items {
            p.items.push(PreparedItem {
                id: item.id.into_bytes(),
                run: item.run_id.into_bytes(),
                story: item.story,
                action: item.action,
                input: item.input.map(|e| e.id.into_bytes()),
                wake: item.wake.map(|w| serde_json::to_string(&w).unwrap_or_default()),
                due: item.due_ms,
            });
        }
        p.state = prepare_state(tx.state);
        p.cancelled = tx.cancelled.into_iter().map(Uuid::into_bytes).collect();
        p.errors = tx.errors.into_iter().map(|(run, e)| (run.into_bytes(), e)).collect();
        p.tick = tx.tick;
        p.traces = fold_traces(tx.traces, &mut p.events);
        p.answers = tx
            .answers
            .into_iter()
            .map(|a| PreparedAnswer {
                run: a.run.into_bytes(),
                action: a.action.to_string(),
                input: a.input.map(EventId::into_bytes),
                payload: a.payload,
            })
            .collect();
        p.calls = tx
            .calls
            .iter()
            .map(|c| {
                (
                    c.child.into_bytes(),
                    c.parent.into_bytes(),
                    c.parent_event.map(EventId::into_bytes),
                    c.caller_item.into_bytes(),
                )
            })
            .collect();
        p.exits = tx
            .exits
            .iter()
            .map(|(run, event)| (run.into_bytes(), event.into_bytes()))
            .collect();
        Ok(p)
    }

    fn submit(&self, work: Work, wait: bool) -> BoxFuture<'static, Result<Applied, StoreError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Job { work, reply: tx };
        let jobs = self.jobs.clone();
        Box::pin(async move {
            if wait {
                jobs.send(job).await.map_err(|_| failed("the writer has stopped"))?;
            } else {
                jobs.try_send(job).map_err(|e| match e {
                    tokio::sync::mpsc::error::TrySendError::Full(_) => {
                        StoreError::Full("the database writer is saturated".into())
                    }
                    tokio::sync::mpsc::error::TrySendError::Closed(_) => failed("the writer has stopped"),
                })?;
            }
            rx.await.map_err(|_| failed("the writer has stopped"))?
        })
    }

    pub fn lease_owner(&self) -> &str {
        &self.owner
    }
}

fn prepare_event(e: &Arc<Event>) -> Result<PreparedEvent, StoreError> {
    // `serde_json::to_string` writes into a buffer; `Value::to_string` goes
    // through `Display`, measurably slower on every stored event.
    let output = match e.held_output() {
        Output::Json(j) => PreparedOutput::Text(serde_json::to_string(j).map_err(failed)?),
        Output::Raw { .. } => PreparedOutput::Held(e.clone()),
    };
    let mut parents = Vec::with_capacity(16 * e.parents.len());
    for p in &e.parents {
        parents.extend_from_slice(p.id.as_bytes());
    }
    Ok(PreparedEvent {
        id: e.id.into_bytes(),
        run: e.run_id.into_bytes(),
        story: e.story.clone(),
        action: e.action.clone(),
        parents,
        branch: e.branch,
        output,
        at: e.created_at,
        trace: None,
    })
}

/// The order traces are written in, shared by both places they are kept:
/// a run's traces read back by (start, seq). Counted per process: traces
/// of one millisecond are never written by two processes.
static TRACE_SEQ: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Moves onto `events` the traces that their rows can carry: a succeeded
/// execution without an error that emitted exactly one event, that event
/// in this step (same run, action and branch, the input its only parent,
/// or no parent for a start). Returns the traces that stay rows of their
/// own, each with its place in the write order. Saves a row and an index
/// entry per execution in the writer.
fn fold_traces(traces: Vec<StepTrace>, events: &mut [PreparedEvent]) -> Vec<(i64, StepTrace)> {
    let foldable = |t: &StepTrace| t.status == StepStatus::Succeeded && t.emitted == 1 && t.error.is_none();
    fn input_of(t: &StepTrace) -> &[u8] {
        t.input.as_ref().map_or(&[], |i| &i.as_bytes()[..])
    }
    let fits = |t: &StepTrace, e: &PreparedEvent| {
        e.run == *t.run_id.as_bytes() && *e.action == *t.action && e.branch == t.branch && e.parents == input_of(t)
    };
    let mut host: Vec<Option<usize>> = Vec::with_capacity(traces.len());
    if events.len() <= 16 {
        let mut claimed = vec![false; events.len()];
        for t in &traces {
            let found = foldable(t)
                .then(|| (0..events.len()).find(|&i| !claimed[i] && fits(t, &events[i])))
                .flatten();
            if let Some(i) = found {
                claimed[i] = true;
            }
            host.push(found);
        }
    } else {
        // A large step (an explode's transforms): matched through a map.
        let mut by_input: HashMap<(&[u8], &str), std::collections::VecDeque<usize>> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            by_input
                .entry((&e.parents[..], &e.action[..]))
                .or_default()
                .push_back(i);
        }
        for t in &traces {
            let found = foldable(t)
                .then(|| {
                    let list = by_input.get_mut(&(input_of(t), &t.action[..]))?;
                    let at = list.iter().position(|&i| fits(t, &events[i]))?;
                    list.remove(at)
                })
                .flatten();
            host.push(found);
        }
    }
    let mut kept = Vec::new();
    let first = TRACE_SEQ.fetch_add(traces.len() as i64, std::sync::atomic::Ordering::Relaxed);
    for (seq, (t, found)) in (first..).zip(traces.into_iter().zip(host)) {
        match found {
            Some(i) => {
                events[i].trace = Some(FoldedTrace {
                    at: t.at_ms,
                    seq,
                    duration_us: t.duration_us,
                    detail: t.detail,
                })
            }
            None => kept.push((seq, t)),
        }
    }
    kept
}

/// `Ok(text)` sets, `Err(text)` pushes, `None` deletes.
/// Action state as it is written: redacted like events (an implode's
/// collected items, a deduplicate's values).
pub(crate) fn prepare_state(puts: Vec<StatePut>) -> Vec<(String, Option<Result<String, String>>)> {
    puts.into_iter()
        .map(|p| {
            let change = match p.change {
                Change::Set(v) => Some(Ok(serde_json::to_string(&v).unwrap_or_default())),
                Change::Push(v) => Some(Err(serde_json::to_string(&v).unwrap_or_default())),
                Change::Delete => None,
            };
            (p.key, change)
        })
        .collect()
}

/// The writer thread: takes what is queued, applies it in one SQLite
/// transaction, answers everyone. When one job of a batch fails the batch is
/// rolled back and each job is applied alone, so one bad job fails alone.
fn writer(
    mut conn: Connection,
    mut rx: tokio::sync::mpsc::Receiver<Job>,
    owner: String,
    watch: &Watch,
    commits: &std::sync::atomic::AtomicU64,
) {
    let mut last_start = std::time::Instant::now();
    let mut last_len = 0;
    while let Some(first) = rx.blocking_recv() {
        if let Some(wait) = group_commit_wait(last_len, last_start.elapsed()) {
            std::thread::sleep(wait);
        }
        last_start = std::time::Instant::now();
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        last_len = batch.len();
        // A file removed or replaced: nothing written now would survive.
        // Looked at on disk after each batch (a `stat` per file, next to a
        // commit), so that a batch that committed into a file removed
        // meanwhile is not acknowledged; once found, no batch is written.
        if let Some(lost) = watch.found_lost() {
            for job in batch {
                let _ = job.reply.send(Err(StoreError::Failed(lost.clone())));
            }
            continue;
        }
        let together = apply_batch(&mut conn, batch.iter().map(|j| &j.work), &owner);
        match together {
            Ok(results) => {
                commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                watch.wrote(Ok(()));
                let lost = watch.check();
                for (job, r) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(match &lost {
                        Some(why) => Err(StoreError::Failed(why.clone())),
                        None => Ok(r),
                    });
                }
            }
            Err(_) => {
                for job in batch {
                    let r = apply_batch(&mut conn, std::iter::once(&job.work), &owner)
                        .map(|mut v| v.pop().unwrap_or_default());
                    if r.is_ok() {
                        commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    // A constraint is the job's own fault; anything else is the database's.
                    let broken = match &r {
                        Err(rusqlite::Error::SqliteFailure(e, _)) => e.code != rusqlite::ErrorCode::ConstraintViolation,
                        Err(_) => true,
                        Ok(_) => false,
                    };
                    watch.wrote(match &r {
                        Err(e) if broken => Err(e.to_string()),
                        _ => Ok(()),
                    });
                    // As after a batch: committed into a file removed
                    // meanwhile is not acknowledged.
                    let lost = r.is_ok().then(|| watch.check()).flatten();
                    let _ = job.reply.send(match lost {
                        Some(why) => Err(StoreError::Failed(why)),
                        None => r.map_err(classify),
                    });
                }
            }
        }
    }
}

/// How long the writer holds the next commit back. While steps arrive
/// together (the last commit carried several), commits start at most every
/// [`GROUP_COMMIT`] and the steps that arrive meanwhile share the next one;
/// a lone step (a quiet server, a chain run step by step) is not held.
fn group_commit_wait(last_batch: usize, since_last_start: std::time::Duration) -> Option<std::time::Duration> {
    if last_batch < 2 {
        return None;
    }
    GROUP_COMMIT.checked_sub(since_last_start).filter(|d| !d.is_zero())
}

/// The checkpointer thread: every [`CHECKPOINT_EVERY`] that saw a commit,
/// copies the WAL into the database (a passive checkpoint: it never blocks
/// the writer), until the writer stops.
fn checkpointer(conn: Connection, commits: &std::sync::atomic::AtomicU64, writer_gone: &std::sync::mpsc::Receiver<()>) {
    let mut seen = 0;
    let mut failing: Option<String> = None;
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = writer_gone.recv_timeout(CHECKPOINT_EVERY) {
        let now = commits.load(std::sync::atomic::Ordering::Relaxed);
        if now == seen {
            continue;
        }
        seen = now;
        // A failure leaves the WAL to the next round or to the writer's own
        // checkpoint. The checkpoint lock held by the writer's is routine;
        // anything else (a full disk, a file it may not write) is told once,
        // and again when it changes or ends.
        match conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(classify)
        {
            Ok(()) => {
                if failing.take().is_some() {
                    tracing::info!("the WAL is copied into the database again");
                }
            }
            Err(StoreError::Busy(_)) => {}
            Err(e) => {
                let why = e.to_string();
                if failing.as_deref() != Some(why.as_str()) {
                    tracing::warn!("cannot copy the WAL into the database: {why}");
                    failing = Some(why);
                }
            }
        }
    }
}

fn apply_batch<'a>(
    conn: &mut Connection,
    works: impl Iterator<Item = &'a Work>,
    owner: &str,
) -> rusqlite::Result<Vec<Applied>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::new();
    for work in works {
        results.push(match work {
            Work::Step(p) => apply_step(&tx, p, owner)?,
            Work::Prune { story, before_ms } => prune(&tx, story, *before_ms)?,
            Work::CleanRestart => {
                let clean = tx
                    .prepare_cached("DELETE FROM state WHERE key = ?1 RETURNING 1")?
                    .query_row([tale_engine::runtime::durable::CLEAN_STOP], |_| Ok(()))
                    .optional()?
                    .is_some();
                if clean {
                    tx.execute("UPDATE items SET attempts = 0 WHERE attempts > 0", [])?;
                }
                Applied {
                    fired: clean,
                    ..Applied::default()
                }
            }
            Work::MarkStarted(id) => {
                tx.prepare_cached("UPDATE items SET attempts = attempts + 1 WHERE id = ?1")?
                    .execute([&id[..]])?;
                Applied::default()
            }
        });
    }
    tx.commit()?;
    Ok(results)
}

/// Deletes item `id`; the run it belonged to, if it was there.
fn take_item(tx: &rusqlite::Transaction<'_>, id: &[u8; 16]) -> rusqlite::Result<Option<[u8; 16]>> {
    let run: Option<Vec<u8>> = tx
        .prepare_cached("DELETE FROM items WHERE id = ?1 RETURNING run_id")?
        .query_row([&id[..]], |r| r.get(0))
        .optional()?;
    Ok(run.and_then(|r| <[u8; 16]>::try_from(r.as_slice()).ok()))
}

/// One run's counters as a step changes them, and the items it has left
/// once they are written (`None`: no such run).
#[derive(Default)]
struct RunDelta {
    run: [u8; 16],
    events: i64,
    pending: i64,
    left: Option<i64>,
    /// Set when the counters' own `UPDATE` also decided the run's end:
    /// `Some` (story, status, called) if it finished the run there.
    ended: Option<Option<(String, String, bool)>>,
}

fn apply_step(tx: &rusqlite::Transaction<'_>, p: &Prepared, owner: &str) -> rusqlite::Result<Applied> {
    let mut applied = Applied {
        fired: true,
        ..Applied::default()
    };
    if let Some((key, tick)) = &p.tick {
        let last: Option<i64> = tx
            .prepare_cached("SELECT last_tick FROM schedules WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?;
        if last.is_some_and(|l| l >= *tick) {
            applied.fired = false;
            return Ok(applied);
        }
        tx.prepare_cached("INSERT INTO schedules (key, last_tick) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET last_tick = excluded.last_tick")?
            .execute(params![key, tick])?;
    }
    // What this step changes of each run's counters (events stored, items
    // pending), summed as its rows go in and written last: a run started
    // here is inserted with them, any other gets one UPDATE, which also
    // answers whether it has work left.
    let mut deltas: Vec<RunDelta> = Vec::new();
    fn delta(deltas: &mut Vec<RunDelta>, run: [u8; 16]) -> &mut RunDelta {
        let i = match deltas.iter().position(|d| d.run == run) {
            Some(i) => i,
            None => {
                deltas.push(RunDelta {
                    run,
                    ..RunDelta::default()
                });
                deltas.len() - 1
            }
        };
        &mut deltas[i]
    }
    for e in &p.events {
        delta(&mut deltas, e.run).events += 1;
    }
    // The run of a finished item is known: a plain DELETE says whether it
    // was there (no RETURNING row to build).
    for (item, run) in &p.done {
        let gone = tx
            .prepare_cached("DELETE FROM items WHERE id = ?1")?
            .execute([&item[..]])?;
        if gone > 0 {
            delta(&mut deltas, *run).pending -= 1;
        }
    }
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (id, run_id, story, action, parents, branch, output, created_at, trace_at, trace_us, trace_detail, trace_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        for e in &p.events {
            let trace = e.trace.as_ref();
            insert.execute(params![
                &e.id[..],
                &e.run[..],
                &*e.story,
                &*e.action,
                &e.parents,
                e.branch,
                &*e.output.text(),
                e.at,
                trace.map(|t| t.at),
                trace.map(|t| t.duration_us),
                trace.and_then(|t| t.detail.as_deref()),
                trace.map(|t| t.seq)
            ])?;
        }
    }
    if !p.traces.is_empty() {
        let mut insert = tx.prepare_cached(
            "INSERT INTO traces (run_id, action, input, at, duration_us, status, branch, emitted, error, detail, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for (seq, t) in &p.traces {
            insert.execute(params![
                &t.run_id.as_bytes()[..],
                &*t.action,
                t.input.map(|i| i.into_bytes()).as_ref().map(|b| &b[..]),
                t.at_ms,
                t.duration_us,
                t.status.as_str(),
                t.branch,
                t.emitted,
                t.error,
                t.detail,
                seq
            ])?;
        }
    }
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO items (id, run_id, story, action, input, wake, due_at, lease_owner, lease_until) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?9, ?8)",
        )?;
        for i in &p.items {
            insert.execute(params![
                &i.id[..],
                &i.run[..],
                &*i.story,
                &*i.action,
                i.input.as_ref().map(|x| &x[..]),
                i.wake,
                i.due,
                p.now + LEASE_MS,
                owner
            ])?;
        }
    }
    // Cancelled after the step's own items are in (as the memory store
    // does). A cancelled item may be another run's (an implode window
    // opened by an earlier run): that run may now be finished too.
    let mut settle = p.settle.clone();
    for id in &p.cancelled {
        if let Some(run) = take_item(tx, id)? {
            delta(&mut deltas, run).pending -= 1;
            if !settle.contains(&run) {
                settle.push(run);
            }
        }
    }
    for i in &p.items {
        delta(&mut deltas, i.run).pending += 1;
    }
    for (run, story, at) in &p.started {
        let d = delta(&mut deltas, *run);
        tx.prepare_cached(
            "INSERT INTO runs (id, story, status, started_at, events, pending) VALUES (?1, ?2, 'running', ?3, ?4, ?5)",
        )?
        .execute(params![&run[..], &**story, at, d.events, d.pending])?;
        d.left = Some(d.pending);
    }
    // Before the counters: a run ending in this step ends with its errors.
    for (run, error) in &p.errors {
        tx.prepare_cached("UPDATE runs SET errors = json_insert(errors, '$[#]', ?2) WHERE id = ?1")?
            .execute(params![&run[..], error])?;
    }
    for d in deltas.iter_mut().filter(|d| d.left.is_none()) {
        // A running run this step may end (its last item done, no new
        // one): the same statement ends it when nothing is left, which is
        // a run's last step in one statement instead of two. A run that is
        // not running (none, or ended already) only has its counters moved.
        if settle.contains(&d.run) && !p.items.iter().any(|i| i.run == d.run) {
            let row: Option<(i64, String, String, bool)> = tx
                .prepare_cached(
                    "UPDATE runs SET events = events + ?2, pending = pending + ?3,
                       status = CASE WHEN pending + ?3 > 0 THEN status WHEN errors = '[]' THEN 'succeeded' ELSE 'failed' END,
                       finished_at = CASE WHEN pending + ?3 > 0 THEN finished_at ELSE ?4 END
                     WHERE id = ?1 AND status = 'running' RETURNING pending, status, story, caller_item IS NOT NULL",
                )?
                .query_row(params![&d.run[..], d.events, d.pending, p.now], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
            if let Some((left, status, story, called)) = row {
                d.left = Some(left);
                d.ended = Some((status != "running").then_some((story, status, called)));
                continue;
            }
        }
        d.left = tx
            .prepare_cached(
                "UPDATE runs SET events = events + ?2, pending = pending + ?3 WHERE id = ?1 RETURNING pending",
            )?
            .query_row(params![&d.run[..], d.events, d.pending], |r| r.get(0))
            .optional()?;
    }
    for (key, change) in &p.state {
        match change {
            Some(Ok(value)) => {
                tx.prepare_cached("INSERT INTO state (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")?
                    .execute(params![key, value])?;
            }
            Some(Err(value)) => {
                tx.prepare_cached(
                    "INSERT INTO state_lists (key, seq, value) VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM state_lists WHERE key = ?1), ?2)",
                )?
                .execute(params![key, value])?;
            }
            None => {
                tx.prepare_cached("DELETE FROM state WHERE key = ?1")?.execute([key])?;
                tx.prepare_cached("DELETE FROM state_lists WHERE key = ?1")?
                    .execute([key])?;
            }
        }
    }
    for (child, parent, event, caller) in &p.calls {
        tx.prepare_cached("UPDATE runs SET parent_run = ?2, parent_event = ?3, caller_item = ?4 WHERE id = ?1")?
            .execute(params![
                &child[..],
                &parent[..],
                event.as_ref().map(|e| &e[..]),
                &caller[..]
            ])?;
    }
    // The first exit of a called run wakes its caller with its output, as
    // stored (redacted) just above; a run nobody called costs one UPDATE.
    for (run, event) in &p.exits {
        let called: Option<(Vec<u8>, String)> = tx
            .prepare_cached(
                "UPDATE runs SET exit_fired = 1 WHERE id = ?1 AND exit_fired = 0 AND caller_item IS NOT NULL RETURNING caller_item, story",
            )?
            .query_row([&run[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((caller, story)) = called {
            let output: String = tx
                .prepare_cached("SELECT output FROM events WHERE id = ?1")?
                .query_row([&event[..]], |r| r.get(0))?;
            let output: J =
                serde_json::from_str(&output).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            let result = tale_engine::runtime::durable::called_exit(&story, RunId::from_bytes(*run), output);
            if let Some(item) = wake_caller(tx, &caller, &result)? {
                applied.woken.push(item);
            }
        }
    }
    for a in &p.answers {
        if let Some(item) = wake_prompt(tx, a, p.now)? {
            applied.answered += 1;
            applied.woken.push(item);
        }
    }
    for run in &settle {
        // New work for the run in this very step: it is not finished.
        if p.items.iter().any(|i| i.run == *run) {
            continue;
        }
        let delta = deltas.iter().find(|d| d.run == *run);
        let row = match delta.and_then(|d| d.ended.clone()) {
            Some(ended) => ended,
            None => {
                let pending = match delta {
                    Some(d) => d.left,
                    None => tx
                        .prepare_cached("SELECT pending FROM runs WHERE id = ?1")?
                        .query_row([&run[..]], |r| r.get(0))
                        .optional()?,
                };
                if pending.unwrap_or(0) > 0 {
                    continue;
                }
                tx.prepare_cached(
                    "UPDATE runs SET status = CASE WHEN errors = '[]' THEN 'succeeded' ELSE 'failed' END, finished_at = ?2
                     WHERE id = ?1 AND status = 'running' RETURNING story, status, caller_item IS NOT NULL",
                )?
                .query_row(params![&run[..], p.now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?
            }
        };
        if let Some((story, status, called)) = row {
            // A called run that ends without an exit wakes its caller too.
            let waiting: Option<(Vec<u8>, String)> = if !called {
                None
            } else {
                tx
                .prepare_cached(
                    "UPDATE runs SET exit_fired = 1 WHERE id = ?1 AND exit_fired = 0 AND caller_item IS NOT NULL RETURNING caller_item, errors",
                )?
                    .query_row([&run[..]], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?
            };
            if let Some((caller, errors)) = waiting {
                let errors: J = serde_json::from_str(&errors).unwrap_or(J::Array(Vec::new()));
                let result = tale_engine::runtime::durable::called_ended(&story, RunId::from_bytes(*run), errors);
                if let Some(item) = wake_caller(tx, &caller, &result)? {
                    applied.woken.push(item);
                }
            }
            applied
                .finished
                .push((RunId::from_bytes(*run), story, status == "succeeded"));
        }
    }
    Ok(applied)
}

/// Makes a parked caller's item due now with `result` as its wake payload,
/// and returns it as the executor runs it (its input event loaded).
fn wake_caller(tx: &rusqlite::Transaction<'_>, caller: &[u8], result: &J) -> rusqlite::Result<Option<WorkItem>> {
    wake_item(tx, caller, result, tale_engine::runtime::durable::PARKED)
}

/// The waiting item of a prompted execution made due now with the
/// person's answer, if it still waits (not answered, not expired).
fn wake_prompt(tx: &rusqlite::Transaction<'_>, a: &PreparedAnswer, now: i64) -> rusqlite::Result<Option<WorkItem>> {
    let id: Option<Vec<u8>> = tx
        .prepare_cached(
            "SELECT id FROM items WHERE run_id = ?1 AND action = ?2 AND input IS ?3 AND wake = ?4 AND due_at > ?5 LIMIT 1",
        )?
        .query_row(
            params![
                &a.run[..],
                a.action,
                a.input.as_ref().map(|i| &i[..]),
                tale_engine::runtime::durable::prompt_waiting_text(),
                now
            ],
            |r| r.get(0),
        )
        .optional()?;
    match id {
        Some(id) => wake_item(tx, &id, &a.payload, now + 1),
        None => Ok(None),
    }
}

/// Makes item `id` due now with `result` as its wake payload when it is
/// due at `min_due` or later, and returns it as the executor runs it.
fn wake_item(
    tx: &rusqlite::Transaction<'_>,
    caller: &[u8],
    result: &J,
    min_due: i64,
) -> rusqlite::Result<Option<WorkItem>> {
    type Row = (Vec<u8>, String, String, Option<Vec<u8>>);
    let row: Option<Row> = tx
        .prepare_cached(
            "UPDATE items SET due_at = 0, wake = ?2 WHERE id = ?1 AND due_at >= ?3 RETURNING run_id, story, action, input",
        )?
        .query_row(params![caller, result.to_string(), min_due], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((run, story, action, input)) = row else {
        return Ok(None);
    };
    let input = match input {
        Some(bytes) if bytes.len() == 16 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(&bytes);
            match load_event(tx, b, &mut HashMap::new(), 0) {
                Ok(e) => e,
                // The child's step must not fail for it: the item is due in
                // the database and runs at the next start.
                Err(e) => {
                    tracing::error!("a woken caller's input cannot be loaded ({e}): it runs at the next start");
                    return Ok(None);
                }
            }
        }
        _ => None,
    };
    Ok(Some(WorkItem {
        id: uuid_of(caller),
        run_id: RunId::from(uuid_of(&run)),
        story: story.into(),
        action: action.into(),
        input,
        wake: Some(result.clone()),
        due_ms: 0,
        attempts: 0,
        mark: false,
        holder: 0,
    }))
}

fn prune(tx: &rusqlite::Transaction<'_>, story: &str, before_ms: i64) -> rusqlite::Result<Applied> {
    let runs: Vec<(Vec<u8>, String)> = tx
        .prepare_cached(
            "SELECT id, status FROM runs WHERE story = ?1 AND started_at < ?2 AND status != 'running' LIMIT 500",
        )?
        .query_map(params![story, before_ms], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut applied = Applied::default();
    for (id, status) in runs {
        tx.prepare_cached("DELETE FROM events WHERE run_id = ?1")?
            .execute([&id])?;
        tx.prepare_cached("DELETE FROM traces WHERE run_id = ?1")?
            .execute([&id])?;
        tx.prepare_cached("DELETE FROM runs WHERE id = ?1")?.execute([&id])?;
        let run = Uuid::from_slice(&id).map(RunId::from).unwrap_or_default();
        applied.finished.push((run, story.to_owned(), status == "succeeded"));
    }
    Ok(applied)
}

fn uuid_of(bytes: &[u8]) -> Uuid {
    Uuid::from_slice(bytes).unwrap_or_default()
}

/// Branch names are `&'static str` in events; the set is small and fixed.
pub(crate) fn intern_branch(b: &str) -> &'static str {
    match b {
        "failure" => "failure",
        "no_match" => "no_match",
        other => Box::leak(other.to_owned().into_boxed_str()),
    }
}

/// Loads an event and its ancestry (depth-bounded: graphs are acyclic and
/// deep chains are rare, but a damaged file must not recurse for ever).
fn load_event(
    conn: &Connection,
    id: [u8; 16],
    cache: &mut HashMap<[u8; 16], Arc<Event>>,
    depth: usize,
) -> Result<Option<Arc<Event>>, StoreError> {
    if let Some(e) = cache.get(&id) {
        return Ok(Some(e.clone()));
    }
    if depth > 10_000 {
        return Err(failed("an event's ancestry is deeper than 10,000"));
    }
    type Row = (Vec<u8>, String, String, Vec<u8>, Option<String>, String, i64);
    let row: Option<Row> = conn
        .prepare_cached("SELECT run_id, story, action, parents, branch, output, created_at FROM events WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([&id[..]], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .optional()
        })
        .map_err(failed)?;
    let Some((run, story, action, parent_ids, branch, output, at)) = row else {
        return Ok(None);
    };
    let mut parents = Vec::new();
    for chunk in parent_ids.chunks_exact(16) {
        let mut pid = [0u8; 16];
        pid.copy_from_slice(chunk);
        if let Some(p) = load_event(conn, pid, cache, depth + 1)? {
            parents.push(p);
        }
    }
    let event = Arc::new(Event::stored(
        EventId::from_bytes(id),
        RunId::from(uuid_of(&run)),
        story.into(),
        action.into(),
        parents,
        Output::from_text(output).map_err(failed)?,
        at,
        branch.as_deref().map(intern_branch),
    ));
    cache.insert(id, event.clone());
    Ok(Some(event))
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    let id: Vec<u8> = r.get(0)?;
    let errors: String = r.get(3)?;
    Ok(RunRow {
        id: uuid_of(&id).to_string(),
        story: r.get(1)?,
        status: run_state(r, 2)?,
        errors: serde_json::from_str(&errors).unwrap_or(J::Array(Vec::new())),
        events: r.get(4)?,
        started_at: r.get(5)?,
        finished_at: r.get(6)?,
        parent_run: r.get::<_, Option<Vec<u8>>>(7)?.map(|b| uuid_of(&b).to_string()),
        parent_event: r.get::<_, Option<Vec<u8>>>(8)?.map(|b| uuid_of(&b).to_string()),
    })
}

const RUN_COLUMNS: &str = "id, story, status, errors, events, started_at, finished_at, parent_run, parent_event";
/// The same from a database written before calls were stored (schema 3):
/// `tale runs` reads it without upgrading it.
const RUN_COLUMNS_V3: &str = "id, story, status, errors, events, started_at, finished_at, NULL, NULL";

/// The run columns a database of schema `version` has.
fn run_columns(version: i64) -> &'static str {
    if version >= 4 { RUN_COLUMNS } else { RUN_COLUMNS_V3 }
}

fn list_runs(conn: &Connection, columns: &str, f: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
    let mut sql = format!("SELECT {columns} FROM runs WHERE 1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(s) = &f.story {
        args.push(s.clone().into());
        sql += &format!(" AND story = ?{}", args.len());
    }
    if let Some(s) = f.status {
        args.push(s.as_str().to_owned().into());
        sql += &format!(" AND status = ?{}", args.len());
    }
    if let Some(t) = f.since {
        args.push(t.into());
        sql += &format!(" AND started_at >= ?{}", args.len());
    }
    if let Some(t) = f.until {
        args.push(t.into());
        sql += &format!(" AND started_at < ?{}", args.len());
    }
    if let Some(after) = f.after {
        args.push(after.as_bytes().to_vec().into());
        sql += &format!(" AND id < ?{}", args.len());
    }
    sql += &format!(" ORDER BY id DESC LIMIT {}", f.limit.clamp(1, 1000));
    let mut stmt = conn.prepare(&sql).map_err(failed)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), run_row)
        .map_err(failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    Ok(rows)
}

fn get_run(conn: &Connection, columns: &str, id: RunId) -> Result<Option<RunRow>, StoreError> {
    conn.prepare_cached(&format!("SELECT {columns} FROM runs WHERE id = ?1"))
        .and_then(|mut s| s.query_row([&id.as_bytes()[..]], run_row).optional())
        .map_err(failed)
}

fn called_by(conn: &Connection, run: RunId) -> Result<Vec<RunRow>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE parent_run = ?1 ORDER BY id"
    ))
    .and_then(|mut s| {
        s.query_map([&run.as_bytes()[..]], run_row)?
            .collect::<Result<Vec<_>, _>>()
    })
    .map_err(failed)
}

const EVENT_COLUMNS: &str = "id, run_id, story, action, parents, branch, output, created_at";

/// An event row (of [`EVENT_COLUMNS`]) as the API shows it.
fn event_json(r: &rusqlite::Row<'_>) -> rusqlite::Result<J> {
    let id: Vec<u8> = r.get(0)?;
    let run: Vec<u8> = r.get(1)?;
    let parents: Vec<u8> = r.get(4)?;
    let output: String = r.get(6)?;
    Ok(serde_json::json!({
        "id": uuid_of(&id).to_string(),
        "run_id": uuid_of(&run).to_string(),
        "story": r.get::<_, String>(2)?,
        "action": r.get::<_, String>(3)?,
        "parent_ids": parents.chunks_exact(16).map(|c| uuid_of(c).to_string()).collect::<Vec<_>>(),
        "branch": r.get::<_, Option<String>>(5)?,
        "output": serde_json::from_str::<J>(&output).unwrap_or(J::Null),
        "created_at": r.get::<_, i64>(7)?,
    }))
}

fn events_of_run(conn: &Connection, run: RunId) -> Result<Vec<J>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE run_id = ?1 ORDER BY rowid"
    ))
    .and_then(|mut s| s.query_map([&run.as_bytes()[..]], event_json)?.collect())
    .map_err(failed)
}

/// Where a database's schema keeps traces.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TraceLayout {
    /// Before schema 6: no traces.
    None,
    /// Schema 6: rows of the traces table only.
    Rows,
    /// Schemas 7–8: also on events' rows (`fold_traces`), no write order.
    Folded,
    /// Schema 9 on: both, with their write order (`TRACE_SEQ`).
    Sequenced,
}

impl TraceLayout {
    fn of(version: i64) -> Self {
        match version {
            ..=5 => Self::None,
            6 => Self::Rows,
            7 | 8 => Self::Folded,
            _ => Self::Sequenced,
        }
    }
}

/// A run's traces by start time, in the order they were written: its rows
/// in the traces table and those kept on its events' rows (`fold_traces`).
fn traces_of_run(conn: &Connection, run: RunId, layout: TraceLayout) -> Result<Vec<StepTrace>, StoreError> {
    const ROWS: &str = "SELECT action, input, at, duration_us, status, branch, emitted, error, detail FROM traces WHERE run_id = ?1 ORDER BY rowid";
    // Both places, by start and write order. Without a write order (schemas
    // 7–8, and what they wrote: NULL sorts first), those on events come
    // first within a millisecond, each kind in the order it was written.
    macro_rules! both {
        ($seq:literal, $trace_seq:literal) => {
            concat!(
                "SELECT action, input, at, duration_us, status, branch, emitted, error, detail FROM (
                   SELECT action, input, at, duration_us, status, branch, emitted, error, detail, ", $seq, " AS seq, 1 AS kind, rowid AS n
                     FROM traces WHERE run_id = ?1
                   UNION ALL
                   SELECT action, CASE WHEN length(parents) = 16 THEN parents END, trace_at, trace_us, 'succeeded', branch, 1, NULL,
                          trace_detail, ", $trace_seq, ", 0, rowid
                     FROM events WHERE run_id = ?1 AND trace_at IS NOT NULL
                 ) ORDER BY at, seq, kind, n"
            )
        };
    }
    let sql = match layout {
        TraceLayout::None => return Ok(Vec::new()),
        TraceLayout::Rows => ROWS,
        TraceLayout::Folded => both!("NULL", "NULL"),
        TraceLayout::Sequenced => both!("seq", "trace_seq"),
    };
    conn.prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map([&run.as_bytes()[..]], |r| {
                let status: String = r.get(4)?;
                Ok(StepTrace {
                    run_id: run,
                    action: r.get::<_, String>(0)?.into(),
                    input: r.get::<_, Option<Vec<u8>>>(1)?.map(|b| EventId::from(uuid_of(&b))),
                    at_ms: r.get(2)?,
                    duration_us: r.get(3)?,
                    status: StepStatus::parse(&status),
                    branch: r.get::<_, Option<String>>(5)?.map(|b| intern_branch(&b)),
                    emitted: r.get(6)?,
                    error: r.get(7)?,
                    detail: r.get(8)?,
                })
            })?
            .collect()
        })
        .map_err(failed)
}

fn activity(conn: &Connection, since_ms: i64) -> Result<Vec<StoryActivity>, StoreError> {
    conn.prepare_cached(
        "SELECT story, COUNT(*), SUM(status = 'failed'), SUM(status = 'running'), MAX(started_at) FROM runs WHERE started_at >= ?1 GROUP BY story ORDER BY story",
    )
    .and_then(|mut s| {
        s.query_map([since_ms], |r| {
            Ok(StoryActivity {
                story: r.get(0)?,
                runs: r.get(1)?,
                failed: r.get(2)?,
                running: r.get(3)?,
                last_started: r.get(4)?,
            })
        })?
        .collect()
    })
    .map_err(failed)
}

/// The story's latest runs, as a subquery taking (?1 story, ?2 how many).
const RECENT_RUNS: &str = "SELECT id FROM runs WHERE story = ?1 ORDER BY started_at DESC LIMIT ?2";

fn action_activity(
    conn: &Connection,
    story: &str,
    runs: usize,
    traces: bool,
) -> Result<Vec<ActionActivity>, StoreError> {
    let runs = runs as i64;
    let mut out: Vec<ActionActivity> = conn
        .prepare_cached(&format!(
            "SELECT action, COUNT(*) FROM events WHERE run_id IN ({RECENT_RUNS}) GROUP BY action"
        ))
        .and_then(|mut s| {
            s.query_map(params![story, runs], |r| {
                Ok(ActionActivity {
                    action: r.get(0)?,
                    events: r.get(1)?,
                    failures: 0,
                })
            })?
            .collect()
        })
        .map_err(failed)?;
    if traces {
        let failures: Vec<(String, i64)> = conn
            .prepare_cached(&format!(
                "SELECT action, COUNT(*) FROM traces WHERE run_id IN ({RECENT_RUNS}) AND status = 'failed' GROUP BY action"
            ))
            .and_then(|mut s| s.query_map(params![story, runs], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(failed)?;
        for (action, n) in failures {
            match out.iter_mut().find(|a| a.action == action) {
                Some(a) => a.failures = n,
                None => out.push(ActionActivity {
                    action,
                    events: 0,
                    failures: n,
                }),
            }
        }
    }
    Ok(out)
}

fn action_events(
    conn: &Connection,
    story: &str,
    action: &str,
    runs: usize,
    limit: usize,
) -> Result<Vec<J>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE run_id IN ({RECENT_RUNS}) AND action = ?3 ORDER BY created_at DESC, rowid DESC LIMIT ?4"
    ))
    .and_then(|mut s| {
        s.query_map(params![story, runs as i64, action, limit as i64], event_json)?
            .collect()
    })
    .map_err(failed)
}

/// Reads a database without taking it over (`tale runs`, `tale events`),
/// also while `tale serve` runs on it.
pub struct SqliteReader {
    /// Behind a lock: a reader is shared like the other stores.
    conn: Arc<Mutex<Connection>>,
    /// The run columns of its schema version.
    columns: &'static str,
    /// Where its schema keeps traces (if it has them).
    layout: TraceLayout,
}

/// Runs `f` on a connection on tokio's blocking threads: a SQLite call
/// blocks, and async threads must not.
fn on_connection<T: Send + 'static>(
    conn: &Arc<Mutex<Connection>>,
    f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
) -> BoxFuture<'static, Result<T, StoreError>> {
    let conn = conn.clone();
    Box::pin(async move {
        tokio::task::spawn_blocking(move || f(&mut conn.lock().unwrap_or_else(|p| p.into_inner())))
            .await
            .map_err(|e| failed(format!("a database read stopped: {e}")))?
    })
}

impl SqliteReader {
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let sqlite = |source| OpenError::Sqlite {
            path: path.to_owned(),
            source,
        };
        if !path.exists() {
            return Err(sqlite(rusqlite::Error::InvalidPath(path.to_owned())));
        }
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sqlite)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sqlite)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            columns: run_columns(version),
            layout: TraceLayout::of(version),
        })
    }
}

impl StateStore for SqliteStore {
    fn state<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<J>, StoreError>> {
        let key = key.to_owned();
        self.reading(move |conn| {
            let text: Option<String> = conn
                .prepare_cached("SELECT value FROM state WHERE key = ?1")
                .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
                .map_err(failed)?;
            text.map(|t| serde_json::from_str(&t).map_err(failed)).transpose()
        })
    }

    fn state_list<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<J>, StoreError>> {
        let key = key.to_owned();
        self.reading(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT value FROM state_lists WHERE key = ?1 ORDER BY seq")
                .map_err(failed)?;
            let texts = stmt
                .query_map([key], |r| r.get::<_, String>(0))
                .map_err(failed)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(failed)?;
            texts.iter().map(|t| serde_json::from_str(t).map_err(failed)).collect()
        })
    }

    fn state_list_text<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<String, StoreError>> {
        let key = key.to_owned();
        self.reading(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT value FROM state_lists WHERE key = ?1 ORDER BY seq")
                .map_err(failed)?;
            let mut rows = stmt.query([key]).map_err(failed)?;
            let mut out = String::from("[");
            while let Some(row) = rows.next().map_err(failed)? {
                if out.len() > 1 {
                    out.push(',');
                }
                out.push_str(row.get_ref(0).map_err(failed)?.as_str().map_err(failed)?);
            }
            out.push(']');
            Ok(out)
        })
    }
}

impl DurableStore for SqliteStore {
    fn keeps_traces(&self) -> bool {
        true
    }
    fn apply(&self, tx: Transaction, wait: bool) -> BoxFuture<'static, Result<Applied, StoreError>> {
        match self.prepare(tx, true) {
            Ok(p) => self.submit(Work::Step(Box::new(p)), wait),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    fn clean_restart(&self) -> BoxFuture<'_, Result<bool, StoreError>> {
        let applied = self.submit(Work::CleanRestart, true);
        Box::pin(async move { applied.await.map(|a| a.fired) })
    }

    fn mark_started(&self, item: Uuid) -> BoxFuture<'static, Result<(), StoreError>> {
        let applied = self.submit(Work::MarkStarted(item.into_bytes()), true);
        Box::pin(async move { applied.await.map(|_| ()) })
    }

    fn recover(&self) -> BoxFuture<'_, Result<Vec<WorkItem>, StoreError>> {
        let owner = self.owner.clone();
        self.reading(move |conn| recover(conn, &owner))
    }

    fn last_tick<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<i64>, StoreError>> {
        let key = key.to_owned();
        self.reading(move |conn| {
            conn.prepare_cached("SELECT last_tick FROM schedules WHERE key = ?1")
                .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
                .map_err(failed)
        })
    }

    fn run_events(&self, run: RunId) -> BoxFuture<'_, Result<Vec<Arc<Event>>, StoreError>> {
        self.reading(move |conn| {
            let mut cache = HashMap::new();
            let ids: Vec<Vec<u8>> = conn
                .prepare_cached("SELECT id FROM events WHERE run_id = ?1 ORDER BY rowid")
                .and_then(|mut s| {
                    s.query_map([&run.as_bytes()[..]], |r| r.get(0))?
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(failed)?;
            let mut out = Vec::new();
            for id in ids {
                if let Ok(b) = <[u8; 16]>::try_from(id.as_slice()) {
                    out.extend(load_event(conn, b, &mut cache, 0)?);
                }
            }
            Ok(out)
        })
    }
}

/// The stored work items (not the parked callers), with their input events,
/// taken over by `owner`: the lock file says the previous owner is gone.
fn recover(conn: &Connection, owner: &str) -> Result<Vec<WorkItem>, StoreError> {
    {
        type Row = (
            Vec<u8>,
            Vec<u8>,
            String,
            String,
            Option<Vec<u8>>,
            Option<String>,
            i64,
            u32,
        );
        let rows: Vec<Row> = conn
            // Parked callers stay in the store until a sub-story wakes them.
            .prepare("SELECT id, run_id, story, action, input, wake, due_at, attempts FROM items WHERE due_at < ?1 ORDER BY id")
            .and_then(|mut s| {
                s.query_map([tale_engine::runtime::durable::PARKED], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(failed)?;
        let mut cache = HashMap::new();
        let mut items = Vec::with_capacity(rows.len());
        for (id, run, story, action, input, wake, due, attempts) in rows {
            let input = match input {
                Some(bytes) if bytes.len() == 16 => {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(&bytes);
                    load_event(conn, b, &mut cache, 0)?
                }
                _ => None,
            };
            items.push(WorkItem {
                id: uuid_of(&id),
                run_id: RunId::from(uuid_of(&run)),
                story: story.into(),
                action: action.into(),
                input,
                wake: wake.map(|w| serde_json::from_str(&w).map_err(failed)).transpose()?,
                due_ms: due,
                attempts,
                mark: false,
                holder: 0,
            });
        }
        conn.execute(
            "UPDATE items SET lease_owner = ?1, lease_until = ?2",
            params![owner, tale_engine::runtime::event::now_millis() + LEASE_MS],
        )
        .map_err(failed)?;
        Ok(items)
    }
}

impl RunLog for SqliteReader {
    fn runs<'a>(&'a self, filter: &'a RunFilter) -> BoxFuture<'a, Result<Vec<RunRow>, StoreError>> {
        let (filter, columns) = (filter.clone(), self.columns);
        on_connection(&self.conn, move |c| list_runs(c, columns, &filter))
    }
    fn run(&self, id: RunId) -> BoxFuture<'_, Result<Option<RunRow>, StoreError>> {
        let columns = self.columns;
        on_connection(&self.conn, move |c| get_run(c, columns, id))
    }
    fn events_json(&self, run: RunId) -> BoxFuture<'_, Result<Vec<J>, StoreError>> {
        on_connection(&self.conn, move |c| events_of_run(c, run))
    }
    fn event(&self, id: EventId) -> BoxFuture<'_, Result<Option<Arc<Event>>, StoreError>> {
        on_connection(&self.conn, move |c| {
            load_event(c, id.into_bytes(), &mut HashMap::new(), 0)
        })
    }
    fn called_by(&self, run: RunId) -> BoxFuture<'_, Result<Vec<RunRow>, StoreError>> {
        // An older schema records no parent runs.
        let recorded = self.columns == RUN_COLUMNS;
        on_connection(
            &self.conn,
            move |c| if recorded { called_by(c, run) } else { Ok(Vec::new()) },
        )
    }
    fn traces(&self, run: RunId) -> BoxFuture<'_, Result<Vec<StepTrace>, StoreError>> {
        let layout = self.layout;
        on_connection(&self.conn, move |c| traces_of_run(c, run, layout))
    }
    fn activity(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<StoryActivity>, StoreError>> {
        on_connection(&self.conn, move |c| activity(c, since_ms))
    }
    fn action_activity<'a>(
        &'a self,
        story: &'a str,
        runs: usize,
    ) -> BoxFuture<'a, Result<Vec<ActionActivity>, StoreError>> {
        let (story, traces) = (story.to_owned(), self.layout != TraceLayout::None);
        on_connection(&self.conn, move |c| action_activity(c, &story, runs, traces))
    }
    fn action_events<'a>(
        &'a self,
        story: &'a str,
        action: &'a str,
        runs: usize,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<J>, StoreError>> {
        let (story, action) = (story.to_owned(), action.to_owned());
        on_connection(&self.conn, move |c| action_events(c, &story, &action, runs, limit))
    }
}

impl RunLog for SqliteStore {
    fn runs<'a>(&'a self, filter: &'a RunFilter) -> BoxFuture<'a, Result<Vec<RunRow>, StoreError>> {
        self.log.runs(filter)
    }
    fn run(&self, id: RunId) -> BoxFuture<'_, Result<Option<RunRow>, StoreError>> {
        self.log.run(id)
    }
    fn events_json(&self, run: RunId) -> BoxFuture<'_, Result<Vec<J>, StoreError>> {
        self.log.events_json(run)
    }
    fn event(&self, id: EventId) -> BoxFuture<'_, Result<Option<Arc<Event>>, StoreError>> {
        self.log.event(id)
    }
    fn called_by(&self, run: RunId) -> BoxFuture<'_, Result<Vec<RunRow>, StoreError>> {
        self.log.called_by(run)
    }
    fn traces(&self, run: RunId) -> BoxFuture<'_, Result<Vec<StepTrace>, StoreError>> {
        self.log.traces(run)
    }
    fn activity(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<StoryActivity>, StoreError>> {
        self.log.activity(since_ms)
    }
    fn action_activity<'a>(
        &'a self,
        story: &'a str,
        runs: usize,
    ) -> BoxFuture<'a, Result<Vec<ActionActivity>, StoreError>> {
        self.log.action_activity(story, runs)
    }
    fn action_events<'a>(
        &'a self,
        story: &'a str,
        action: &'a str,
        runs: usize,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<J>, StoreError>> {
        self.log.action_events(story, action, runs, limit)
    }
}

impl SecretStore for SqliteStore {
    fn stored_credentials(&self) -> BoxFuture<'_, Result<Vec<StoredCredential>, StoreError>> {
        self.reading(|c| secrets::credentials(c))
    }

    /// Credentials under another key than `previous` are left as they are
    /// (the start then names them).
    fn reseal_credentials<'a>(
        &'a self,
        previous: &'a SealKey,
        current: &'a SealKey,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(async move {
            if previous.id() == current.id() {
                return Ok(0);
            }
            let mut again = Vec::new();
            for row in self.stored_credentials().await? {
                if row.sealed.key_id == previous.id() {
                    let entry = row.open(previous).map_err(failed)?;
                    again.push(StoredCredential::seal(&row.name, &entry, current, now_ms).map_err(failed)?);
                }
            }
            // All or none.
            self.reading(move |conn| {
                let tx = conn.transaction().map_err(failed)?;
                for c in &again {
                    secrets::put_credential(&tx, c)?;
                }
                tx.commit().map_err(failed)?;
                Ok(again.len())
            })
            .await
        })
    }

    fn put_credential(&self, c: StoredCredential) -> BoxFuture<'_, Result<(), StoreError>> {
        self.reading(move |conn| secrets::put_credential(conn, &c))
    }

    fn stored_resources(&self) -> BoxFuture<'_, Result<Vec<StoredResource>, StoreError>> {
        self.reading(|c| secrets::resources(c))
    }

    fn put_resource(&self, r: StoredResource) -> BoxFuture<'_, Result<(), StoreError>> {
        self.reading(move |conn| secrets::put_resource(conn, &r))
    }

    fn delete_stored(&self, table: Table, name: String) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.reading(move |conn| secrets::delete(conn, table, &name))
    }
}

impl crate::backend::ServeStore for SqliteStore {
    fn health(&self) -> Result<(), String> {
        SqliteStore::health(self)
    }
    fn prune<'a>(&'a self, story: &'a str, before_ms: i64) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(SqliteStore::prune(self, story, before_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_grouped_only_while_steps_arrive_together() {
        use std::time::Duration;
        let ms = Duration::from_millis;
        // A lone step, however soon after the last commit: at once.
        assert_eq!(group_commit_wait(0, ms(0)), None);
        assert_eq!(group_commit_wait(1, Duration::ZERO), None);
        // After a commit of several: the rest of GROUP_COMMIT, then at once.
        assert_eq!(group_commit_wait(2, Duration::ZERO), Some(GROUP_COMMIT));
        assert_eq!(
            group_commit_wait(30, GROUP_COMMIT / 4),
            Some(GROUP_COMMIT - GROUP_COMMIT / 4)
        );
        assert_eq!(group_commit_wait(30, GROUP_COMMIT), None);
        assert_eq!(group_commit_wait(30, GROUP_COMMIT + ms(5)), None);
    }

    /// One process owns a database file: a second owner is refused (after
    /// the moment a previous owner gets to let go), the first keeps it.
    #[test]
    fn one_owner_per_database_file() {
        let dir = tempfile::tempdir().expect("dir");
        let dir = dir.path();
        let path = dir.join("owned.db");
        let first = SqliteStore::open(&path, Sync::Normal).expect("the first owner");
        match SqliteStore::open(&path, Sync::Normal) {
            Err(OpenError::Locked(p)) => assert_eq!(p, path),
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(_) => panic!("a second owner opened the database"),
        }
        assert!(first.health().is_ok(), "the first owner lost the database");
        drop(first);
    }

    /// A step of one run with one event whose output is `bytes` long.
    fn big_step(bytes: usize) -> Transaction {
        let run = RunId::from(tale_engine::runtime::event::new_id());
        let output = J::String("x".repeat(bytes));
        let event = Arc::new(Event::new(run, "s".into(), "a".into(), Vec::new(), output, 0));
        Transaction {
            started: vec![(run, "s".into(), 0)],
            events: vec![event],
            ..Transaction::default()
        }
    }

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    /// Commits are copied into the database file by the checkpointer thread
    /// (the writer's own checkpoint waits for 8,192 pages), and the WAL is
    /// restarted from its beginning instead of growing with every commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_checkpointer_copies_the_wal_and_keeps_it_bounded() {
        let dir = tempfile::tempdir().expect("dir");
        let dir = dir.path();
        let path = dir.join("ckpt.db");
        let wal = dir.join("ckpt.db-wal");
        let store = SqliteStore::open(&path, Sync::Normal).expect("open");
        let empty = size(&path);
        for _ in 0..20 {
            store.apply(big_step(16_000), true).await.expect("step");
        }
        let wal_pages = size(&wal) / 4096;
        assert!(
            wal_pages < WAL_BACKSTOP_PAGES as u64,
            "{wal_pages} pages: the writer checkpointed"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while size(&path) < empty + 20 * 16_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "nothing copied into {}",
                path.display()
            );
            tokio::time::sleep(CHECKPOINT_EVERY).await;
        }
        // Four times the backstop written: the WAL stays near it.
        let per_step = 64_000;
        let steps = 4 * WAL_BACKSTOP_PAGES as usize * 4096 / per_step;
        for chunk in 0..steps / 50 {
            let applied = (0..50).map(|_| store.apply(big_step(per_step), true));
            for r in futures_util::future::join_all(applied).await {
                r.unwrap_or_else(|e| panic!("chunk {chunk}: {e}"));
            }
        }
        let wal_bytes = size(&wal);
        assert!(
            wal_bytes < 2 * WAL_BACKSTOP_PAGES as u64 * 4200,
            "the WAL grew to {wal_bytes} bytes over {} pages written",
            steps * per_step / 4096
        );
        drop(store);
    }

    fn trace(
        run: RunId,
        action: &str,
        input: Option<&Arc<Event>>,
        at_ms: i64,
        status: StepStatus,
        emitted: i64,
    ) -> StepTrace {
        StepTrace {
            run_id: run,
            action: action.into(),
            input: input.map(|e| e.id),
            at_ms,
            duration_us: at_ms * 10 + 7,
            status,
            branch: None,
            emitted,
            error: (status == StepStatus::Failed).then(|| "it broke".to_owned()),
            detail: Some(format!(r#"[{{"url":"http://127.0.0.1/{action}"}}]"#)),
        }
    }

    fn event(run: RunId, action: &str, parents: Vec<Arc<Event>>, n: i64) -> Arc<Event> {
        Arc::new(Event::new(
            run,
            "folds".into(),
            action.into(),
            parents,
            serde_json::json!({ "n": n }),
            5,
        ))
    }

    fn trace_rows(path: &Path) -> i64 {
        Connection::open(path)
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM traces", [], |r| r.get(0)))
            .expect("count")
    }

    /// Traces kept on their events' rows read back as they were written,
    /// among those kept as rows, by start time; only the latter take rows.
    #[tokio::test]
    async fn traces_kept_on_events_read_back_as_written() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("folds.db");
        let store = SqliteStore::open(&path, Sync::Normal).expect("store");
        let run = RunId::new();
        let hook = event(run, "alert", Vec::new(), 1);
        let shaped = event(run, "shape", vec![hook.clone()], 2);
        // Same action, other input: must not take the other's trace.
        let again = event(run, "shape", vec![shaped.clone()], 3);
        let written = vec![
            trace(run, "alert", None, 100, StepStatus::Succeeded, 1),
            trace(run, "gate", Some(&hook), 101, StepStatus::Skipped, 0),
            trace(run, "shape", Some(&shaped), 103, StepStatus::Succeeded, 1),
            // An execution that emitted twice keeps a row, and is read back
            // before the folded trace written after it in its millisecond.
            trace(run, "split", Some(&hook), 102, StepStatus::Succeeded, 2),
            trace(run, "shape", Some(&hook), 102, StepStatus::Succeeded, 1),
            // An execution that failed keeps a row.
            trace(run, "post", Some(&shaped), 103, StepStatus::Failed, 0),
        ];
        store
            .apply(
                Transaction {
                    started: vec![(run, "folds".into(), 5)],
                    events: vec![hook, shaped, again],
                    traces: written.clone(),
                    ..Transaction::default()
                },
                true,
            )
            .await
            .expect("step");
        assert_eq!(trace_rows(&path), 3, "only the traces no event carries are rows");
        let read: Vec<J> = store
            .traces(run)
            .await
            .expect("traces")
            .iter()
            .map(StepTrace::to_json)
            .collect();
        let mut expected: Vec<&StepTrace> = written.iter().collect();
        // By start time; in one millisecond, as written (a stable sort).
        expected.sort_by_key(|t| t.at_ms);
        let expected: Vec<J> = expected.into_iter().map(StepTrace::to_json).collect();
        assert_eq!(read, expected);
    }

    /// A large step (an explode's items transformed) is matched through a
    /// map: every trace lands on its own event.
    #[tokio::test]
    async fn a_large_step_keeps_each_trace_on_its_own_event() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("large.db");
        let store = SqliteStore::open(&path, Sync::Normal).expect("store");
        let run = RunId::new();
        let items: Vec<Arc<Event>> = (0..40).map(|n| event(run, "split", Vec::new(), n)).collect();
        let shaped: Vec<Arc<Event>> = items.iter().map(|i| event(run, "shape", vec![i.clone()], 0)).collect();
        let written: Vec<StepTrace> = items
            .iter()
            .enumerate()
            .map(|(n, i)| trace(run, "shape", Some(i), 200 + n as i64, StepStatus::Succeeded, 1))
            .collect();
        store
            .apply(
                Transaction {
                    started: vec![(run, "folds".into(), 5)],
                    events: items.into_iter().chain(shaped).collect(),
                    traces: written.clone(),
                    ..Transaction::default()
                },
                true,
            )
            .await
            .expect("step");
        assert_eq!(trace_rows(&path), 0);
        let read: Vec<J> = store
            .traces(run)
            .await
            .expect("traces")
            .iter()
            .map(StepTrace::to_json)
            .collect();
        assert_eq!(read, written.iter().map(StepTrace::to_json).collect::<Vec<_>>());
    }

    /// A database as an older tale left it: its first `version` migrations.
    fn database_of_schema(path: &Path, version: usize) -> Connection {
        let conn = Connection::open(path).expect("open");
        for sql in &MIGRATIONS[..version] {
            conn.execute_batch(sql).expect("migrate");
        }
        conn.pragma_update(None, "user_version", version as i64)
            .expect("version");
        conn
    }

    /// A database of schema 6 (every trace a row) reads its traces.
    #[tokio::test]
    async fn a_reader_reads_the_traces_of_a_schema_6_database() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("six.db");
        let run = RunId::new();
        {
            let conn = database_of_schema(&path, 6);
            conn.execute(
                "INSERT INTO traces (run_id, action, input, at, duration_us, status, branch, emitted, error, detail) VALUES (?1, 'shape', NULL, 9, 90, 'succeeded', NULL, 1, NULL, NULL)",
                [&run.as_bytes()[..]],
            )
            .expect("trace");
        }
        let reader = SqliteReader::open(&path).expect("reader");
        let traces = reader.traces(run).await.expect("traces");
        assert_eq!(traces.len(), 1);
        assert_eq!(
            (&*traces[0].action, traces[0].at_ms, traces[0].emitted),
            ("shape", 9, 1)
        );
    }

    /// A database of schema 8 (traces on events, no write order) reads
    /// both kinds back, those on events first within a millisecond.
    #[tokio::test]
    async fn a_reader_reads_the_traces_of_a_schema_8_database() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("eight.db");
        let run = RunId::new();
        {
            let conn = database_of_schema(&path, 8);
            conn.execute(
                "INSERT INTO traces (run_id, action, input, at, duration_us, status, branch, emitted, error, detail) VALUES (?1, 'split', NULL, 9, 90, 'succeeded', NULL, 2, NULL, NULL)",
                [&run.as_bytes()[..]],
            )
            .expect("trace");
            conn.execute(
                "INSERT INTO events (id, run_id, story, action, parents, branch, output, created_at, trace_at, trace_us, trace_detail) VALUES (?1, ?2, 's', 'shape', x'', NULL, '{}', 9, 9, 40, NULL)",
                params![&uuid::Uuid::from_u128(1).as_bytes()[..], &run.as_bytes()[..]],
            )
            .expect("event");
        }
        let reader = SqliteReader::open(&path).expect("reader");
        let traces = reader.traces(run).await.expect("traces");
        let read: Vec<(&str, i64)> = traces.iter().map(|t| (&*t.action, t.emitted)).collect();
        assert_eq!(read, [("shape", 1), ("split", 2)]);
    }

    /// `tale runs` reads a database written before calls were stored
    /// (schema 3) without upgrading it.
    #[tokio::test]
    async fn a_reader_reads_a_schema_3_database() {
        let dir = tempfile::tempdir().expect("dir");
        let dir = dir.path();
        let path = dir.join("old.db");
        {
            let conn = database_of_schema(&path, 3);
            conn.execute(
                "INSERT INTO runs (id, story, status, started_at, events) VALUES (?1, 'old', 'succeeded', 1, 2)",
                [&[7u8; 16][..]],
            )
            .expect("run");
        }
        let reader = SqliteReader::open(&path).expect("reader");
        let runs = reader
            .runs(&RunFilter {
                limit: 10,
                ..RunFilter::default()
            })
            .await
            .expect("runs");
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].status, RunState::Succeeded);
        assert_eq!(runs[0].parent_run, None);
    }
}
