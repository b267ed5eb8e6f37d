//! The PostgreSQL store (`--db postgres://…`): the durable store contract
//! on a database server, through a pool of tokio-postgres connections.
//! Every step is one transaction; the database decides what is committed.
//! Several `tale serve` processes may share one database: each is a node
//! ([`node`]) that runs the work it creates and claims what dead nodes
//! left.

mod connect;
mod log;
mod node;
mod schema;
mod step;

use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use serde_json::Value as J;
use uuid::Uuid;

pub use connect::PgUrl;
pub use log::PgLog;
use tale_engine::runtime::durable::{Applied, CLEAN_STOP, DurableStore, PARKED, Transaction, WorkItem};
use tale_engine::runtime::event::{Event, EventId, RunId};
use tale_engine::runtime::runlog::{ActionActivity, RunFilter, RunLog, RunRow, SecretStore, StoryActivity};
use tale_engine::runtime::sealed::SealKey;
use tale_engine::runtime::store::{StateStore, StoreError};
use tale_engine::runtime::stored::{StoredCredential, StoredResource, Table};
use tale_engine::runtime::trace::StepTrace;

/// Key of the advisory lock a node of an earlier tale (one node per
/// database) holds while it serves ("tale" + 2): such a node must be
/// stopped before this one migrates the schema under it.
const OWNER_LOCK: i64 = 0x7461_6c65_0002;
/// An item's `lease_until` (informational: a node's lease in `nodes` is
/// what counts).
const LEASE_MS: i64 = 30_000;
/// Steps waiting for a committer beyond which a webhook gets a 503.
const QUEUED: usize = 8192;
/// Committers per node by default: each applies a batch of steps in one
/// transaction, on its own connection, while the others fill theirs.
pub const COMMITTERS: usize = 4;
/// At most this many (each holds a connection of the pool of 16).
const MAX_COMMITTERS: usize = 12;
/// At most this many steps per transaction.
const BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("{0}")]
    Url(String),
    #[error("cannot read the password file {path}: {source}")]
    PasswordFile { path: String, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("PostgreSQL: {}", with_causes(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("PostgreSQL connection pool: {0}")]
    Pool(String),
    #[error(
        "a `tale serve` of an earlier version (one node per database) uses this database: stop it before starting this one"
    )]
    Locked,
    #[error("the database holds no tale data: no `tale serve` or `tale run --db` has used it")]
    NoSchema,
    #[error("the database has schema version {found}; this tale knows up to {known}")]
    TooNew { found: usize, known: usize },
}

/// An error with its causes ("error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer"): the first line alone rarely says why.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

impl From<deadpool_postgres::PoolError> for PgError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        PgError::Pool(with_causes(&e))
    }
}

/// What a failed statement means for the caller: a lost connection or a
/// serialization failure may pass, a constraint never does.
pub(crate) fn classify(e: &tokio_postgres::Error) -> StoreError {
    use tokio_postgres::error::SqlState;
    let text = e
        .as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_owned());
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION || *c == SqlState::FOREIGN_KEY_VIOLATION => {
            StoreError::Conflict(text)
        }
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::LOCK_NOT_AVAILABLE
                || *c == SqlState::QUERY_CANCELED
                || *c == SqlState::TOO_MANY_CONNECTIONS
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW =>
        {
            StoreError::Busy(text)
        }
        Some(_) => StoreError::Failed(text),
        // No SQLSTATE: the connection broke.
        None => StoreError::Busy(text),
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Busy(format!("no database connection: {e}"))
}

/// A step waiting for a committer.
struct Job {
    step: step::Prepared,
    reply: tokio::sync::oneshot::Sender<Result<Applied, StoreError>>,
}

/// What a committer task holds.
struct Committer {
    jobs: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Job>>>,
    pool: deadpool_postgres::Pool,
    node: Arc<node::Node>,
    write_error: Arc<Mutex<Vec<Option<String>>>>,
    /// Its place in `write_error`.
    index: usize,
}

