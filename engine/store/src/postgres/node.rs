//! A node of a cluster: several `tale serve` processes on one database.
//! Each node registers a row in `nodes` and renews its lease, judged by the
//! database's clock (`now()`), never by the nodes' own. Any node declares a
//! node whose lease ended dead: its items become ownerless and its lanes
//! (stateful actions) free; the others claim them. A node that finds itself
//! declared dead forgets what it held and joins again under a new id; its
//! late commits are refused (see `step::apply_all`: a step commits only
//! while its node is alive and holds the items it completes; rows a step
//! committed while its node was being declared dead are released again
//! three leases later).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use uuid::Uuid;

use super::{PgError, classify, log, pool_error};
use tale_engine::runtime::durable::{PARKED, WorkItem};
use tale_engine::runtime::event::{EventId, RunId};
use tale_engine::runtime::store::StoreError;

/// The channel nodes notify when work waits to be claimed.
pub(super) const CHANNEL: &str = "tale_work";
/// Items claimed in one statement.
const CLAIM_BATCH: i64 = 1024;
/// Items due within this long are claimed (and wait on a timer here).
const CLAIM_AHEAD_MS: i64 = 60_000;
/// Rows of nodes dead for this long are deleted.
const FORGET_DEAD: &str = "1 day";

/// What a node knows of itself.
pub(super) struct Node {
    /// Its id now and its incarnation (both change when it joins again).
    id: RwLock<(String, u64)>,
    pub(super) name: String,
    pub(super) lease: Duration,
    /// When the lease was last renewed (or the node registered).
    renewed: Mutex<tokio::time::Instant>,
    /// One renewal at a time (the timer's, or one a waking item asks for).
    renewing: tokio::sync::Mutex<()>,
    /// Poked when work may wait to be claimed (a notification, a sweep).
    pub(super) signal: Arc<tokio::sync::Notify>,
    /// Why the lease could not be renewed, while it cannot.
    trouble: Mutex<Option<String>>,
    /// Counters for the metrics: claimed items, times declared dead.
    pub(super) claimed: AtomicU64,
    pub(super) lost: AtomicU64,
    /// How late the last notification arrived (ms, by the sender's clock).
    pub(super) notify_lag_ms: AtomicU64,
    /// Set when the store is dropped: its listening connection closes.
    pub(super) stop: tokio::sync::watch::Sender<bool>,
}

impl Node {
    pub(super) fn new(name: String, lease: Duration) -> Self {
        Node {
            id: RwLock::new((Uuid::now_v7().to_string(), 0)),
            name,
            lease,
            renewed: Mutex::new(tokio::time::Instant::now()),
            renewing: tokio::sync::Mutex::new(()),
            signal: Arc::new(tokio::sync::Notify::new()),
            trouble: Mutex::new(None),
            claimed: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            notify_lag_ms: AtomicU64::new(0),
            stop: tokio::sync::watch::Sender::new(false),
        }
    }

    /// This node's id now (it changes when the node joins again).
    pub(super) fn id(&self) -> String {
        self.current().0
    }

