//! tale's syntax layer: what a story file says, before anything runs.
//! Spans and the YAML tree with typed decoding (`span`, `yaml`), the raw
//! story model (`model`), diagnostics and their rendering (`diagnostic`,
//! `report`), and parsers of single values (`values`: durations, cron,
//! time zones, JSONPath, regexes, hosts).
//!
//! **Boundary:** no IO and no async runtime (a test holds it): everything
//! here works on text it is given.

pub mod diagnostic;
pub mod model;
pub mod report;
pub mod span;
pub mod values;
pub mod yaml;
