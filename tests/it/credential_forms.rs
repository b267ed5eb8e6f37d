//! A credential encoded by tale's own filters (`url_encode` of a value with
//! a space or `*`) is neither sent to a host it does not allow nor printed.

use std::process::Command;

use crate::mock_server::{Reply, Server};
use crate::support::json_lines;

#[test]
fn url_encoded_credentials_are_refused_elsewhere_and_redacted() {
    let secret = "an api*key with spaces 9f8e";
    let elsewhere = Server::start_on("127.0.0.2");
    elsewhere.route("/collect", vec![Reply::json(200, "{}")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let story = dir.path().join("forms.yaml");
    std::fs::write(
        &story,
        format!(
            r#"name: Forms
actions:
  hook:
    type: webhook
    path: f
  shown:
    type: transform
    from: hook
    mode: message_only
    payload:
      liquid: "{{{{ CREDENTIAL.api | url_encode }}}}"
  sent:
    type: http_request
    from: hook
    url: "{}?k={{{{ CREDENTIAL.api | url_encode }}}}"
"#,
            elsewhere.url("/collect")
        ),
    )
    .expect("story");
    let out = Command::new(env!("CARGO_BIN_EXE_tale"))
        .arg("run")
        .arg(&story)
        .env("TALE_CREDENTIAL_API", secret)
        .env("TALE_CREDENTIAL_API_ALLOWED_HOSTS", "127.0.0.1")
        .output()
        .expect("tale run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("api%2Akey"), "{stdout}");
    let events = json_lines(&stdout);
    let shown = events.iter().find(|e| e["action"] == "shown").expect("shown");
    assert_eq!(shown["output"]["liquid"], "[credential:api]", "{shown}");
    let sent = events.iter().find(|e| e["action"] == "sent").expect("sent");
    assert_eq!(sent["branch"], "failure", "{sent}");
    assert!(elsewhere.received().is_empty(), "{:?}", elsewhere.received());
}
