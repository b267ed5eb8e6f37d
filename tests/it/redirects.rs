//! Redirects carry no credential to a host it does not allow: every hop is
//! checked like the first request. The origin on 127.0.0.1 answers each
//! redirect status; the recorder on 127.0.0.2 is "another host".

use std::process::Command;

use serde_json::Value as J;

use crate::mock_server::{Reply, Server};
use crate::support::json_lines;

const SECRET: &str = "k3y-redirect-S3cret 42*";

fn credentials_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("credentials.yaml");
    std::fs::write(
        &path,
        "typed:\n  type: header\n  header: X-Api-Key\n  value: typed-K3y-0987\n  allowed_hosts: [127.0.0.1]\n",
    )
    .expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    path
}

/// Runs a story of three requests to `start` (a typed header credential, a
/// templated header, a JSON body holding the credential) and returns the
/// events of the three actions by slug.
fn run(dir: &std::path::Path, start: &str) -> Vec<J> {
    let story = dir.join("redirect.yaml");
    std::fs::write(
        &story,
        format!(
            r#"name: Redirects
actions:
  hook:
    type: webhook
    path: r
  typed_header:
    type: http_request
    from: hook
    method: post
    url: "{start}"
    credential: typed
  templated_header:
    type: http_request
    from: hook
    method: post
    url: "{start}"
    headers:
      X-Token: "{{{{ CREDENTIAL.api }}}}"
  json_body:
    type: http_request
    from: hook
    method: post
    url: "{start}"
    payload:
      token: "{{{{ CREDENTIAL.api }}}}"
"#
        ),
    )
    .expect("story");
    let out = Command::new(env!("CARGO_BIN_EXE_tale"))
        .arg("run")
        .arg(&story)
        .arg("--credentials")
        .arg(credentials_file(dir))
        .env("TALE_CREDENTIAL_API", SECRET)
        .env("TALE_CREDENTIAL_API_ALLOWED_HOSTS", "127.0.0.1")
        .output()
        .expect("tale run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("S3cret") && !String::from_utf8_lossy(&out.stderr).contains("S3cret"),
        "the secret in the output: {stdout}"
    );
    json_lines(&stdout)
}

fn event<'a>(events: &'a [J], slug: &str) -> &'a J {
    events
        .iter()
        .find(|e| e["action"] == slug)
        .unwrap_or_else(|| panic!("no event of {slug}: {events:?}"))
}

