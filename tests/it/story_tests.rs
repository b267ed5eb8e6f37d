//! `tale test`: the runner reports failing expectations with a diff and the
//! right exit code, and reports mocks never called and requests no mock answered.

use serde_json::Value as J;

use crate::support::{root, tale};

const STORY: &str = r#"
name: Alert lookup
actions:
  receive: {type: webhook, path: lookup, secret: s}
  get_alert:
    type: http_request
    from: receive
    url: "{{ RESOURCE.graph_base_url }}/v1.0/security/alerts_v2/{{ receive.body.id }}"
    credential: graph
  is_high:
    type: trigger
    from: get_alert
    rules: [{type: field==value, path: "{{ get_alert.body.severity }}", value: high}]
  summary:
    type: transform
    mode: message_only
    from: is_high
    payload: {id: "{{ get_alert.body.id }}", title: "{{ get_alert.body.title }}"}
"#;

fn write(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    dir
}

const PASSING: &str = r#"
credentials: {graph: test-token}
resources: {graph_base_url: "https://graph.test"}
cases:
  - name: a high alert is summarised
    event: {id: a1}
    mocks:
      - {method: GET, url: "https://graph.test/v1.0/security/alerts_v2/a1", body: {id: a1, severity: high, title: Ransomware}}
    requests:
      - {method: GET, url: "https://graph.test/*", count: 1, headers: {authorization: Bearer test-token}}
    expect:
      summary: [{id: a1, title: Ransomware}]
  - name: a low alert is not
    event: {id: a2}
    mocks:
      - {method: GET, url: "https://graph.test/*", body: {id: a2, severity: low}}
    expect:
      is_high.no_match: {count: 1, jsonpath: {"$.rule_matched": false}}
      summary: never
"#;

#[test]
fn passing_cases_pass() {
    let dir = write(&[("lookup.yaml", STORY), ("lookup.test.yaml", PASSING)]);
    let out = tale(&["test", &dir.path().display().to_string()]);
    assert_eq!(out.status, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("2 passed, 0 failed"), "{}", out.stderr);
}

const FAILING: &str = r#"
credentials: {graph: test-token}
resources: {graph_base_url: "https://graph.test"}
cases:
  - name: wrong expectations
    event: {id: a1}
    mocks:
      - {method: GET, url: "https://graph.test/v1.0/security/alerts_v2/a1", body: {id: a1, severity: high, title: Ransomware}}
      - {method: POST, url: "https://tickets.test/*", status: 201}
    expect:
      summary: [{id: a1, title: Phishing}]
      is_high: never
  - name: no mock for the request
    event: {id: zz}
    expect:
      summary: never
"#;

#[test]
fn failures_show_a_diff_unused_mocks_and_unanswered_requests() {
    let dir = write(&[("lookup.yaml", STORY), ("lookup.test.yaml", FAILING)]);
    let out = tale(&["test", &dir.path().display().to_string()]);
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("0 passed, 2 failed"), "{}", out.stderr);
    let text = &out.stdout;
    assert!(text.contains("`summary` event 1 does not match"), "{text}");
    assert!(
        text.contains("-   \"title\": \"Phishing\"") && text.contains("+   \"title\": \"Ransomware\""),
        "{text}"
    );
    assert!(text.contains("`is_high` emitted 1 event(s), expected never"), "{text}");
    assert!(
        text.contains("the mock of POST https://tickets.test/* was never called"),
        "{text}"
    );
    assert!(
        text.contains("no mock answers GET https://graph.test/v1.0/security/alerts_v2/zz"),
        "{text}"
    );

    let json = tale(&["test", "--format", "json", &dir.path().display().to_string()]);
    let doc: J = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(doc["failed"], 2);
    assert_eq!(doc["cases"][0]["line"], 5, "the case's line in the test file");

    let junit = tale(&["test", "--format", "junit", &dir.path().display().to_string()]);
    assert!(
        junit.stdout.starts_with("<?xml") && junit.stdout.contains("<failure message="),
        "{}",
        junit.stdout
    );
    let github = tale(&["test", "--format", "github", &dir.path().display().to_string()]);
    assert!(
        github
            .stdout
            .lines()
            .all(|l| l.starts_with("::error file=") && l.contains(",line=")),
        "{}",
        github.stdout
    );
}

