//! One step on PostgreSQL: a `Transaction` of the executor applied as one
//! database transaction (the schedule tick first, then runs, events, items,
//! state, calls, exits, and the runs it finished). Rows of a kind go in one
//! statement (`UNNEST` arrays); each run's counters change in one `UPDATE`.
//! A batch first locks every run it touches, in id order, so concurrent
//! batches take their row locks in one order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value as J;
use uuid::Uuid;

use super::node::Node;
use super::{LEASE_MS, classify, log};
use tale_engine::runtime::durable::{Applied, PARKED, Transaction, WorkItem, called_ended, called_exit};
use tale_engine::runtime::event::{EventId, RunId};
use tale_engine::runtime::store::StoreError;

/// A transaction turned into column values, before a connection is taken.
pub(super) struct Prepared {
    tick: Option<(String, i64)>,
    started: Vec<(Uuid, Arc<str>, i64)>,
    done: Vec<Uuid>,
    /// Runs that may have ended with this step.
    settle: BTreeSet<Uuid>,
    events: Events,
    items: Items,
    state: Vec<(String, Option<Result<String, String>>)>,
    cancelled: Vec<Uuid>,
    errors: Vec<(Uuid, String)>,
    calls: Vec<(Uuid, Uuid, Option<Uuid>, Uuid)>,
    exits: Vec<(Uuid, Uuid)>,
    /// Prompt answers: (run, action, input, payload).
    answers: Vec<(Uuid, String, Option<Uuid>, J)>,
    traces: Traces,
    now: i64,
}

/// Trace columns, one array each.
#[derive(Default)]
struct Traces {
    run: Vec<Uuid>,
    action: Vec<String>,
    input: Vec<Option<Uuid>>,
    at: Vec<i64>,
    duration_us: Vec<i64>,
    status: Vec<&'static str>,
    branch: Vec<Option<&'static str>>,
    emitted: Vec<i64>,
    error: Vec<Option<String>>,
    detail: Vec<Option<String>>,
}

/// Event columns, one array each.
#[derive(Default)]
struct Events {
    id: Vec<Uuid>,
    run: Vec<Uuid>,
    story: Vec<String>,
    action: Vec<String>,
    /// Parent ids joined by commas (`UNNEST` takes no arrays of arrays).
    parents: Vec<String>,
    branch: Vec<Option<&'static str>>,
    output: Vec<String>,
    at: Vec<i64>,
}

#[derive(Default)]
struct Items {
    id: Vec<Uuid>,
    run: Vec<Uuid>,
    story: Vec<String>,
    action: Vec<String>,
    input: Vec<Option<Uuid>>,
    wake: Vec<Option<String>>,
    due: Vec<i64>,
    /// The lane of a stateful action's item (`story#action`).
    lane: Vec<Option<String>>,
}

impl Prepared {
    pub(super) fn new(tx: Transaction) -> Result<Self, StoreError> {
        let mut p = Prepared {
            tick: tx.tick,
            started: Vec::new(),
            done: Vec::new(),
            settle: BTreeSet::new(),
            events: Events::default(),
            items: Items::default(),
            state: crate::sqlite::prepare_state(tx.state),
            cancelled: tx.cancelled,
            errors: tx.errors.into_iter().map(|(r, e)| (*r.as_uuid(), e)).collect(),
            calls: tx
                .calls
                .iter()
                .map(|c| {
                    (
                        *c.child.as_uuid(),
                        *c.parent.as_uuid(),
                        c.parent_event.map(|e| *e.as_uuid()),
                        c.caller_item,
                    )
                })
                .collect(),
            exits: tx.exits.iter().map(|(r, e)| (*r.as_uuid(), *e.as_uuid())).collect(),
            traces: Traces::default(),
            answers: tx
                .answers
                .iter()
                .map(|a| {
                    (
                        *a.run.as_uuid(),
                        a.action.to_string(),
                        a.input.map(|i| *i.as_uuid()),
                        a.payload.clone(),
                    )
                })
                .collect(),
            now: tale_engine::runtime::event::now_millis(),
        };
        for t in tx.traces {
            let tr = &mut p.traces;
            tr.run.push(*t.run_id.as_uuid());
            tr.action.push(t.action.to_string());
            tr.input.push(t.input.map(|i| *i.as_uuid()));
            tr.at.push(t.at_ms);
            tr.duration_us.push(t.duration_us);
            tr.status.push(t.status.as_str());
            tr.branch.push(t.branch);
            tr.emitted.push(t.emitted);
            tr.error.push(t.error);
            tr.detail.push(t.detail);
        }
        for (run, story, at) in tx.started {
            p.settle.insert(*run.as_uuid());
            p.started.push((*run.as_uuid(), story, at));
        }
        for (id, run) in tx.done {
            p.done.push(id);
            p.settle.insert(*run.as_uuid());
        }
        for e in &tx.events {
            let ev = &mut p.events;
            ev.id.push(*e.id.as_uuid());
            ev.run.push(*e.run_id.as_uuid());
            ev.story.push(e.story.to_string());
            ev.action.push(e.action.to_string());
            ev.parents
                .push(e.parents.iter().map(|p| p.id.to_string()).collect::<Vec<_>>().join(","));
            ev.branch.push(e.branch);
            ev.output.push(e.output_text().into_owned());
            ev.at.push(e.created_at);
        }
        for i in tx.items {
            let it = &mut p.items;
            it.lane
                .push(tx.stateful.contains(&i.id).then(|| format!("{}#{}", i.story, i.action)));
            it.id.push(i.id);
            it.run.push(*i.run_id.as_uuid());
            it.story.push(i.story.to_string());
            it.action.push(i.action.to_string());
            it.input.push(i.input.as_ref().map(|e| *e.id.as_uuid()));
            it.wake.push(i.wake.as_ref().map(J::to_string));
            it.due.push(i.due_ms);
        }
        Ok(p)
    }
}

