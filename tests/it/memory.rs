//! Memory stays bounded whatever a remote or a template does: a 1 GiB
//! response and a string doubled in a loop each fail their action, and the
//! `tale run` child process's peak RSS (VmHWM in /proc) stays far below.

use std::process::{Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};

use crate::support::json_lines;

/// Serves `/huge`: 1 GiB of `a`, streamed in 64 KiB chunks without a length.
fn start_huge() -> String {
    static CHUNK: [u8; 65536] = [b'a'; 65536];
    let app = Router::new().route(
        "/huge",
        axum::routing::get(|| async {
            let chunks =
                futures_util::stream::iter((0..16_384).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(&CHUNK))));
            Body::from_stream(chunks)
        }),
    );
    format!("http://{}", crate::mock_server::spawn_router(app))
}

/// Peak RSS of the process in MiB, read until it exits; with its output
/// (stdout, then stderr).
fn run_measured(cmd: &mut Command) -> (u64, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
                let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
                peak_kib = peak_kib.max(kib);
            }
        }
        assert!(started.elapsed() < Duration::from_secs(120), "tale run did not finish");
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().expect("output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (peak_kib / 1024, text)
}

#[cfg(target_os = "linux")]
#[test]
fn a_huge_response_and_a_growing_template_fail_their_actions_in_bounded_memory() {
    let base = start_huge();
    let dir = tempfile::tempdir().expect("tempdir");
    let story = dir.path().join("memory.yaml");
    std::fs::write(
        &story,
        format!(
            r#"name: Memory
actions:
  hook:
    type: webhook
    path: m
  fetch:
    type: http_request
    from: hook
    url: "{base}/huge"
  grow:
    type: transform
    from: hook
    mode: message_only
    payload:
      size: "{{% assign s = 'xxxxxxxxxxxxxxxx' %}}{{% for i in (1..31) %}}{{% assign s = s | append: s %}}{{% endfor %}}{{{{ s | size }}}}"
  # Keeps the process alive a moment after the peak, for the measurement.
  linger:
    type: transform
    from: fetch.failure
    mode: delay
    seconds: 1
"#
        ),
    )
    .expect("story");
    let (peak_mib, stdout) = run_measured(Command::new(env!("CARGO_BIN_EXE_tale")).arg("run").arg(&story));
    let events = json_lines(&stdout);
    let fetch = events.iter().find(|e| e["action"] == "fetch").expect("fetch event");
    assert_eq!(fetch["branch"], "failure", "{fetch}");
    assert!(
        fetch["output"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("larger than 33554432 bytes"),
        "{fetch}"
    );
    assert!(
        stdout.contains("holds more than 32 MiB"),
        "the growing template was not stopped: {stdout}"
    );
    assert!(peak_mib < 400, "peak RSS {peak_mib} MiB");
}

#[test]
fn max_response_bytes_counts_every_page() {
    let server = crate::mock_server::Server::start();
    let page = format!(
        r#"{{"value": ["{}"], "next": "{}"}}"#,
        "p".repeat(600),
        server.url("/page")
    );
    server.route("/page", vec![crate::mock_server::Reply::json(200, &page)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let story = dir.path().join("pages.yaml");
    std::fs::write(
        &story,
        format!(
            "name: Pages\nactions:\n  hook:\n    type: webhook\n    path: p\n  list:\n    type: http_request\n    from: hook\n    url: \"{}\"\n    max_response_bytes: 2000\n    pagination:\n      next_url: \"{{{{ response.body.next }}}}\"\n      max_pages: 10\n",
            server.url("/page")
        ),
    )
    .expect("story");
    let out = Command::new(env!("CARGO_BIN_EXE_tale"))
        .arg("run")
        .arg(&story)
        .output()
        .expect("run");
    let events = json_lines(&String::from_utf8_lossy(&out.stdout));
    let list = events.iter().find(|e| e["action"] == "list").expect("list event");
    assert_eq!(list["branch"], "failure", "{list}");
    // The page that takes the total past 2000 bytes is the last one read.
    assert_eq!(server.received().len(), 2000 / page.len() + 1, "{list}");
    assert!(
        list["output"]["error"].as_str().unwrap_or("").contains("every page"),
        "{list}"
    );
}

/// `max_pages` reached while the API still has pages: said in the log and
/// marked in the merged output, never a silent cut.
#[test]
fn max_pages_reached_with_more_pages_is_said() {
    let server = crate::mock_server::Server::start();
    let page = format!(r#"{{"value": [1], "next": "{}"}}"#, server.url("/page"));
    server.route("/page", vec![crate::mock_server::Reply::json(200, &page)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let story = dir.path().join("pages.yaml");
    std::fs::write(
        &story,
        format!(
            "name: Pages\nactions:\n  hook:\n    type: webhook\n    path: p\n  list:\n    type: http_request\n    from: hook\n    url: \"{}\"\n    pagination:\n      next_url: \"{{{{ response.body.next }}}}\"\n      max_pages: 3\n",
            server.url("/page")
        ),
    )
    .expect("story");
    let out = Command::new(env!("CARGO_BIN_EXE_tale"))
        .arg("run")
        .arg(&story)
        .output()
        .expect("run");
    let events = json_lines(&String::from_utf8_lossy(&out.stdout));
    let list = events.iter().find(|e| e["action"] == "list").expect("list event");
    assert_eq!(list["output"]["pages"], 3, "{list}");
    assert_eq!(list["output"]["truncated"], true, "{list}");
    assert_eq!(list["output"]["body"]["value"], serde_json::json!([1, 1, 1]));
    assert_eq!(server.received().len(), 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stopped after 3 pages"), "{stderr}");
}
