//! `tale import` over the 89 published Tines exports of the shared corpus
//! (copied into tests/data/tines-exports): how many come out as stories
//! `tale check` accepts (warnings allowed) may only go up; every import
//! writes its report and tale.env; nothing is dropped silently.

use crate::support::{root, tale};

/// `tale import EXPORT --out DIR`, which must succeed.
fn import(export: &std::path::Path, out: &std::path::Path) {
    let imported = tale(&[
        "import",
        export.to_str().expect("path"),
        "--out",
        out.to_str().expect("path"),
    ]);
    assert_eq!(imported.status, 0, "{}: {}", export.display(), imported.stderr);
}

/// Stories of the corpus that import and check clean today; raise it when
/// the importer gets better, never lower it.
const CHECKED_AT_LEAST: usize = 72;

#[test]
fn the_tines_corpus_imports_and_checks() {
    let corpus = root().join("tests/data/tines-exports");
    let mut exports: Vec<_> = std::fs::read_dir(&corpus)
        .expect("the corpus")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    exports.sort();
    assert_eq!(exports.len(), 89, "the shared corpus has 89 exports");
    let mut clean = 0;
    let mut failing = Vec::new();
    for export in &exports {
        let dir = tempfile::tempdir().expect("tmp");
        import(export, dir.path());
        assert!(dir.path().join("import-report.md").exists());
        assert!(dir.path().join("tale.env").exists());
        let checked = tale(&["check", dir.path().to_str().expect("path")]);
        if checked.status == 0 {
            clean += 1;
        } else {
            failing.push(
                export
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
        }
    }
    eprintln!(
        "{clean} of {} exports import and check clean; failing: {failing:?}",
        exports.len()
    );
    assert!(
        clean >= CHECKED_AT_LEAST,
        "{clean} < {CHECKED_AT_LEAST}: the importer got worse"
    );
}

/// A small export of the Liquid era with the cases the importer rewrites:
/// duplicate names, a trigger with `emit_no_match`, a loop, a legacy
/// message_only, a self-call, a template input, a name that is no action.
const EXPORT: &str = r#"{
  "schema_version": 3, "name": "Mini Triage", "guid": "g0",
  "agents": [
    {"type": "Agents::WebhookAgent", "name": "Receive Alerts", "guid": "g1",
     "options": {"secret": "REDACTED", "verbs": "get,post"}},
    {"type": "Agents::EventTransformationAgent", "name": "Explode Alerts", "guid": "g2",
     "options": {"mode": "explode", "path": "{{.receive_alerts.body.alerts}}", "to": "alert", "expected_update_period_in_days": "2"}},
    {"type": "Agents::TriggerAgent", "name": "Is High", "guid": "g3",
     "options": {"rules": [{"type": "regex", "path": "{{.explode_alerts.alert.severity}}", "value": "HIGH"}], "emit_no_match": "true"}},
    {"type": "Agents::EventTransformationAgent", "name": "Summary", "guid": "g4",
     "options": {"mode": "message_only", "id": "{{.explode_alerts.alert.id}}", "high": "{{.is_high.rule_matched}}",
                 "owner": "<<INPUT.owner>>", "ghost": "{{.somekey.x}}"}},
    {"type": "Agents::EventTransformationAgent", "name": "Summary", "guid": "g5",
     "options": {"mode": "message_only", "payload": {"again": "{{.summary.id}}"}}},
    {"type": "Agents::SendToStoryAgent", "name": "Test Me", "guid": "g6",
     "options": {"story": "{% story Mini Triage %}", "payload": {"alerts": [{"id": 1}]}}},
    {"type": "Agents::EventTransformationAgent", "name": "Back To Start", "guid": "g7",
     "options": {"mode": "delay", "seconds": "5"}}
  ],
  "links": [{"source": 0, "receiver": 1}, {"source": 1, "receiver": 2}, {"source": 2, "receiver": 3},
            {"source": 3, "receiver": 4}, {"source": 4, "receiver": 6}, {"source": 6, "receiver": 1}],
  "entry_agent_guid": "g1", "exit_agent_guids": [], "send_to_stories": []
}"#;

