//! `tale serve` as a person starts it: several `--stories` folders, the
//! webhook URLs in the log, no terminal colours in a file, `--strict`, and
//! the no-allowed-hosts warning only for credentials a request carries.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::mock_server::{Reply, Server as Mock};
use crate::serve::{client, wait_ready};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_story_folders_call_across_and_the_log_says_where_webhooks_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (flows, library) = (dir.path().join("flows"), dir.path().join("library"));
    std::fs::create_dir_all(&flows).expect("mkdir");
    std::fs::create_dir_all(&library).expect("mkdir");
    let sink = Mock::start();
    sink.route("/sink", vec![Reply::json(200, "{}")]);
    std::fs::write(
        library.join("lookup.yaml"),
        "name: Lookup\nentry: receive\nexits: [answer]\nactions:\n  receive: {type: webhook, path: lookup, secret: \"{{ CREDENTIAL.hook }}\"}\n  answer:\n    type: transform\n    mode: message_only\n    from: receive\n    payload: {seen: \"{{ receive.body.user }}\"}\n",
    )
    .expect("library story");
    std::fs::write(
        flows.join("triage.yaml"),
        format!(
            "name: Triage\nactions:\n  hook: {{type: webhook, path: triage, secret: \"{{{{ CREDENTIAL.hook }}}}\"}}\n  lookup:\n    type: send_to_story\n    from: hook\n    story: lookup\n    payload: {{user: \"{{{{ hook.body.user }}}}\"}}\n  report:\n    type: http_request\n    from: lookup\n    method: post\n    url: \"{}\"\n    headers: {{X-Key: \"{{{{ CREDENTIAL.api }}}}\"}}\n    payload: {{seen: \"{{{{ lookup.seen }}}}\"}}\n",
            sink.url("/sink")
        ),
    )
    .expect("caller story");
    let port = crate::support::free_port();
    let log = dir.path().join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tale"))
        .args(["serve", "--stories"])
        .arg(&flows)
        .arg("--stories")
        .arg(&library)
        .arg("--db")
        .arg(format!("sqlite:{}", dir.path().join("tale.db").display()))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--watch", "0s", "--strict"])
        .env("TALE_CREDENTIAL_HOOK", "hook-secret-1")
        .env("TALE_CREDENTIAL_API", "api-key-12345")
        .env("TALE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn tale serve");
    wait_ready(port).await;
    let r = client()
        .post(format!("http://127.0.0.1:{port}/webhook/triage/hook-secret-1"))
        .json(&json!({"user": "adele"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let started = Instant::now();
    while sink.received().is_empty() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(sink.received().len(), 1, "the call across folders answered");
    assert!(sink.received()[0].body.contains("adele"));
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains(&format!("webhook: http://127.0.0.1:{port}/webhook/triage/<secret>")),
        "{text}"
    );
    assert!(text.contains("/webhook/lookup/<secret>"), "{text}");
    assert!(!text.contains('\u{1b}'), "terminal colours in a log file");
    assert!(text.contains("credential `api` has no allowed hosts"), "{text}");
    assert!(
        !text.contains("credential `hook` has no allowed hosts"),
        "a credential only webhooks read is sent nowhere: {text}"
    );
    assert!(!text.contains("hook-secret-1") && !text.contains("api-key-12345"));
}

#[test]
fn strict_refuses_to_start_beside_a_refused_story() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("broken.yaml"),
        "name: Broken\nactions:\n  hook: {type: webhook, path: b, secret: s3cret-value}\n  x: {type: transform, mode: message_only, from: nowhere, payload: {}}\n",
    )
    .expect("story");
    let out = Command::new(env!("CARGO_BIN_EXE_tale"))
        .args(["serve", "--stories"])
        .arg(dir.path())
        .arg("--db")
        .arg(format!("sqlite:{}", dir.path().join("tale.db").display()))
        .args(["--listen", "127.0.0.1:0", "--strict"])
        .output()
        .expect("tale serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--strict") && err.contains("broken.yaml"), "{err}");
}
