//! tale's engine: the one executor of runs (`runtime::durable`, driven by
//! `runtime::local` for run, dry-run and test and by `tale serve`), the
//! store contract it runs over (`DurableStore`, `RunLog`, `SecretStore`;
//! the memory store), and the IO the layers below do not do (`files`,
//! `environment`). It re-exports the layers under one name, so that the
//! binary reads `tale_engine::yaml`, `tale_engine::check`…
//!
//! The layers, each a crate depending only on those before it:
//! `tale-syntax` ← `tale-template` ← `tale-core` ← `tale-check` ←
//! `tale-engine` ← `tale-store` (the SQLite and PostgreSQL backends) ←
//! `tale-server` (`tale serve`), with `tale-actions` beside `tale-check`
//! on `tale-core`. See `ARCHITECTURE.md` at the repository root for the
//! map.

pub mod checked;
pub mod environment;
pub mod files;
pub mod runtime;

pub use tale_check as check;
pub use tale_check::schema;
pub use tale_core::{action, story};
pub use tale_syntax::{diagnostic, model, report, span, values, yaml};
pub use tale_template as template;
