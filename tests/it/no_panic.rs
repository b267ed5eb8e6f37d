//! Nothing a user can type makes the loader or the checker panic: arbitrary
//! bytes, arbitrary YAML built from story vocabulary, and hostile documents.

use proptest::prelude::*;
use tale_engine::check::{CheckOptions, SourceFile, check};

fn check_text(text: &str) -> usize {
    let files = [SourceFile::new("fuzz.yaml", text)];
    let out = check(&files, &[], &tale_actions::Registry, &CheckOptions::default());
    out.diagnostics.len()
}

const KEYS: &[&str] = &[
    "type",
    "from",
    "path",
    "url",
    "mode",
    "rules",
    "value",
    "payload",
    "to",
    "schedule",
    "cron",
    "timezone",
    "entry",
    "exits",
    "inputs",
    "story",
    "secret",
    "response",
    "body",
    "matchers",
    "regexp",
    "local",
    "must_match",
    "pagination",
    "next_url",
    "actions",
    "name",
    "tale",
    "credential",
    "verbs",
    "loop",
    "limit",
];
const VALUES: &[&str] = &[
    "webhook",
    "http_request",
    "transform",
    "trigger",
    "send_to_story",
    "send_email",
    "explode",
    "message_only",
    "implode",
    "a",
    "b",
    "a.failure",
    "b.no_match",
    "\"{{ a.body }}\"",
    "\"{{ .a.b | as_object }}\"",
    "\"{% if x %}\"",
    "\"{{ x | nope }}\"",
    "\"*/5 * * * *\"",
    "Mars/Olympus",
    "\"[\"",
    "\"(?P<\"",
    "1",
    "-1",
    "0",
    "true",
    "null",
    "~",
    "[]",
    "{}",
    "'$..x['",
    "\"{{ CREDENTIAL.x }}\"",
    "&anc x",
    "*anc",
    "\"https://graph.microsoft.com/{{ a.id }}\"",
    "\"\\u00e9\"",
    "\"\"",
];

const TEMPLATE_TOKENS: &[&str] = &[
    "w",
    ".w",
    "w.body",
    "[",
    "]",
    "[0]",
    "['k']",
    ".[",
    "|",
    ":",
    ",",
    "'s'",
    "\"",
    "1",
    "..",
    "(",
    ")",
    "default",
    "jsonpath",
    "'$.x'",
    "if",
    "for",
    "in",
    "assign",
    "=",
    "==",
    "and",
    "raw",
    "endraw",
    "comment",
    "credential",
    "CREDENTIAL.x",
    "LOCAL",
    "{{",
    "}}",
    "{%",
    "%}",
    "-",
    "as_object",
    "é",
];

fn yaml_tree() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(VALUES).prop_map(str::to_owned);
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec((prop::sample::select(KEYS), inner.clone()), 0..6).prop_map(|entries| {
                let body: Vec<String> = entries.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", body.join(", "))
            }),
            prop::collection::vec(inner, 0..5).prop_map(|items| format!("[{}]", items.join(", "))),
        ]
    })
}

fn story() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop::sample::select(&["a", "b", "c", "get_alert", "a"][..]),
            yaml_tree(),
        ),
        0..6,
    )
    .prop_map(|actions| {
        let mut s = String::from("name: fuzz\nactions:\n");
        for (slug, body) in actions {
            s.push_str(&format!("  {slug}: {body}\n"));
        }
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_text(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_yaml_never_panics(tree in yaml_tree()) {
        check_text(&tree);
    }

    #[test]
    fn arbitrary_stories_never_panic(story in story()) {
        check_text(&story);
    }

    #[test]
    fn arbitrary_markup_never_panics(tokens in prop::collection::vec(prop::sample::select(TEMPLATE_TOKENS), 0..12), tag in any::<bool>()) {
        let (open, close) = if tag { ("{%", "%}") } else { ("{{", "}}") };
        let t = format!("{open} {} {close}", tokens.join(" "));
        let story = format!("actions:\n  w:\n    type: webhook\n    path: p\n    secret: s\n  t:\n    type: transform\n    mode: message_only\n    from: w\n    payload: {:?}\n", t);
        check_text(&story);
    }

    #[test]
    fn arbitrary_templates_never_panic(t in "[{}%|.a-z: '\"\\[\\]-]{0,40}") {
        let story = format!("actions:\n  w:\n    type: webhook\n    path: p\n    secret: s\n  t:\n    type: transform\n    mode: message_only\n    from: w\n    payload: {:?}\n", t);
        check_text(&story);
    }
}

#[test]
fn hostile_documents_get_a_diagnostic_not_a_hang() {
    let laughs = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
    let deep = format!("actions: {}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_block: String = (0..200).map(|i| format!("{}k{i}:\n", "  ".repeat(i))).collect();
    let huge = format!("name: x\ndescription: \"{}\"\n", "x".repeat(5 * 1024 * 1024));
    for (name, text) in [
        ("laughs", laughs.to_owned()),
        ("deep flow", deep),
        ("deep block", deep_block),
        ("huge", huge),
    ] {
        let files = [SourceFile::new("hostile.yaml", text)];
        let out = check(&files, &[], &tale_actions::Registry, &CheckOptions::default());
        assert!(
            out.diagnostics
                .iter()
                .any(|d| d.code.code() == "E003" || d.code.code() == "E002"),
            "{name}: {:?}",
            out.diagnostics.iter().map(|d| d.code.code()).collect::<Vec<_>>()
        );
    }
}
