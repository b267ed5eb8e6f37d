//! tale's store backends, below the server and above the engine: SQLite
//! (`sqlite`: one file, one `tale serve`) and PostgreSQL (`postgres`: nodes
//! sharing the work), each implementing the engine's store traits
//! (`DurableStore`, `StateStore`, `RunLog`, `SecretStore`). `backend::open`
//! turns a `--db` URL into one of them, once; nothing above this crate
//! names a backend. The in-memory store of run, dry-run and test is the
//! engine's own (`tale_engine::runtime::memory`).

pub mod backend;
pub mod postgres;
pub mod sqlite;
