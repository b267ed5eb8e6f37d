//! `--db URL` → a store backend (SQLite or PostgreSQL), picked once. Everything above talks to the
//! traits: `DurableStore` (work), `RunLog` (what runs did), `SecretStore`
//! (what the API set), and `ServeStore` (all three, plus what a server
//! needs: health, pruning). A backend stores what it is given: the
//! executor redacts before it writes.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::BoxFuture;

pub use crate::postgres::{COMMITTERS, NodeOptions, hostname};
use crate::postgres::{PgError, PgLog, PgStore, PgUrl};
pub use crate::sqlite::Sync;
use crate::sqlite::{OpenError, SqliteReader, SqliteStore};
use tale_engine::runtime::durable::DurableStore;
use tale_engine::runtime::runlog::{RunLog, SecretStore};
use tale_engine::runtime::store::StoreError;

/// A database named by `--db`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// `sqlite:PATH` (or `sqlite://PATH`): one file, one process.
    Sqlite(PathBuf),
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=…]` (or
    /// `postgresql://`): a database server.
    Postgres(Box<PgUrl>),
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("--db must look like sqlite:PATH or postgres://USER@HOST/DB, found `{0}`")]
    Malformed(String),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Postgres(#[from] PgError),
    #[error("opening the database stopped: {0}")]
    Stopped(String),
}

impl std::str::FromStr for Database {
    type Err = BackendError;

    fn from_str(url: &str) -> Result<Self, BackendError> {
        match url.split_once(':') {
            Some(("sqlite", path)) if !path.trim_start_matches("//").is_empty() => {
                Ok(Database::Sqlite(PathBuf::from(path.trim_start_matches("//"))))
            }
            Some(("postgres" | "postgresql", _)) => Ok(Database::Postgres(Box::new(url.parse()?))),
            _ => Err(BackendError::Malformed(url.to_owned())),
        }
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            // Without its password.
            Database::Postgres(url) => write!(f, "{url}"),
        }
    }
}

/// What `tale serve` (and `tale run --db`) needs of its store.
pub trait ServeStore: DurableStore + RunLog + SecretStore {
    /// `Err` with the reason when the store cannot be trusted with writes.
    fn health(&self) -> Result<(), String>;
    /// What this process counts as a node of a cluster (`None`: it owns its
    /// store alone).
    fn cluster(&self) -> Option<ClusterStats> {
        None
    }
    /// Deletes finished runs of `story` started before `before_ms` (a batch);
    /// how many.
    fn prune<'a>(&'a self, story: &'a str, before_ms: i64) -> BoxFuture<'a, Result<usize, StoreError>>;
}

/// A cluster node's counters, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct ClusterStats {
    /// The node's name.
    pub node: String,
    /// Items claimed from dead nodes or handed over by others.
    pub claimed: u64,
    /// Times the others declared this node dead (it joined again).
    pub lease_losses: u64,
    /// How late the last notification of waiting work arrived (ms).
    pub notify_lag_ms: u64,
}

impl Database {
    /// Opens the database to run stories on it (`sync` is SQLite's; `node`
    /// how a process presents itself on a shared PostgreSQL database).
    pub async fn open(&self, sync: Sync, node: NodeOptions) -> Result<Arc<dyn ServeStore>, BackendError> {
        match self {
            Database::Sqlite(path) => {
                // Opening may wait for the lock file: not on an async thread.
                let path = path.clone();
                let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path, sync))
                    .await
                    .map_err(|e| BackendError::Stopped(e.to_string()))??;
                Ok(store)
            }
            Database::Postgres(url) => Ok(PgStore::open(url, node).await?),
        }
    }

    /// Opens the database to read its runs (beside a running server).
    pub async fn open_log(&self) -> Result<Box<dyn RunLog>, BackendError> {
        match self {
            Database::Sqlite(path) => Ok(Box::new(SqliteReader::open(path)?)),
            Database::Postgres(url) => Ok(Box::new(PgLog::open(url).await?)),
        }
    }
}
