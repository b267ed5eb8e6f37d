//! `tale schema` and its committed copy `docs/story.schema.json`.

use crate::support::{assert_snapshot, root, tale};

#[test]
fn committed_schema_matches_tale_schema() {
    let out = tale(&["schema"]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    if let Err(e) = assert_snapshot(&root().join("docs/story.schema.json"), &out.stdout) {
        panic!("{e}");
    }
}

#[test]
fn schema_describes_every_action_type_and_mode() {
    let out = tale(&["schema"]);
    let schema: serde_json::Value = serde_json::from_str(&out.stdout).expect("schema is JSON");
    let variants = schema
        .pointer("/properties/actions/additionalProperties/oneOf")
        .and_then(|v| v.as_array())
        .expect("actions oneOf");
    let mut types: Vec<String> = variants
        .iter()
        .map(|v| {
            let t = v
                .pointer("/properties/type/const")
                .and_then(|c| c.as_str())
                .unwrap_or("?");
            match v.pointer("/properties/mode/const").and_then(|c| c.as_str()) {
                Some(m) => format!("{t}:{m}"),
                None => t.to_owned(),
            }
        })
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "http_request",
            "send_email",
            "send_to_story",
            "transform:deduplicate",
            "transform:delay",
            "transform:explode",
            "transform:extract",
            "transform:implode",
            "transform:message_only",
            "transform:throttle",
            "trigger",
            "webhook"
        ]
    );
    for v in variants {
        assert_eq!(v["additionalProperties"], false, "unknown keys must be refused: {v}");
        assert!(
            v.pointer("/properties/from").is_some(),
            "common keys are merged in: {v}"
        );
    }
}

#[test]
fn committed_test_schema_matches_tale_schema_tests() {
    let out = tale(&["schema", "--tests"]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    if let Err(e) = assert_snapshot(&root().join("docs/story-test.schema.json"), &out.stdout) {
        panic!("{e}");
    }
    let schema: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    let case = schema.pointer("/$defs/Case/properties").expect("Case");
    for key in ["event", "event_file", "mocks", "requests", "expect", "allow_unmatched"] {
        assert!(case.get(key).is_some(), "{key}");
    }
    let mock = schema.pointer("/$defs/MockSpec/properties").expect("MockSpec");
    for key in ["body_file", "delay_secs", "responses"] {
        assert!(mock.get(key).is_some(), "{key}");
    }
}