/// Takes the steps waiting (up to [`BATCH`]) and applies them in one
/// transaction; when that fails, each alone, so that one bad step (a
/// conflict) does not fail the others. Ends when the store is dropped.
async fn commit_loop(c: Committer) {
    let mut batches: u64 = 0;
    loop {
        let batch = {
            let mut jobs = c.jobs.lock().await;
            let Some(first) = jobs.recv().await else { return };
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        let mut client = match c.pool.get().await {
            Ok(client) => client,
            Err(e) => {
                let e = pool_error(e);
                for job in batch {
                    let _ = job.reply.send(Err(e.clone()));
                }
                continue;
            }
        };
        let steps: Vec<&step::Prepared> = batch.iter().map(|j| &j.step).collect();
        let results = match step::apply_all(&mut client, &c.pool, &steps, &c.node).await {
            Ok(applied) => applied.into_iter().map(Ok).collect(),
            // Only a conflict is worth trying step by step (one bad step
            // must not fail the others); after a broken connection or an
            // unknown outcome, each caller decides.
            Err(e) if batch.len() == 1 || !matches!(e, StoreError::Conflict(_)) => {
                batch.iter().map(|_| Err(e.clone())).collect()
            }
            Err(_) => {
                let mut one_by_one = Vec::with_capacity(batch.len());
                for job in &batch {
                    one_by_one.push(
                        step::apply_all(&mut client, &c.pool, &[&job.step], &c.node)
                            .await
                            .map(|mut a| a.pop().unwrap_or_default()),
                    );
                }
                one_by_one
            }
        };
        // A conflict is the step's own fault; anything else the database's.
        let broken = results.iter().find_map(|r| match r {
            Err(StoreError::Failed(e) | StoreError::Busy(e)) => Some(e.clone()),
            _ => None,
        });
        // Each committer keeps its own verdict: one's success must not hide
        // another's failure.
        batches += 1;
        if results
            .iter()
            .any(|r| r.as_ref().is_ok_and(|a| !a.handed_off.is_empty()))
        {
            // Items for a lane another node holds: tell it now.
            node::notify(&client).await;
        }
        if broken.is_none() && batches.is_multiple_of(1024) {
            // Best effort: markers left now go with a later batch.
            let _ = step::forget_commits(&client).await;
        }
        c.write_error.lock().unwrap_or_else(|p| p.into_inner())[c.index] = broken;
        for (job, result) in batch.into_iter().zip(results) {
            let _ = job.reply.send(result);
        }
    }
}

/// The PostgreSQL store of a serving node.
pub struct PgStore {
    pool: deadpool_postgres::Pool,
    log: PgLog,
    node: Arc<node::Node>,
    /// Steps for the committers (admission: `apply` without `wait` refuses
    /// when it is full).
    jobs: tokio::sync::mpsc::Sender<Job>,
    /// Each committer's last failed write, cleared by its next success.
    write_error: Arc<Mutex<Vec<Option<String>>>>,
}

/// How a node presents itself to the others.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Stable across restarts of one process (a host and port, a pod name):
    /// a node that starts under the name of a dead one releases its work
    /// at once instead of when its lease ends.
    pub name: String,
    /// How long the others wait for a silent node before taking its work.
    pub lease: std::time::Duration,
    /// Transactions of steps this node keeps in flight ([`COMMITTERS`]).
    /// Nodes sharing a database share its capacity: more of them in
    /// flight make smaller batches and cost the database more per step.
    pub committers: usize,
    /// A commit returns once the database has flushed its log (`--sync
    /// full`); otherwise (`--sync normal`) once it is in the database's
    /// memory (`synchronous_commit = off`): safe from a crash of tale, not
    /// from one of the database server (its last ≈0.6 s).
    pub flush_commits: bool,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            name: format!("{}:{}", hostname(), std::process::id()),
            lease: std::time::Duration::from_secs(10),
            committers: COMMITTERS,
            flush_commits: true,
        }
    }
}

/// This machine's name, for a node's default name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Closes the listening connection; the lease renewal ends with the
        // last reference to the node.
        self.node.stop.send_replace(true);
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("node", &self.node.id()).finish()
    }
}

impl PgStore {
    /// Connects, migrates the schema (refused while a node of an earlier
    /// tale serves), registers this node and starts renewing its lease and
    /// listening for work.
    pub async fn open(url: &PgUrl, options: NodeOptions) -> Result<Arc<Self>, PgError> {
        let (mut admin, connection) = url.connect_one().await?;
        let driver = tokio::spawn(connection);
        let free: bool = admin
            .query_one("SELECT pg_try_advisory_lock_shared($1)", &[&OWNER_LOCK])
            .await?
            .get(0);
        if !free {
            return Err(PgError::Locked);
        }
        schema::migrate(&mut admin).await?;
        // Not held while serving: through a pooler the session may live on.
        admin
            .execute("SELECT pg_advisory_unlock_shared($1)", &[&OWNER_LOCK])
            .await?;
        let node = Arc::new(node::Node::new(options.name, options.lease));
        node.register(&mut admin).await?;
        drop(admin);
        let _ = driver.await;
        let pool = url.pool(16, options.lease, options.flush_commits)?;
        tokio::spawn(node.clone().keep_alive(pool.clone()));
        if !url.poll_only {
            tokio::spawn(node::listen(Arc::downgrade(&node), url.clone()));
        }
        let committers = options.committers.clamp(1, MAX_COMMITTERS);
        let write_error: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(vec![None; committers]));
        let (jobs, rx) = tokio::sync::mpsc::channel(QUEUED);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for index in 0..committers {
            tokio::spawn(commit_loop(Committer {
                index,
                jobs: rx.clone(),
                pool: pool.clone(),
                node: node.clone(),
                write_error: write_error.clone(),
            }));
        }
        Ok(Arc::new(Self {
            log: PgLog::on(url.read_pool(4)?),
            pool,
            node,
            jobs,
            write_error,
        }))
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Runs one statement that returns rows, on a pooled connection.
    async fn rows(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(|e| classify(&e))?;
        client.query(&statement, params).await.map_err(|e| classify(&e))
    }
}