    /// Its id and incarnation, read together.
    pub(super) fn current(&self) -> (String, u64) {
        self.id.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn incarnation(&self) -> u64 {
        self.current().1
    }

    /// Whether items of incarnation `holder` are still this node's. When
    /// the lease was not renewed for half its length (the process was
    /// paused, the database unreachable), renews it first: a node declared
    /// dead meanwhile learns it here, before running what others now run.
    pub(super) async fn holds(&self, holder: u64, pool: &deadpool_postgres::Pool) -> bool {
        if holder != self.incarnation() {
            return false;
        }
        if self.renewed_within(self.lease / 2) {
            return true;
        }
        let _one = self.renewing.lock().await;
        if !self.renewed_within(self.lease / 2) {
            if let Err(e) = self.renew(pool).await {
                tracing::warn!("cannot renew this node's lease: {e}");
            }
        }
        holder == self.incarnation()
    }

    fn renewed_within(&self, limit: Duration) -> bool {
        self.renewed.lock().unwrap_or_else(|p| p.into_inner()).elapsed() < limit
    }

    pub(super) fn trouble(&self) -> Option<String> {
        self.trouble.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// Registers this node. An earlier process of the same name (this one
    /// before a restart) is dead: its work is released at once instead of
    /// when its lease ends.
    pub(super) async fn register(&self, client: &mut tokio_postgres::Client) -> Result<(), PgError> {
        let id = self.id();
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO nodes (id, name, version, expires_at)
             VALUES ($1, $2, $3, now() + $4::bigint * interval '1 millisecond')",
            &[&id, &self.name, &env!("CARGO_PKG_VERSION"), &self.lease_ms()],
        )
        .await?;
        let earlier: Vec<String> = tx
            .query(
                "UPDATE nodes SET alive = false WHERE name = $1 AND id <> $2 AND alive RETURNING id",
                &[&self.name, &id],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        release(&tx, &earlier, false).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Renews the lease and sweeps dead nodes, every quarter of a lease,
    /// until the store is dropped (`alive` then fails to upgrade).
    pub(super) async fn keep_alive(self: Arc<Self>, pool: deadpool_postgres::Pool) {
        loop {
            tokio::time::sleep(self.lease / 4).await;
            let one = self.renewing.lock().await;
            let renewed = self.renew(&pool).await;
            drop(one);
            match renewed {
                Ok(()) => *self.trouble.lock().unwrap_or_else(|p| p.into_inner()) = None,
                Err(e) => {
                    tracing::warn!("cannot renew this node's lease: {e}");
                    if !self.renewed_within(self.lease) {
                        // The others may have declared it dead by now.
                        *self.trouble.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                            "this node's lease could not be renewed for {:?}: {e}",
                            self.lease
                        ));
                    }
                }
            }
            if Arc::strong_count(&self) == 1 {
                return;
            }
        }
    }

    async fn renew(&self, pool: &deadpool_postgres::Pool) -> Result<(), StoreError> {
        let mut client = pool.get().await.map_err(pool_error)?;
        let renewed = client
            .execute(
                "UPDATE nodes SET expires_at = now() + $2::bigint * interval '1 millisecond' WHERE id = $1 AND alive",
                &[&self.id(), &self.lease_ms()],
            )
            .await
            .map_err(|e| classify(&e))?;
        if renewed == 0 {
            // Declared dead (paused, cut off past its lease): the others own
            // what it held. Join again as a new node.
            let old = self.id();
            {
                let mut id = self.id.write().unwrap_or_else(|p| p.into_inner());
                *id = (Uuid::now_v7().to_string(), id.1 + 1);
            }
            self.lost.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(node = %self.name, "this node was declared dead (id {old}); joining again");
            self.register(&mut client)
                .await
                .map_err(|e| StoreError::Busy(e.to_string()))?;
            self.signal.notify_one();
        }
        *self.renewed.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
        let tx = client.transaction().await.map_err(|e| classify(&e))?;
        // A node paused inside a transaction holds its row until the server
        // ends that transaction: sweep again later rather than wait here
        // (this loop renews this node's own lease).
        tx.batch_execute("SET LOCAL lock_timeout = '200ms'")
            .await
            .map_err(|e| classify(&e))?;
        let dead: Vec<String> = tx
            .query(
                "UPDATE nodes SET alive = false WHERE alive AND expires_at < now() RETURNING id",
                &[],
            )
            .await
            .map_err(|e| classify(&e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for id in &dead {
            tracing::warn!(node = %self.name, "node {id} missed its lease: its work is released");
        }
        release(&tx, &dead, false).await.map_err(|e| classify(&e))?;
        // A step a dead node committed while it was being declared dead
        // (commits do not lock the node's row) leaves items and lanes owned
        // by it: released once more, three leases after its lease ended
        // (a transaction idle longer than a lease is ended by the server).
        let settled: Vec<String> = tx
            .query(
                "UPDATE nodes SET settled = true
                 WHERE NOT alive AND NOT settled AND expires_at < now() - 3 * $1::bigint * interval '1 millisecond'
                 RETURNING id",
                &[&self.lease_ms()],
            )
            .await
            .map_err(|e| classify(&e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let late = release(&tx, &settled, false).await.map_err(|e| classify(&e))?;
        tx.execute(
            &format!("DELETE FROM nodes WHERE NOT alive AND settled AND expires_at < now() - interval '{FORGET_DEAD}'"),
            &[],
        )
        .await
        .map_err(|e| classify(&e))?;
        tx.commit().await.map_err(|e| classify(&e))?;
        if !dead.is_empty() || late > 0 {
            notify(&client).await;
        }
        Ok(())
    }

    /// Claims up to [`CLAIM_BATCH`] items nobody holds, due within
    /// [`CLAIM_AHEAD_MS`], oldest first, skipping rows another node is
    /// claiming; a stateful action's items only with its lane, which this
    /// node takes when nobody holds it.
    pub(super) async fn claim(&self, pool: &deadpool_postgres::Pool) -> Result<Vec<WorkItem>, StoreError> {
        let db = |e: tokio_postgres::Error| classify(&e);
        let mut client = pool.get().await.map_err(pool_error)?;
        let (id, holder) = self.current();
        let horizon = tale_engine::runtime::event::now_millis().saturating_add(CLAIM_AHEAD_MS);
        let tx = client.transaction().await.map_err(db)?;
        tx.execute(
            "INSERT INTO lanes (key, holder)
             SELECT DISTINCT lane, $1 FROM items WHERE lease_owner IS NULL AND lane IS NOT NULL AND due_at < $2
             ON CONFLICT (key) DO NOTHING",
            &[&id, &horizon],
        )
        .await
        .map_err(db)?;
        let rows = tx
            .query(
                "UPDATE items SET lease_owner = $1 WHERE id IN (
                     SELECT id FROM items
                     WHERE lease_owner IS NULL AND due_at < $2 AND due_at <> $3
                       AND (lane IS NULL OR lane IN (SELECT key FROM lanes WHERE holder = $1))
                     ORDER BY due_at, id LIMIT $4 FOR UPDATE SKIP LOCKED)
                 RETURNING id, run_id, story, action, input, wake, due_at, attempts",
                &[&id, &horizon, &PARKED, &CLAIM_BATCH],
            )
            .await
            .map_err(db)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // Only while alive (see `step::apply_all`).
        if tx
            .query_opt("SELECT 1 FROM nodes WHERE id = $1 AND alive", &[&id])
            .await
            .map_err(db)?
            .is_none()
        {
            return Ok(Vec::new());
        }
        let items = work_items(&*tx, &rows, holder).await?;
        tx.commit().await.map_err(db)?;
        self.claimed.fetch_add(items.len() as u64, Ordering::Relaxed);
        Ok(items)
    }

    /// Leaves the cluster after a clean stop: what it holds goes back, its
    /// counts of crashed starts forgotten (nothing was running).
    pub(super) async fn leave(&self, pool: &deadpool_postgres::Pool) -> Result<(), StoreError> {
        let mut client = pool.get().await.map_err(pool_error)?;
        let id = self.id();
        let tx = client.transaction().await.map_err(|e| classify(&e))?;
        tx.execute(
            "UPDATE nodes SET alive = false, expires_at = now() WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(|e| classify(&e))?;
        release(&tx, &[id], true).await.map_err(|e| classify(&e))?;
        tx.commit().await.map_err(|e| classify(&e))?;
        notify(&client).await;
        Ok(())
    }
}

/// Makes the items of dead nodes ownerless and frees their lanes; how many
/// items.
async fn release(
    tx: &tokio_postgres::Transaction<'_>,
    nodes: &[String],
    clean: bool,
) -> Result<u64, tokio_postgres::Error> {
    if nodes.is_empty() {
        return Ok(0);
    }
    let sql = if clean {
        "UPDATE items SET lease_owner = NULL, attempts = 0 WHERE lease_owner = ANY($1)"
    } else {
        "UPDATE items SET lease_owner = NULL WHERE lease_owner = ANY($1)"
    };
    let items = tx.execute(sql, &[&nodes]).await?;
    tx.execute("DELETE FROM lanes WHERE holder = ANY($1)", &[&nodes])
        .await?;
    Ok(items)
}

/// Tells the other nodes that work waits (outside any step's transaction:
/// a notification is sent at commit, and a failed one only delays a claim
/// until the next poll).
pub(super) async fn notify(client: &tokio_postgres::Client) {
    // The payload is the time it was sent: the listeners measure the lag.
    let sent = tale_engine::runtime::event::now_millis().to_string();
    if let Err(e) = client.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &sent]).await {
        tracing::debug!("cannot notify the other nodes: {e}");
    }
}

/// Listens for notifications until the node is dropped, connecting again
/// after a failure (claims go on by polling meanwhile).
pub(super) async fn listen(node: std::sync::Weak<Node>, url: super::PgUrl) {
    let Some(mut stop) = node.upgrade().map(|n| n.stop.subscribe()) else {
        return;
    };
    let mut wait = Duration::from_millis(100);
    loop {
        let heard = |payload: Option<&str>| {
            let Some(this) = node.upgrade() else { return };
            if let Some(sent) = payload.and_then(|p| p.parse::<i64>().ok()) {
                let lag = tale_engine::runtime::event::now_millis().saturating_sub(sent).max(0);
                this.notify_lag_ms.store(lag as u64, Ordering::Relaxed);
            }
            this.signal.notify_one();
        };
        tokio::select! {
            listened = url.listen(CHANNEL, &heard) => match listened {
                Ok(()) => wait = Duration::from_millis(100),
                Err(e) => {
                    tracing::debug!("cannot listen for work: {e}; polling meanwhile");
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            },
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// Items as the executor runs them, their input events loaded.
pub(super) async fn work_items<C: tokio_postgres::GenericClient + Sync>(
    client: &C,
    rows: &[tokio_postgres::Row],
    holder: u64,
) -> Result<Vec<WorkItem>, StoreError> {
    let inputs: Vec<Uuid> = rows.iter().filter_map(|r| r.get::<_, Option<Uuid>>(4)).collect();
    let events = log::load_events(client, &inputs).await?;
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        items.push(WorkItem {
            id: r.get(0),
            run_id: RunId::from(r.get::<_, Uuid>(1)),
            story: r.get::<_, &str>(2).into(),
            action: r.get::<_, &str>(3).into(),
            input: r
                .get::<_, Option<Uuid>>(4)
                .and_then(|id| events.get(&EventId::from(id)).cloned()),
            wake: r
                .get::<_, Option<&str>>(5)
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| StoreError::Failed(e.to_string()))?,
            due_ms: r.get(6),
            attempts: r.get::<_, i32>(7).max(0) as u32,
            mark: false,
            holder,
        });
    }
    items.sort_by_key(|i| i.id);
    Ok(items)
}
