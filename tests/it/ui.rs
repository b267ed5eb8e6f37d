//! The web UI and stored traces without a browser: every page answers on an
//! empty and on a busy database, values from stories and events come out
//! as text, the login and CSRF tokens guard what they should, traces tell
//! requests, attempts and rules without a secret, and the SVG layout of
//! the shipped stories holds its snapshots. (The browser test is `ui_browser`.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value as J;
use tale::serve::Server;

use crate::mock_server::{Reply, Server as Mock};
use crate::serve::{SECRET, args, client, eventually, get_json, write_story};
use crate::support::{assert_snapshot, root, tale};

/// A credential the traced requests carry (it must never show).
pub(crate) const SINK_TOKEN: &str = "sink-t0ken-5ecret-77";

/// A story with HTML in its names, a trigger, and a request that fails on
/// the `fail` route (503, retried once, then 500 on the `broken` one).
pub(crate) fn triage_story(mock: &Mock) -> String {
    format!(
        r#"name: "Triage <script>alert('story')</script> & co"
actions:
  hook:
    type: webhook
    path: triage
    secret: {SECRET}
  is_urgent:
    name: "Urgent? <img src=x onerror=alert(1)>"
    type: trigger
    from: hook
    rules:
      - {{ type: field==value, path: "{{{{ hook.body.severity }}}}", value: high }}
  notify:
    type: http_request
    from: is_urgent
    method: post
    url: "{base}{{{{ hook.body.route }}}}"
    headers:
      authorization: "Bearer {{{{ CREDENTIAL.sink }}}}"
    payload: "{{{{ hook.body | as_object }}}}"
    retry_on_status: [503]
    retries: 1
    fail_on_status: true
  done:
    type: transform
    mode: message_only
    from: notify
    payload:
      ok: true
"#,
        base = mock.url("/")
    )
}

pub(crate) fn sink_credentials(dir: &Path) -> PathBuf {
    let path = dir.join("credentials.yaml");
    std::fs::write(
        &path,
        format!("sink: {{type: text, value: {SINK_TOKEN}, allowed_hosts: [127.0.0.1]}}\n"),
    )
    .expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    path
}

/// A folder with the triage story and its credentials, the mock its
/// requests reach (kept alive with it), and `tale serve` arguments for
/// them, ready to change before the server starts.
pub(crate) fn triage() -> (tempfile::TempDir, Mock, tale::serve::ServeArgs) {
    let dir = tempfile::tempdir().expect("tmp");
    let sink = mock();
    write_story(dir.path(), "triage.yaml", &triage_story(&sink));
    let mut a = args(dir.path());
    a.credentials = Some(sink_credentials(dir.path()));
    (dir, sink, a)
}

