//! Running stories: the execution of one action (`exec`), the one durable
//! executor (`durable`) and its driver for run, dry-run and test (`local`),
//! the store contract (`durable::DurableStore`, `runlog`) with the memory
//! store (`memory`), and the rows kept sealed (`sealed`, `stored`); the
//! database backends are the `tale-store` crate's. The pieces a run is made
//! of live in `tale-core` and are re-exported here.

pub use tale_core::runtime::{
    build, call, clock, contract, credentials, event, http, links, mail, redact, render, rules, scope, store,
};

pub mod durable;
pub mod exec;
pub mod local;
pub mod memory;
pub mod runlog;
pub mod sealed;
pub mod stored;
pub mod trace;
