//! tale's action types, one file each: the config a story writes (whose doc
//! comments are the user documentation), its checks, and later its execution.
//! [`Registry`] is the closed list the engine is given.

mod form_data;
pub mod http_request;
pub mod send_email;
pub mod send_to_story;
pub mod transform;
pub mod trigger;
pub mod webhook;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use tale_core::action::{ActionConfig, ActionRegistry, DecodeCx};
use tale_core::yaml::Node;

pub const TYPES: &[&str] = &[
    "webhook",
    "http_request",
    "transform",
    "trigger",
    "send_to_story",
    "send_email",
];

/// Every action type tale knows.
#[derive(Debug, Default, Clone, Copy)]
pub struct Registry;

fn boxed<T: ActionConfig>(value: Option<T>) -> Option<Box<dyn ActionConfig>> {
    value.map(|v| Box::new(v) as Box<dyn ActionConfig>)
}

impl ActionRegistry for Registry {
    fn type_names(&self) -> &'static [&'static str] {
        TYPES
    }

    fn decode(&self, type_name: &str, body: &Node, cx: &mut DecodeCx<'_>) -> Option<Option<Box<dyn ActionConfig>>> {
        Some(match type_name {
            "webhook" => boxed(cx.decode::<webhook::WebhookConfig>(body)),
            "http_request" => boxed(cx.decode::<http_request::HttpRequestConfig>(body)),
            "transform" => boxed(transform::decode(body, cx)),
            "trigger" => boxed(cx.decode::<trigger::TriggerConfig>(body)),
            "send_to_story" => boxed(cx.decode::<send_to_story::SendToStoryConfig>(body)),
            "send_email" => boxed(cx.decode::<send_email::SendEmailConfig>(body)),
            _ => return None,
        })
    }

    fn schemas(&self, generator: &mut SchemaGenerator) -> Vec<(&'static str, Schema)> {
        let mut out = vec![
            ("webhook", webhook::WebhookConfig::json_schema(generator)),
            ("http_request", http_request::HttpRequestConfig::json_schema(generator)),
        ];
        let modes = [
            ("message_only", transform::MessageOnly::json_schema(generator)),
            ("explode", transform::Explode::json_schema(generator)),
            ("implode", transform::Implode::json_schema(generator)),
            ("extract", transform::Extract::json_schema(generator)),
            ("deduplicate", transform::Deduplicate::json_schema(generator)),
            ("delay", transform::Delay::json_schema(generator)),
            ("throttle", transform::Throttle::json_schema(generator)),
        ];
        for (mode, mut schema) in modes {
            if let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
                props.insert("mode".into(), serde_json::json!({ "const": mode }));
            }
            out.push(("transform", schema));
        }
        out.push(("trigger", trigger::TriggerConfig::json_schema(generator)));
        out.push((
            "send_to_story",
            send_to_story::SendToStoryConfig::json_schema(generator),
        ));
        out.push(("send_email", send_email::SendEmailConfig::json_schema(generator)));
        out
    }
}
