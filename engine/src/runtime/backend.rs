//! `--db URL` → a store backend, picked once. Everything above talks to the
//! traits: `DurableStore` (work), `RunLog` (what runs did), `SecretStore`
//! (what the API set), and `ServeStore` (all three, plus what a server
//! needs: health, pruning). A backend stores what it is given: the
//! executor redacts before it writes.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::durable::DurableStore;
use super::runlog::{RunLog, SecretStore};
pub use super::sqlite::Sync;
use super::sqlite::{OpenError, SqliteReader, SqliteStore};
use super::store::StoreError;

/// A database named by `--db`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// `sqlite:PATH` (or `sqlite://PATH`): one file, one process.
    Sqlite(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("PostgreSQL is not supported yet: use --db sqlite:PATH")]
    NotYet,
    #[error("--db must look like sqlite:PATH, found `{0}`")]
    Malformed(String),
    #[error(transparent)]
    Open(#[from] OpenError),
}

impl std::str::FromStr for Database {
    type Err = BackendError;

    fn from_str(url: &str) -> Result<Self, BackendError> {
        match url.split_once(':') {
            Some(("sqlite", path)) if !path.trim_start_matches("//").is_empty() => {
                Ok(Database::Sqlite(PathBuf::from(path.trim_start_matches("//"))))
            }
            Some(("postgres" | "postgresql", _)) => Err(BackendError::NotYet),
            _ => Err(BackendError::Malformed(url.to_owned())),
        }
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What `tale serve` (and `tale run --db`) needs of its store.
pub trait ServeStore: DurableStore + RunLog + SecretStore {
    /// `Err` with the reason when the store cannot be trusted with writes.
    fn health(&self) -> Result<(), String>;
    /// Deletes finished runs of `story` started before `before_ms` (a batch);
    /// how many.
    fn prune<'a>(&'a self, story: &'a str, before_ms: i64) -> BoxFuture<'a, Result<usize, StoreError>>;
}

impl Database {
    /// Opens the database to run stories on it (the only writer).
    pub fn open(&self, sync: Sync) -> Result<Arc<dyn ServeStore>, BackendError> {
        match self {
            Database::Sqlite(path) => Ok(SqliteStore::open(path, sync)?),
        }
    }

    /// Opens the database to read its runs (beside a running server).
    pub fn open_log(&self) -> Result<Box<dyn RunLog>, BackendError> {
        match self {
            Database::Sqlite(path) => Ok(Box::new(SqliteReader::open(path)?)),
        }
    }
}
