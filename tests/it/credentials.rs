//! Typed credentials at run time: an OAuth2 client-credentials token fetched
//! from the (mock) Microsoft identity platform and attached to Graph calls;
//! a token endpoint that refuses takes the request's failure branch.

use std::process::Command;

use serde_json::Value as J;

use crate::microsoft_mock::MicrosoftMock;
use crate::support::output_of;

fn credentials_file(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("credentials.yaml");
    std::fs::write(&path, text).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    path
}

fn run_graph_alert(mock: &MicrosoftMock, credentials: &std::path::Path, alert: &str) -> (i32, Vec<J>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let event = dir.path().join("event.json");
    std::fs::write(&event, format!(r#"{{"alert_id": "{alert}"}}"#)).expect("event");
    let out = Command::new(env!("CARGO_BIN_EXE_tale"))
        .arg("run")
        .arg(crate::support::root().join("stories/graph-alert.yaml"))
        .arg("--event")
        .arg(&event)
        .arg("--credentials")
        .arg(credentials)
        .env("TALE_RESOURCE_GRAPH_BASE_URL", &mock.url)
        .output()
        .expect("tale run");
    let events = crate::support::json_lines(&String::from_utf8_lossy(&out.stdout));
    (
        out.status.code().unwrap_or(-1),
        events,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_oauth2_token_is_fetched_once_and_attached() {
    let mock = MicrosoftMock::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = credentials_file(
        dir.path(),
        &format!(
            "graph:\n  type: oauth2_client_credentials\n  token_url: {}/tenant-1/oauth2/v2.0/token\n  client_id: app-1\n  client_secret: client-s3cret-99\n  scope: https://graph.microsoft.com/.default\n  allowed_hosts: [127.0.0.1]\nsubstory_webhook_secret: {{type: text, value: sub-secret}}\n",
            mock.url
        ),
    );
    let (status, events, stderr) = run_graph_alert(&mock, &file, "a1");
    assert_eq!(status, 0, "{stderr}");
    let found = output_of(&events, "alert_found").expect("alert_found");
    assert_eq!(found["ok"], true, "{found}");
    assert_eq!(mock.calls("POST /tenant-1/oauth2/v2.0/token"), 1);
    let all = serde_json::to_string(&events).expect("json") + &stderr;
    assert!(!all.contains("client-s3cret-99"), "the client secret leaked");
}

#[test]
fn a_refusing_token_endpoint_takes_the_failure_branch() {
    let mock = MicrosoftMock::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // No `scope` on a v2 endpoint: the mock (as Entra) answers 400.
    let file = credentials_file(
        dir.path(),
        &format!(
            "graph:\n  type: oauth2_client_credentials\n  token_url: {}/tenant-1/oauth2/v2.0/token\n  client_id: app-1\n  client_secret: client-s3cret-99\n  resource: https://graph.microsoft.com\nsubstory_webhook_secret: {{type: text, value: sub-secret}}\n",
            mock.url
        ),
    );
    let (status, events, stderr) = run_graph_alert(&mock, &file, "a1");
    assert_eq!(status, 0, "a failure branch is a normal outcome: {stderr}");
    let failed = output_of(&events, "lookup_failed").expect("lookup_failed");
    assert_eq!(failed["ok"], false);
    let get = events
        .iter()
        .find(|e| e["action"] == "get_alert")
        .expect("get_alert's failure event");
    let error = get["output"]["error"].as_str().unwrap_or("");
    assert!(error.contains("token endpoint answered 400"), "{error}");
    assert_eq!(mock.calls("GET /v1.0/security/alerts_v2/a1"), 0, "sent without a token");
}

#[test]
fn a_redirect_to_another_host_drops_the_credential() {
    use crate::mock_server::{Reply, Server};
    let target = Server::start();
    target.route("/landing", vec![Reply::json(200, r#"{"ok": true}"#)]);
    let origin = Server::start();
    // Same machine, another host name: a cross-host redirect.
    let elsewhere = format!("http://localhost:{}/landing", target.addr.port());
    origin.route("/start", vec![Reply::json(302, "{}").header("location", &elsewhere)]);
    origin.route("/landing", vec![Reply::json(200, r#"{"ok": true}"#)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let story = dir.path().join("redirect.yaml");
    std::fs::write(
        &story,
        format!(
            "name: Redirect\nactions:\n  hook:\n    type: webhook\n    path: r\n  call:\n    type: http_request\n    from: hook\n    url: \"{}\"\n    credential: api\n",
            origin.url("/start")
        ),
    )
    .expect("story");
    let out = Command::new(env!("CARGO_BIN_EXE_tale"))
        .arg("run")
        .arg(&story)
        .env("TALE_CREDENTIAL_API", "api-token-123456")
        .output()
        .expect("tale run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let at_origin = origin.received();
    assert_eq!(
        at_origin[0].headers.get("authorization").map(String::as_str),
        Some("Bearer api-token-123456")
    );
    let at_target = target.received();
    assert_eq!(at_target.len(), 1, "the redirect was not followed");
    assert!(
        !at_target[0].headers.contains_key("authorization"),
        "the credential followed the redirect to another host: {:?}",
        at_target[0].headers
    );
}

#[test]
fn the_internal_address_guard_refuses_loopback_literals_and_names() {
    use crate::mock_server::{Reply, Server};
    let local = Server::start();
    local.route(
        "/metadata",
        vec![Reply::json(200, r#"{"secret": "instance-role-key"}"#)],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, url) in [
        ("literal", local.url("/metadata")),
        ("name", format!("http://localhost:{}/metadata", local.addr.port())),
    ] {
        let story = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &story,
            format!(
                "name: Guard\nactions:\n  hook:\n    type: webhook\n    path: g\n  call:\n    type: http_request\n    from: hook\n    url: \"{url}\"\n"
            ),
        )
        .expect("story");
        let run = |guard: bool| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_tale"));
            cmd.arg("run").arg(&story);
            if guard {
                cmd.arg("--deny-internal-addresses");
            }
            cmd.output().expect("tale run")
        };
        let out = run(true);
        // The refused request's `failure` branch is followed by nothing: the run fails.
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        let events = crate::support::json_lines(&String::from_utf8_lossy(&out.stdout));
        let call = events.iter().find(|e| e["action"] == "call").expect("call event");
        assert_eq!(call["branch"], "failure", "{name}: {call}");
        let error = call["output"]["error"].as_str().unwrap_or("");
        assert!(error.contains("internal"), "{name}: {error}");
        // Without the guard the same request goes through.
        let open = run(false);
        assert!(
            String::from_utf8_lossy(&open.stdout).contains("instance-role-key"),
            "{name}"
        );
    }
    assert_eq!(local.received().len(), 2, "a guarded request reached the server");
}

/// `CREDENTIAL.x` of an OAuth2 credential reads its current token: fetched
/// once for every action that reads it, sent where the template puts it, and
/// `[credential:x]` in every event; a refusing token endpoint fails the
/// action with the endpoint's reason.
#[test]
fn templates_read_an_oauth2_token_which_never_reaches_an_event() {
    use crate::mock_server::{Reply, Server};
    let mock = MicrosoftMock::start();
    let target = Server::start();
    for path in ["/api", "/relay", "/sneak"] {
        target.route(path, vec![Reply::json(200, r#"{"ok": true}"#)]);
    }
    let token = crate::microsoft_mock::token_for("graph.microsoft.com");
    let dir = tempfile::tempdir().expect("tempdir");
    let story = dir.path().join("token.yaml");
    std::fs::write(
        &story,
        format!(
            r#"name: Token in a template
actions:
  start:
    type: webhook
    path: start
  call:
    type: http_request
    from: start
    url: "{}"
    headers:
      Authorization: "Bearer {{{{ CREDENTIAL.graph }}}}"
  show:
    type: transform
    from: call
    mode: message_only
    payload:
      token: "{{% credential graph %}}"
  bits:
    type: transform
    mode: explode
    from: start
    path: "{{{{ CREDENTIAL.graph | prepend: 'x-' | split: ',' | as_object }}}}"
    to: t
  relay:
    type: http_request
    from: bits
    url: "{}?t={{{{ bits.t }}}}"
  sneak:
    type: http_request
    from: start
    url: "{}?t={{{{ CREDENTIAL.graph }}}}"
"#,
            target.url("/api"),
            target.url("/relay"),
            target.url("/sneak").replace("127.0.0.1", "localhost"),
        ),
    )
    .expect("story");
    let run = |credentials: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_tale"))
            .arg("run")
            .arg(&story)
            .arg("--credentials")
            .arg(credentials)
            .output()
            .expect("tale run");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let v2 = |form: &str| {
        format!(
            "graph:\n  type: oauth2_client_credentials\n  token_url: {}/tenant-1/oauth2/v2.0/token\n  client_id: app-1\n  client_secret: client-s3cret-99\n  {form}\n  allowed_hosts: [127.0.0.1]\n",
            mock.url
        )
    };
    let file = credentials_file(dir.path(), &v2("scope: https://graph.microsoft.com/.default"));
    let (status, stdout, stderr) = run(&file);
    // `sneak` is refused on purpose and nothing follows its `failure`
    // branch: the run fails, saying why.
    assert_eq!(status, 1, "{stderr}");
    assert!(
        stderr.contains("`sneak` failed") && stderr.contains("which no action follows"),
        "{stderr}"
    );
    let received = target.received();
    let api = received.iter().find(|r| r.path_and_query == "/api").expect("/api");
    assert_eq!(
        api.headers.get("authorization").map(String::as_str),
        Some(&*format!("Bearer {token}"))
    );
    assert_eq!(
        mock.calls("POST /tenant-1/oauth2/v2.0/token"),
        1,
        "one fetch for every action"
    );
    let events = crate::support::json_lines(&stdout);
    assert_eq!(output_of(&events, "show").expect("show")["token"], "[credential:graph]");
    // An explode's elements are redacted as they are pulled: the next action
    // never holds the token.
    let relay = received
        .iter()
        .find(|r| r.path_and_query.starts_with("/relay"))
        .expect("/relay");
    assert!(relay.path_and_query.contains("credential"), "{}", relay.path_and_query);
    assert!(!relay.path_and_query.contains(&token[..20]));
    // The token in a URL to a host it does not allow is not sent.
    assert!(
        !received.iter().any(|r| r.path_and_query.starts_with("/sneak")),
        "sent to localhost"
    );
    let sneak = events.iter().find(|e| e["action"] == "sneak").expect("sneak's failure");
    assert!(
        sneak["output"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("may not be sent"),
        "{sneak}"
    );
    assert!(!stdout.contains(&token) && !stderr.contains(&token), "the token leaked");

    // v2 with `resource` is refused by the endpoint: the action fails, saying why.
    let file = credentials_file(dir.path(), &v2("resource: https://graph.microsoft.com"));
    let (status, _, stderr) = run(&file);
    assert_eq!(status, 1, "{stderr}");
    assert!(stderr.contains("token endpoint answered 400"), "{stderr}");
    assert_eq!(
        target.received().iter().filter(|r| r.path_and_query == "/api").count(),
        1,
        "sent without a token"
    );
}

/// A transform that reads an OAuth2 token is not run before a webhook's
/// answer (fetching the token is a request): with a token endpoint that takes
/// 3 s, the webhook still answers a client that waits 2 s, and the run
/// finishes once the token is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_answers_before_a_token_its_transform_needs_is_fetched() {
    use crate::mock_server::{Reply, Server};
    use crate::serve::{SECRET, args, client, eventually, write_story};
    let idp = Server::start();
    idp.route(
        "/token",
        vec![
            Reply::json(
                200,
                r#"{"token_type":"Bearer","expires_in":3599,"access_token":"slow-token-0123456789"}"#,
            )
            .delayed(std::time::Duration::from_secs(3)),
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    write_story(
        dir.path(),
        "tokened.yaml",
        &format!(
            r#"name: Tokened
actions:
  hook:
    type: webhook
    path: tokened
    secret: {SECRET}
  shape:
    type: transform
    mode: message_only
    from: hook
    payload:
      auth: "Bearer {{{{ CREDENTIAL.idp }}}}"
"#
        ),
    );
    let file = credentials_file(
        dir.path(),
        &format!(
            "idp:\n  type: oauth2_client_credentials\n  token_url: {}\n  client_id: app-1\n  client_secret: client-s3cret-99\n  scope: api://x/.default\n  allowed_hosts: [127.0.0.1]\n",
            idp.url("/token")
        ),
    );
    let mut a = args(dir.path());
    a.credentials = Some(file);
    let server = tale::serve::start(&a, None).await.expect("serve");
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .expect("client");
    let r = impatient
        .post(format!("http://{}/webhook/tokened/{SECRET}", server.addr))
        .json(&serde_json::json!({"n": 1}))
        .send()
        .await
        .expect("the webhook answered within 2 s");
    assert_eq!(r.status(), 200);
    let runs_url = format!("http://{}/api/runs?status=succeeded", server.addr);
    eventually(
        "the run, once the token came",
        std::time::Duration::from_secs(15),
        async || {
            let runs: J = client()
                .get(&runs_url)
                .send()
                .await
                .expect("get")
                .json()
                .await
                .expect("json");
            runs["runs"].as_array().is_some_and(|r| r.len() == 1)
        },
    )
    .await;
    server.stop().await.expect("stop");
}