#[test]
fn an_export_becomes_a_story_that_runs_as_tines_would() {
    let dir = tempfile::tempdir().expect("tmp");
    let export = dir.path().join("mini.json");
    std::fs::write(&export, EXPORT).expect("write");
    let out_dir = dir.path().join("out");
    import(&export, &out_dir);
    let story = std::fs::read_to_string(out_dir.join("mini-triage.yaml")).expect("the story");
    let report = std::fs::read_to_string(out_dir.join("import-report.md")).expect("the report");
    let env = std::fs::read_to_string(out_dir.join("tale.env")).expect("tale.env");
    // The second "Summary" is `summary_2`, and reads the first, its nearest namesake upstream.
    assert!(
        story.contains("summary_2:") && story.contains("again: \"{{.summary.id}}\""),
        "{story}"
    );
    // `emit_no_match`: both outcomes go down the link.
    assert!(story.contains("- is_high\n    - is_high.no_match"), "{story}");
    // The loop back to the explode is left out, and said.
    assert!(report.contains("closes a loop"), "{report}");
    // The self-call is left out; a template input is a resource; a name that is no action renders empty.
    assert!(report.contains("a call to this very story"), "{report}");
    assert!(
        story.contains("RESOURCE.input_owner") && env.contains("TALE_RESOURCE_INPUT_OWNER="),
        "{story}\n{env}"
    );
    assert!(
        story.contains("ghost: \"{{nil}}\"") && report.contains("`somekey` is not an action upstream"),
        "{story}\n{report}"
    );
    // Options tale does not need are not reported; the webhook secret is a credential to set.
    assert!(!report.contains("expected_update_period_in_days"));
    assert!(env.contains("TALE_CREDENTIAL_MINI_TRIAGE_WEBHOOK_SECRET="), "{env}");
    let checked = tale(&["check", out_dir.to_str().expect("p")]);
    assert_eq!(checked.status, 0, "{}{}", checked.stdout, checked.stderr);
    // The test action is a case of the story's tests, which runs.
    let tests = std::fs::read_to_string(out_dir.join("mini-triage.test.yaml")).expect("the test file");
    assert!(tests.contains("Tines test action: Test Me"), "{tests}");
    let tested = tale(&["test", out_dir.to_str().expect("p")]);
    assert_eq!(tested.status, 0, "{}{}", tested.stdout, tested.stderr);

    // Run as Tines documents it: explode one event per alert, the regex
    // rule ignores case, both outcomes reach the summary with rule_matched.
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        r#"{"alerts": [{"id": "a1", "severity": "high"}, {"id": "a2", "severity": "low"}]}"#,
    )
    .expect("w");
    let run = tale(&[
        "dry-run",
        out_dir.join("mini-triage.yaml").to_str().expect("p"),
        "--event",
        event.to_str().expect("p"),
        "--format",
        "json",
    ]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let summaries: Vec<&serde_json::Value> = report["trace"]
        .as_array()
        .expect("trace")
        .iter()
        .filter(|t| t["action"] == "summary")
        .flat_map(|t| t["emitted"].as_array().into_iter().flatten())
        .map(|e| &e["output"])
        .collect();
    assert_eq!(summaries.len(), 2, "{}", run.stdout);
    assert_eq!(summaries[0]["id"], "a1");
    assert_eq!(summaries[0]["high"], "true");
    assert_eq!(summaries[1]["high"], "false");
    assert_eq!(summaries[0]["ghost"], "");
}

/// Ten stories of the corpus, imported and run on hand-written events and
/// mocks: `tests/data/import-runs/<export>.tines.test.yaml` holds the cases,
/// whose expected outputs follow Tines' documented semantics (written from
/// its documentation and the export, not from tale's output).
#[test]
fn imported_corpus_stories_run_as_tines_documents() {
    let runs = root().join("tests/data/import-runs");
    let mut cases: Vec<_> = std::fs::read_dir(&runs)
        .expect("tests/data/import-runs")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".tines.test.yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "ten imported stories are run, found {}", cases.len());
    for case in &cases {
        let name = case
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = name.trim_end_matches(".tines.test.yaml");
        let export = root().join("tests/data/tines-exports").join(format!("{stem}.json"));
        let dir = tempfile::tempdir().expect("tmp");
        import(&export, dir.path());
        let test = dir.path().join(&name);
        std::fs::copy(case, &test).expect("copy the cases");
        let tested = tale(&["test", test.to_str().expect("path")]);
        assert_eq!(tested.status, 0, "{stem}:\n{}{}", tested.stdout, tested.stderr);
    }
}

/// The boilerplate of every action Tines builds from its template library:
/// the options in `local`, then a formula that drops the empty ones
/// (`REJECT` over an object keeps an object, as Tines documents; `false` and
/// numbers are kept: `TYPE` routes them to `IS_EMPTY(TEXT(x))`).
#[test]
fn a_template_actions_reject_boilerplate_computes_what_tines_does() {
    let export = r#"{
      "schema_version": 27, "name": "Boilerplate", "guid": "b0",
      "agents": [
        {"type": "Agents::WebhookAgent", "name": "Receive", "guid": "b1", "options": {"path": "p", "secret": "s"}},
        {"type": "Agents::EventTransformationAgent", "name": "Build Message", "guid": "b2",
         "options": {"mode": "message_only",
           "local": {
             "all_options": {"channel": "<<receive.body.channel>>", "text": "hi", "icon_emoji": "",
                             "mrkdwn": false, "n": 3, "nothing": null, "list": "=receive.body.tags"},
             "final_payload": "=REJECT(\n  LOCAL.all_options,\n  LAMBDA(\n    item,\n    OR(\n      item = NULL,\n      IF(\n        OR(\n          TYPE(item) = \"TrueClass\",\n          TYPE(item) = \"FalseClass\",\n          TYPE(item) = \"Integer\"\n        ),\n        IS_EMPTY(TEXT(item)),\n        IS_EMPTY(item)\n      )\n    )\n  )\n)"
           },
           "payload": {"message": "=LOCAL.final_payload", "kept": "=SIZE(REJECT(receive.body.tags, LAMBDA(t, IS_EMPTY(t))))"}}}
      ],
      "links": [{"source": 0, "receiver": 1}],
      "entry_agent_guid": "b1", "exit_agent_guids": [], "send_to_stories": []
    }"#;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("boilerplate.json");
    std::fs::write(&path, export).expect("write");
    let out_dir = dir.path().join("out");
    import(&path, &out_dir);
    let event = dir.path().join("event.json");
    std::fs::write(&event, r#"{"channel": "C1", "tags": ["a", "", "b"]}"#).expect("w");
    let run = tale(&[
        "run",
        out_dir.join("boilerplate.yaml").to_str().expect("p"),
        "--event",
        event.to_str().expect("p"),
    ]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let events = crate::support::json_lines(&run.stdout);
    let built = crate::support::output_of(&events, "build_message").expect("build_message ran");
    assert_eq!(
        built["message"],
        serde_json::json!({"channel": "C1", "text": "hi", "mrkdwn": false, "n": 3, "list": ["a", "", "b"]}),
        "{built}"
    );
    assert_eq!(built["kept"], serde_json::json!(2));
}
