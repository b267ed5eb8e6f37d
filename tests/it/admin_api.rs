//! Credentials and resources set through `tale serve`'s API: sealed at rest
//! (the database's bytes never hold the value), never returned, used by the
//! stories at once, kept across restarts with the same key and refused with
//! another; the API token guard. OAuth2 tokens read in templates.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value as J, json};
use tale::serve::Server;

use crate::mock_server::{Reply, Server as Mock};
use crate::serve::{SECRET, args, client, eventually, write_story};

const API_TOKEN: &str = "admin-t0ken-123456";
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const VALUE: &str = "stored-Secret-4d9e1f77";

fn story(url: &str) -> String {
    format!(
        r#"name: Stored credential
actions:
  hook:
    type: webhook
    path: call
    secret: {SECRET}
  send:
    type: http_request
    from: hook
    method: post
    url: "{{{{ RESOURCE.sink_base }}}}{url}"
    credential: ticketing
    payload:
      echo: "{{{{ CREDENTIAL.ticketing }}}}"
"#
    )
}

async fn request(server: &Server, method: reqwest::Method, path: &str, body: Option<J>, token: bool) -> (u16, J) {
    let mut r = client().request(method, format!("http://{}{path}", server.addr));
    if token {
        r = r.bearer_auth(API_TOKEN);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let response = r.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(J::String(text)))
}

async fn hook(server: &Server) -> u16 {
    client()
        .post(format!("http://{}/webhook/call/{SECRET}", server.addr))
        .json(&json!({"n": 1}))
        .send()
        .await
        .expect("hook")
        .status()
        .as_u16()
}