#[test]
fn a_redirect_to_a_host_the_credential_does_not_allow_is_not_followed() {
    let recorder = Server::start_on("127.0.0.2");
    recorder.route("/landing", vec![Reply::json(200, r#"{"landed": true}"#)]);
    let dir = tempfile::tempdir().expect("tempdir");
    for status in [301, 302, 303, 307, 308] {
        let origin = Server::start();
        origin.route(
            "/start",
            vec![Reply::json(status, "{}").header("location", &recorder.url("/landing"))],
        );
        let events = run(dir.path(), &origin.url("/start"));
        for slug in ["typed_header", "templated_header", "json_body"] {
            let e = event(&events, slug);
            // 301/302/303 drop the body, and another origin never gets the
            // header a typed credential attached: the hop then carries
            // nothing secret and is followed.
            if (slug == "json_body" && status <= 303) || slug == "typed_header" {
                assert_eq!(e["output"]["body"]["landed"], true, "{status} {slug}: {e}");
                continue;
            }
            assert_eq!(e["branch"], "failure", "{status} {slug}: {e}");
            let error = e["output"]["error"].as_str().unwrap_or("");
            assert!(
                error.contains("was not followed") && error.contains("127.0.0.2"),
                "{status} {slug}: {error}"
            );
        }
        assert_eq!(origin.received().len(), 3, "{status}: each request reached the origin");
    }
    let received = recorder.received();
    assert_eq!(
        received.len(),
        8,
        "the typed credential's hops without it, and the bodiless ones of 301/302/303: {received:?}"
    );
    for r in received {
        let seen = format!("{r:?}");
        assert!(
            !seen.contains("S3cret") && !seen.contains("typed-K3y"),
            "a credential reached the other host: {seen}"
        );
    }
}

#[test]
fn redirects_the_credentials_allow_are_followed_with_browser_semantics() {
    let dir = tempfile::tempdir().expect("tempdir");
    for status in [301, 302, 303, 307, 308] {
        let origin = Server::start();
        // Same host: the credential may follow.
        origin.route("/start", vec![Reply::json(status, "{}").header("location", "/landing")]);
        origin.route("/landing", vec![Reply::json(200, r#"{"landed": true}"#)]);
        let events = run(dir.path(), &origin.url("/start"));
        for slug in ["typed_header", "templated_header", "json_body"] {
            let e = event(&events, slug);
            assert_eq!(e["branch"], J::Null, "{status} {slug}: {e}");
            assert_eq!(e["output"]["body"]["landed"], true, "{status} {slug}: {e}");
        }
        let landed: Vec<_> = origin
            .received()
            .into_iter()
            .filter(|r| r.path_and_query.starts_with("/landing"))
            .collect();
        assert_eq!(landed.len(), 3, "{status}");
        for r in &landed {
            // 301/302/303 turn a POST into a GET without its body; 307/308
            // repeat it as it was.
            let keeps = matches!(status, 307 | 308);
            if r.headers.contains_key("x-token") || r.headers.contains_key("x-api-key") || !r.body.is_empty() {
                assert_eq!(r.method, if keeps { "POST" } else { "GET" }, "{status}: {r:?}");
            }
            if r.body.contains("token") {
                assert!(keeps, "{status}: the body followed a {status}");
            }
        }
        let typed = landed
            .iter()
            .filter(|r| r.headers.get("x-api-key").map(String::as_str) == Some("typed-K3y-0987"));
        assert_eq!(typed.count(), 1, "{status}: the typed credential followed on its host");
    }
    // A request that carries no credential follows a redirect anywhere.
    let recorder = Server::start_on("127.0.0.2");
    recorder.route("/landing", vec![Reply::json(200, r#"{"landed": true}"#)]);
    let origin = Server::start();
    origin.route(
        "/start",
        vec![Reply::json(307, "{}").header("location", &recorder.url("/landing"))],
    );
    let story = dir.path().join("plain.yaml");
    std::fs::write(
        &story,
        format!(
            "name: Plain\nactions:\n  hook:\n    type: webhook\n    path: p\n  call:\n    type: http_request\n    from: hook\n    url: \"{}\"\n",
            origin.url("/start")
        ),
    )
    .expect("story");
    let out = Command::new(env!("CARGO_BIN_EXE_tale"))
        .arg("run")
        .arg(&story)
        .output()
        .expect("tale run");
    let events = json_lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(event(&events, "call")["output"]["body"]["landed"], true);
    assert_eq!(recorder.received().len(), 1);
}

#[test]
fn a_redirect_loop_stops_after_ten_hops() {
    let origin = Server::start();
    origin.route("/loop", vec![Reply::json(302, "{}").header("location", "/loop")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let story = dir.path().join("loop.yaml");
    std::fs::write(
        &story,
        format!(
            "name: Loop\nactions:\n  hook:\n    type: webhook\n    path: l\n  call:\n    type: http_request\n    from: hook\n    url: \"{}\"\n",
            origin.url("/loop")
        ),
    )
    .expect("story");
    let out = Command::new(env!("CARGO_BIN_EXE_tale"))
        .arg("run")
        .arg(&story)
        .output()
        .expect("tale run");
    let events = json_lines(&String::from_utf8_lossy(&out.stdout));
    let call = event(&events, "call");
    assert_eq!(call["branch"], "failure", "{call}");
    assert!(
        call["output"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("more than 10 redirects")
    );
    assert_eq!(origin.received().len(), 11);
}
