//! Story state (`state:` on an action, `STATE.name` in templates): kept in
//! the store with the step's events, so a scheduled poll's watermark
//! survives from run to run (and restarts) in the database.

use crate::mock_server::{Reply, Server};
use crate::support::tale;

const STORY: &str = r#"
name: Poll with a watermark
actions:
  poll:
    type: http_request
    schedule: "*/5 * * * *"
    local:
      since: "{{ STATE.since | default: '2025-01-01T00:00:00Z' }}"
    url: "{{ RESOURCE.api }}/items"
    payload: {since: "{{ LOCAL.since }}"}
    fail_on_status: true
    state:
      since: "{{ poll.body.items | map: 'updated' | sort | last | default: LOCAL.since }}"
  each:
    type: transform
    mode: explode
    from: poll
    path: "{{ poll.body.items | as_object }}"
    to: item
"#;

#[test]
fn a_watermark_in_story_state_survives_from_run_to_run() {
    let api = Server::start();
    api.route(
        "/items",
        vec![
            Reply::json(
                200,
                r#"{"items": [{"updated": "2025-03-02T10:00:00Z"}, {"updated": "2025-03-01T08:00:00Z"}]}"#,
            ),
            // A failed poll leaves the watermark where it was.
            Reply::json(503, r#"{"error": "busy"}"#),
            Reply::json(200, r#"{"items": []}"#),
        ],
    );
    let dir = tempfile::tempdir().expect("tmp");
    let story = dir.path().join("poll.yaml");
    std::fs::write(&story, STORY).expect("story");
    std::fs::write(dir.path().join("resources.yaml"), format!("api: \"{}\"\n", api.url(""))).expect("resources");
    let db = format!("sqlite:{}", dir.path().join("tale.db").display());
    let checked = tale(&["check", story.to_str().expect("p")]);
    assert_eq!(checked.status, 0, "{}{}", checked.stdout, checked.stderr);
    for _ in 0..3 {
        // Each `tale run` is a new process: the state is in the database.
        let _ = tale(&["run", story.to_str().expect("p"), "--action", "poll", "--db", &db]);
    }
    let queries: Vec<String> = api.received().iter().map(|r| r.path_and_query.clone()).collect();
    assert_eq!(
        queries,
        vec![
            "/items?since=2025-01-01T00%3A00%3A00Z",
            "/items?since=2025-03-02T10%3A00%3A00Z",
            "/items?since=2025-03-02T10%3A00%3A00Z",
        ],
        "the first poll starts from the default, later ones from the newest item seen"
    );
}

#[test]
fn check_reports_state_nothing_sets_and_names_templates_cannot_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let story = dir.path().join("s.yaml");
    std::fs::write(
        &story,
        r#"
name: State typos
actions:
  poll:
    type: http_request
    schedule: "0 * * * *"
    url: "https://api.example.com/items?since={{ STATE.sinse }}"
    state:
      since: "{{ poll.body.newest }}"
      Bad-Name: "x"
"#,
    )
    .expect("story");
    let out = tale(&["check", story.to_str().expect("p")]);
    assert_ne!(out.status, 0);
    assert!(
        out.stdout.contains("W406") && out.stdout.contains("did you mean `since`?"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("E109") && out.stdout.contains("`Bad-Name` cannot name story state"),
        "{}",
        out.stdout
    );
}

#[test]
fn state_is_refused_where_there_is_no_event_to_set_it_from() {
    let dir = tempfile::tempdir().expect("tmp");
    let story = dir.path().join("s.yaml");
    std::fs::write(
        &story,
        r#"
name: State misuse
actions:
  hook:
    type: webhook
    path: h
    secret: "{{ CREDENTIAL.hook_secret }}"
    rules:
      - {type: is_present, path: "{{ STATE.seen }}"}
    state:
      seen: "x"
  each:
    type: transform
    mode: explode
    from: hook
    path: "{{ hook.body.items | as_object }}"
    to: item
    state:
      last: "{{ each.item }}"
"#,
    )
    .expect("story");
    let out = tale(&["check", story.to_str().expect("p")]);
    assert_ne!(out.status, 0);
    for needle in [
        "a webhook does not read story state (`STATE.seen`)",
        "`state` (`seen`) cannot be set here",
        "`state` (`last`) cannot be set here",
    ] {
        assert!(out.stdout.contains(needle), "{needle}: {}", out.stdout);
    }
}
