//! Reads of the PostgreSQL store: events with their ancestry, the run log
//! (`tale runs`, the API), and the credentials and resources the API set.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value as J;
use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{PgError, PgUrl, classify, pool_error};
use tale_engine::runtime::event::{Event, EventId, Output, RunId};
use tale_engine::runtime::runlog::{ActionActivity, RunFilter, RunLog, RunRow, RunState, StoryActivity};
use tale_engine::runtime::sealed::Sealed;
use tale_engine::runtime::store::StoreError;
use tale_engine::runtime::stored::{StoredCredential, StoredResource, Table};
use tale_engine::runtime::trace::{StepStatus, StepTrace};

fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(e.to_string())
}

/// The events `ids` with their whole ancestry, in one query (a recursive
/// walk up the `parents` arrays), by id.
pub(super) async fn load_events<C: GenericClient + Sync>(
    client: &C,
    ids: &[Uuid],
) -> Result<HashMap<EventId, Arc<Event>>, StoreError> {
    let mut built: HashMap<EventId, Arc<Event>> = HashMap::new();
    if ids.is_empty() {
        return Ok(built);
    }
    let rows = client
        .query(
            "WITH RECURSIVE a(id) AS (
                 SELECT unnest($1::uuid[])
                 UNION
                 SELECT unnest(e.parents) FROM events e JOIN a ON e.id = a.id)
             SELECT e.id, e.run_id, e.story, e.action, e.parents, e.branch, e.output, e.created_at
             FROM events e JOIN a ON e.id = a.id",
            &[&ids],
        )
        .await
        .map_err(|e| classify(&e))?;
    // Parents first: build in passes until every event whose parents are
    // known is built (ids are time-ordered, so one pass is the rule).
    let mut left: Vec<&tokio_postgres::Row> = rows.iter().collect();
    left.sort_by_key(|r| r.get::<_, Uuid>(0));
    while !left.is_empty() {
        let before = left.len();
        let mut next = Vec::new();
        for row in left {
            let parent_ids: Vec<Uuid> = row.get(4);
            let known = parent_ids
                .iter()
                .all(|p| built.contains_key(&EventId::from(*p)) || !rows.iter().any(|r| r.get::<_, Uuid>(0) == *p));
            if !known {
                next.push(row);
                continue;
            }
            let event = Event::stored(
                EventId::from(row.get::<_, Uuid>(0)),
                RunId::from(row.get::<_, Uuid>(1)),
                row.get::<_, &str>(2).into(),
                row.get::<_, &str>(3).into(),
                parent_ids
                    .iter()
                    .filter_map(|p| built.get(&EventId::from(*p)).cloned())
                    .collect(),
                Output::from_text(row.get::<_, String>(6)).map_err(failed)?,
                row.get(7),
                row.get::<_, Option<&str>>(5).map(crate::sqlite::intern_branch),
            );
            built.insert(event.id, Arc::new(event));
        }
        if next.len() == before {
            return Err(failed("the stored events' ancestry has a cycle"));
        }
        left = next;
    }
    Ok(built)
}

const RUN_COLUMNS: &str = "id, story, status, errors::text, events, started_at, finished_at, parent_run, parent_event";

fn run_row(r: &tokio_postgres::Row) -> Result<RunRow, StoreError> {
    Ok(RunRow {
        id: r.get::<_, Uuid>(0).to_string(),
        story: r.get(1),
        status: r.get::<_, &str>(2).parse::<RunState>().map_err(failed)?,
        errors: serde_json::from_str(r.get::<_, &str>(3)).unwrap_or(J::Array(Vec::new())),
        events: r.get(4),
        started_at: r.get(5),
        finished_at: r.get(6),
        parent_run: r.get::<_, Option<Uuid>>(7).map(|u| u.to_string()),
        parent_event: r.get::<_, Option<Uuid>>(8).map(|u| u.to_string()),
    })
}

/// The run log on a pool: the store's, or a reader's (`tale runs`).
#[derive(Clone)]
pub struct PgLog {
    pool: deadpool_postgres::Pool,
    /// Its schema has the traces table.
    traces: bool,
}

/// The schema version that added traces.
const TRACES_VERSION: usize = 6;

impl PgLog {
    pub(super) fn on(pool: deadpool_postgres::Pool) -> Self {
        Self { pool, traces: true }
    }