pub(crate) fn mock() -> Mock {
    let mock = Mock::start();
    mock.route("/ok", vec![Reply::json(200, r#"{"accepted":true}"#)]);
    mock.route(
        "/fail",
        vec![
            Reply::json(503, r#"{"error":"busy"}"#).header("retry-after", "0"),
            Reply::json(500, r#"{"error":"<b>boom</b>"}"#),
        ],
    );
    mock
}

pub(crate) async fn post_hook(server: &Server, body: J) {
    let r = client()
        .post(format!("http://{}/webhook/triage", server.addr))
        .bearer_auth(SECRET)
        .json(&body)
        .send()
        .await
        .expect("post");
    assert!(r.status().is_success(), "webhook answered {}", r.status());
}

pub(crate) async fn wait_finished(server: &Server, n: usize) {
    eventually("every run to finish", Duration::from_secs(20), async || {
        let runs = get_json(server, "/api/runs?limit=1000").await;
        let list = runs["runs"].as_array().cloned().unwrap_or_default();
        list.len() >= n && list.iter().all(|r| r["status"] != "running")
    })
    .await;
}

async fn get(server: &Server, path: &str) -> (u16, String) {
    let r = client()
        .get(format!("http://{}{path}", server.addr))
        .send()
        .await
        .expect("get");
    (r.status().as_u16(), r.text().await.expect("text"))
}

/// Runs listed by the API, newest first.
async fn runs(server: &Server) -> Vec<J> {
    get_json(server, "/api/runs?limit=1000").await["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_answers_on_an_empty_and_a_busy_database_and_pages_runs() {
    let (_dir, _sink, a) = triage();
    let server = tale::serve::start(&a, None).await.expect("serve");

    // Empty: every page answers.
    let (status, body) = get(&server, "/").await;
    assert_eq!(status, 200, "/ follows to /ui/: {body}");
    for path in [
        "/ui/",
        "/ui/runs",
        "/ui/runs?status=failed&window=24h",
        "/ui/stories/triage",
        "/ui/stories/triage?action=notify",
        "/ui/static/tale.css",
    ] {
        let (status, body) = get(&server, path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    assert_eq!(get(&server, "/ui/stories/nope").await.0, 404);
    assert_eq!(
        get(&server, "/ui/runs/01a24f0c-c947-78e4-befc-c7b6f2cb5345").await.0,
        404
    );
    assert_eq!(get(&server, "/ui/events/not-an-id").await.0, 404);
    assert_eq!(get(&server, "/ui/runs?status=bogus").await.0, 400);

    // Busy: 55 runs, 5 of them failing: a page of 50 and a next one.
    for i in 0..55 {
        let route = if i % 11 == 0 { "fail" } else { "ok" };
        post_hook(
            &server,
            serde_json::json!({"id": i, "severity": "high", "route": route}),
        )
        .await;
    }
    wait_finished(&server, 55).await;
    let (status, page) = get(&server, "/ui/runs").await;
    assert_eq!(status, 200);
    assert_eq!(page.matches("class=\"status-").count(), 50, "a page of runs");
    let next = page
        .split("class=\"next\" href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a link to older runs")
        .replace("&amp;", "&");
    let (status, older) = get(&server, &next).await;
    assert_eq!(status, 200);
    assert_eq!(older.matches("class=\"status-").count(), 5, "the rest on the next page");
    assert!(!older.contains("class=\"next\""));
    let (_, failed) = get(&server, "/ui/runs?status=failed").await;
    assert_eq!(failed.matches("class=\"status-failed\"").count(), 5);

    let (_, stories) = get(&server, "/ui/").await;
    assert!(stories.contains(">55</a>"), "55 runs in 24 h: {stories}");
    let (_, story) = get(&server, "/ui/stories/triage?action=notify").await;
    assert!(story.contains("data-action=\"notify\""), "the graph has the actions");
    assert!(
        story.contains("data-from=\"hook\" data-to=\"is_urgent\""),
        "and the edges"
    );
    assert!(story.contains("Latest events of"), "the selected action's events");
    for run in runs(&server).await.iter().take(12) {
        let id = run["id"].as_str().expect("id");
        let (status, page) = get(&server, &format!("/ui/runs/{id}")).await;
        assert_eq!(status, 200, "{page}");
        let events = get_json(&server, &format!("/api/runs/{id}/events")).await;
        let event = events["events"][0]["id"].as_str().expect("an event");
        assert_eq!(get(&server, &format!("/ui/events/{event}")).await.0, 200);
    }
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_tell_requests_attempts_and_rules_without_the_secret() {
    let (dir, _sink, a) = triage();
    let server = tale::serve::start(&a, None).await.expect("serve");
    post_hook(&server, serde_json::json!({"severity": "high", "route": "fail"})).await;
    post_hook(&server, serde_json::json!({"severity": "low", "route": "ok"})).await;
    wait_finished(&server, 2).await;
    let list = runs(&server).await;
    let failed = list.iter().find(|r| r["status"] == "failed").expect("a failed run");
    let id = failed["id"].as_str().expect("id");
    let traces = get_json(&server, &format!("/api/runs/{id}/traces")).await;
    let text = traces.to_string();
    assert!(!text.contains(SINK_TOKEN), "a credential in a trace: {text}");
    let steps = traces["traces"].as_array().expect("traces");
    let notify = steps.iter().find(|t| t["action"] == "notify").expect("notify traced");
    assert_eq!(notify["status"], "failed");
    assert_eq!(notify["branch"], "failure");
    let attempts = notify["detail"].as_array().expect("detail");
    let statuses: Vec<&J> = attempts.iter().map(|a| &a["status"]).collect();
    assert_eq!(
        statuses,
        [&J::from(503), &J::from(500)],
        "each attempt with its answer: {notify}"
    );
    assert_eq!(
        (&attempts[0]["attempt"], &attempts[1]["attempt"]),
        (&J::from(1), &J::from(2))
    );
    assert_eq!(attempts[0]["method"], "POST");
    assert!(attempts[0]["url"].as_str().expect("url").ends_with("/fail"));
    assert_eq!(
        attempts[0]["headers"]["authorization"], "Bearer [credential:sink]",
        "the header is shown redacted"
    );
    assert!(attempts[0]["duration_ms"].is_u64());
    let urgent = steps
        .iter()
        .find(|t| t["action"] == "is_urgent")
        .expect("trigger traced");
    assert_eq!(urgent["detail"][0]["rules"][0]["path"], "high");
    assert_eq!(urgent["detail"][0]["rules"][0]["matched"], true);
    assert!(steps.iter().all(|t| t["duration_ms"].is_number() && t["at"].is_i64()));

    // The low-severity run: the trigger says which rule did not match.
    let quiet = list.iter().find(|r| r["status"] == "succeeded").expect("a run");
    let quiet = get_json(
        &server,
        &format!("/api/runs/{}/traces", quiet["id"].as_str().expect("id")),
    )
    .await;
    let rule = &quiet["traces"][0]["detail"][0]["rules"][0];
    assert_eq!(
        (rule["path"].as_str(), rule["matched"].as_bool()),
        (Some("low"), Some(false))
    );
    assert_eq!(quiet["traces"][0]["branch"], "no_match");

    // The run page shows the same, escaped, without the secret.
    let (status, page) = get(&server, &format!("/ui/runs/{id}")).await;
    assert_eq!(status, 200);
    assert!(!page.contains(SINK_TOKEN));
    assert!(
        page.contains("data-action=\"notify\" data-status=\"failed\""),
        "the failed action is marked"
    );
    assert!(
        page.contains("data-action=\"done\" data-status=\"unreached\""),
        "after it, not reached"
    );
    assert!(page.contains("→ <strong>503</strong>") && page.contains("→ <strong>500</strong>"));
    server.stop().await.expect("stop");

    // `tale runs show` reads the same traces from the file.
    let db = format!("sqlite:{}", dir.path().join("tale.db").display());
    let shown = tale(&["runs", "show", id, "--db", &db]);
    assert_eq!(shown.status, 0, "{}", shown.stderr);
    assert!(
        shown.stdout.contains("notify") && shown.stdout.contains("failed"),
        "{}",
        shown.stdout
    );
    assert!(shown.stdout.contains("(attempt 2) → 500"), "{}", shown.stdout);
    assert!(
        shown.stdout.contains("rule `high` field==value `high`: matched"),
        "{}",
        shown.stdout
    );
    assert!(!shown.stdout.contains(SINK_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_in_stories_and_events_comes_out_as_text() {
    let (dir, _sink, a) = triage();
    // A refused story: its diagnostics are shown, escaped too.
    write_story(
        dir.path(),
        "broken.yaml",
        "name: \"<script>alert('broken')</script>\"\nactions:\n  x:\n    type: nope\n",
    );
    let server = tale::serve::start(&a, None).await.expect("serve");
    let hostile = "<script>alert('event')</script><img src=x onerror=alert(2)>";
    post_hook(
        &server,
        serde_json::json!({"severity": hostile, "route": "ok", "note": hostile}),
    )
    .await;
    wait_finished(&server, 1).await;
    let run = runs(&server).await[0]["id"].as_str().expect("id").to_owned();
    let events = get_json(&server, &format!("/api/runs/{run}/events")).await;
    let event = events["events"][0]["id"].as_str().expect("event").to_owned();
    for path in [
        "/ui/".to_owned(),
        "/ui/stories/triage".to_owned(),
        "/ui/stories/triage?action=hook".to_owned(),
        "/ui/stories/triage?action=is_urgent".to_owned(),
        "/ui/runs".to_owned(),
        format!("/ui/runs/{run}"),
        format!("/ui/events/{event}"),
    ] {
        let (status, page) = get(&server, &path).await;
        assert_eq!(status, 200, "{path}");
        for raw in ["<script>alert", "<img src=x"] {
            assert!(!page.contains(raw), "{path} holds raw `{raw}`");
        }
    }
    let (_, stories) = get(&server, "/ui/").await;
    assert!(
        stories.contains("Triage &#60;script&#62;alert(&#39;story&#39;)&#60;/script&#62; &#38; co"),
        "{stories}"
    );
    assert!(stories.contains("refused"), "the broken story is listed as refused");
    let (_, story) = get(&server, "/ui/stories/triage").await;
    assert!(
        story.contains("Urgent? &#60;img src=x onerror=alert(1)&#62;"),
        "{story}"
    );
    let (_, page) = get(&server, &format!("/ui/events/{event}")).await;
    assert!(
        page.contains("&#60;script&#62;alert(&#39;event&#39;)&#60;/script&#62;"),
        "{page}"
    );
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_api_token_the_ui_needs_a_login_and_forms_their_csrf_token() {
    let (_dir, _sink, mut a) = triage();
    a.api_token = Some(secrecy::SecretString::from("ui-t0ken-1".to_owned()));
    let server = tale::serve::start(&a, None).await.expect("serve");
    post_hook(&server, serde_json::json!({"severity": "high", "route": "ok"})).await;
    let runs = client()
        .get(format!("http://{}/api/runs", server.addr))
        .bearer_auth("ui-t0ken-1")
        .send()
        .await
        .expect("runs")
        .json::<J>()
        .await
        .expect("json");
    let run = runs["runs"][0]["id"].as_str().expect("id").to_owned();
    let events = client()
        .get(format!("http://{}/api/runs/{run}/events", server.addr))
        .bearer_auth("ui-t0ken-1")
        .send()
        .await
        .expect("events")
        .json::<J>()
        .await
        .expect("json");
    let event = events["events"][0]["id"].as_str().expect("event").to_owned();
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let url = |p: &str| format!("http://{}{p}", server.addr);

    // No session: pages send to the login form, forms are refused.
    let r = plain.get(url(&format!("/ui/runs/{run}"))).send().await.expect("get");
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        format!("/ui/login?next=%2Fui%2Fruns%2F{run}").as_str()
    );
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .expect("csp")
            .contains("default-src 'none'")
    );
    assert_eq!(plain.get(url("/ui/login")).send().await.expect("get").status(), 200);
    let r = plain
        .post(url(&format!("/ui/events/{event}/reemit")))
        .form(&[("csrf", "x")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403, "re-emit without a session");

    // A wrong token, then the right one.
    let r = plain
        .post(url("/ui/login"))
        .form(&[("token", "wrong"), ("next", "/ui/runs")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401);
    let r = plain
        .post(url("/ui/login"))
        .form(&[("token", "ui-t0ken-1"), ("next", "//evil.example/")])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/ui/",
        "only a path of the UI is a place to go back to"
    );
    let cookie = r.headers()["set-cookie"].to_str().expect("cookie").to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().expect("pair").to_owned();
    assert!(!session.contains("ui-t0ken-1"), "the cookie is not the token");

    let page = plain
        .get(url(&format!("/ui/events/{event}")))
        .header("cookie", &session)
        .send()
        .await
        .expect("get");
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("text");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a CSRF token in the form")
        .to_owned();
    let reemit = |csrf: String| {
        plain
            .post(url(&format!("/ui/events/{event}/reemit")))
            .header("cookie", &session)
            .form(&[("csrf", csrf)])
            .send()
    };
    assert_eq!(
        reemit("bad".into()).await.expect("post").status(),
        403,
        "a bad CSRF token"
    );
    let r = reemit(csrf).await.expect("post");
    assert_eq!(r.status(), 303, "re-emitted");
    assert!(
        r.headers()["location"]
            .to_str()
            .expect("location")
            .starts_with("/ui/runs/")
    );
    server.stop().await.expect("stop");
}

/// The layout of every shipped story with a graph worth drawing, as
/// `tale graph --format svg` writes it (the UI draws the same).
#[test]
fn svg_layouts_of_the_shipped_stories_hold_their_snapshots() {
    let stories = root().join("stories");
    for (name, file) in [
        ("alert-triage", "examples/alert-triage/alert-triage.yaml"),
        ("alert-summary", "examples/quickstart/alert-summary.yaml"),
        ("mobile-alerting", "examples/mobile-alerting/mobile-alerting.yaml"),
        (
            "endpoint-forensics",
            "examples/endpoint-forensics/endpoint-forensics.yaml",
        ),
    ] {
        let out = tale(&[
            "graph",
            root().join(file).to_str().expect("path"),
            "--format",
            "svg",
            "--stories",
            stories.to_str().expect("path"),
        ]);
        assert_eq!(out.status, 0, "{name}: {}", out.stderr);
        let path = root().join("tests/data/ui").join(format!("{name}.svg"));
        assert_snapshot(&path, &out.stdout).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_run_becomes_a_test_case_that_passes_without_the_network() {
    let (dir, sink, a) = triage();
    let server = tale::serve::start(&a, None).await.expect("serve");
    post_hook(
        &server,
        serde_json::json!({"severity": "high", "route": "fail", "case": 1}),
    )
    .await;
    post_hook(
        &server,
        serde_json::json!({"severity": "high", "route": "ok", "case": 2}),
    )
    .await;
    wait_finished(&server, 2).await;
    let list = runs(&server).await;
    server.stop().await.expect("stop");
    drop(sink);
    let story = dir.path().join("stories/triage.yaml");
    let db = format!("sqlite:{}", dir.path().join("tale.db").display());
    for run in &list {
        let id = run["id"].as_str().expect("id");
        let recorded = tale(&[
            "record",
            story.to_str().expect("path"),
            "--run",
            id,
            "--db",
            &db,
            "--name",
            id,
        ]);
        assert_eq!(recorded.status, 0, "{}", recorded.stderr);
        assert!(recorded.stdout.contains("1 mock(s)"), "{}", recorded.stdout);
    }
    let file = std::fs::read_to_string(dir.path().join("stories/triage.test.yaml")).expect("the test file");
    assert!(!file.contains(SINK_TOKEN), "{file}");
    assert!(
        file.contains("responses"),
        "the retried request answers in turn: {file}"
    );
    assert!(
        file.contains("[credential:sink]"),
        "the credential is a placeholder: {file}"
    );
    assert!(
        file.contains("\"notify.failure\":[{\"status\":500"),
        "a branch's output is keyed by it: {file}"
    );
    // The mock server is gone: the cases replay on their mocks alone. The
    // succeeded run passes; the failed one fails as it did, until the
    // story handles that answer.
    let tested = tale(&["test", dir.path().join("stories").to_str().expect("path")]);
    let said = format!("{}{}", tested.stdout, tested.stderr);
    assert!(said.contains("1 passed, 1 failed"), "{said}\n{file}");
    assert!(
        tested.stdout.contains("action `notify` failed: POST http://127.0.0.1:")
            && tested.stdout.contains("/fail answered 500"),
        "{}",
        tested.stdout
    );
    assert!(!tested.stdout.contains("does not match"), "{}", tested.stdout);

    // A run of another story, an unknown run, and --run without --db are refused.
    let other = tale(&[
        "record",
        root()
            .join("examples/quickstart/alert-summary.yaml")
            .to_str()
            .expect("p"),
        "--run",
        list[0]["id"].as_str().expect("id"),
        "--db",
        &db,
    ]);
    assert_ne!(other.status, 0, "{}", other.stderr);
    assert!(other.stderr.contains("is a run of story `triage`"), "{}", other.stderr);
    let unknown = tale(&[
        "record",
        story.to_str().expect("p"),
        "--run",
        "01a24f0c-c947-78e4-befc-c7b6f2cb5345",
        "--db",
        &db,
    ]);
    assert!(
        unknown.status != 0 && unknown.stderr.contains("no run"),
        "{}",
        unknown.stderr
    );
    let no_db = tale(&[
        "record",
        story.to_str().expect("p"),
        "--run",
        "01a24f0c-c947-78e4-befc-c7b6f2cb5345",
    ]);
    assert!(no_db.status != 0 && no_db.stderr.contains("--db"), "{}", no_db.stderr);
}

/// The same traces, pages and recording on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_pages_and_recording_work_on_postgres() {
    let Some(db) = crate::support::fresh_postgres().await else {
        return;
    };
    let (dir, _sink, mut a) = triage();
    a.db = db.clone();
    let server = tale::serve::start(&a, None).await.expect("serve");
    post_hook(&server, serde_json::json!({"severity": "high", "route": "fail"})).await;
    post_hook(&server, serde_json::json!({"severity": "high", "route": "ok"})).await;
    wait_finished(&server, 2).await;
    let list = runs(&server).await;
    let failed = list.iter().find(|r| r["status"] == "failed").expect("a failed run");
    let id = failed["id"].as_str().expect("id").to_owned();
    let traces = get_json(&server, &format!("/api/runs/{id}/traces")).await;
    assert!(!traces.to_string().contains(SINK_TOKEN));
    let notify = traces["traces"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["action"] == "notify"))
        .expect("notify traced")
        .clone();
    assert_eq!(notify["status"], "failed");
    assert_eq!(notify["detail"][1]["status"], 500, "{notify}");
    let events = get_json(&server, &format!("/api/runs/{id}/events")).await;
    let event = events["events"][0]["id"].as_str().expect("event").to_owned();
    for path in [
        "/ui/".to_owned(),
        "/ui/stories/triage?action=notify".to_owned(),
        "/ui/runs?status=failed&window=1h".to_owned(),
        format!("/ui/runs/{id}"),
        format!("/ui/events/{event}"),
    ] {
        let (status, page) = get(&server, &path).await;
        assert_eq!(status, 200, "{path}: {page}");
    }
    let (_, story) = get(&server, "/ui/stories/triage").await;
    assert!(story.contains("1 failed"), "a failure counted on notify: {story}");
    server.stop().await.expect("stop");
    let recorded = tale(&[
        "record",
        dir.path().join("stories/triage.yaml").to_str().expect("path"),
        "--run",
        &id,
        "--db",
        &db,
    ]);
    assert_eq!(recorded.status, 0, "{}", recorded.stderr);
    assert!(recorded.stdout.contains("1 mock(s)"), "{}", recorded.stdout);
}
