//! A run's status tells the truth: a `failure` branch that no action follows
//! fails the run (with the action and the reason); a handled one does not.

use std::process::Command;
use std::time::Duration;

use serde_json::Value as J;

use crate::serve::{SECRET, args, client, eventually, get_json, write_story};

fn story(path: &str, handled: bool) -> String {
    let handler = if handled {
        "  noted:\n    type: transform\n    mode: message_only\n    from: call.failure\n    payload: {error: \"{{ call.error }}\"}\n"
    } else {
        ""
    };
    // Port 9 on 127.0.0.1: nothing listens, the request fails at once.
    format!(
        "name: Status {path}\nactions:\n  hook: {{type: webhook, path: {path}, secret: {SECRET}}}\n  call:\n    type: http_request\n    from: hook\n    url: http://127.0.0.1:9/\n{handler}"
    )
}

#[test]
fn tale_run_exits_1_only_for_an_unhandled_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (handled, code) in [(false, 1), (true, 0)] {
        let file = dir.path().join(format!("s{handled}.yaml"));
        std::fs::write(&file, story("s", handled)).expect("story");
        let out = Command::new(env!("CARGO_BIN_EXE_tale"))
            .arg("run")
            .arg(&file)
            .output()
            .expect("tale run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "handled: {handled}: {stderr}");
        if !handled {
            assert!(
                stderr.contains("`call` failed") && stderr.contains("which no action follows"),
                "{stderr}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stores_an_unhandled_failure_as_a_failed_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_story(dir.path(), "unhandled.yaml", &story("unhandled", false));
    write_story(dir.path(), "handled.yaml", &story("handled", true));
    let server = tale::serve::start(&args(dir.path()), None).await.expect("serve");
    for path in ["unhandled", "handled"] {
        let r = client()
            .post(format!("http://{}/webhook/{path}/{SECRET}", server.addr))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
    }
    eventually("both runs finished", Duration::from_secs(15), async || {
        let runs = get_json(&server, "/api/runs").await["runs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        runs.len() == 2 && runs.iter().all(|r| r["status"] != "running")
    })
    .await;
    let runs: Vec<J> = get_json(&server, "/api/runs").await["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let of = |story: &str| runs.iter().find(|r| r["story"] == story).cloned().unwrap_or_default();
    assert_eq!(of("unhandled")["status"], "failed", "{runs:?}");
    assert!(of("unhandled")["errors"].to_string().contains("call:"), "{runs:?}");
    assert_eq!(of("handled")["status"], "succeeded", "{runs:?}");
    // Metrics count the failure branch as a failed action, handled or not;
    // only the unhandled one fails its run.
    let metrics = crate::serve::metrics(&server).await;
    for story in ["unhandled", "handled"] {
        let failed_call = format!(r#"story="{story}",action="call",type="http_request",outcome="error""#);
        assert!(metrics.contains(&failed_call), "no {failed_call} in\n{metrics}");
    }
    assert!(
        metrics.contains(r#"tale_runs_finished_total{story="unhandled",status="failed"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"tale_runs_finished_total{story="handled",status="succeeded"} 1"#),
        "{metrics}"
    );
    server.stop().await.expect("stop");
}