impl StateStore for PgStore {
    fn state<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<J>, StoreError>> {
        Box::pin(async move {
            let rows = self.rows("SELECT value FROM state WHERE key = $1", &[&key]).await?;
            rows.first()
                .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(|e| StoreError::Failed(e.to_string())))
                .transpose()
        })
    }

    fn state_list<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<J>, StoreError>> {
        Box::pin(async move {
            let rows = self
                .rows("SELECT value FROM state_lists WHERE key = $1 ORDER BY seq", &[&key])
                .await?;
            rows.iter()
                .map(|r| serde_json::from_str(r.get::<_, &str>(0)).map_err(|e| StoreError::Failed(e.to_string())))
                .collect()
        })
    }

    fn state_list_text<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<String, StoreError>> {
        Box::pin(async move {
            let rows = self
                .rows("SELECT value FROM state_lists WHERE key = $1 ORDER BY seq", &[&key])
                .await?;
            Ok(tale_engine::runtime::store::join_json_texts(
                rows.iter().map(|r| r.get::<_, &str>(0)),
            ))
        })
    }
}

impl DurableStore for PgStore {
    fn keeps_traces(&self) -> bool {
        true
    }
    fn apply(&self, tx: Transaction, wait: bool) -> BoxFuture<'static, Result<Applied, StoreError>> {
        let jobs = self.jobs.clone();
        let step = step::Prepared::new(tx);
        Box::pin(async move {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let job = Job { step: step?, reply };
            let stopped = || StoreError::Failed("the database committers have stopped".into());
            if wait {
                jobs.send(job).await.map_err(|_| stopped())?;
            } else {
                jobs.try_send(job).map_err(|e| match e {
                    tokio::sync::mpsc::error::TrySendError::Full(_) => {
                        StoreError::Full("the database has too many steps waiting".into())
                    }
                    tokio::sync::mpsc::error::TrySendError::Closed(_) => stopped(),
                })?;
            }
            answer.await.map_err(|_| stopped())?
        })
    }

    fn mark_started(&self, item: Uuid) -> BoxFuture<'static, Result<(), StoreError>> {
        let pool = self.pool.clone();
        Box::pin(async move {
            let client = pool.get().await.map_err(pool_error)?;
            client
                .execute("UPDATE items SET attempts = attempts + 1 WHERE id = $1", &[&item])
                .await
                .map_err(|e| classify(&e))?;
            Ok(())
        })
    }

    fn clean_restart(&self) -> BoxFuture<'_, Result<bool, StoreError>> {
        // A node leaves cleanly through `leave`; the marker is only written
        // by a process that does not (kept for the store contract).
        Box::pin(async move {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| classify(&e))?;
            let clean = tx
                .query_opt("DELETE FROM state WHERE key = $1 RETURNING 1", &[&CLEAN_STOP])
                .await
                .map_err(|e| classify(&e))?
                .is_some();
            if clean {
                tx.execute(
                    "UPDATE items SET attempts = 0 WHERE attempts > 0 AND lease_owner = $1",
                    &[&self.node.id()],
                )
                .await
                .map_err(|e| classify(&e))?;
            }
            tx.commit().await.map_err(|e| classify(&e))?;
            Ok(clean)
        })
    }

    fn recover(&self) -> BoxFuture<'_, Result<Vec<WorkItem>, StoreError>> {
        // What this node holds (none at a fresh start), then what nobody
        // holds: left by dead nodes, this one's earlier process included.
        Box::pin(async move {
            let client = self.client().await?;
            let (id, holder) = self.node.current();
            let rows = client
                .query(
                    "SELECT id, run_id, story, action, input, wake, due_at, attempts FROM items
                     WHERE lease_owner = $1 AND due_at < $2",
                    &[&id, &PARKED],
                )
                .await
                .map_err(|e| classify(&e))?;
            let mut items = node::work_items(&**client, &rows, holder).await?;
            drop(client);
            loop {
                let batch = self.node.claim(&self.pool).await?;
                if batch.is_empty() {
                    items.sort_by_key(|i| i.id);
                    return Ok(items);
                }
                items.extend(batch);
            }
        })
    }

    fn last_tick<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<i64>, StoreError>> {
        Box::pin(async move {
            let rows = self
                .rows("SELECT last_tick FROM schedules WHERE key = $1", &[&key])
                .await?;
            Ok(rows.first().map(|r| r.get(0)))
        })
    }

    fn run_events(&self, run: RunId) -> BoxFuture<'_, Result<Vec<Arc<Event>>, StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let ids: Vec<Uuid> = client
                .query("SELECT id FROM events WHERE run_id = $1 ORDER BY seq", &[run.as_uuid()])
                .await
                .map_err(|e| classify(&e))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let events = log::load_events(&**client, &ids).await?;
            Ok(ids
                .iter()
                .filter_map(|id| events.get(&EventId::from(*id)).cloned())
                .collect())
        })
    }

    fn work_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.node.signal.clone())
    }

    fn claim(&self) -> BoxFuture<'_, Result<Vec<WorkItem>, StoreError>> {
        Box::pin(self.node.claim(&self.pool))
    }

    fn incarnation(&self) -> u64 {
        self.node.incarnation()
    }

    fn holds(&self, holder: u64) -> BoxFuture<'_, bool> {
        Box::pin(self.node.holds(holder, &self.pool))
    }

    fn leave(&self) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            self.node.leave(&self.pool).await?;
            Ok(true)
        })
    }
}

