//! `{% prompt status %}` (Tines' human in the loop) and
//! `{% story_run_link %}` under `tale serve`: a prompted action's links
//! are signed, opening one answers nothing, pressing its button makes the
//! action emit `{"prompt": {"status": …}}` and the run go on — also after a
//! restart, since the wait is a stored item; a link answers once, a changed
//! one is refused, an expired one too, and an expired wait ends its run.

use std::time::Duration;

use serde_json::{Value as J, json};

use crate::mock_server::{Reply, Server as Mock};
use crate::serve::{SECRET, args, client, eventually, get_json, write_story};

fn story(mock: &Mock) -> String {
    format!(
        r#"name: Contain on approval
actions:
  hook:
    type: webhook
    path: approve
    secret: {SECRET}
  ask:
    type: http_request
    from: hook
    method: post
    url: "{url}"
    payload:
      text: "Contain {{{{ hook.body.host }}}}? yes: {{% prompt contain %}} no: {{% prompt ignore %}} run: {{% story_run_link %}}"
  decide:
    type: trigger
    from: ask
    rules:
      - {{ type: field==value, path: "{{{{ ask.prompt.status }}}}", value: contain }}
  contain:
    type: transform
    mode: message_only
    from: decide
    payload:
      contained: "{{{{ hook.body.host }}}}"
"#,
        url = mock.url("/teams")
    )
}

/// The links in the last message the mock received.
fn links(mock: &Mock) -> Vec<String> {
    let body = mock.received().last().map(|r| r.body.clone()).unwrap_or_default();
    let text: J = serde_json::from_str(&body).unwrap_or(J::Null);
    text["text"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .filter(|w| w.starts_with("http://"))
        .map(str::to_owned)
        .collect()
}

async fn runs(server: &tale::serve::Server) -> Vec<J> {
    let r = client()
        .get(format!("http://{}/api/runs", server.addr))
        .bearer_auth("prompt-t0ken")
        .send()
        .await
        .expect("runs");
    r.json::<J>().await.expect("json")["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn hook(server: &tale::serve::Server, host: &str) {
    let r = client()
        .post(format!("http://{}/webhook/approve", server.addr))
        .bearer_auth(SECRET)
        .json(&json!({"host": host}))
        .send()
        .await
        .expect("post");
    assert!(r.status().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_waits_across_a_restart_answers_once_and_refuses_forgeries() {
    answered_once(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_on_postgres_waits_across_a_restart_and_answers_once() {
    let Some(db) = crate::support::fresh_postgres().await else {
        return;
    };
    answered_once(Some(db)).await;
}

async fn answered_once(db: Option<String>) {
    let dir = tempfile::tempdir().expect("tmp");
    let mock = Mock::start();
    mock.route("/teams", vec![Reply::json(200, r#"{"ok":true}"#)]);
    write_story(dir.path(), "approve.yaml", &story(&mock));
    let mut a = args(dir.path());
    if let Some(db) = db {
        a.db = db;
    }
    // The key prompt links are signed with (a restarted server accepts them).
    a.api_token = Some(secrecy::SecretString::from("prompt-t0ken".to_owned()));
    let server = tale::serve::start(&a, None).await.expect("serve");
    hook(&server, "host-17").await;
    eventually("the message with its links", Duration::from_secs(10), async || {
        links(&mock).len() == 3
    })
    .await;
    let found = links(&mock);
    let (contain, ignore, run_link) = (&found[0], &found[1], &found[2]);
    let run = runs(&server).await[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        *run_link,
        format!("http://{}/ui/runs/{run}", server.addr),
        "story_run_link"
    );
    assert!(
        contain.starts_with(&format!("http://{}/prompt/", server.addr)),
        "{contain}"
    );

    // Opening a link answers nothing.
    let opened = client().get(contain).send().await.expect("get");
    assert_eq!(opened.status(), 200);
    assert!(opened.text().await.expect("text").contains("Answer “contain”"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        runs(&server).await[0]["status"],
        "running",
        "the run waits for the answer"
    );

    // The wait is stored: a restarted server takes the answer.
    server.stop().await.expect("stop");
    let server = tale::serve::start(&a, None).await.expect("restart");
    let token = contain.rsplit('/').next().expect("token").to_owned();
    let at = |token: &str| format!("http://{}/prompt/{token}", server.addr);
    // A changed link (another status under the same signature) is refused.
    let ignore_token = ignore.rsplit('/').next().expect("token");
    let forged = format!(
        "{}.{}",
        ignore_token.split('.').next().expect("payload"),
        token.split('.').nth(1).expect("signature")
    );
    assert_eq!(client().post(at(&forged)).send().await.expect("post").status(), 404);
    let answered = client().post(at(&token)).send().await.expect("post");
    assert_eq!(answered.status(), 200);
    eventually("the run to go on and finish", Duration::from_secs(10), async || {
        runs(&server).await[0]["status"] == "succeeded"
    })
    .await;
    let events = get_json_with_token(&server, &format!("/api/runs/{run}/events")).await;
    let contained = events["by_action"]["contain"][0]["output"]["contained"].clone();
    assert_eq!(contained, "host-17");
    let asked = events["by_action"]["ask"].as_array().expect("ask's events");
    assert_eq!(asked.len(), 2, "the response, then the answer");
    assert_eq!(asked[1]["output"], json!({"prompt": {"status": "contain"}}));
    // A prompt answers once.
    assert_eq!(
        client().post(at(ignore_token)).send().await.expect("post").status(),
        409
    );
    assert_eq!(client().post(at(&token)).send().await.expect("post").status(), 409);
    server.stop().await.expect("stop");
}

async fn get_json_with_token(server: &tale::serve::Server, path: &str) -> J {
    client()
        .get(format!("http://{}{path}", server.addr))
        .bearer_auth("prompt-t0ken")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_prompt_expires_and_its_run_ends() {
    let dir = tempfile::tempdir().expect("tmp");
    let mock = Mock::start();
    mock.route("/teams", vec![Reply::json(200, r#"{"ok":true}"#)]);
    write_story(dir.path(), "approve.yaml", &story(&mock));
    let mut a = args(dir.path());
    a.prompt_expiry = Duration::from_millis(800);
    let server = tale::serve::start(&a, None).await.expect("serve");
    hook(&server, "host-9").await;
    eventually("the message", Duration::from_secs(10), async || links(&mock).len() == 3).await;
    let link = links(&mock)[0].clone();
    eventually(
        "the wait to expire and the run to end",
        Duration::from_secs(10),
        async || get_json(&server, "/api/runs").await["runs"][0]["status"] == "succeeded",
    )
    .await;
    let r = client().post(&link).send().await.expect("post");
    assert_eq!(r.status(), 410, "an expired link");
    let run = get_json(&server, "/api/runs").await["runs"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let events = get_json(&server, &format!("/api/runs/{run}/events")).await;
    assert!(events["by_action"].get("contain").is_none(), "nothing was contained");
    server.stop().await.expect("stop");
}
