//! The story JSON Schema (`tale schema`, `docs/story.schema.json`), generated
//! from the same raw types the loader decodes, so the two cannot disagree.

use serde_json::{Map, Value, json};

use crate::action::ActionRegistry;
use crate::model::{RULE_TYPES, RawCommon, RawStory};

pub fn story_schema(registry: &dyn ActionRegistry) -> Value {
    let settings = schemars::generate::SchemaSettings::draft07();
    let mut generator = settings.into_generator();
    let mut root = generator.root_schema_for::<RawStory>().to_value();
    let common = generator.subschema_for::<RawCommon>().to_value();
    let common = resolve(&common, &generator);

    let mut variants = Vec::new();
    for (type_name, schema) in registry.schemas(&mut generator) {
        let schema = schema.to_value();
        let schema = resolve(&schema, &generator);
        match schema.get("oneOf").and_then(Value::as_array) {
            Some(branches) => {
                for b in branches {
                    variants.push(merge(type_name, &common, &resolve(b, &generator)));
                }
            }
            None => variants.push(merge(type_name, &common, &schema)),
        }
    }

    let defs: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    if let Some(obj) = root.as_object_mut() {
        obj.insert("$id".into(), json!("https://tale.invalid/story.schema.json"));
        obj.insert("title".into(), json!("tale story"));
        let props = obj.entry("properties").or_insert_with(|| json!({}));
        props["actions"] = json!({
            "description": "The actions, keyed by slug ([a-z0-9_]+).",
            "type": "object",
            "propertyNames": { "pattern": "^[a-z0-9_]+$" },
            "additionalProperties": { "oneOf": variants },
        });
        obj.insert("required".into(), json!(["actions"]));
        let all_defs = obj.entry("definitions").or_insert_with(|| json!({}));
        if let Some(d) = all_defs.as_object_mut() {
            d.extend(defs);
        }
    }
    // Rule types are a closed list in the schema (the model keeps a string for spans).
    set_rule_enum(&mut root);
    root
}

/// Follows a top-level `$ref` into the generator's definitions.
fn resolve(schema: &Value, generator: &schemars::SchemaGenerator) -> Value {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        if let Some(def) = generator.definitions().get(name) {
            return def.clone();
        }
    }
    schema.clone()
}

fn merge(type_name: &str, common: &Value, own: &Value) -> Value {
    let mut properties = common.get("properties").cloned().unwrap_or_else(|| json!({}));
    if let (Some(p), Some(own_props)) = (
        properties.as_object_mut(),
        own.get("properties").and_then(Value::as_object),
    ) {
        for (k, v) in own_props {
            p.insert(k.clone(), v.clone());
        }
        p.insert(
            "type".into(),
            json!({ "const": type_name, "description": "The action type." }),
        );
    }
    let mut required = vec![json!("type")];
    if let Some(r) = own.get("required").and_then(Value::as_array) {
        required.extend(r.iter().cloned());
    }
    let mut out = json!({
        "title": type_name,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    });
    if let Some(d) = own.get("description") {
        out["description"] = d.clone();
    }
    out
}

fn set_rule_enum(root: &mut Value) {
    if let Some(rule) = root.pointer_mut("/definitions/Rule/properties/type") {
        rule["enum"] = json!(RULE_TYPES);
    }
}
