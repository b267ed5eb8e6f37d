//! Running stories: events, the template scope, compiled templates.

pub mod event;
pub mod render;
pub mod scope;
pub mod value;