/// Applies steps in one transaction (group commit: one round of commit for
/// many steps); all or none. Each step is applied as if alone: a step whose
/// schedule tick already fired writes nothing; the others' rows go in one
/// statement per kind ([`apply_fired`]).
///
/// The transaction also writes a marker row for the batch: when the
/// connection breaks during `COMMIT`, the outcome is unknown to us, and
/// [`settle_unknown`] reads the marker to learn it (a retry of a committed
/// step would conflict with its own rows, or apply it twice).
pub(super) async fn apply_all(
    client: &mut deadpool_postgres::Object,
    pool: &deadpool_postgres::Pool,
    steps: &[&Prepared],
    node: &Node,
) -> Result<Vec<Applied>, StoreError> {
    let (owner, holder) = &node.current();
    let batch = Uuid::now_v7();
    let tx = client.transaction().await.map_err(|e| classify(&e))?;
    lock_runs(&tx, steps).await?;
    let mut applied = vec![Applied::default(); steps.len()];
    let mut fired = Vec::new();
    for (i, p) in steps.iter().enumerate() {
        if tick_fires(&tx, p).await? {
            fired.push(i);
        }
    }
    let group: Vec<&Prepared> = fired.iter().map(|i| steps[*i]).collect();
    let now = steps.first().map_or(0, |p| p.now);
    // Fencing, first part: nothing new from a node declared dead (the
    // second: `apply_fired` completes only items this node holds). Read
    // without a lock (a shared lock on one hot row costs every batch a
    // multixact): a node declared dead while this commits leaves rows
    // owned by a dead node, released again a few leases later. Sent with
    // the batch's first statements.
    //
    // The row that shows the batch committed if its answer is lost: its
    // first new event (events are never changed), else a marker row.
    let witness = match steps.iter().find_map(|p| p.events.id.first()) {
        Some(event) => Witness::Event(*event),
        None => Witness::Marker(batch),
    };
    let marker = async {
        let row = match witness {
            Witness::Event(_) => {
                tx.query_opt(
                    &statement(&tx, "SELECT pg_backend_pid() FROM nodes WHERE id = $1 AND alive").await?,
                    &[owner],
                )
                .await
            }
            Witness::Marker(id) => {
                tx.query_opt(
                    &statement(
                        &tx,
                        "INSERT INTO commits (id, at) SELECT $1, $2 FROM nodes WHERE id = $3 AND alive
                         RETURNING pg_backend_pid()",
                    )
                    .await?,
                    &[&id, &now, owner],
                )
                .await
            }
        };
        row.map_err(|e| classify(&e))
    };
    let (fired_applied, backend) = tokio::join!(apply_fired(&tx, &group, owner, *holder), marker);
    cause([fired_applied.as_ref().err(), backend.as_ref().err()])?;
    let (fired_applied, backend) = (fired_applied?, backend?);
    for (i, a) in fired.iter().zip(fired_applied) {
        applied[*i] = a;
    }
    for a in &mut applied {
        a.holder = *holder;
    }
    let Some(backend) = backend else {
        return Err(StoreError::Failed(
            "this node was declared dead by the others (its lease ended): its steps are refused, the others run its work"
                .into(),
        ));
    };
    let backend: i32 = backend.get(0);
    match tx.commit().await {
        Ok(()) => Ok(applied),
        // No SQLSTATE: the connection broke; the server may have committed.
        Err(e) if e.code().is_none() => match settle_unknown(pool, backend, witness).await {
            Ok(true) => Ok(applied),
            Ok(false) => Err(classify(&e)),
            Err(why) => Err(StoreError::Failed(format!(
                "the connection broke during a commit and its outcome could not be read ({why}); \
                 the step runs again at the next start"
            ))),
        },
        Err(e) => Err(classify(&e)),
    }
}

