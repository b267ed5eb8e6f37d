//! A work item that kills the process is not retried forever: it is counted
//! durably before each recovered start, runs alone once suspect, and fails
//! its run with the reason at the next start, while the items beside it
//! are delivered. (`TALE_TEST_ABORT_IN=<slug>` makes debug builds abort in
//! that action, as a stack overflow or an OOM kill would.)

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::mock_server::{Reply, Server as Mock};
use crate::serve::{SECRET, client, wait_ready, write_story};

fn spawn(dir: &Path, port: u16) -> Child {
    crate::serve::serve_process(dir, port, &["--grace", "0s"], &[("TALE_TEST_ABORT_IN", "boom")])
}

/// True when the process died (by itself) within `limit`.
fn died_within(child: &mut Child, limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if child.try_wait().expect("wait").is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_that_kills_the_process_fails_after_three_crashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    mock.route("/fine", vec![Reply::json(200, "{}")]);
    write_story(
        dir.path(),
        "poison.yaml",
        &format!(
            r#"name: Poison
actions:
  hook:
    type: webhook
    path: poison
    secret: {SECRET}
  boom:
    type: http_request
    from: hook
    url: "{fine}"
    idempotency_key: true
  fine:
    type: http_request
    from: hook
    url: "{fine}"
    idempotency_key: true
"#,
            fine = mock.url("/fine")
        ),
    );
    let port = crate::support::free_port();
    let mut child = spawn(dir.path(), port);
    wait_ready(port).await;
    // The item runs only once the request is committed; the answer may or
    // may not leave before the process dies.
    let _ = client()
        .post(format!("http://127.0.0.1:{port}/webhook/poison/{SECRET}"))
        .json(&serde_json::json!({"n": 1}))
        .send()
        .await;
    // The first crash, then one among the recovered items, then one alone.
    for crash in 1..=3 {
        assert!(died_within(&mut child, Duration::from_secs(20)), "crash {crash}");
        child = spawn(dir.path(), port);
    }
    // The fourth start fails the item instead of running it.
    wait_ready(port).await;
    assert!(!died_within(&mut child, Duration::from_secs(2)), "a crash loop");
    let runs = crate::support::tale(&[
        "runs",
        "--db",
        &format!("sqlite:{}", dir.path().join("tale.db").display()),
        "--json",
    ]);
    let _ = child.kill();
    let _ = child.wait();
    let text = &runs.stdout;
    assert!(text.contains("\"failed\""), "{text}");
    assert!(text.contains("not retried"), "{text}");
    // At least once: it may have been sent just before a crash, and again.
    assert!(!mock.received().is_empty(), "the item beside it was never delivered");
}

/// A deploy is not a crash: a recovered step still running when the server
/// is stopped cleanly (twice) is not counted against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_stops_do_not_count_as_crashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    mock.route(
        "/slow",
        vec![Reply::json(200, "{}").delayed(Duration::from_millis(1500))],
    );
    write_story(
        dir.path(),
        "slow.yaml",
        &format!(
            "name: Slow\nactions:\n  hook:\n    type: webhook\n    path: slow\n    secret: {SECRET}\n  call:\n    type: http_request\n    from: hook\n    url: \"{}\"\n    idempotency_key: true\n",
            mock.url("/slow")
        ),
    );
    let port = crate::support::free_port();
    let mut child = spawn(dir.path(), port);
    wait_ready(port).await;
    let r = client()
        .post(format!("http://127.0.0.1:{port}/webhook/slow/{SECRET}"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let in_flight = async || {
        let started = Instant::now();
        while mock.received().is_empty() && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    in_flight().await;
    // A crash with the request in flight; then two clean stops, each with
    // the recovered request in flight again.
    let _ = child.kill();
    let _ = child.wait();
    for _ in 0..2 {
        let before = mock.received().len();
        child = spawn(dir.path(), port);
        wait_ready(port).await;
        let started = Instant::now();
        while mock.received().len() == before && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        crate::serve::signal(&child, "TERM");
        assert!(died_within(&mut child, Duration::from_secs(10)), "SIGTERM stops it");
    }
    child = spawn(dir.path(), port);
    wait_ready(port).await;
    let db = format!("sqlite:{}", dir.path().join("tale.db").display());
    let started = Instant::now();
    let mut text = String::new();
    while started.elapsed() < Duration::from_secs(15) {
        text = crate::support::tale(&["runs", "--db", &db, "--json"]).stdout;
        if text.contains("\"succeeded\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("\"succeeded\""), "{text}");
}