impl RunLog for PgStore {
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

impl SecretStore for PgStore {
    fn stored_credentials(&self) -> BoxFuture<'_, Result<Vec<StoredCredential>, StoreError>> {
        Box::pin(async move { log::credentials(&**self.client().await?).await })
    }

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
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(|e| classify(&e))?;
            let mut n = 0;
            for row in log::credentials(&*tx).await? {
                if row.sealed.key_id == previous.id() {
                    let entry = row.open(previous).map_err(|e| StoreError::Failed(e.to_string()))?;
                    let again = StoredCredential::seal(&row.name, &entry, current, now_ms)
                        .map_err(|e| StoreError::Failed(e.to_string()))?;
                    log::put_credential(&*tx, &again).await?;
                    n += 1;
                }
            }
            // All or none.
            tx.commit().await.map_err(|e| classify(&e))?;
            Ok(n)
        })
    }

    fn put_credential(&self, c: StoredCredential) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { log::put_credential(&**self.client().await?, &c).await })
    }

    fn stored_resources(&self) -> BoxFuture<'_, Result<Vec<StoredResource>, StoreError>> {
        Box::pin(async move { log::resources(&**self.client().await?).await })
    }

    fn put_resource(&self, r: StoredResource) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { log::put_resource(&**self.client().await?, &r).await })
    }

    fn delete_stored(&self, table: Table, name: String) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move { log::delete(&**self.client().await?, table, &name).await })
    }
}

impl crate::backend::ServeStore for PgStore {
    fn health(&self) -> Result<(), String> {
        if let Some(trouble) = self.node.trouble() {
            return Err(trouble);
        }
        match self
            .write_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flatten()
            .next()
        {
            Some(e) => Err(format!("the last write to the database failed: {e}")),
            None => Ok(()),
        }
    }

    fn cluster(&self) -> Option<crate::backend::ClusterStats> {
        use std::sync::atomic::Ordering::Relaxed;
        Some(crate::backend::ClusterStats {
            node: self.node.name.clone(),
            claimed: self.node.claimed.load(Relaxed),
            lease_losses: self.node.lost.load(Relaxed),
            notify_lag_ms: self.node.notify_lag_ms.load(Relaxed),
        })
    }

    fn prune<'a>(&'a self, story: &'a str, before_ms: i64) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(async move {
            let mut total = 0;
            loop {
                let client = self.client().await?;
                // 500 runs a transaction: webhooks commit in between.
                let n = client
                    .query_one(
                        "WITH gone AS (
                             DELETE FROM runs WHERE id IN (
                                 SELECT id FROM runs WHERE story = $1 AND started_at < $2 AND status <> 'running' LIMIT 500)
                             RETURNING id),
                         events_gone AS (DELETE FROM events WHERE run_id IN (SELECT id FROM gone)),
                         traces_gone AS (DELETE FROM traces WHERE run_id IN (SELECT id FROM gone))
                         SELECT count(*) FROM gone",
                        &[&story, &before_ms],
                    )
                    .await
                    .map_err(|e| classify(&e))?
                    .get::<_, i64>(0) as usize;
                total += n;
                if n < 500 {
                    return Ok(total);
                }
            }
        })
    }
}