/// Every byte the database files hold.
fn database_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("tale.db") {
            out.extend(std::fs::read(entry.path()).unwrap_or_default());
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_set_through_the_api_are_sealed_used_and_never_returned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    // The remote echoes the credential back: the stored event must not.
    let echo = format!(r#"{{"echo": "{VALUE}"}}"#);
    mock.route(
        "/sink",
        vec![
            Reply::json(200, &echo),
            Reply::json(200, &echo),
            Reply::json(200, &echo),
        ],
    );
    write_story(dir.path(), "stored.yaml", &story("/sink"));
    let mut a = args(dir.path());
    a.api_token = Some(API_TOKEN.into());
    a.secret_key = Some(KEY.into());
    let server = tale::serve::start(&a, None).await.expect("serve");
    use reqwest::Method;

    // The token guards the whole API.
    let (status, _) = request(&server, Method::GET, "/api/runs", None, false).await;
    assert_eq!(status, 401);
    let (status, _) = request(&server, Method::GET, "/api/runs", None, true).await;
    assert_eq!(status, 200);

    // Bad credentials are refused with the reason, never with the value.
    let (status, body) = request(
        &server,
        Method::PUT,
        "/api/credentials/ticketing",
        Some(json!({"type": "basic", "password": VALUE})),
        true,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains("username"), "{body}");
    assert!(!body.to_string().contains(VALUE));
    let (status, body) = request(
        &server,
        Method::PUT,
        "/api/credentials/ticketing",
        Some(json!({"value": VALUE, "colour": "blue"})),
        true,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = request(
        &server,
        Method::PUT,
        "/api/credentials/bad-name!",
        Some(json!({"value": "x"})),
        true,
    )
    .await;
    assert_eq!(status, 400);
    // serde would quote a mistyped value: the answer must not.
    for body in [json!(VALUE), json!({"value": ["x", VALUE]})] {
        let (status, body) = request(&server, Method::PUT, "/api/credentials/ticketing", Some(body), true).await;
        assert_eq!(status, 400, "{body}");
        assert!(!body.to_string().contains(VALUE), "{body}");
    }
    // A resource a resources file defines cannot be stored (the file wins).
    std::fs::write(dir.path().join("stories/resources.yaml"), "tenant: contoso\n").expect("resources");
    let (status, body) = request(&server, Method::PUT, "/api/resources/tenant", Some(json!("x")), true).await;
    assert_eq!(status, 409, "{body}");

    // A resource and a credential set through the API serve at once.
    let (status, body) = request(
        &server,
        Method::PUT,
        "/api/resources/sink_base",
        Some(json!(mock.url(""))),
        true,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = request(
        &server,
        Method::PUT,
        "/api/credentials/ticketing",
        Some(json!({"type": "text", "value": VALUE, "allowed_hosts": ["127.0.0.1"]})),
        true,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "text");
    assert!(!body.to_string().contains(VALUE));
    assert_eq!(hook(&server).await, 200);
    eventually(
        "the request with the stored credential",
        Duration::from_secs(10),
        async || !mock.received().is_empty(),
    )
    .await;
    let got = &mock.received()[0];
    assert_eq!(
        got.headers.get("authorization").map(String::as_str),
        Some(&*format!("Bearer {VALUE}"))
    );
    assert!(got.body.contains(VALUE), "the template did not read it: {}", got.body);

    // Never returned: not by the list, not in the stored events.
    let (_, list) = request(&server, Method::GET, "/api/credentials", None, true).await;
    assert_eq!(list["credentials"][0]["name"], "ticketing");
    assert_eq!(list["credentials"][0]["allowed_hosts"], json!(["127.0.0.1"]));
    assert!(!list.to_string().contains(VALUE));
    let (_, resources) = request(&server, Method::GET, "/api/resources", None, true).await;
    assert_eq!(resources["resources"][0]["value"], json!(mock.url("")));
    eventually("the run to finish", Duration::from_secs(10), async || {
        let (_, runs) = request(&server, Method::GET, "/api/runs?status=succeeded", None, true).await;
        runs["runs"].as_array().is_some_and(|r| r.len() == 1)
    })
    .await;
    let (_, runs) = request(&server, Method::GET, "/api/runs", None, true).await;
    let run = runs["runs"][0]["id"].as_str().expect("run").to_owned();
    let (_, events) = request(&server, Method::GET, &format!("/api/runs/{run}/events"), None, true).await;
    assert!(!events.to_string().contains(VALUE), "{events}");
    assert!(events.to_string().contains("[credential:ticketing]"), "{events}");
    server.stop().await.expect("stop");
    assert!(
        !contains(&database_bytes(dir.path()), VALUE),
        "the value is in the database's bytes"
    );

    // The same key opens it again after a restart; another key or none is
    // refused at start with a reason.
    let mut other = a.clone();
    other.secret_key = Some("00".repeat(32).as_str().into());
    let refused = tale::serve::start(&other, None)
        .await
        .err()
        .expect("another key is refused");
    assert!(format!("{refused:#}").contains("sealed with the key"), "{refused:#}");
    other.secret_key = None;
    let refused = tale::serve::start(&other, None).await.err().expect("no key is refused");
    assert!(format!("{refused:#}").contains("TALE_SECRET_KEY"), "{refused:#}");
    let server = tale::serve::start(&a, None).await.expect("serve again");
    assert_eq!(hook(&server).await, 200);
    eventually("the second request", Duration::from_secs(10), async || {
        mock.received().len() == 2
    })
    .await;
    assert_eq!(
        mock.received()[1].headers.get("authorization").map(String::as_str),
        Some(&*format!("Bearer {VALUE}"))
    );

    // Rotation: started with a new key and the previous one, the stored
    // credentials are sealed again with the new key; then the new key alone
    // opens them and the old one no longer does.
    server.stop().await.expect("stop");
    let new_key = "11".repeat(32);
    let mut rotated = a.clone();
    rotated.secret_key = Some(new_key.as_str().into());
    rotated.previous_secret_key = Some(KEY.into());
    tale::serve::start(&rotated, None)
        .await
        .expect("rotate")
        .stop()
        .await
        .expect("stop");
    let refused = tale::serve::start(&a, None)
        .await
        .err()
        .expect("the old key no longer opens them");
    assert!(format!("{refused:#}").contains("sealed with the key"), "{refused:#}");
    let mut no_new = rotated.clone();
    no_new.secret_key = None;
    let refused = tale::serve::start(&no_new, None)
        .await
        .err()
        .expect("a previous key without a new one is refused");
    assert!(format!("{refused:#}").contains("--secret-key"), "{refused:#}");
    rotated.previous_secret_key = None;
    let server = tale::serve::start(&rotated, None).await.expect("the new key alone");
    assert_eq!(hook(&server).await, 200);
    eventually("the third request", Duration::from_secs(10), async || {
        mock.received().len() == 3
    })
    .await;
    assert_eq!(
        mock.received()[2].headers.get("authorization").map(String::as_str),
        Some(&*format!("Bearer {VALUE}"))
    );

    // Deleted: the next run has no credential to attach.
    let (status, _) = request(&server, Method::DELETE, "/api/credentials/ticketing", None, true).await;
    assert_eq!(status, 204);
    let (status, _) = request(&server, Method::DELETE, "/api/credentials/ticketing", None, true).await;
    assert_eq!(status, 404);
    let (_, list) = request(&server, Method::GET, "/api/credentials", None, true).await;
    assert_eq!(list["credentials"], json!([]));
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_api_token_and_credentials_need_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_story(dir.path(), "stored.yaml", &story("/sink"));
    use reqwest::Method;
    // No token: the API reads, but changes nothing.
    let server = tale::serve::start(&args(dir.path()), None).await.expect("serve");
    let (status, body) = request(
        &server,
        Method::PUT,
        "/api/resources/sink_base",
        Some(json!("http://x")),
        false,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = request(&server, Method::GET, "/api/credentials", None, false).await;
    assert_eq!(status, 200);
    server.stop().await.expect("stop");
    // A token but no key: credentials cannot be stored sealed.
    let mut a = args(dir.path());
    a.api_token = Some(API_TOKEN.into());
    let server = tale::serve::start(&a, None).await.expect("serve");
    let (status, body) = request(
        &server,
        Method::PUT,
        "/api/credentials/ticketing",
        Some(json!({"value": VALUE})),
        true,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("TALE_SECRET_KEY"),
        "{body}"
    );
    let (status, _) = request(
        &server,
        Method::PUT,
        "/api/credentials/ticketing",
        Some(json!({"value": VALUE})),
        false,
    )
    .await;
    assert_eq!(status, 401);
    server.stop().await.expect("stop");
}
