//! tale's core: the action contract and what a run is made of.
//! `action` (decode, check, build and execute an action type), `story` (the
//! checked story and its graph), `runtime` (events, the template scope,
//! compiled templates, rules, credentials, redaction, and the HTTP, mail,
//! clock, call and store traits the engine implements).
//!
//! **Boundary:** action types (`tale-actions`) depend on this crate and the
//! two below it only; the engine (`tale-engine`) runs what they build.

pub mod action;
pub mod runtime;
pub mod story;

pub use tale_syntax::{diagnostic, model, report, span, values, yaml};
pub use tale_template as template;
