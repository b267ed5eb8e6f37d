//! The PostgreSQL schema: versioned migrations, applied once under an
//! advisory lock (several nodes may start at once), recorded in
//! `tale_schema`. A database newer than this tale is refused.

use tokio_postgres::Client;

use super::PgError;

/// Key of the advisory lock migrations take (any constant; "tale" + 1).
const MIGRATION_LOCK: i64 = 0x7461_6c65_0001;

/// Migration `i` takes the schema from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE runs (
    id UUID PRIMARY KEY,
    story TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    errors JSONB NOT NULL DEFAULT '[]',
    events BIGINT NOT NULL DEFAULT 0,
    pending BIGINT NOT NULL DEFAULT 0,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    parent_run UUID,
    parent_event UUID,
    caller_item UUID,
    exit_fired BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX runs_by_story ON runs (story, id);
CREATE INDEX runs_by_time ON runs (started_at);
CREATE INDEX runs_by_parent ON runs (parent_run) WHERE parent_run IS NOT NULL;
CREATE TABLE events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    id UUID NOT NULL UNIQUE,
    run_id UUID NOT NULL,
    story TEXT NOT NULL,
    action TEXT NOT NULL,
    parents UUID[] NOT NULL,
    branch TEXT,
    output TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX events_by_run ON events (run_id, seq);
CREATE TABLE items (
    id UUID PRIMARY KEY,
    run_id UUID NOT NULL,
    story TEXT NOT NULL,
    action TEXT NOT NULL,
    input UUID,
    wake TEXT,
    due_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT NOT NULL,
    lease_until BIGINT NOT NULL
);
-- Queue tables stay small: vacuum them after a few hundred changes, not
-- after a fifth of the table.
ALTER TABLE items SET (autovacuum_vacuum_threshold = 200, autovacuum_vacuum_scale_factor = 0.0);
CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE state_lists (
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (key, seq)
);
CREATE TABLE schedules (key TEXT PRIMARY KEY, last_tick BIGINT NOT NULL);
CREATE TABLE credentials (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    allowed_hosts TEXT,
    key_id TEXT NOT NULL,
    nonce BYTEA NOT NULL,
    sealed BYTEA NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE resources (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at BIGINT NOT NULL);
"#,
    // A run's row changes with every step (its counters): room on its page
    // lets PostgreSQL update it in place (HOT), without touching its indexes.
    r#"
ALTER TABLE runs SET (fillfactor = 70);
"#,
    // One marker per committed batch of steps: when a connection breaks
    // during COMMIT, the marker tells whether the batch was committed.
    r#"
CREATE TABLE commits (id UUID PRIMARY KEY, at BIGINT NOT NULL);
ALTER TABLE commits SET (autovacuum_vacuum_threshold = 200, autovacuum_vacuum_scale_factor = 0.0);
"#,
    // Several nodes on one database: each registers and renews a lease
    // judged by the database's clock; an item belongs to a node or to none
    // (anyone may claim it); a stateful action's items (its lane) run on the
    // node holding the lane.
    r#"
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    alive BOOLEAN NOT NULL DEFAULT true
);
CREATE INDEX nodes_alive_by_name ON nodes (name) WHERE alive;
ALTER TABLE items ALTER COLUMN lease_owner DROP NOT NULL;
ALTER TABLE items ADD COLUMN lane TEXT;
CREATE INDEX items_by_owner ON items (lease_owner);
CREATE INDEX items_ownerless ON items (due_at, id) WHERE lease_owner IS NULL;
CREATE TABLE lanes (key TEXT PRIMARY KEY, holder TEXT NOT NULL);
CREATE INDEX lanes_by_holder ON lanes (holder);
"#,
    // Every item insert and delete maintained an index on its owner that
    // only a node's death reads (a scan then is rare and cheap next to an
    // index write per item); a dead node's late rows are released once.
    r#"
DROP INDEX items_by_owner;
ALTER TABLE nodes ADD COLUMN settled BOOLEAN NOT NULL DEFAULT false;
"#,
    // A trace per action execution (docs/ui.md), pruned with its run.
    r#"
CREATE TABLE traces (
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    run_id UUID NOT NULL,
    action TEXT NOT NULL,
    input UUID,
    at BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    status TEXT NOT NULL,
    branch TEXT,
    emitted BIGINT NOT NULL,
    error TEXT,
    detail TEXT
);
CREATE INDEX traces_by_run ON traces (run_id, seq);
ALTER TABLE traces SET (autovacuum_vacuum_scale_factor = 0.05);
"#,
];

/// The schema version a database has (0: none yet).
pub(super) async fn version(client: &Client) -> Result<usize, PgError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('tale_schema') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client.query_opt("SELECT version FROM tale_schema", &[]).await?;
    Ok(row.map_or(0, |r| r.get::<_, i32>(0) as usize))
}

/// Brings the schema up to date, once across nodes starting together.
pub(super) async fn migrate(client: &mut Client) -> Result<(), PgError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS tale_schema (version INTEGER NOT NULL)")
        .await?;
    let found = tx
        .query_opt("SELECT version FROM tale_schema", &[])
        .await?
        .map_or(0, |r| r.get::<_, i32>(0) as usize);
    if found > MIGRATIONS.len() {
        return Err(PgError::TooNew {
            found,
            known: MIGRATIONS.len(),
        });
    }
    for sql in &MIGRATIONS[found..] {
        tx.batch_execute(sql).await?;
    }
    if found < MIGRATIONS.len() {
        let version = MIGRATIONS.len() as i32;
        tx.execute("DELETE FROM tale_schema", &[]).await?;
        tx.execute("INSERT INTO tale_schema (version) VALUES ($1)", &[&version])
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