/// A row a batch writes that exists if and only if the batch committed.
#[derive(Clone, Copy)]
enum Witness {
    Event(Uuid),
    /// A row of `commits` written for that purpose.
    Marker(Uuid),
}

/// The error that explains a failed pipeline: once one statement fails,
/// those sent after it fail only because the transaction is aborted.
fn cause<const N: usize>(errors: [Option<&StoreError>; N]) -> Result<(), StoreError> {
    let found: Vec<&StoreError> = errors.into_iter().flatten().collect();
    let aborted = |e: &&StoreError| e.to_string().contains("current transaction is aborted");
    match found.iter().find(|e| !aborted(e)).or(found.first()) {
        Some(e) => Err((*e).clone()),
        None => Ok(()),
    }
}

/// Whether a batch whose `COMMIT` got no answer was committed. Its server
/// process is ended first (it is ours, and its client is gone) and awaited:
/// once it has exited, its transaction is either committed or rolled back
/// for good, and the batch's marker row says which.
async fn settle_unknown(pool: &deadpool_postgres::Pool, backend: i32, witness: Witness) -> Result<bool, String> {
    let (sql, id) = match witness {
        Witness::Event(id) => ("SELECT 1 FROM events WHERE id = $1", id),
        Witness::Marker(id) => ("SELECT 1 FROM commits WHERE id = $1", id),
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let attempt = async {
            let client = pool.get().await.map_err(|e| e.to_string())?;
            client
                .execute("SELECT pg_terminate_backend($1)", &[&backend])
                .await
                .map_err(|e| e.to_string())?;
            while client
                .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&backend])
                .await
                .map_err(|e| e.to_string())?
                .is_some()
            {
                if tokio::time::Instant::now() >= deadline {
                    return Err("its server process has not exited".to_owned());
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Ok(client
                .query_opt(sql, &[&id])
                .await
                .map_err(|e| e.to_string())?
                .is_some())
        };
        match attempt.await {
            Ok(committed) => return Ok(committed),
            Err(why) if tokio::time::Instant::now() >= deadline => return Err(why),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
}

/// Forgets commit markers older than ten minutes: only a commit whose
/// answer was lost a moment ago reads them.
pub(super) async fn forget_commits(client: &deadpool_postgres::Object) -> Result<u64, StoreError> {
    let before = tale_engine::runtime::event::now_millis() - 600_000;
    client
        .execute("DELETE FROM commits WHERE at < $1", &[&before])
        .await
        .map_err(|e| classify(&e))
}

/// Records the step's schedule tick; false when that tick (or a later one)
/// already fired. Concurrent firings of one tick serialize on the row, and
/// the second finds nothing to do.
async fn tick_fires(tx: &deadpool_postgres::Transaction<'_>, p: &Prepared) -> Result<bool, StoreError> {
    let Some((key, tick)) = &p.tick else { return Ok(true) };
    let fired = tx
        .query_opt(
            &statement(
                tx,
                "INSERT INTO schedules (key, last_tick) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET last_tick = excluded.last_tick
                 WHERE schedules.last_tick < excluded.last_tick RETURNING 1",
            )
            .await?,
            &[key, tick],
        )
        .await
        .map_err(|e| classify(&e))?;
    Ok(fired.is_some())
}

/// Applies steps whose tick (if any) fired: one statement per kind of row
/// for all of them (items done and cancelled, runs started, events, items),
/// then in step order what depends on order (state changes, errors, calls,
/// exits), then every run's counters and, for a run left without work, its
/// end. Exits come before ends: a called run whose exit fires and that ends
/// in the same batch wakes its caller with the exit's output.
async fn apply_fired(
    tx: &deadpool_postgres::Transaction<'_>,
    steps: &[&Prepared],
    owner: &str,
    holder: u64,
) -> Result<Vec<Applied>, StoreError> {
    let db = |e: tokio_postgres::Error| classify(&e);
    let mut delta: BTreeMap<Uuid, (i64, i64)> = BTreeMap::new();
    let mut done: Vec<Uuid> = Vec::new();
    let mut cancelled: Vec<Uuid> = Vec::new();
    let mut events = Events::default();
    let mut items = Items::default();
    let mut traces = Traces::default();
    let mut started: (Vec<Uuid>, Vec<String>, Vec<i64>) = Default::default();
    // Which step settles which run (the first that may end it).
    let mut settles: BTreeMap<Uuid, usize> = BTreeMap::new();
    for (i, p) in steps.iter().enumerate() {
        done.extend(&p.done);
        cancelled.extend(&p.cancelled);
        for run in &p.settle {
            settles.entry(*run).or_insert(i);
        }
        for run in &p.events.run {
            delta.entry(*run).or_default().0 += 1;
        }
        for run in &p.items.run {
            delta.entry(*run).or_default().1 += 1;
        }
        for (run, story, at) in &p.started {
            started.0.push(*run);
            started.1.push(story.to_string());
            started.2.push(*at);
        }
        events.extend(&p.events);
        items.extend(&p.items);
        traces.extend(&p.traces);
    }
    // The counters of runs started here are their own rows' (no stored
    // item of a run started in this batch can be completed in it).
    let (mut n_events, mut pending) = (Vec::new(), Vec::new());
    for run in &started.0 {
        let (e, p) = delta.remove(run).unwrap_or_default();
        n_events.push(e);
        pending.push(p);
    }
    done.sort_unstable();
    done.dedup();
    // Statements that do not depend on each other go out together
    // (tokio-postgres pipelines them: one round trip, not five).
    let complete = async {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        // A step completes only items its node holds: one taken over by
        // another node (this one was declared dead) refuses the step.
        let rows = tx
            .query(
                &statement(
                    tx,
                    "DELETE FROM items WHERE id = ANY($1) AND lease_owner = $2 RETURNING run_id",
                )
                .await?,
                &[&done, &owner],
            )
            .await
            .map_err(db)?;
        if rows.len() != done.len() {
            return Err(StoreError::Conflict(format!(
                "{} of the items this step completes are not this node's (done already, or taken over by another node)",
                done.len() - rows.len()
            )));
        }
        Ok(rows)
    };
    let cancel = async {
        if cancelled.is_empty() {
            return Ok(Vec::new());
        }
        tx.query(
            &statement(tx, "DELETE FROM items WHERE id = ANY($1) RETURNING run_id").await?,
            &[&cancelled],
        )
        .await
        .map_err(db)
    };
    let start = async {
        if started.0.is_empty() {
            return Ok(());
        }
        tx.execute(
            &statement(
                tx,
                "INSERT INTO runs (id, story, status, started_at, events, pending)
                 SELECT id, story, 'running', at, events, pending
                 FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[]) AS t(id, story, at, events, pending)",
            )
            .await?,
            &[&started.0, &started.1, &started.2, &n_events, &pending],
        )
        .await
        .map_err(db)?;
        Ok(())
    };
    let now = steps.first().map_or(0, |p| p.now);
    let store_items = async {
        let foreign = foreign_lanes(tx, &items.lane, owner).await?;
        let owners: Vec<Option<&str>> = items
            .lane
            .iter()
            .map(|lane| match lane {
                Some(lane) if foreign.contains(lane) => None,
                _ => Some(owner),
            })
            .collect();
        insert_items(tx, &items, &owners, now).await?;
        Ok::<_, StoreError>(owners.iter().map(Option::is_none).collect::<Vec<bool>>())
    };
    let (completed, started_rows, inserted_events, handed) =
        tokio::join!(complete, start, insert_events(tx, &events, &traces), store_items);
    cause([
        completed.as_ref().err(),
        started_rows.as_ref().err(),
        inserted_events.as_ref().err(),
        handed.as_ref().err(),
    ])?;
    let (completed, handed) = (completed?, handed?);
    // Cancellations wait for the inserts: a step may add an item and cancel
    // it, and pipelined statements reach the server in no promised order
    // (a statement still being prepared goes out later).
    let cancelled_rows = cancel.await?;
    for row in completed.into_iter().chain(cancelled_rows) {
        let run: Uuid = row.get(0);
        delta.entry(run).or_default().1 -= 1;
        settles.entry(run).or_insert(0);
    }
    let mut applied: Vec<Applied> = steps
        .iter()
        .map(|_| Applied {
            fired: true,
            ..Applied::default()
        })
        .collect();
    if handed.iter().any(|h| *h) {
        // Which step handed which item over.
        let mut at = 0;
        for (i, p) in steps.iter().enumerate() {
            for id in &p.items.id {
                if handed[at] {
                    applied[i].handed_off.push(*id);
                }
                at += 1;
            }
        }
    }
    // State by key (a stable sort keeps each key's changes in step order):
    // concurrent commits then lock the rows they share in one order, so two
    // batches setting the same story state never deadlock.
    let mut changes: Vec<(&String, &_)> = steps
        .iter()
        .flat_map(|p| p.state.iter().map(|(key, change)| (key, change)))
        .collect();
    changes.sort_by(|a, b| a.0.cmp(b.0));
    for (key, change) in changes {
        {
            match change {
                Some(Ok(value)) => tx.execute(&statement(tx, "INSERT INTO state (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value").await?, &[key, value],
                    )
                    .await
                    .map_err(db)?,
                Some(Err(value)) => tx.execute(&statement(tx, "INSERT INTO state_lists (key, value) VALUES ($1, $2)").await?, &[key, value])
                    .await
                    .map_err(db)?,
                None => {
                    tx.execute(&statement(tx, "DELETE FROM state WHERE key = $1").await?, &[key])
                        .await
                        .map_err(db)?;
                    tx.execute(&statement(tx, "DELETE FROM state_lists WHERE key = $1").await?, &[key])
                        .await
                        .map_err(db)?
                }
            };
        }
    }
    // In step order; errors before the ends below (whether a run that ends
    // here failed depends on them).
    for (i, p) in steps.iter().enumerate() {
        for (run, error) in &p.errors {
            tx.execute(
                &statement(
                    tx,
                    "UPDATE runs SET errors = errors || jsonb_build_array($2::text) WHERE id = $1",
                )
                .await?,
                &[run, error],
            )
            .await
            .map_err(db)?;
        }
        for (child, parent, event, caller) in &p.calls {
            tx.execute(
                &statement(
                    tx,
                    "UPDATE runs SET parent_run = $2, parent_event = $3, caller_item = $4 WHERE id = $1",
                )
                .await?,
                &[child, parent, event, caller],
            )
            .await
            .map_err(db)?;
        }
        // The first exit of a called run wakes its caller with its output, as
        // stored (redacted) above; a run nobody called costs one UPDATE.
        for (run, event) in &p.exits {
            let Some(row) = tx
                .query_opt(
                    &statement(
                        tx,
                        "UPDATE runs SET exit_fired = true WHERE id = $1 AND NOT exit_fired AND caller_item IS NOT NULL
                     RETURNING caller_item, story",
                    )
                    .await?,
                    &[run],
                )
                .await
                .map_err(db)?
            else {
                continue;
            };
            let (caller, story): (Uuid, String) = (row.get(0), row.get(1));
            let output: String = tx
                .query_one(
                    &statement(tx, "SELECT output FROM events WHERE id = $1").await?,
                    &[event],
                )
                .await
                .map_err(db)?
                .get(0);
            let output: J = serde_json::from_str(&output).map_err(|e| StoreError::Failed(e.to_string()))?;
            let result = called_exit(&story, RunId::from(*run), output);
            applied[i]
                .woken
                .extend(wake_caller(tx, caller, &result, owner, holder).await?);
        }
        for (run, action, input, payload) in &p.answers {
            let Some(row) = tx
                .query_opt(
                    &statement(
                        tx,
                        "SELECT id FROM items WHERE run_id = $1 AND action = $2 AND input IS NOT DISTINCT FROM $3
                         AND wake = $4 AND due_at > $5 LIMIT 1",
                    )
                    .await?,
                    &[
                        run,
                        action,
                        input,
                        &tale_engine::runtime::durable::prompt_waiting_text(),
                        &p.now,
                    ],
                )
                .await
                .map_err(db)?
            else {
                continue;
            };
            if let Some(item) = wake_item(tx, row.get(0), payload, p.now + 1, owner, holder).await? {
                applied[i].answered += 1;
                applied[i].woken.push(item);
            }
        }
    }
    let now = steps.first().map_or(0, |p| p.now);
    let changed: Vec<(&Uuid, &(i64, i64))> = delta.iter().filter(|(_, d)| **d != (0, 0)).collect();
    let mut rows = Vec::new();
    if !changed.is_empty() {
        // Counters and, for a run left without work, its end: one new row
        // version per run (a second UPDATE would write two). In id order
        // (the BTreeMap's), as every step takes run locks.
        let ids: Vec<Uuid> = changed.iter().map(|(r, _)| **r).collect();
        let e: Vec<i64> = changed.iter().map(|(_, d)| d.0).collect();
        let p: Vec<i64> = changed.iter().map(|(_, d)| d.1).collect();
        let settle: Vec<bool> = ids.iter().map(|r| settles.contains_key(r)).collect();
        rows.extend(
            tx.query(
                &statement(
                    tx,
                    "WITH d AS (SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::bool[]) AS t(id, e, p, settle)),
                          old AS (SELECT r.id, r.status = 'running' AND r.pending + d.p <= 0 AND d.settle AS ends
                                  FROM runs r JOIN d ON r.id = d.id ORDER BY r.id FOR NO KEY UPDATE OF r)
                     UPDATE runs r SET events = r.events + d.e, pending = r.pending + d.p,
                         status = CASE WHEN NOT old.ends THEN r.status
                                       WHEN r.errors = '[]'::jsonb THEN 'succeeded' ELSE 'failed' END,
                         finished_at = CASE WHEN old.ends THEN $5 ELSE r.finished_at END
                     FROM d JOIN old ON old.id = d.id
                     WHERE r.id = d.id
                     RETURNING r.id, r.story, r.status, r.caller_item IS NOT NULL AND NOT r.exit_fired, old.ends",
                )
                .await?,
                &[&ids, &e, &p, &settle, &now],
            )
            .await
            .map_err(db)?
            .into_iter()
            .filter(|r| r.get::<_, bool>(4)),
        );
    }
    // Runs that may end without a counter change here (rare).
    let candidates: Vec<Uuid> = settles
        .keys()
        .filter(|r| delta.get(*r).is_none_or(|d| *d == (0, 0)))
        .copied()
        .collect();
    if !candidates.is_empty() {
        rows.extend(
            tx.query(
                &statement(
                    tx,
                    "UPDATE runs SET status = CASE WHEN errors = '[]'::jsonb THEN 'succeeded' ELSE 'failed' END,
                         finished_at = $2
                     WHERE id = ANY($1) AND status = 'running' AND pending <= 0
                     RETURNING id, story, status, caller_item IS NOT NULL AND NOT exit_fired",
                )
                .await?,
                &[&candidates, &now],
            )
            .await
            .map_err(db)?,
        );
    }
    for row in rows {
        let (run, story, status, called): (Uuid, String, String, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let a = &mut applied[settles.get(&run).copied().unwrap_or(0)];
        if called {
            a.woken.extend(wake_ended(tx, run, &story, owner, holder).await?);
        }
        a.finished.push((RunId::from(run), story, status == "succeeded"));
    }
    Ok(applied)
}

/// The events of the batch, and the traces of its executions.
async fn insert_events(tx: &deadpool_postgres::Transaction<'_>, e: &Events, t: &Traces) -> Result<(), StoreError> {
    let traces = async {
        if t.run.is_empty() {
            return Ok(());
        }
        tx.execute(
            &statement(
                tx,
                "INSERT INTO traces (run_id, action, input, at, duration_us, status, branch, emitted, error, detail)
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::bigint[], $5::bigint[], $6::text[], $7::text[], $8::bigint[], $9::text[], $10::text[])",
            )
            .await?,
            &[&t.run, &t.action, &t.input, &t.at, &t.duration_us, &t.status, &t.branch, &t.emitted, &t.error, &t.detail],
        )
        .await
        .map_err(|e| classify(&e))?;
        Ok(())
    };
    let (events, traces) = tokio::join!(insert_only_events(tx, e), traces);
    cause([events.as_ref().err(), traces.as_ref().err()])
}

async fn insert_only_events(tx: &deadpool_postgres::Transaction<'_>, e: &Events) -> Result<(), StoreError> {
    if e.id.is_empty() {
        return Ok(());
    }
    tx.execute(
        &statement(
            tx,
            "INSERT INTO events (id, run_id, story, action, parents, branch, output, created_at)
             SELECT id, run, story, action,
                    CASE WHEN parents = '' THEN '{}'::uuid[] ELSE string_to_array(parents, ',')::uuid[] END,
                    branch, output, at
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[])
                  AS t(id, run, story, action, parents, branch, output, at)",
        )
        .await?,
        &[&e.id, &e.run, &e.story, &e.action, &e.parents, &e.branch, &e.output, &e.at],
    )
    .await
    .map_err(|e| classify(&e))?;
    Ok(())
}

