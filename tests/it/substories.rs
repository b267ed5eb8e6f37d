//! `send_to_story` at run time: inputs, exits, failures, depth, traces.

use serde_json::{Value as J, json};

use crate::support::{output_of, tale};

const SUB: &str = r#"
name: Enrich user
entry: receive
exits: [answer]
inputs:
  upn: {type: string, required: true}
  days: {type: number}
actions:
  receive: {type: webhook, path: enrich-user, secret: s}
  known:
    type: trigger
    from: receive
    rules: [{type: regex, path: "{{ receive.body.upn }}", value: "@contoso\\.com$"}]
  answer:
    type: transform
    mode: message_only
    from: known
    payload: {upn: "{{ receive.body.upn }}", risk: low, days: "{{ receive.body.days | default: 7 | as_object }}"}
"#;

const CALLER: &str = r#"
name: Triage
actions:
  receive: {type: webhook, path: triage, secret: s}
  enrich:
    type: send_to_story
    from: receive
    story: enrich-user
    payload: {upn: "{{ receive.body.user }}", days: "{{ receive.body.days | as_object }}"}
  enriched:
    type: transform
    mode: message_only
    from: enrich
    payload: {summary: "{{ enrich.upn }}: {{ enrich.risk }} over {{ enrich.days }} days"}
  not_enriched:
    type: transform
    mode: message_only
    from: enrich.failure
    payload: {error: "{{ enrich.error }}"}
"#;

fn run(dir: &tempfile::TempDir, story: &str, event: &str) -> (u8, Vec<J>, String) {
    let event_path = dir.path().join("event.json");
    std::fs::write(&event_path, event).expect("event");
    let path = dir.path().join(story).display().to_string();
    let out = tale(&["run", &path, "--event", &event_path.display().to_string()]);
    (out.status, crate::support::json_lines(&out.stdout), out.stderr)
}

fn library() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("enrich-user.yaml"), SUB).expect("sub");
    std::fs::write(dir.path().join("triage.yaml"), CALLER).expect("caller");
    dir
}

#[test]
fn the_output_is_the_exit_that_fired() {
    let dir = library();
    let (status, events, stderr) = run(&dir, "triage.yaml", r#"{"user":"adele@contoso.com","days":30}"#);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(
        output_of(&events, "enrich"),
        Some(&json!({"upn": "adele@contoso.com", "risk": "low", "days": 30}))
    );
    assert_eq!(
        output_of(&events, "enriched"),
        Some(&json!({"summary": "adele@contoso.com: low over 30 days"}))
    );
    // The called run's events are its own: `tale run` prints the caller's.
    assert!(events.iter().all(|e| e["story"] == "triage"), "{events:?}");
}

#[test]
fn inputs_are_validated_and_failures_take_the_failure_branch() {
    let dir = library();
    let (status, events, _) = run(&dir, "triage.yaml", r#"{"days":30}"#);
    assert_eq!(status, 0);
    let error = output_of(&events, "not_enriched")
        .and_then(|o| o["error"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("required input `upn`"), "{error}");

    let (_, events, _) = run(&dir, "triage.yaml", r#"{"user":"adele@contoso.com","days":"thirty"}"#);
    let error = output_of(&events, "not_enriched")
        .and_then(|o| o["error"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("input `days`") && error.contains("number"), "{error}");

    // The sub-story runs but its trigger stops it before the exit.
    let (_, events, _) = run(&dir, "triage.yaml", r#"{"user":"eve@evil.net"}"#);
    let error = output_of(&events, "not_enriched")
        .and_then(|o| o["error"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("ended without reaching an exit"), "{error}");
}

#[test]
fn calls_that_loop_at_run_time_stop_at_the_depth_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The target is a template, so `check` cannot see the loop.
    let looping = r#"
name: Loop
entry: receive
exits: [done]
actions:
  receive: {type: webhook, path: loop, secret: s}
  again:
    type: send_to_story
    from: receive
    story: "{{ receive.body.next }}"
    payload: {next: "{{ receive.body.next }}"}
  done:
    type: transform
    mode: message_only
    from: again
    payload: {ok: true}
  stopped:
    type: transform
    mode: message_only
    from: again.failure
    payload: {error: "{{ again.error }}"}
"#;
    std::fs::write(dir.path().join("loop.yaml"), looping).expect("story");
    let (status, _, stderr) = run(&dir, "loop.yaml", r#"{"next":"loop"}"#);
    assert_eq!(status, 1, "the run fails");
    assert!(stderr.contains("deeper than 16"), "{stderr}");
}

/// `tale dry-run triage.yaml --format json` for Adele.
fn dry_run_triage(dir: &tempfile::TempDir) -> crate::support::Output {
    let event = dir.path().join("event.json");
    std::fs::write(&event, r#"{"user":"adele@contoso.com"}"#).expect("event");
    tale(&[
        "dry-run",
        &dir.path().join("triage.yaml").display().to_string(),
        "--event",
        &event.display().to_string(),
        "--format",
        "json",
    ])
}

#[test]
fn a_dry_run_traces_the_sub_run() {
    let dir = library();
    let out = dry_run_triage(&dir);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let doc: J = serde_json::from_str(&out.stdout).expect("json");
    let call = doc["trace"]
        .as_array()
        .and_then(|t| t.iter().find(|e| e["action"] == "enrich"))
        .expect("enrich traced");
    let sub = &call["requests"][0];
    assert_eq!(sub["sub_story"], "enrich-user");
    let actions: Vec<&str> = sub["trace"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["action"].as_str())
        .collect();
    assert_eq!(actions, ["known", "answer"]);
}

/// A dry run gives the sub-stories' credentials stand-ins too: a sub-story
/// that reads a credential nobody set still renders (as `[credential:x]`).
#[test]
fn a_dry_run_gives_sub_story_credentials_stand_ins() {
    let dir = library();
    let sub = SUB.replace("risk: low,", "risk: low, key: \"{{ CREDENTIAL.never_set_anywhere }}\",");
    std::fs::write(dir.path().join("enrich-user.yaml"), sub).expect("sub");
    let out = dry_run_triage(&dir);
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(out.stdout.contains("[credential:never_set_anywhere]"), "{}", out.stdout);
}

/// A sub-story whose request fails with nothing following its `failure`
/// branch ends without an exit: in memory too, the caller takes its own
/// `failure` branch with the reason.
#[test]
fn a_sub_storys_unhandled_failure_is_the_callers_failure_branch() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("enrich-user.yaml"),
        "name: Enrich user\nentry: receive\nexits: [answer]\nactions:\n  receive: {type: webhook, path: enrich-user, secret: s}\n  fetch:\n    type: http_request\n    from: receive\n    url: http://127.0.0.1:9/\n  answer:\n    type: transform\n    mode: message_only\n    from: fetch\n    payload: {upn: x, risk: low, days: 1}\n",
    )
    .expect("sub");
    std::fs::write(dir.path().join("triage.yaml"), CALLER).expect("caller");
    let (status, events, stderr) = run(&dir, "triage.yaml", r#"{"user":"adele@contoso.com","days":30}"#);
    assert_eq!(status, 0, "handled by the caller: {stderr}");
    let error = output_of(&events, "not_enriched")
        .and_then(|o| o["error"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("ended without reaching an exit") && error.contains("fetch:"),
        "{error}"
    );
}
