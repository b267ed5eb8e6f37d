//! tale's engine: the story model, the YAML loader with spans, the checker
//! and templates. See `ARCHITECTURE.md` at the repository root for the map.

pub mod action;
pub mod check;
pub mod diagnostic;
pub mod environment;
pub mod files;
pub mod model;
pub mod report;
pub mod runtime;
pub mod schema;
pub mod span;
pub mod story;
pub mod template;
pub mod values;
pub mod yaml;
