//! The Data Collector API story against a mock that verifies the SharedKey
//! signature the way Azure does (recomputed from the bytes received; 403 on a
//! mismatch), run as a user runs it: `tale run` with credentials and
//! resources from the environment.

use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value as J, json};

const WORKSPACE: &str = "0f2a6c1e-5d4b-4a3c-9e8f-7a6b5c4d3e2f";
/// Base64 of the bytes 0x00..0x3F (the fixture vectors' key).
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";

type Seen = Arc<Mutex<Vec<(u16, String)>>>;

/// Azure's check, from `tests/data/fixtures/datacollector-signature-vectors.json`.
fn signature(key_b64: &str, content_length: usize, date: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD.decode(key_b64).expect("key");
    let sts = format!("POST\n{content_length}\napplication/json\nx-ms-date:{date}\n/api/logs");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("hmac");
    mac.update(sts.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

async fn logs(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let expected = format!(
        "SharedKey {WORKSPACE}:{}",
        signature(KEY, body.len(), &header("x-ms-date"))
    );
    let (status, answer) = if header("content-type") != "application/json" {
        (
            400,
            json!({"Error": "UnsupportedContentType", "Message": "send application/json"}),
        )
    } else if header("authorization") != expected {
        (
            403,
            json!({"Error": "InvalidAuthorization", "Message": "An invalid scheme was specified in the Authorization header"}),
        )
    } else if header("log-type").is_empty() {
        (
            400,
            json!({"Error": "MissingLogType", "Message": "The log type is missing"}),
        )
    } else {
        (200, J::Null)
    };
    seen.lock()
        .expect("seen")
        .push((status, String::from_utf8_lossy(&body).into_owned()));
    let text = if answer.is_null() {
        String::new()
    } else {
        answer.to_string()
    };
    (StatusCode::from_u16(status).expect("status"), text)
}

fn start_mock() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let state = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let app = Router::new().route("/api/logs", post(logs)).with_state(state);
            let _ = axum::serve(listener, app).await;
        });
    });
    (format!("http://{addr}"), seen)
}

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

fn output_of<'a>(events: &'a [J], action: &str) -> Option<&'a J> {
    events.iter().find(|e| e["action"] == action).map(|e| &e["output"])
}

#[test]
fn the_signature_is_accepted_by_a_verifying_mock() {
    assert_eq!(
        signature(KEY, 99, "Tue, 14 Jan 2025 09:30:00 GMT"),
        "xDR8qes+k6yy1VlrHUk6yCBqEyE3RC3gB2+f23hKo6E=",
        "the mock's own check disagrees with the fixture vectors"
    );
    let (base, seen) = start_mock();
    let records = json!([
        {"City": "München", "User": "jörg@contoso.com", "FailedSignIns": 12},
        {"City": "Zürich", "User": "zoë@contoso.com", "FailedSignIns": 3}
    ]);
    let (status, events) = run_story(&base, KEY, &json!({"log_type": "SignIns", "records": records}));
    assert_eq!(status, 0);
    let sent = output_of(&events, "records_sent").expect("records_sent");
    assert_eq!(sent, &json!({"ok": true, "records_sent": 2, "log_type": "SignIns"}));
    let seen = seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, 200, "the mock refused the signature");
    assert_eq!(serde_json::from_str::<J>(&seen[0].1).expect("json body"), records);
}

#[test]
fn a_wrong_key_gets_403_and_the_caller_a_structured_error() {
    let (base, seen) = start_mock();
    let wrong = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    let (status, events) = run_story(&base, &wrong, &json!({"log_type": "SignIns", "records": [{"a": 1}]}));
    assert_eq!(status, 0, "a failure branch is a normal outcome");
    let failed = output_of(&events, "send_failed").expect("send_failed");
    assert_eq!(failed["status"], 403);
    assert_eq!(failed["error"]["code"], "InvalidAuthorization");
    assert_eq!(seen.lock().expect("seen")[0].0, 403);
    assert!(
        !events.iter().any(|e| e.to_string().contains(&wrong)),
        "the key leaked into an event"
    );
}