#[test]
fn filter_and_coverage() {
    let dir = write(&[("lookup.yaml", STORY), ("lookup.test.yaml", PASSING)]);
    let out = tale(&[
        "test",
        "--filter",
        "low alert",
        "--coverage",
        &dir.path().display().to_string(),
    ]);
    assert_eq!(out.status, 0);
    assert!(out.stderr.contains("1 passed, 0 failed"), "{}", out.stderr);
    assert!(out.stderr.contains("not reached: summary"), "{}", out.stderr);
}

#[test]
fn the_shipped_story_tests_pass() {
    let out = tale(&[
        "test",
        &root().join("examples").display().to_string(),
        &root().join("stories").display().to_string(),
    ]);
    assert_eq!(out.status, 0, "{}{}", out.stdout, out.stderr);
}

#[test]
fn update_writes_what_failing_cases_emitted_and_keeps_the_rest_of_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let quickstart = root().join("examples/quickstart");
    for f in ["alert-summary.yaml", "alerts.json"] {
        std::fs::copy(quickstart.join(f), dir.path().join(f)).expect("copy");
    }
    let test = dir.path().join("alert-summary.test.yaml");
    std::fs::write(
        &test,
        "# keep this comment\ncredentials: {quickstart_secret: s}\ncases:\n  - name: stale   # and this one\n    event_file: alerts.json\n    expect:\n      report: [{serious: 99}]\n      is_serious: never\n  - name: fine\n    event_file: alerts.json\n    expect:\n      report: [{serious: 2}]\n",
    )
    .expect("write");
    let path = dir.path().to_str().expect("path");
    assert_eq!(tale(&["test", path]).status, 1);
    let out = tale(&["test", path, "--update"]);
    assert_eq!(out.status, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("updated the expectations of 1 case(s)"),
        "{}",
        out.stderr
    );
    let text = std::fs::read_to_string(&test).expect("read");
    assert!(
        text.contains("# keep this comment") && text.contains("# and this one"),
        "{text}"
    );
    assert!(
        text.contains("report: [{serious: 2}]"),
        "the passing case changed:\n{text}"
    );
    assert!(!text.contains("\"guid\""), "run ids were written:\n{text}");
    // The file now passes as it is.
    assert_eq!(tale(&["test", path]).status, 0);
}

/// `--update` changes only the values of failing checks, in the style they
/// were written in; passing checks and comments stay byte for byte.
#[test]
fn update_keeps_the_files_yaml_style_and_its_passing_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let quickstart = root().join("examples/quickstart");
    for f in ["alert-summary.yaml", "alerts.json"] {
        std::fs::copy(quickstart.join(f), dir.path().join(f)).expect("copy");
    }
    let test = dir.path().join("alert-summary.test.yaml");
    let before = "\
credentials: {quickstart_secret: s}
cases:
  - name: stale
    event_file: alerts.json
    expect:
      is_serious: {count: 3}
      is_serious.no_match: {count: 2}   # passes: stays as written
      summarise:
        - {severity: HIGH, user: wrong@contoso.com}
        - {severity: MEDIUM, user: adele@contoso.com}   # passes too
      report:
        jsonpath:
          $.serious: 7   # wrong
          $.alerts[0].title: Suspicious PowerShell command line
  - name: nothing happens on an empty batch
    event: {value: []}
    expect:
      each_alert:
        - severity: HIGH
