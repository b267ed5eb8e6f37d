//! What a run is made of: events, the template scope, compiled templates,
//! rules, credentials and redaction, and the contracts the engine fills in
//! (HTTP client, mailer, clock, sub-story calls, store).

pub mod build;
pub mod call;
pub mod clock;
pub mod contract;
pub mod credentials;
pub mod event;
pub mod http;
pub mod links;
pub mod mail;
pub mod redact;
pub mod render;
pub mod rules;
pub mod scope;
pub mod store;
pub mod xml;
