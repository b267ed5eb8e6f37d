//! Actions without `from` or `schedule` run when a person starts them, as
//! Tines' manual actions do (issue 17): `tale check` accepts them with a
//! warning (W213), `tale run --action` and the API start them with no
//! event, and what follows them runs as usual.

use std::time::Duration;

use serde_json::{Value as J, json};

use crate::mock_server::{Reply, Server as Mock};
use crate::serve::{SECRET, args, client, eventually, write_story};
use crate::support::tale;

/// A webhook, and beside it a lookup nothing leads to (run by hand) with a
/// transform after it.
fn story(url: &str) -> String {
    format!(
        r#"name: Housekeeping
actions:
  hook:
    type: webhook
    path: housekeeping
    secret: {SECRET}
  expire:
    type: http_request
    method: post
    url: "{url}"
    payload: {{ older_than_days: 30 }}
  summary:
    type: transform
    mode: message_only
    from: expire
    payload: {{ expired: "{{{{ expire.body.expired }}}}" }}
"#
    )
}

#[test]
fn check_warns_and_run_starts_an_action_by_hand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    mock.route("/expire", vec![Reply::json(200, r#"{"expired": 12}"#)]);
    let file = dir.path().join("housekeeping.yaml");
    std::fs::write(&file, story(&mock.url("/expire"))).expect("write");
    let file = file.to_str().expect("utf-8");

    let checked = tale(&["check", file]);
    assert_eq!(checked.status, 0, "{}", checked.stderr);
    let said = format!("{}{}", checked.stdout, checked.stderr);
    assert!(said.contains("warning[W213]"), "{said}");
    assert!(
        said.contains("action `expire` has no `from` and no `schedule`"),
        "{said}"
    );

    let ran = tale(&["run", file, "--action", "expire"]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let events: Vec<J> = crate::support::json_lines(&ran.stdout);
    assert_eq!(events.len(), 2, "{}", ran.stdout);
    assert_eq!(events[0]["action"], "expire");
    assert_eq!(events[0]["parent_ids"], json!([]), "started with no event");
    assert_eq!(events[1]["output"], json!({"expired": "12"}));
    assert_eq!(mock.received().len(), 1);
    assert_eq!(mock.received()[0].body, r#"{"older_than_days":30}"#);

    // An action with a `from` is not an entry point.
    let refused = tale(&["run", file, "--action", "summary"]);
    assert_eq!(refused.status, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("`summary` has a `from`"), "{}", refused.stderr);
    // A story test case starts it too, with its request mocked.
    let test = dir.path().join("housekeeping.test.yaml");
    std::fs::write(
        &test,
        format!(
            "cases:\n  - name: expires by hand\n    action: expire\n    mocks:\n      - {{method: POST, url: \"{}\", body: {{expired: 5}}}}\n    expect:\n      summary: [{{expired: \"5\"}}]\n",
            mock.url("/expire")
        ),
    )
    .expect("write test");
    let tested = tale(&["test", test.to_str().expect("utf-8")]);
    assert_eq!(tested.status, 0, "{}{}", tested.stdout, tested.stderr);
    // A dry run starts it too, without sending anything.
    let dry = tale(&["dry-run", file, "--action", "expire"]);
    assert_eq!(dry.status, 0, "{}", dry.stderr);
    assert_eq!(mock.received().len(), 1, "a dry run sent a request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_starts_an_action_by_hand_behind_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    mock.route("/expire", vec![Reply::json(200, r#"{"expired": 3}"#)]);
    write_story(dir.path(), "housekeeping.yaml", &story(&mock.url("/expire")));
    let mut serve = args(dir.path());
    serve.api_token = Some("api-token-0123456789".to_owned().into());
    let server = tale::serve::start(&serve, None).await.expect("serve");
    let url = |slug: &str| format!("http://{}/api/stories/housekeeping/actions/{slug}/run", server.addr);
    let post = async |slug: &str, token: Option<&str>| {
        let mut r = client().post(url(slug));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.expect("post")
    };
    assert_eq!(post("expire", None).await.status(), 401, "the token is required");
    let r = post("expire", Some("api-token-0123456789")).await;
    assert_eq!(r.status(), 202);
    let run_id = r.json::<J>().await.expect("json")["run_id"]
        .as_str()
        .expect("run id")
        .to_owned();
    eventually("the run succeeds", Duration::from_secs(10), async || {
        let client = client();
        let run: J = client
            .get(format!("http://{}/api/runs/{run_id}", server.addr))
            .bearer_auth("api-token-0123456789")
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        run["status"] == "succeeded"
    })
    .await;
    assert_eq!(mock.received().len(), 1);
    let conflict = post("summary", Some("api-token-0123456789")).await;
    assert_eq!(conflict.status(), 409);
    assert!(
        conflict
            .text()
            .await
            .expect("text")
            .contains("cannot be started by hand")
    );
    assert_eq!(
        post("hook", Some("api-token-0123456789")).await.status(),
        409,
        "a webhook"
    );
    assert_eq!(post("nope", Some("api-token-0123456789")).await.status(), 404);
    server.stop().await.expect("stop");
}