/// The lanes among `lanes` another node holds; this node takes those
/// nobody holds. Two statements: the second sees a lane another node took
/// while the first waited for it.
async fn foreign_lanes(
    tx: &deadpool_postgres::Transaction<'_>,
    lanes: &[Option<String>],
    owner: &str,
) -> Result<BTreeSet<String>, StoreError> {
    let mut keys: Vec<&str> = lanes.iter().flatten().map(String::as_str).collect();
    if keys.is_empty() {
        return Ok(BTreeSet::new());
    }
    keys.sort_unstable();
    keys.dedup();
    let db = |e: tokio_postgres::Error| classify(&e);
    tx.execute(
        &statement(
            tx,
            "INSERT INTO lanes (key, holder) SELECT key, $2 FROM UNNEST($1::text[]) AS t(key)
             ON CONFLICT (key) DO NOTHING",
        )
        .await?,
        &[&keys, &owner],
    )
    .await
    .map_err(db)?;
    Ok(tx
        .query(
            &statement(tx, "SELECT key FROM lanes WHERE key = ANY($1) AND holder <> $2").await?,
            &[&keys, &owner],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

async fn insert_items(
    tx: &deadpool_postgres::Transaction<'_>,
    i: &Items,
    owners: &[Option<&str>],
    now: i64,
) -> Result<(), StoreError> {
    if i.id.is_empty() {
        return Ok(());
    }
    tx.execute(
        &statement(
            tx,
            "INSERT INTO items (id, run_id, story, action, input, wake, due_at, lane, lease_owner, lease_until)
             SELECT id, run, story, action, input, wake, due, lane, owner, $10
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[], $6::text[], $7::bigint[],
                         $8::text[], $9::text[])
                  AS t(id, run, story, action, input, wake, due, lane, owner)",
        )
        .await?,
        &[
            &i.id,
            &i.run,
            &i.story,
            &i.action,
            &i.input,
            &i.wake,
            &i.due,
            &i.lane,
            &owners,
            &(now + LEASE_MS),
        ],
    )
    .await
    .map_err(|e| classify(&e))?;
    Ok(())
}

/// A called run ended without an exit: wakes its caller with its errors.
async fn wake_ended(
    tx: &deadpool_postgres::Transaction<'_>,
    run: Uuid,
    story: &str,
    owner: &str,
    holder: u64,
) -> Result<Option<WorkItem>, StoreError> {
    let Some(waiting) = tx
        .query_opt(
            &statement(
                tx,
                "UPDATE runs SET exit_fired = true WHERE id = $1 AND NOT exit_fired AND caller_item IS NOT NULL
                 RETURNING caller_item, errors::text",
            )
            .await?,
            &[&run],
        )
        .await
        .map_err(|e| classify(&e))?
    else {
        return Ok(None);
    };
    let errors: J = serde_json::from_str(waiting.get::<_, &str>(1)).unwrap_or(J::Array(Vec::new()));
    let result = called_ended(story, RunId::from(run), errors);
    wake_caller(tx, waiting.get(0), &result, owner, holder).await
}

impl Events {
    fn extend(&mut self, o: &Events) {
        self.id.extend(&o.id);
        self.run.extend(&o.run);
        self.story.extend(o.story.iter().cloned());
        self.action.extend(o.action.iter().cloned());
        self.parents.extend(o.parents.iter().cloned());
        self.branch.extend(&o.branch);
        self.output.extend(o.output.iter().cloned());
        self.at.extend(&o.at);
    }
}

impl Traces {
    fn extend(&mut self, o: &Traces) {
        self.run.extend(&o.run);
        self.action.extend(o.action.iter().cloned());
        self.input.extend(&o.input);
        self.at.extend(&o.at);
        self.duration_us.extend(&o.duration_us);
        self.status.extend(&o.status);
        self.branch.extend(&o.branch);
        self.emitted.extend(&o.emitted);
        self.error.extend(o.error.iter().cloned());
        self.detail.extend(o.detail.iter().cloned());
    }
}

impl Items {
    fn extend(&mut self, o: &Items) {
        self.id.extend(&o.id);
        self.run.extend(&o.run);
        self.story.extend(o.story.iter().cloned());
        self.action.extend(o.action.iter().cloned());
        self.input.extend(&o.input);
        self.wake.extend(o.wake.iter().cloned());
        self.due.extend(&o.due);
        self.lane.extend(o.lane.iter().cloned());
    }
}

/// Locks every existing run the steps touch, in id order, before anything
/// else: the statements after it (per step, errors, the merged counters)
/// take their row locks in other orders, and two committers doing so on
/// the same runs would deadlock (broken only after `deadlock_timeout`).
async fn lock_runs(tx: &deadpool_postgres::Transaction<'_>, steps: &[&Prepared]) -> Result<(), StoreError> {
    let db = |e: tokio_postgres::Error| classify(&e);
    // Without per-step statements on runs (errors, calls, exits) and
    // cancellations, the only run locks are the counters' `UPDATE`, taken
    // in id order already: locking first would lock every row twice.
    if steps
        .iter()
        .all(|p| p.errors.is_empty() && p.calls.is_empty() && p.exits.is_empty() && p.cancelled.is_empty())
    {
        return Ok(());
    }
    let mut runs: BTreeSet<Uuid> = BTreeSet::new();
    let mut cancelled: Vec<Uuid> = Vec::new();
    for p in steps {
        runs.extend(&p.settle);
        runs.extend(&p.events.run);
        runs.extend(&p.items.run);
        runs.extend(p.errors.iter().map(|(r, _)| *r));
        runs.extend(p.calls.iter().map(|c| c.0));
        runs.extend(p.exits.iter().map(|(r, _)| *r));
        cancelled.extend(&p.cancelled);
    }
    if !cancelled.is_empty() {
        // A cancelled item may be another run's.
        for row in tx
            .query(
                &statement(tx, "SELECT run_id FROM items WHERE id = ANY($1)").await?,
                &[&cancelled],
            )
            .await
            .map_err(db)?
        {
            runs.insert(row.get(0));
        }
    }
    if runs.is_empty() {
        return Ok(());
    }
    let runs: Vec<Uuid> = runs.into_iter().collect();
    tx.execute(
        &statement(
            tx,
            "SELECT 1 FROM (SELECT id FROM runs WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE) locked",
        )
        .await?,
        &[&runs],
    )
    .await
    .map_err(db)?;
    Ok(())
}

/// A statement prepared once per connection.
async fn statement(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &str,
) -> Result<tokio_postgres::Statement, StoreError> {
    tx.prepare_cached(sql).await.map_err(|e| classify(&e))
}

/// Makes a parked caller's item due now with `result` as its wake payload,
/// and returns it as the executor runs it (its input event loaded): this
/// node's now, wherever the caller ran before.
async fn wake_caller(
    tx: &deadpool_postgres::Transaction<'_>,
    caller: Uuid,
    result: &J,
    owner: &str,
    holder: u64,
) -> Result<Option<WorkItem>, StoreError> {
    wake_item(tx, caller, result, PARKED, owner, holder).await
}

/// Makes item `caller` due now (on this node) with `result` as its wake
/// payload when it is due at `min_due` or later.
async fn wake_item(
    tx: &deadpool_postgres::Transaction<'_>,
    caller: Uuid,
    result: &J,
    min_due: i64,
    owner: &str,
    holder: u64,
) -> Result<Option<WorkItem>, StoreError> {
    let Some(row) = tx.query_opt(&statement(tx, "UPDATE items SET due_at = 0, wake = $2, lease_owner = $4 WHERE id = $1 AND due_at >= $3 RETURNING run_id, story, action, input").await?, &[&caller, &result.to_string(), &min_due, &owner],
        )
        .await
        .map_err(|e| classify(&e))?
    else {
        return Ok(None);
    };
    let input = match row.get::<_, Option<Uuid>>(3) {
        Some(id) => log::load_events(&**tx, &[id]).await?.remove(&EventId::from(id)),
        None => None,
    };
    Ok(Some(WorkItem {
        id: caller,
        run_id: RunId::from(row.get::<_, Uuid>(0)),
        story: row.get::<_, &str>(1).into(),
        action: row.get::<_, &str>(2).into(),
        input,
        wake: Some(result.clone()),
        due_ms: 0,
        attempts: 0,
        mark: false,
        holder,
    }))
}