    /// Opens a database to read its runs, beside the node that serves it.
    pub async fn open(url: &PgUrl) -> Result<Self, PgError> {
        let pool = url.read_pool(2)?;
        let client = pool.get().await?;
        let found = super::schema::version(&client).await?;
        if found == 0 {
            return Err(PgError::NoSchema);
        }
        if found > super::schema::MIGRATIONS.len() {
            return Err(PgError::TooNew {
                found,
                known: super::schema::MIGRATIONS.len(),
            });
        }
        drop(client);
        Ok(Self {
            pool,
            traces: found >= TRACES_VERSION,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }
}

impl RunLog for PgLog {
    fn runs<'a>(&'a self, f: &'a RunFilter) -> BoxFuture<'a, Result<Vec<RunRow>, StoreError>> {
        Box::pin(async move {
            let status = f.status.map(RunState::as_str);
            let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE true");
            let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
            if let Some(s) = &f.story {
                args.push(s);
                sql += &format!(" AND story = ${}", args.len());
            }
            if let Some(s) = &status {
                args.push(s);
                sql += &format!(" AND status = ${}", args.len());
            }
            if let Some(t) = &f.since {
                args.push(t);
                sql += &format!(" AND started_at >= ${}", args.len());
            }
            if let Some(t) = &f.until {
                args.push(t);
                sql += &format!(" AND started_at < ${}", args.len());
            }
            if let Some(after) = &f.after {
                args.push(after);
                sql += &format!(" AND id < ${}", args.len());
            }
            sql += &format!(" ORDER BY id DESC LIMIT {}", f.limit.clamp(1, 1000));
            let client = self.client().await?;
            let rows = client.query(&sql, &args).await.map_err(|e| classify(&e))?;
            rows.iter().map(run_row).collect()
        })
    }

    fn run(&self, id: RunId) -> BoxFuture<'_, Result<Option<RunRow>, StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"),
                    &[id.as_uuid()],
                )
                .await
                .map_err(|e| classify(&e))?;
            row.as_ref().map(run_row).transpose()
        })
    }

    fn events_json(&self, run: RunId) -> BoxFuture<'_, Result<Vec<J>, StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    &format!("SELECT {EVENT_COLUMNS} FROM events WHERE run_id = $1 ORDER BY seq"),
                    &[run.as_uuid()],
                )
                .await
                .map_err(|e| classify(&e))?;
            Ok(rows.iter().map(event_json).collect())
        })
    }

    fn event(&self, id: EventId) -> BoxFuture<'_, Result<Option<Arc<Event>>, StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            Ok(load_events(&**client, &[*id.as_uuid()]).await?.remove(&id))
        })
    }

    fn called_by(&self, run: RunId) -> BoxFuture<'_, Result<Vec<RunRow>, StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    &format!("SELECT {RUN_COLUMNS} FROM runs WHERE parent_run = $1 ORDER BY id"),
                    &[run.as_uuid()],
                )
                .await
                .map_err(|e| classify(&e))?;
            rows.iter().map(run_row).collect()
        })
    }

    fn traces(&self, run: RunId) -> BoxFuture<'_, Result<Vec<StepTrace>, StoreError>> {
        Box::pin(async move {
            if !self.traces {
                return Ok(Vec::new());
            }
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT action, input, at, duration_us, status, branch, emitted, error, detail FROM traces WHERE run_id = $1 ORDER BY seq",
                    &[run.as_uuid()],
                )
                .await
                .map_err(|e| classify(&e))?;
            Ok(rows
                .iter()
                .map(|r| StepTrace {
                    run_id: run,
                    action: r.get::<_, &str>(0).into(),
                    input: r.get::<_, Option<Uuid>>(1).map(EventId::from),
                    at_ms: r.get(2),
                    duration_us: r.get(3),
                    status: StepStatus::parse(r.get(4)),
                    branch: r.get::<_, Option<&str>>(5).map(crate::sqlite::intern_branch),
                    emitted: r.get(6),
                    error: r.get(7),
                    detail: r.get(8),
                })
                .collect())
        })
    }

    fn activity(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<StoryActivity>, StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT story, count(*), count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE status = 'running'), max(started_at)
                     FROM runs WHERE started_at >= $1 GROUP BY story ORDER BY story",
                    &[&since_ms],
                )
                .await
                .map_err(|e| classify(&e))?;
            Ok(rows
                .iter()
                .map(|r| StoryActivity {
                    story: r.get(0),
                    runs: r.get(1),
                    failed: r.get(2),
                    running: r.get(3),
                    last_started: r.get(4),
                })
                .collect())
        })
    }

    fn action_activity<'a>(
        &'a self,
        story: &'a str,
        runs: usize,
    ) -> BoxFuture<'a, Result<Vec<ActionActivity>, StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let runs = runs as i64;
            let failures = if self.traces {
                "(SELECT count(*) FROM traces t WHERE t.run_id IN (SELECT id FROM recent) AND t.status = 'failed' AND t.action = a.action)"
            } else {
                "0::bigint"
            };
            let rows = client
                .query(
                    &format!(
                        "WITH recent AS ({RECENT_RUNS}),
                              a AS (SELECT action, count(*) AS events FROM events WHERE run_id IN (SELECT id FROM recent) GROUP BY action)
                         SELECT a.action, a.events, {failures} FROM a ORDER BY a.action"
                    ),
                    &[&story, &runs],
                )
                .await
                .map_err(|e| classify(&e))?;
            Ok(rows
                .iter()
                .map(|r| ActionActivity {
                    action: r.get(0),
                    events: r.get(1),
                    failures: r.get(2),
                })
                .collect())
        })
    }

    fn action_events<'a>(
        &'a self,
        story: &'a str,
        action: &'a str,
        runs: usize,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<J>, StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM events WHERE run_id IN ({RECENT_RUNS}) AND action = $3
                         ORDER BY created_at DESC, seq DESC LIMIT $4"
                    ),
                    &[&story, &(runs as i64), &action, &(limit as i64)],
                )
                .await
                .map_err(|e| classify(&e))?;
            Ok(rows.iter().map(event_json).collect())
        })
    }
}