";
    std::fs::write(&test, before).expect("write");
    let path = dir.path().to_str().expect("path");
    let out = tale(&["test", path, "--update"]);
    assert_eq!(out.status, 0, "{}{}", out.stdout, out.stderr);
    let after = std::fs::read_to_string(&test).expect("read");
    let expected = before
        .replace("is_serious: {count: 3}", "is_serious: {count: 2}")
        .replace("user: wrong@contoso.com", "user: nathan@contoso.com")
        .replace("$.serious: 7   # wrong", "$.serious: 2   # wrong")
        .replace(
            "      each_alert:\n        - severity: HIGH\n",
            "      each_alert: never\n",
        );
    assert_eq!(after, expected, "only the failing values change");
    assert_eq!(tale(&["test", path]).status, 0);
}

/// A test file is decoded like a story: every mistake at its line and
/// column, with its suggestion, all at once.
#[test]
fn a_broken_test_file_reports_every_mistake_at_its_place() {
    let dir = write(&[
        ("lookup.yaml", STORY),
        (
            "lookup.test.yaml",
            "clock: yesterday\ncases:\n  - name: one\n    evnt: {id: 1}\n  - name: two\n    mocks:\n      - method: get\n        ulr: https://graph.test/*\n    requests:\n      - url: https://graph.test/*\n        nth: first\n        matc: any\n",
        ),
    ]);
    let out = tale(&["test", &dir.path().display().to_string()]);
    assert_eq!(out.status, 1);
    for wanted in [
        "lookup.test.yaml:1:8",
        "`clock` is not a time",
        "lookup.test.yaml:4:5",
        "unknown key `evnt` in test case `one`",
        "did you mean `event`?",
        "lookup.test.yaml:8:9",
        "did you mean `url`?",
        "lookup.test.yaml:11:14",
        "lookup.test.yaml:12:9",
        "did you mean `match`?",
    ] {
        assert!(out.stdout.contains(wanted), "no `{wanted}` in:\n{}", out.stdout);
    }
}

/// `tale run --mocks` reads its file the same way.
#[test]
fn a_broken_mocks_file_names_its_mistakes() {
    let dir = write(&[
        ("lookup.yaml", STORY),
        (
            "mocks.yaml",
            "- method: get\n  url: https://graph.test/*\n  stauts: 404\n",
        ),
        ("event.json", "{}"),
    ]);
    let story = dir.path().join("lookup.yaml");
    let mocks = dir.path().join("mocks.yaml");
    let out = tale(&[
        "dry-run",
        story.to_str().expect("path"),
        "--event",
        dir.path().join("event.json").to_str().expect("path"),
        "--mocks",
        mocks.to_str().expect("path"),
    ]);
    assert_eq!(out.status, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("mocks.yaml:3:3"), "{}", out.stderr);
    assert!(out.stderr.contains("did you mean `status`?"), "{}", out.stderr);
}

#[test]
fn record_writes_a_case_that_passes_and_holds_no_credential() {
    use crate::mock_server::{Reply, Server};
    let graph = Server::start();
    graph.route(
        "/v1.0/security/alerts_v2/a9",
        vec![Reply::json(
            200,
            r#"{"id": "a9", "severity": "high", "title": "Ransomware", "echo": "token-s3cr3t-value"}"#,
        )],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        root().join("stories/graph-alert.yaml"),
        dir.path().join("graph-alert.yaml"),
    )
    .expect("copy");
    let event = dir.path().join("event.json");
    std::fs::write(&event, r#"{"alert_id": "a9"}"#).expect("event");
    let record = |name: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tale"))
            .arg("record")
            .arg(dir.path().join("graph-alert.yaml"))
            .arg("--event")
            .arg(&event)
            .args(["--name", name])
            .env("TALE_CREDENTIAL_GRAPH", "token-s3cr3t-value")
            .env("TALE_CREDENTIAL_SUBSTORY_WEBHOOK_SECRET", "sub-secret")
            .env("TALE_RESOURCE_GRAPH_BASE_URL", graph.url(""))
            .output()
            .expect("tale record")
    };
    let out = record("first");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("recorded 1 request(s)"));
    let out = record("second");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(dir.path().join("graph-alert.test.yaml")).expect("test file");
    assert!(
        !text.contains("token-s3cr3t-value"),
        "a credential was written:\n{text}"
    );
    assert!(text.contains("[credential:graph]"), "{text}");
    // Both cases replay without a network, and pass.
    let replay = tale(&["test", dir.path().to_str().expect("path")]);
    assert_eq!(replay.status, 0, "{}{}\n{text}", replay.stdout, replay.stderr);
    assert!(
        replay.stderr.contains("2 passed") || replay.stdout.contains("2 passed"),
        "{}{}",
        replay.stdout,
        replay.stderr
    );
}

