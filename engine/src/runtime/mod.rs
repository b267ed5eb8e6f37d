//! Running stories: events, the template scope, compiled templates, rules,
//! the store, HTTP, the clock, and the executor.

pub mod build;
pub mod call;
pub mod clock;
pub mod contract;
pub mod credentials;
pub mod durable;
pub mod event;
pub mod exec;
pub mod http;
pub mod mail;
pub mod redact;
pub mod render;
pub mod rules;
pub mod scope;
pub mod sealed;
pub mod sqlite;
pub mod store;
pub mod stored;
