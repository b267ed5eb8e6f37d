//! Only regular files are read: a FIFO in a stories folder used to hang
//! `check` forever (and keep `serve` from listening, or block its reloads
//! and SIGTERM); a symlink to `/dev/zero` took gigabytes.

#![cfg(unix)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::serve::{SECRET, args, client, eventually, get_json, write_story};

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success());
}

fn story(version: &str) -> String {
    format!(
        "name: Plain\nactions:\n  hook:\n    type: webhook\n    path: plain\n    secret: {SECRET}\n    response:\n      body: \"{version}\"\n"
    )
}

/// Runs `tale` with a deadline: a hang is a failure, not a stuck test.
fn tale_within(args: &[&str], limit: Duration) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tale"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("tale {args:?} did not finish in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn check_refuses_fifos_and_devices_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("good.yaml"), story("v1")).expect("write");
    mkfifo(&dir.path().join("pipe.yaml"));
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.yaml")).expect("symlink");
    let dir_arg = dir.path().to_str().expect("utf-8 path");
    let out = tale_within(&["check", dir_arg], Duration::from_secs(20));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("pipe.yaml") && text.contains("a FIFO"), "{text}");
    assert!(text.contains("zero.yaml") && text.contains("a device"), "{text}");
    assert!(!out.status.success());
    // Named explicitly, the same.
    let fifo = dir.path().join("pipe.yaml");
    let out = tale_within(&["check", fifo.to_str().expect("path")], Duration::from_secs(20));
    assert!(String::from_utf8_lossy(&out.stdout).contains("a FIFO"));
    // A large regular file is read only up to the budget.
    let big = dir.path().join("big.yaml");
    let file = std::fs::File::create(&big).expect("create");
    file.set_len(200 * 1024 * 1024).expect("sparse 200 MiB");
    let out = tale_within(&["check", big.to_str().expect("path")], Duration::from_secs(20));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("larger than"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_reloads_and_stops_beside_a_fifo() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_story(dir.path(), "good.yaml", &story("v1"));
    mkfifo(&dir.path().join("stories/pipe.yaml"));
    let mut a = args(dir.path());
    a.watch = Duration::from_millis(100);
    let server = tokio::time::timeout(Duration::from_secs(20), tale::serve::start(&a, None))
        .await
        .expect("serve started beside a FIFO")
        .expect("serve");
    let url = format!("http://{}/webhook/plain/{SECRET}", server.addr);
    let answer = async || {
        client()
            .post(&url)
            .send()
            .await
            .expect("post")
            .text()
            .await
            .expect("text")
    };
    assert_eq!(answer().await, "v1");
    // Added while serving: reloads go on.
    mkfifo(&dir.path().join("stories/later.yaml"));
    write_story(dir.path(), "good.yaml", &story("v2"));
    eventually("the reload beside a new FIFO", Duration::from_secs(10), async || {
        answer().await == "v2"
    })
    .await;
    let stories = get_json(&server, "/api/stories").await.to_string();
    assert!(stories.contains("FIFO"), "{stories}");
    tokio::time::timeout(Duration::from_secs(20), server.stop())
        .await
        .expect("stopped beside a FIFO")
        .expect("stop");
}