/// `expect:` names outputs: `slug` is the main output only, `slug.no_match`
/// and `slug.failure` a branch; a branch the action lacks is an error.
#[test]
fn expectations_name_the_output_they_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("s.yaml"),
        "name: S\nactions:\n  hook: {type: webhook, path: s}\n  each:\n    type: transform\n    mode: explode\n    from: hook\n    path: \"{{ hook.body.items | as_object }}\"\n    to: item\n  high:\n    type: trigger\n    from: each\n    rules: [{type: field==value, path: \"{{ each.item }}\", value: high}]\n",
    )
    .expect("story");
    let case = |expect: &str| {
        std::fs::write(
            dir.path().join("s.test.yaml"),
            format!("cases:\n  - name: c\n    event: {{items: [high, low, low]}}\n    expect:\n{expect}"),
        )
        .expect("test");
        crate::support::tale(&["test", dir.path().to_str().expect("dir")])
    };
    let ok = case("      high: {count: 1}\n      high.no_match: {count: 2}\n");
    assert_eq!(ok.status, 0, "{}", ok.stdout);
    // The old reading (branches counted in) now fails.
    let mixed = case("      high: {count: 3}\n");
    assert_eq!(mixed.status, 1);
    assert!(
        mixed.stdout.contains("`high` emitted 1 event(s), expected 3"),
        "{}",
        mixed.stdout
    );
    let unknown = case("      high.failure: never\n");
    assert_eq!(unknown.status, 1);
    assert!(
        unknown
            .stdout
            .contains("`high` has no `failure` branch (its branches are `no_match`)"),
        "{}",
        unknown.stdout
    );
}

/// Request assertions check every matching request by default; `nth:`
/// picks one, `match: any` needs one to pass.
#[test]
fn request_assertions_pick_one_request_or_any() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("r.yaml"),
        "name: R\nactions:\n  hook: {type: webhook, path: r}\n  each:\n    type: transform\n    mode: explode\n    from: hook\n    path: \"{{ hook.body.ids | as_object }}\"\n    to: id\n  call:\n    type: http_request\n    from: each\n    method: post\n    url: https://api.test/items\n    payload: {id: \"{{ each.id }}\"}\n",
    )
    .expect("story");
    let case = |requests: &str| {
        std::fs::write(
            dir.path().join("r.test.yaml"),
            format!(
                "cases:\n  - name: c\n    event: {{ids: [a, b, c]}}\n    mocks:\n      - {{method: POST, url: \"https://api.test/*\"}}\n    requests:\n{requests}"
            ),
        )
        .expect("test");
        crate::support::tale(&["test", dir.path().to_str().expect("dir")])
    };
    let every = case("      - {method: POST, url: \"https://api.test/*\", count: 3, body: {id: b}}\n");
    assert_eq!(every.status, 1, "every request must contain id b: {}", every.stdout);
    let nth = case("      - {method: POST, url: \"https://api.test/*\", nth: 2, body: {id: b}}\n");
    assert_eq!(nth.status, 0, "{}", nth.stdout);
    let any = case("      - {method: POST, url: \"https://api.test/*\", match: any, body: {id: c}}\n");
    assert_eq!(any.status, 0, "{}", any.stdout);
    let none = case("      - {method: POST, url: \"https://api.test/*\", match: any, body: {id: z}}\n");
    assert_eq!(none.status, 1);
    assert!(none.stdout.contains("none of the 3 request(s)"), "{}", none.stdout);
    let missing = case("      - {method: POST, url: \"https://api.test/*\", nth: 5}\n");
    assert!(missing.stdout.contains("no request #5"), "{}", missing.stdout);
}
