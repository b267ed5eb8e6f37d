//! Running stories: the executor of run, dry-run and test (`exec`), the
//! durable executor of `tale serve` (`durable`), and the SQLite store with
//! what it keeps sealed (`sqlite`, `sealed`, `stored`). The pieces a run is
//! made of live in `tale-core` and are re-exported here.

pub use tale_core::runtime::{
    build, call, clock, contract, credentials, event, http, links, mail, redact, render, rules, scope, store,
};

pub mod backend;
pub mod durable;
pub mod exec;
pub mod local;
pub mod memory;
pub mod postgres;
pub mod runlog;
pub mod sealed;
pub mod sqlite;
pub mod stored;
pub mod trace;
