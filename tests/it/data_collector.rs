//! The Data Collector API story against the Microsoft mock, which verifies
//! the SharedKey signature the way Azure does (recomputed from the bytes received; 403 on a
//! mismatch), run as a user runs it: `tale run` with credentials and
//! resources from the environment.

use std::process::Command;

use base64::Engine as _;
use serde_json::{Value as J, json};

use crate::microsoft_mock::{MicrosoftMock, SHARED_KEY as KEY, WORKSPACE, signature};
use crate::support::output_of;

fn run_story(base: &str, key: &str, event: &J) -> (i32, Vec<J>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let event_path = dir.path().join("event.json");
    std::fs::write(&event_path, event.to_string()).expect("event");
    let root = crate::support::root();
    let out = Command::new(env!("CARGO_BIN_EXE_tale"))
        .arg("run")
        .arg(root.join("stories/data-collector.yaml"))
        .arg("--event")
        .arg(&event_path)
        .env("TALE_CREDENTIAL_LOG_ANALYTICS_SHARED_KEY", key)
        .env("TALE_CREDENTIAL_SUBSTORY_WEBHOOK_SECRET", "unused-here")
        .env("TALE_RESOURCE_DATA_COLLECTOR_BASE_URL", base)
        .env("TALE_RESOURCE_LOG_ANALYTICS_WORKSPACE_ID", WORKSPACE)
        .output()
        .expect("tale run");
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    (out.status.code().unwrap_or(-1), events)
}

#[test]
fn the_signature_is_accepted_by_a_verifying_mock() {
    assert_eq!(
        signature(KEY, 99, "Tue, 14 Jan 2025 09:30:00 GMT"),
        "xDR8qes+k6yy1VlrHUk6yCBqEyE3RC3gB2+f23hKo6E=",
        "the mock's own check disagrees with the fixture vectors"
    );
    let mock = MicrosoftMock::start();
    let records = json!([
        {"City": "München", "User": "jörg@contoso.com", "FailedSignIns": 12},
        {"City": "Zürich", "User": "zoë@contoso.com", "FailedSignIns": 3}
    ]);
    let (status, events) = run_story(&mock.url, KEY, &json!({"log_type": "SignIns", "records": records}));
    assert_eq!(status, 0);
    let sent = output_of(&events, "records_sent").expect("records_sent");
    assert_eq!(sent, &json!({"ok": true, "records_sent": 2, "log_type": "SignIns"}));
    let seen = mock.uploads();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, 200, "the mock refused the signature");
    assert_eq!(serde_json::from_str::<J>(&seen[0].1).expect("json body"), records);
}

#[test]
fn a_wrong_key_gets_403_and_the_caller_a_structured_error() {
    let mock = MicrosoftMock::start();
    let wrong = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    let (status, events) = run_story(
        &mock.url,
        &wrong,
        &json!({"log_type": "SignIns", "records": [{"a": 1}]}),
    );
    assert_eq!(status, 0, "a failure branch is a normal outcome");
    let failed = output_of(&events, "send_failed").expect("send_failed");
    assert_eq!(failed["status"], 403);
    assert_eq!(failed["error"]["code"], "InvalidAuthorization");
    assert_eq!(mock.uploads()[0].0, 403);
    assert!(
        !events.iter().any(|e| e.to_string().contains(&wrong)),
        "the key leaked into an event"
    );
}
