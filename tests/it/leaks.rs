//! The leak test: stories that send, echo, encode and fail with a credential,
//! served by `tale serve` against an echoing server on 127.0.0.1; afterwards
//! the credential (raw, base64, URL-encoded) appears nowhere: not in the logs,
//! the SQLite file's bytes, the API's answers, `/metrics`, `tale events`, or
//! a dry run's trace.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use base64::Engine as _;
use serde_json::{Value as J, json};

const SECRET: &str = "leaky-Secret-9a8b7c6d";

/// Answers every request with everything it received: headers, query, body.
fn start_echo() -> String {
    let app = Router::new().fallback(|uri: axum::http::Uri, headers: HeaderMap, body: Bytes| async move {
        let headers: serde_json::Map<String, J> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), J::String(String::from_utf8_lossy(v.as_bytes()).into())))
            .collect();
        let status = if uri.path().starts_with("/fail") { 500 } else { 200 };
        (
            axum::http::StatusCode::from_u16(status).expect("status"),
            [(
                "x-echo-authorization",
                headers
                    .get("authorization")
                    .and_then(J::as_str)
                    .unwrap_or("")
                    .to_owned(),
            )],
            axum::Json(json!({
                "uri": uri.to_string(),
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
            })),
        )
    });
    let addr = crate::mock_server::spawn_router(app);
    format!("http://{addr}")
}

fn story(echo: &str) -> String {
    format!(
        r#"name: Leaky
actions:
  hook:
    type: webhook
    path: leaky
    secret: "{{{{ CREDENTIAL.api }}}}"
    max_body_bytes: 4194304
  send:
    type: http_request
    from: hook
    method: post
    url: "{echo}/echo?token={{{{ CREDENTIAL.api }}}}"
    credential: api
    headers:
      X-Basic: "Basic {{{{ 'user:' | append: CREDENTIAL.api | base64_encode }}}}"
    payload:
      raw: "{{{{ CREDENTIAL.api }}}}"
      b64: "{{{{ CREDENTIAL.api | base64_encode }}}}"
      url: "{{{{ CREDENTIAL.api | url_encode }}}}"
  copy:
    type: transform
    mode: message_only
    from: send
    payload:
      echoed: "{{{{ send.body | as_object }}}}"
      text: "the token is {{{{ CREDENTIAL.api }}}}"
  fail:
    type: http_request
    from: send
    url: "{echo}/fail?token={{{{ CREDENTIAL.api }}}}"
    fail_on_status: true
  broken:
    type: transform
    mode: message_only
    from: send
    payload:
      boom: "{{{{ CREDENTIAL.api | plus: 'x' }}}}"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_value_survives_anywhere() {
    let echo = start_echo();
    let dir = tempfile::tempdir().expect("tempdir");
    let stories = dir.path().join("stories");
    std::fs::create_dir_all(&stories).expect("mkdir");
    std::fs::write(stories.join("leaky.yaml"), story(&echo)).expect("story");
    let port = crate::support::free_port();
    let db = dir.path().join("tale.db");
    let log = dir.path().join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tale"))
        .args(["serve", "--stories"])
        .arg(&stories)
        .arg("--db")
        .arg(format!("sqlite:{}", db.display()))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--watch",
            "0s",
            "--log-format",
            "json",
        ])
        .env("TALE_CREDENTIAL_API", SECRET)
        .env("TALE_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("serve");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    crate::serve::wait_ready(port).await;
    // Delivered with the secret in the path, and refused with a wrong one.
    let r = http
        .post(format!("{base}/webhook/leaky/{SECRET}"))
        .json(&json!({"note": format!("the sender also put {SECRET} in the body")}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    // Bodies over 1 MiB are stored as their text, not parsed: the secret in
    // one, as it is or only behind `\u` escapes, is hidden all the same.
    let escaped: String = SECRET.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
    let pad = "x".repeat(1 << 20);
    for large in [
        format!(r#"{{"pad": "{pad}", "note": "also {SECRET} here"}}"#),
        format!(r#"{{"pad": "{pad}", "hidden": "{escaped}"}}"#),
    ] {
        let r = http
            .post(format!("{base}/webhook/leaky/{SECRET}"))
            .header("content-type", "application/json")
            .body(large)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
    }
    let r = http
        .post(format!("{base}/webhook/leaky/wrong"))
        .json(&json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401);
    let mut answers = String::new();
    let start = Instant::now();
    loop {
        let runs: J = http
            .get(format!("{base}/api/runs"))
            .send()
            .await
            .expect("runs")
            .json()
            .await
            .expect("json");
        if runs["runs"][0]["status"] != "running" && runs["runs"][0].is_object() {
            answers.push_str(&runs.to_string());
            let id = runs["runs"][0]["id"].as_str().expect("id").to_owned();
            answers.push_str(
                &http
                    .get(format!("{base}/api/runs/{id}/events"))
                    .send()
                    .await
                    .expect("events")
                    .text()
                    .await
                    .expect("text"),
            );
            answers.push_str(
                &http
                    .get(format!("{base}/api/runs/{id}"))
                    .send()
                    .await
                    .expect("run")
                    .text()
                    .await
                    .expect("text"),
            );
            let events = Command::new(env!("CARGO_BIN_EXE_tale"))
                .args(["events", &id, "--db", &format!("sqlite:{}", db.display())])
                .output()
                .expect("tale events");
            answers.push_str(&String::from_utf8_lossy(&events.stdout));
            // Every run's events as `tale events` prints them (parsed: a
            // secret stored behind `\u` escapes would show here).
            for run in runs["runs"].as_array().into_iter().flatten() {
                let events = Command::new(env!("CARGO_BIN_EXE_tale"))
                    .args(["events", run["id"].as_str().unwrap_or_default()])
                    .args(["--db", &format!("sqlite:{}", db.display())])
                    .output()
                    .expect("tale events");
                answers.push_str(&String::from_utf8_lossy(&events.stdout));
            }
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the run did not finish: {runs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    answers.push_str(
        &http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text"),
    );
    answers.push_str(
        &http
            .get(format!("{base}/api/stories"))
            .send()
            .await
            .expect("stories")
            .text()
            .await
            .expect("text"),
    );
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let _ = child.wait();
    // The run really carried the secret where it was supposed to go.
    assert!(
        answers.contains("[credential:api]"),
        "nothing was redacted: the test proves nothing\n{answers}"
    );

    let dry = Command::new(env!("CARGO_BIN_EXE_tale"))
        .arg("dry-run")
        .arg(stories.join("leaky.yaml"))
        .env("TALE_CREDENTIAL_API", SECRET)
        .output()
        .expect("dry-run");
    let mut everything = answers.into_bytes();
    let logged = std::fs::read(&log).expect("log");
    // SPEC §5: serve warns about a credential without allowed hosts (by name).
    assert!(
        String::from_utf8_lossy(&logged).contains("credential `api` has no allowed hosts"),
        "no warning about the unrestricted credential"
    );
    everything.extend(logged);
    everything.extend(dry.stdout);
    everything.extend(dry.stderr);
    for file in ["tale.db", "tale.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
            everything.extend(bytes);
        }
    }
    let haystack = String::from_utf8_lossy(&everything);
    for form in [
        SECRET.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(SECRET),
        base64::engine::general_purpose::STANDARD.encode(format!("user:{SECRET}")),
        url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect::<String>(),
    ] {
        if let Some(at) = haystack.find(&form) {
            let from = at.saturating_sub(200);
            panic!("`{form}` leaked: …{}…", &haystack[from..(at + 200).min(haystack.len())]);
        }
    }
}