const EVENT_COLUMNS: &str = "id, run_id, story, action, parents, branch, output, created_at";

/// The story's latest runs, as a subquery taking ($1 story, $2 how many).
const RECENT_RUNS: &str = "SELECT id FROM runs WHERE story = $1 ORDER BY id DESC LIMIT $2";

/// An event row (of [`EVENT_COLUMNS`]) as the API shows it.
fn event_json(r: &tokio_postgres::Row) -> J {
    serde_json::json!({
        "id": r.get::<_, Uuid>(0).to_string(),
        "run_id": r.get::<_, Uuid>(1).to_string(),
        "story": r.get::<_, &str>(2),
        "action": r.get::<_, &str>(3),
        "parent_ids": r.get::<_, Vec<Uuid>>(4).iter().map(Uuid::to_string).collect::<Vec<_>>(),
        "branch": r.get::<_, Option<&str>>(5),
        "output": serde_json::from_str::<J>(r.get::<_, &str>(6)).unwrap_or(J::Null),
        "created_at": r.get::<_, i64>(7),
    })
}

pub(super) async fn credentials<C: GenericClient + Sync>(client: &C) -> Result<Vec<StoredCredential>, StoreError> {
    let rows = client
        .query(
            "SELECT name, kind, allowed_hosts, key_id, nonce, sealed, updated_at FROM credentials ORDER BY name",
            &[],
        )
        .await
        .map_err(|e| classify(&e))?;
    Ok(rows
        .iter()
        .map(|r| StoredCredential {
            name: r.get(0),
            kind: r.get(1),
            allowed_hosts: r.get::<_, Option<&str>>(2).and_then(|h| serde_json::from_str(h).ok()),
            sealed: Sealed {
                key_id: r.get(3),
                nonce: r.get(4),
                ciphertext: r.get(5),
            },
            updated_at: r.get(6),
        })
        .collect())
}

pub(super) async fn put_credential<C: GenericClient + Sync>(
    client: &C,
    c: &StoredCredential,
) -> Result<(), StoreError> {
    let hosts = c
        .allowed_hosts
        .as_ref()
        .map(|h| serde_json::to_string(h).unwrap_or_default());
    client
        .execute(
            "INSERT INTO credentials (name, kind, allowed_hosts, key_id, nonce, sealed, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (name) DO UPDATE SET kind = $2, allowed_hosts = $3, key_id = $4, nonce = $5,
                 sealed = $6, updated_at = $7",
            &[
                &c.name,
                &c.kind,
                &hosts,
                &c.sealed.key_id,
                &c.sealed.nonce,
                &c.sealed.ciphertext,
                &c.updated_at,
            ],
        )
        .await
        .map_err(|e| classify(&e))?;
    Ok(())
}

pub(super) async fn resources<C: GenericClient + Sync>(client: &C) -> Result<Vec<StoredResource>, StoreError> {
    let rows = client
        .query("SELECT name, value, updated_at FROM resources ORDER BY name", &[])
        .await
        .map_err(|e| classify(&e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let text: &str = r.get(1);
            StoredResource {
                name: r.get(0),
                value: serde_json::from_str(text).unwrap_or_else(|_| J::String(text.to_owned())),
                updated_at: r.get(2),
            }
        })
        .collect())
}

pub(super) async fn put_resource<C: GenericClient + Sync>(client: &C, r: &StoredResource) -> Result<(), StoreError> {
    client
        .execute(
            "INSERT INTO resources (name, value, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET value = $2, updated_at = $3",
            &[&r.name, &r.value.to_string(), &r.updated_at],
        )
        .await
        .map_err(|e| classify(&e))?;
    Ok(())
}

pub(super) async fn delete<C: GenericClient + Sync>(client: &C, table: Table, name: &str) -> Result<bool, StoreError> {
    let sql = match table {
        Table::Credentials => "DELETE FROM credentials WHERE name = $1",
        Table::Resources => "DELETE FROM resources WHERE name = $1",
    };
    let n = client
        .execute(sql, &[&name.to_ascii_lowercase()])
        .await
        .map_err(|e| classify(&e))?;
    Ok(n > 0)
}
