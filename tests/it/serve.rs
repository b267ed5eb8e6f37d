//! `tale serve`: webhooks answered only once stored, bad input refused with
//! nothing stored, a SIGKILL under load losing nothing, schedules on a
//! controllable clock, reload of a broken story, and a restart that resumes
//! pending delays and an open implode. Real SQLite files, a real sink on
//! 127.0.0.1.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value as J, json};
use tale::serve::{ServeArgs, Server};
use tale_engine::runtime::clock::ManualClock;

use crate::mock_server::{Reply, Server as Mock};

pub(crate) const SECRET: &str = "hook-secret-42";

pub(crate) fn args(dir: &Path) -> ServeArgs {
    ServeArgs {
        stories: vec![dir.join("stories")],
        db: format!("sqlite:{}", dir.join("tale.db").display()),
        listen: "127.0.0.1:0".parse().expect("addr"),
        log_format: tale::serve::LogFormat::Human,
        workers: 64,
        threads: None,
        per_host: 16,
        sync: tale::serve::SyncMode::Normal,
        max_queued: 100_000,
        max_body: 1024 * 1024,
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(30),
        max_connections: None,
        strict: false,
        credentials: None,
        deny_internal_addresses: false,
        resources: Vec::new(),
        watch: Duration::ZERO,
        api_token: None,
        secret_key: None,
        previous_secret_key: None,
        grace: Duration::from_secs(5),
        node_name: None,
        node_lease: Duration::from_secs(10),
        reuse_port: false,
        db_committers: 4,
        no_traces: false,
        public_url: None,
        prompt_expiry: Duration::from_secs(3 * 24 * 3600),
    }
}

pub(crate) fn write_story(dir: &Path, name: &str, text: &str) {
    let stories = dir.join("stories");
    std::fs::create_dir_all(&stories).expect("mkdir");
    std::fs::write(stories.join(name), text).expect("write story");
}

/// A story forwarding each webhook body to the mock at `url`.
pub(crate) fn forward_story(url: &str) -> String {
    format!(
        r#"name: Forward
actions:
  hook:
    type: webhook
    path: fwd
    secret: {SECRET}
    verbs: [post]
    max_body_bytes: 256
  send:
    type: http_request
    from: hook
    method: post
    url: "{url}"
    payload: "{{{{ hook.body | as_object }}}}"
"#
    )
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

pub(crate) async fn get_json(server: &Server, path: &str) -> J {
    client()
        .get(format!("http://{}{path}", server.addr))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

/// The server's `/metrics` text.
pub(crate) async fn metrics(server: &Server) -> String {
    metrics_at(server.addr).await
}

/// The `/metrics` text of the server listening at `addr`.
async fn metrics_at(addr: impl std::fmt::Display) -> String {
    client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// How many runs `/api/runs?…` lists.
async fn run_count(server: &Server, query: &str) -> usize {
    get_json(server, query).await["runs"].as_array().map_or(0, Vec::len)
}

/// Waits until `f` holds (bounded).
pub(crate) async fn eventually(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_run_is_stored_forwarded_and_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    mock.route("/sink", vec![Reply::json(200, "{}")]);
    write_story(dir.path(), "forward.yaml", &forward_story(&mock.url("/sink")));
    let server = tale::serve::start(&args(dir.path()), None).await.expect("serve");
    let url = format!("http://{}/webhook/fwd/{SECRET}", server.addr);
    let r = client().post(&url).json(&json!({"id": 7})).send().await.expect("post");
    assert_eq!(r.status(), 200);
    // The Bearer form reaches the same webhook, and its secret is not stored.
    let r = client()
        .post(format!("http://{}/webhook/fwd", server.addr))
        .bearer_auth(SECRET)
        .json(&json!({"id": 8}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    eventually("two forwarded bodies", Duration::from_secs(10), async || {
        mock.received().len() == 2
    })
    .await;
    let mut ids: Vec<J> = mock
        .received()
        .iter()
        .map(|r| serde_json::from_str::<J>(&r.body).expect("json")["id"].clone())
        .collect();
    ids.sort_by_key(|v| v.as_i64());
    assert_eq!(ids, vec![json!(7), json!(8)]);
    eventually("two finished runs", Duration::from_secs(10), async || {
        run_count(&server, "/api/runs?status=succeeded").await == 2
    })
    .await;
    let runs = get_json(&server, "/api/runs?story=forward&limit=1").await;
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(1));
    let next = runs["next"].as_str().expect("a next page").to_owned();
    let page2 = get_json(&server, &format!("/api/runs?story=forward&limit=1&after={next}")).await;
    assert_eq!(page2["runs"].as_array().map(Vec::len), Some(1));
    assert_ne!(page2["runs"][0]["id"], runs["runs"][0]["id"]);
    let run_id = runs["runs"][0]["id"].as_str().expect("id").to_owned();
    let events = get_json(&server, &format!("/api/runs/{run_id}/events")).await;
    assert_eq!(events["events"].as_array().map(Vec::len), Some(2));
    assert_eq!(events["by_action"]["send"][0]["output"]["status"], 200);
    let stored = events.to_string();
    assert!(!stored.contains(SECRET), "the webhook secret was stored: {stored}");

    // Emitting the webhook's event again runs the story again.
    let hook_event = events["by_action"]["hook"][0]["id"]
        .as_str()
        .expect("event id")
        .to_owned();
    let r = client()
        .post(format!("http://{}/api/events/{hook_event}/reemit", server.addr))
        .send()
        .await
        .expect("reemit");
    assert_eq!(r.status(), 202);
    eventually("the re-emitted run", Duration::from_secs(10), async || {
        mock.received().len() == 3
    })
    .await;

    let metrics = metrics(&server).await;
    assert!(metrics.contains("tale_events_total"), "{metrics}");
    assert!(
        metrics.contains(r#"tale_http_responses_total{host="127.0.0.1:"#),
        "{metrics}"
    );
    let stories = get_json(&server, "/api/stories").await;
    assert_eq!(stories["stories"][0]["status"], "ok");
    server.stop().await.expect("stop");

    // `tale runs` and `tale events` read the same file.
    let db = format!("sqlite:{}", dir.path().join("tale.db").display());
    let out = crate::support::tale(&["runs", "--db", &db, "--json"]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 3, "{}", out.stdout);
    let out = crate::support::tale(&["events", &run_id, "--db", &db]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_webhook_input_gets_a_clear_4xx_and_nothing_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    mock.route("/sink", vec![Reply::json(200, "{}")]);
    write_story(
        dir.path(),
        "forward.yaml",
        &forward_story(&mock.url("/sink")).replace("max_body_bytes: 256", "max_body_bytes: 1024"),
    );
    let mut a = args(dir.path());
    a.max_body = 2048;
    let server = tale::serve::start(&a, None).await.expect("serve");
    let base = format!("http://{}/webhook", server.addr);
    let c = client();
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        (
            "over the webhook's max_body_bytes",
            c.post(format!("{base}/fwd/{SECRET}"))
                .header("content-type", "application/json")
                .body(format!("{{\"x\": \"{}\"}}", "a".repeat(1100))),
            413,
        ),
        (
            "over the server's --max-body",
            c.post(format!("{base}/fwd/{SECRET}")).body("a".repeat(5000)),
            413,
        ),
        (
            "malformed JSON",
            c.post(format!("{base}/fwd/{SECRET}"))
                .header("content-type", "application/json")
                .body("{\"id\": "),
            400,
        ),
        (
            "JSON nested deeper than 128 levels",
            c.post(format!("{base}/fwd/{SECRET}"))
                .header("content-type", "application/json")
                .body(format!("{}{}", "[".repeat(300), "]".repeat(300))),
            400,
        ),
        (
            "wrong secret",
            c.post(format!("{base}/fwd/nope")).json(&json!({"id": 1})),
            401,
        ),
        ("no secret", c.post(format!("{base}/fwd")).json(&json!({"id": 1})), 401),
        (
            "wrong verb",
            c.put(format!("{base}/fwd/{SECRET}")).json(&json!({"id": 1})),
            405,
        ),
        (
            "unsupported content type",
            c.post(format!("{base}/fwd/{SECRET}"))
                .header("content-type", "application/octet-stream")
                .body(vec![0u8, 159, 146, 150]),
            415,
        ),
        (
            "no such webhook",
            c.post(format!("{base}/nowhere/{SECRET}")).json(&json!({})),
            404,
        ),
    ];
    for (what, request, status) in cases {
        let r = request.send().await.expect(what);
        assert_eq!(r.status().as_u16(), status, "{what}");
        let body: J = r.json().await.expect(what);
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {body}");
    }
    server.idle().await;
    assert_eq!(get_json(&server, "/api/runs").await["runs"], json!([]));
    assert!(mock.received().is_empty());
    server.stop().await.expect("stop");
}

/// A body over 1 MiB is kept as text, not parsed (see
/// `a_large_body_is_read_in_place…`): it is refused as a small one is when
/// it is not JSON, nests deeper than parsing accepts, or is not UTF-8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_malformed_body_is_refused_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    write_story(
        dir.path(),
        "forward.yaml",
        &forward_story(&mock.url("/sink")).replace("max_body_bytes: 256", "max_body_bytes: 4194304"),
    );
    let mut a = args(dir.path());
    a.max_body = 4 << 20;
    let server = tale::serve::start(&a, None).await.expect("serve");
    let url = format!("http://{}/webhook/fwd/{SECRET}", server.addr);
    let pad = "x".repeat(1 << 20);
    let deep = format!(r#"{{"pad": "{pad}", "x": {}{}}}"#, "[".repeat(200), "]".repeat(200));
    let cut = format!(r#"{{"pad": "{pad}", "x": [1, 2"#);
    // A body that would close the output object and add members of its own.
    let forged = format!(r#"{{"pad": "{pad}"}},"headers":{{"x-user":"admin"}},"method":"get""#);
    let mut latin1 = format!(r#"{{"pad": "{pad}", "x": ""#).into_bytes();
    latin1.extend([0xe9, b'"', b'}']);
    for (what, body) in [
        ("truncated", cut.into_bytes()),
        ("two values, forging output members", forged.into_bytes()),
        ("nested too deep", deep.into_bytes()),
        ("not UTF-8", latin1),
    ] {
        let r = client()
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect(what);
        assert_eq!(r.status().as_u16(), 400, "{what}");
        let body: J = r.json().await.expect(what);
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("body")),
            "{what}: {body}"
        );
    }
    // And a valid one of the same size goes through.
    let ok = format!(r#"{{"pad": "{pad}", "id": 7}}"#);
    let r = client()
        .post(&url)
        .header("content-type", "application/json")
        .body(ok)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200);
    server.idle().await;
    let runs = get_json(&server, "/api/runs").await;
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(1), "{runs}");
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_capacity_gets_503_and_every_2xx_is_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    mock.route(
        "/sink",
        vec![Reply::json(200, "{}").delayed(Duration::from_millis(200))],
    );
    write_story(dir.path(), "forward.yaml", &forward_story(&mock.url("/sink")));
    let mut a = args(dir.path());
    a.max_queued = 4;
    a.workers = 4;
    let server = tale::serve::start(&a, None).await.expect("serve");
    let url = format!("http://{}/webhook/fwd/{SECRET}", server.addr);
    // 40 at once against room for 4: some wait for room, the rest get 503.
    let mut sends = Vec::new();
    for i in 0..40i64 {
        let url = url.clone();
        sends.push(tokio::spawn(async move {
            let r = client().post(&url).json(&json!({"id": i})).send().await.expect("post");
            let retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (i, r.status().as_u16(), retry)
        }));
    }
    let mut accepted = Vec::new();
    let mut refused = 0;
    for s in sends {
        match s.await.expect("join") {
            (i, 200, _) => accepted.push(i),
            (_, 503, retry) => {
                assert_eq!(retry.as_deref(), Some("1"));
                refused += 1;
            }
            (_, other, _) => panic!("unexpected status {other}"),
        }
    }
    accepted.sort();
    assert!(refused > 0, "the flood was never refused");
    assert!(!accepted.is_empty());
    eventually(
        "every accepted request delivered",
        Duration::from_secs(30),
        async || mock.received().len() >= accepted.len(),
    )
    .await;
    server.idle().await;
    let mut delivered = mock.received_ids();
    delivered.sort();
    assert_eq!(delivered, accepted, "a refused request ran, or an accepted one did not");
    let runs = get_json(&server, &format!("/api/runs?limit={}", 100)).await;
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(accepted.len()));
    server.stop().await.expect("stop");
}

/// `tale serve` as a process, for the crash test.
/// Waits until the `tale serve` process on `port` answers `/readyz`.
pub(crate) async fn wait_ready(port: u16) {
    let ready = format!("http://127.0.0.1:{port}/readyz");
    eventually("tale serve ready", Duration::from_secs(20), async || {
        client().get(&ready).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
}

fn spawn_serve(dir: &Path, port: u16, sink: &str) -> Child {
    serve_process(dir, port, &[], &[("TALE_RESOURCE_SINK", sink)])
}

/// `tale serve` as a process on `dir/stories` and `dir/tale.db`, on `port`,
/// its logs quiet; `extra` arguments and `env` on top.
pub(crate) fn serve_process(dir: &Path, port: u16, extra: &[&str], env: &[(&str, &str)]) -> Child {
    let db = format!("sqlite:{}", dir.join("tale.db").display());
    serve_process_on(dir, &db, port, extra, env)
}

/// The same on the database `db` (a `--db` URL).
pub(crate) fn serve_process_on(dir: &Path, db: &str, port: u16, extra: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tale"));
    cmd.args(["serve", "--stories"])
        .arg(dir.join("stories"))
        .args(["--db", db])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--watch", "0s"])
        .args(extra)
        .env("TALE_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tale serve")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite:{}", dir.path().join("tale.db").display());
    kill_under_load(dir.path(), &db, Duration::from_millis(20)).await;
}

/// SIGKILL `tale serve` on `db` under webhook load, restart it: every
/// request answered 2xx is delivered. The sink answers after `sink_delay`,
/// slower than requests come in, so that the kill finds work in flight.
pub(crate) async fn kill_under_load(dir: &Path, db: &str, sink_delay: Duration) {
    let spawn_serve =
        |dir: &Path, port: u16, sink: &str| serve_process_on(dir, db, port, &[], &[("TALE_RESOURCE_SINK", sink)]);
    let mock = Mock::start();
    mock.route("/sink", vec![Reply::json(200, "{}").delayed(sink_delay)]);
    write_story(
        dir,
        "forward.yaml",
        &forward_story("{{ RESOURCE.sink }}").replace("max_body_bytes: 256", "max_body_bytes: 4096"),
    );
    let port = crate::support::free_port();
    let mut child = spawn_serve(dir, port, &mock.url("/sink"));
    let url = format!("http://127.0.0.1:{port}/webhook/fwd/{SECRET}");
    wait_ready(port).await;
    // 8 clients send numbered requests; the process is killed mid-load.
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let mut clients = Vec::new();
    for c in 0..8i64 {
        let url = url.clone();
        let acknowledged = acknowledged.clone();
        clients.push(tokio::spawn(async move {
            let http = client();
            for i in 0..2_000i64 {
                let id = c * 100_000 + i;
                match http.post(&url).json(&json!({"id": id})).send().await {
                    Ok(r) if r.status().is_success() => acknowledged.lock().expect("lock").push(id),
                    Ok(_) => {}
                    Err(_) => break, // the server is gone
                }
            }
        }));
    }
    eventually("some load", Duration::from_secs(30), async || {
        acknowledged.lock().expect("lock").len() >= 400
    })
    .await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    for c in clients {
        let _ = c.await;
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    let before_restart = mock.received().len();
    assert!(
        before_restart < acknowledged.len(),
        "nothing was in flight at the kill ({before_restart} delivered of {} acknowledged): the test proves nothing",
        acknowledged.len()
    );
    eprintln!(
        "killed with {} acknowledged, {} delivered",
        acknowledged.len(),
        before_restart
    );
    let mut child = spawn_serve(dir, port, &mock.url("/sink"));
    let delivered = || -> std::collections::HashSet<i64> {
        mock.received()
            .iter()
            .filter_map(|r| serde_json::from_str::<J>(&r.body).ok()?["id"].as_i64())
            .collect()
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let got = delivered();
        if acknowledged.iter().all(|id| got.contains(id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let got = delivered();
    let lost: Vec<&i64> = acknowledged.iter().filter(|id| !got.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged requests lost after restart (first: {:?})",
        lost.len(),
        acknowledged.len(),
        lost.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_fire_once_per_tick_and_catch_up_once_after_downtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    mock.route("/tick", vec![Reply::json(200, "{}")]);
    write_story(
        dir.path(),
        "every5.yaml",
        &format!(
            r#"name: Every five seconds
actions:
  tick:
    type: http_request
    schedule: {{ cron: "*/5 * * * * *", timezone: Europe/Paris }}
    method: post
    url: "{}"
    payload: {{ run: "{{% story_run_guid %}}" }}
"#,
            mock.url("/tick")
        ),
    );
    let t0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let clock = Arc::new(ManualClock::new(t0 + 1_000));
    let server = tale::serve::start(&args(dir.path()), Some(clock.clone()))
        .await
        .expect("serve");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(mock.received().is_empty(), "fired before its tick");
    clock.set(t0 + 5_000);
    eventually("the first tick", Duration::from_secs(10), async || {
        mock.received().len() == 1
    })
    .await;
    clock.set(t0 + 7_000);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(mock.received().len(), 1, "fired between ticks");
    clock.set(t0 + 10_000);
    eventually("the second tick", Duration::from_secs(10), async || {
        mock.received().len() == 2
    })
    .await;
    let runs = get_json(&server, "/api/runs").await;
    assert_eq!(runs["runs"][0]["started_at"], t0 + 10_000, "{runs}");
    assert_eq!(runs["runs"][1]["started_at"], t0 + 5_000, "{runs}");
    server.stop().await.expect("stop");

    // Restarted at the same instant: the tick that fired does not fire again.
    let clock = Arc::new(ManualClock::new(t0 + 10_000));
    let server = tale::serve::start(&args(dir.path()), Some(clock.clone()))
        .await
        .expect("serve");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(mock.received().len(), 2, "a tick fired twice across a restart");
    server.stop().await.expect("stop");

    // Down for 22 s (ticks at 15, 20, 25 and 30 missed): one catch-up tick.
    let clock = Arc::new(ManualClock::new(t0 + 32_000));
    let server = tale::serve::start(&args(dir.path()), Some(clock.clone()))
        .await
        .expect("serve");
    eventually("the catch-up tick", Duration::from_secs(10), async || {
        mock.received().len() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(mock.received().len(), 3, "more than one missed tick fired");
    clock.set(t0 + 35_000);
    eventually("the next regular tick", Duration::from_secs(10), async || {
        mock.received().len() == 4
    })
    .await;
    server.stop().await.expect("stop");
}

fn versioned_story(version: &str, broken: bool) -> String {
    format!(
        r#"name: Versioned
actions:
  hook:
    type: webhook
    path: version
    secret: {SECRET}
    {}
    response:
      body: "{version}"
"#,
        if broken { "no_such_key: true" } else { "" }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_story_is_refused_on_reload_and_the_previous_version_keeps_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_story(dir.path(), "versioned.yaml", &versioned_story("v1", false));
    let mut a = args(dir.path());
    a.watch = Duration::from_millis(100);
    let server = tale::serve::start(&a, None).await.expect("serve");
    let url = format!("http://{}/webhook/version/{SECRET}", server.addr);
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
    write_story(dir.path(), "versioned.yaml", &versioned_story("v2", true));
    eventually(
        "the reload to notice the broken story",
        Duration::from_secs(10),
        async || get_json(&server, "/api/stories").await["stories"][0]["status"] == "stale",
    )
    .await;
    let stories = get_json(&server, "/api/stories").await;
    let errors = stories["stories"][0]["errors"].to_string();
    assert!(errors.contains("E101") || errors.contains("no_such_key"), "{errors}");
    assert_eq!(answer().await, "v1", "the broken version replaced the good one");
    write_story(dir.path(), "versioned.yaml", &versioned_story("v3", false));
    eventually("the fixed story", Duration::from_secs(10), async || {
        answer().await == "v3"
    })
    .await;
    server.stop().await.expect("stop");
}

/// `timeout_secs: 1e20` used to pass `check` and panic the build: the
/// server did not start, and dropped in later, every reload panicked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_story_with_numbers_no_run_can_honour_is_refused_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let huge = |path: &str| {
        format!(
            "name: Huge {path}\nactions:\n  hook:\n    type: webhook\n    path: {path}\n    secret: {SECRET}\n  call:\n    type: http_request\n    from: hook\n    url: http://127.0.0.1:9/\n    timeout_secs: 1e20\n"
        )
    };
    write_story(dir.path(), "versioned.yaml", &versioned_story("v1", false));
    write_story(dir.path(), "huge.yaml", &huge("huge"));
    let mut a = args(dir.path());
    a.watch = Duration::from_millis(100);
    let server = tale::serve::start(&a, None)
        .await
        .expect("serve starts beside the refused story");
    let url = format!("http://{}/webhook/version/{SECRET}", server.addr);
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
    let stories = get_json(&server, "/api/stories").await;
    let huge_status = stories["stories"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["file"].as_str().is_some_and(|f| f.ends_with("huge.yaml")))
        .cloned()
        .unwrap_or_default();
    assert_eq!(huge_status["status"], "refused", "{stories}");
    assert!(
        huge_status["errors"].to_string().contains("timeout_secs"),
        "{huge_status}"
    );
    // Dropped in while serving: the next change still applies.
    write_story(dir.path(), "huge2.yaml", &huge("huge2"));
    write_story(dir.path(), "versioned.yaml", &versioned_story("v2", false));
    eventually(
        "the reload past the refused story",
        Duration::from_secs(10),
        async || answer().await == "v2",
    )
    .await;
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_pending_delays_and_an_open_implode() {
    let dir = tempfile::tempdir().expect("tempdir");
    resume_after_restart(&args(dir.path())).await;
}

/// Stops `tale serve` with two delays pending and an implode window open,
/// starts it again: the delays fire and the window closes, once each.
pub(crate) async fn resume_after_restart(args: &ServeArgs) {
    let dir = args.stories[0].parent().expect("the stories' parent").to_owned();
    let mock = Mock::start();
    mock.route("/sink", vec![Reply::json(200, "{}")]);
    write_story(
        &dir,
        "later.yaml",
        &format!(
            r#"name: Later
actions:
  hook:
    type: webhook
    path: later
    secret: {SECRET}
  wait:
    type: transform
    mode: delay
    from: hook
    seconds: 1
  after_delay:
    type: http_request
    from: wait
    method: post
    url: "{sink}"
    payload: {{ kind: delayed, id: "{{{{ hook.body.id }}}}" }}
  collect:
    type: transform
    mode: implode
    from: hook
    guid_path: "{{{{ hook.body.batch }}}}"
    size_path: "3"
    seconds: 2
  after_implode:
    type: http_request
    from: collect
    method: post
    url: "{sink}"
    payload: {{ kind: imploded, ids: "{{{{ collect | map: 'body' | map: 'id' | join: ',' }}}}" }}
"#,
            sink = mock.url("/sink")
        ),
    );
    let server = tale::serve::start(args, None).await.expect("serve");
    let url = format!("http://{}/webhook/later/{SECRET}", server.addr);
    for id in [1, 2] {
        let r = client()
            .post(&url)
            .json(&json!({"id": id, "batch": "b1"}))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
    }
    // Stop once nothing is ready to run: two delays pending, an implode
    // holding 2 of 3 items.
    server.idle().await;
    assert!(server.pending() >= 2, "nothing pending: {}", server.pending());
    server.stop().await.expect("stop");
    assert!(mock.received().is_empty(), "work ran before the restart");

    let server = tale::serve::start(args, None).await.expect("serve");
    eventually(
        "the delays and the implode window",
        Duration::from_secs(15),
        async || mock.received().len() == 3,
    )
    .await;
    let bodies: Vec<J> = mock
        .received()
        .iter()
        .map(|r| serde_json::from_str(&r.body).expect("json"))
        .collect();
    let delayed: Vec<&J> = bodies.iter().filter(|b| b["kind"] == "delayed").collect();
    assert_eq!(delayed.len(), 2, "{bodies:?}");
    let imploded: Vec<&J> = bodies.iter().filter(|b| b["kind"] == "imploded").collect();
    assert_eq!(imploded.len(), 1, "{bodies:?}");
    let mut ids: Vec<&str> = imploded[0]["ids"].as_str().expect("ids").split(',').collect();
    ids.sort();
    assert_eq!(ids, vec!["1", "2"]);
    eventually("both runs finished", Duration::from_secs(10), async || {
        run_count(&server, "/api/runs?status=succeeded").await == 2
    })
    .await;
    server.stop().await.expect("stop");
}

#[test]
fn tale_run_with_a_database_stores_the_run_durably() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite:{}", dir.path().join("runs.db").display());
    let root = crate::support::root();
    let story = root.join("examples/quickstart/alert-summary.yaml");
    let event = root.join("examples/quickstart/alerts.json");
    let out = crate::support::tale(&[
        "run",
        story.to_str().expect("path"),
        "--event",
        event.to_str().expect("path"),
        "--db",
        &db,
    ]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let events: Vec<J> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let report = events
        .iter()
        .find(|e| e["action"] == "report")
        .expect("the summary event");
    assert_eq!(report["output"]["serious"], 2, "{report}");
    assert!(out.stderr.contains("succeeded"), "{}", out.stderr);
    let runs = crate::support::tale(&["runs", "--db", &db, "--json"]);
    assert_eq!(runs.status, 0, "{}", runs.stderr);
    let run: J = serde_json::from_str(runs.stdout.trim()).expect("one run");
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["events"].as_u64(), Some(events.len() as u64));
    // A dry run stores nothing: `--db` is not one of its flags.
    let dry = crate::support::tale(&["dry-run", story.to_str().expect("path"), "--db", &db]);
    assert_eq!(dry.status, 2);
    assert!(dry.stderr.contains("unexpected argument '--db'"), "{}", dry.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_runs_older_than_keep_events_for_are_pruned() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_story(
        dir.path(),
        "short.yaml",
        &format!(
            r#"name: Short-lived
keep_events_for: 1
actions:
  hook:
    type: webhook
    path: short
    secret: {SECRET}
  shape:
    type: transform
    mode: message_only
    from: hook
    payload: {{ id: "{{{{ hook.body.id }}}}" }}
"#
        ),
    );
    let server = tale::serve::start(&args(dir.path()), None).await.expect("serve");
    let url = format!("http://{}/webhook/short/{SECRET}", server.addr);
    let r = client().post(&url).json(&json!({"id": 1})).send().await.expect("post");
    assert_eq!(r.status(), 200);
    eventually("the run to finish", Duration::from_secs(10), async || {
        run_count(&server, "/api/runs?status=succeeded").await == 1
    })
    .await;
    let run_id = get_json(&server, "/api/runs").await["runs"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    server.stop().await.expect("stop");
    // The pruner runs at start, then every minute: started with a clock 5 s
    // on, it finds the run older than its second of retention.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_millis() as i64;
    let later = Arc::new(ManualClock::new(now + 5_000));
    let server = tale::serve::start(&args(dir.path()), Some(later)).await.expect("serve");
    eventually("the old run to be pruned", Duration::from_secs(10), async || {
        get_json(&server, "/api/runs").await["runs"] == json!([])
    })
    .await;
    let events = get_json(&server, &format!("/api/runs/{run_id}/events")).await;
    assert_eq!(events["events"], json!([]), "events outlived their run");
    server.stop().await.expect("stop");
}

pub(crate) fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_story(dir.path(), "versioned.yaml", &versioned_story("v1", false));
    let port = crate::support::free_port();
    let mut child = spawn_serve(dir.path(), port, "http://127.0.0.1:9");
    wait_ready(port).await;
    let url = format!("http://127.0.0.1:{port}/webhook/version/{SECRET}");
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
    // `--watch 0s`: files are not polled; only SIGHUP reloads.
    write_story(dir.path(), "versioned.yaml", &versioned_story("v2", false));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(answer().await, "v1", "reloaded without a signal");
    signal(&child, "HUP");
    eventually("the reload", Duration::from_secs(10), async || answer().await == "v2").await;
    signal(&child, "TERM");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "SIGTERM did not stop tale serve"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
}

/// `--threads 1`: one thread answers the webhooks and runs their actions,
/// the store's writer beside it; `--threads 0` is refused before starting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_sizes_the_runtime_and_one_thread_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    mock.route("/sink", vec![Reply::json(200, "{}")]);
    write_story(dir.path(), "forward.yaml", &forward_story(&mock.url("/sink")));
    let refused = Command::new(env!("CARGO_BIN_EXE_tale"))
        .args(["serve", "--threads", "0", "--stories"])
        .arg(dir.path().join("stories"))
        .output()
        .expect("run tale serve");
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--threads"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let port = crate::support::free_port();
    let mut child = serve_process(dir.path(), port, &["--threads", "1"], &[]);
    wait_ready(port).await;
    // One thread, whatever the cores.
    let metrics = metrics_at(format!("127.0.0.1:{port}")).await;
    assert!(metrics.lines().any(|l| l == "tale_threads 1"), "{metrics}");
    let url = format!("http://127.0.0.1:{port}/webhook/fwd/{SECRET}");
    let sends = (0..50).map(|i| {
        let url = url.clone();
        async move {
            client()
                .post(&url)
                .json(&json!({"n": i}))
                .send()
                .await
                .map(|r| r.status())
        }
    });
    for status in futures_util::future::join_all(sends).await {
        assert!(status.expect("post").is_success());
    }
    eventually("50 forwards", Duration::from_secs(20), async || {
        mock.received().len() >= 50
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_implode_window_another_run_closed_still_finishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_story(
        dir.path(),
        "pair.yaml",
        &format!(
            r#"name: Pairs
actions:
  hook:
    type: webhook
    path: pair
    secret: {SECRET}
  pair:
    type: transform
    mode: implode
    from: hook
    guid_path: "{{{{ hook.body.pair }}}}"
    size_path: "2"
    seconds: 3600
"#
        ),
    );
    let server = tale::serve::start(&args(dir.path()), None).await.expect("serve");
    let url = format!("http://{}/webhook/pair/{SECRET}", server.addr);
    for id in [1, 2] {
        let r = client()
            .post(&url)
            .json(&json!({"pair": "p1", "id": id}))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
    }
    // The first run opened the window (its timer item); the second closed it.
    eventually("both runs finished", Duration::from_secs(10), async || {
        run_count(&server, "/api/runs?status=succeeded").await == 2
    })
    .await;
    assert_eq!(server.pending(), 0, "the window's timer is still pending");
    // Ids that are not ids are a JSON 404, not axum's text.
    let r = client()
        .get(format!("http://{}/api/runs/not-an-id/events", server.addr))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    assert!(r.json::<J>().await.expect("JSON")["error"].is_string());
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_explodes_at_once_do_not_starve_the_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_story(
        dir.path(),
        "fan.yaml",
        &format!(
            r#"name: Fan out
actions:
  hook:
    type: webhook
    path: fan
    secret: {SECRET}
    max_body_bytes: 10485760
  each:
    type: transform
    mode: explode
    from: hook
    path: "{{{{ hook.body.items | as_object }}}}"
    to: item
    limit: 100000
  slow:
    type: transform
    mode: delay
    from: each
    seconds: 0
"#
        ),
    );
    let mut a = args(dir.path());
    a.workers = 2;
    let server = tale::serve::start(&a, None).await.expect("serve");
    let url = format!("http://{}/webhook/fan/{SECRET}", server.addr);
    let items: Vec<i64> = (0..6_000).collect();
    let mut sends = Vec::new();
    for _ in 0..3 {
        let (url, body) = (url.clone(), json!({"items": items}));
        sends.push(tokio::spawn(async move {
            client()
                .post(&url)
                .json(&body)
                .send()
                .await
                .expect("post")
                .status()
                .as_u16()
        }));
    }
    for s in sends {
        assert_eq!(s.await.expect("join"), 200);
    }
    eventually("three runs of 6,000 items each", Duration::from_secs(60), async || {
        run_count(&server, "/api/runs?status=succeeded").await == 3
    })
    .await;
    let runs = get_json(&server, "/api/runs").await;
    for run in runs["runs"].as_array().expect("runs") {
        assert_eq!(run["events"], 1 + 6_000 + 6_000, "{run}");
    }
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graph_validation_handshake_is_answered_and_starts_no_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stories = dir.path().join("stories");
    std::fs::create_dir_all(&stories).expect("mkdir");
    let root = crate::support::root();
    std::fs::copy(
        root.join("examples/graph-mail-subscription/reported-phish-notifications.yaml"),
        stories.join("reported-phish-notifications.yaml"),
    )
    .expect("copy");
    let port = crate::support::free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tale"));
    cmd.args(["serve", "--stories"])
        .arg(&stories)
        .arg("--db")
        .arg(format!("sqlite:{}", dir.path().join("tale.db").display()))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--watch", "0s"])
        .env("TALE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in crate::valid_stories::env_file(&root.join("examples/tale.env")) {
        cmd.env(k, v);
    }
    cmd.env("TALE_CREDENTIAL_GRAPH_WEBHOOK_SECRET", "hook-secret-77");
    let mut child = cmd.spawn().expect("spawn");
    wait_ready(port).await;
    // Graph POSTs `?validationToken=…` with an empty text body and wants the
    // token back, decoded, as text/plain within 10 seconds.
    let r = client()
        .post(format!(
            "http://127.0.0.1:{port}/webhook/graph-mail/hook-secret-77?validationToken=Validation%3A%20Testing%20client%20application"
        ))
        .header("content-type", "text/plain")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/plain"),
        "{:?}",
        r.headers()
    );
    assert_eq!(r.text().await.expect("text"), "Validation: Testing client application");
    let runs: J = client()
        .get(format!("http://127.0.0.1:{port}/api/runs"))
        .send()
        .await
        .expect("runs")
        .json()
        .await
        .expect("json");
    assert_eq!(runs["runs"], json!([]), "the handshake started a run");
    let stories: J = client()
        .get(format!("http://127.0.0.1:{port}/api/stories"))
        .send()
        .await
        .expect("stories")
        .json()
        .await
        .expect("json");
    for s in stories["stories"].as_array().expect("list") {
        assert_eq!(s["status"], "ok", "{s}");
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_signatures_of_github_slack_and_graph_are_verified() {
    use hmac::{Hmac, Mac};
    let hmac_hex = |key: &str, message: &[u8]| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).expect("hmac");
        mac.update(message);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    write_story(
        dir.path(),
        "signed.yaml",
        r#"name: Signed webhooks
actions:
  github:
    type: webhook
    path: github
    signature: {header: X-Hub-Signature-256, algorithm: sha256, secret: gh-secret-1, prefix: "sha256="}
  slack:
    type: webhook
    path: slack
    signature: {header: X-Slack-Signature, algorithm: slack, secret: slack-secret-1}
  graph:
    type: webhook
    path: graph
    signature: {algorithm: client_state, secret: state-secret-1}
    response:
      content_type: text/plain
      body: "{{ request.query.validationToken }}"
"#,
    );
    let server = tale::serve::start(&args(dir.path()), None).await.expect("serve");
    let base = format!("http://{}/webhook", server.addr);
    let body = br#"{"action":"opened","number":7}"#.to_vec();
    let post = |path: &str, headers: Vec<(&str, String)>, body: Vec<u8>| {
        let mut r = client()
            .post(format!("{base}/{path}"))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            r = r.header(k, v);
        }
        r.send()
    };
    // GitHub: sha256= + hex HMAC of the body.
    let good = format!("sha256={}", hmac_hex("gh-secret-1", &body));
    assert_eq!(
        post("github", vec![("x-hub-signature-256", good)], body.clone())
            .await
            .expect("post")
            .status(),
        200
    );
    let bad = format!("sha256={}", hmac_hex("guess", &body));
    let r = post("github", vec![("x-hub-signature-256", bad)], body.clone())
        .await
        .expect("post");
    assert_eq!(r.status(), 401);
    assert_eq!(post("github", vec![], body.clone()).await.expect("post").status(), 401);
    // Slack: v0:<timestamp>:<body>, and a stale timestamp is a replay.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let sign = |ts: u64| {
        format!(
            "v0={}",
            hmac_hex(
                "slack-secret-1",
                format!("v0:{ts}:{}", String::from_utf8_lossy(&body)).as_bytes()
            )
        )
    };
    let ok = post(
        "slack",
        vec![
            ("x-slack-signature", sign(now)),
            ("x-slack-request-timestamp", now.to_string()),
        ],
        body.clone(),
    )
    .await
    .expect("post");
    assert_eq!(ok.status(), 200);
    let old = now - 600;
    let stale = post(
        "slack",
        vec![
            ("x-slack-signature", sign(old)),
            ("x-slack-request-timestamp", old.to_string()),
        ],
        body.clone(),
    )
    .await
    .expect("post");
    assert_eq!(stale.status(), 401);
    assert!(stale.text().await.expect("text").contains("five minutes"));
    // Graph: clientState in every notification; the handshake has none.
    let notifications = |state: &str| {
        serde_json::to_vec(&json!({"value": [{"clientState": state, "resourceData": {"id": "a1"}}]})).expect("json")
    };
    assert_eq!(
        post("graph", vec![], notifications("state-secret-1"))
            .await
            .expect("post")
            .status(),
        200
    );
    assert_eq!(
        post("graph", vec![], notifications("forged"))
            .await
            .expect("post")
            .status(),
        401
    );
    let handshake = client()
        .post(format!("{base}/graph?validationToken=abc"))
        .header("content-type", "text/plain")
        .send()
        .await
        .expect("post");
    assert_eq!(handshake.status(), 200);
    assert_eq!(handshake.text().await.expect("text"), "abc");
    // Anything else that is not notifications carrying the clientState is
    // refused: the state one level up, a value that is not a list, an empty
    // list, a list of non-objects, text, a form, a handshake with a body.
    for (content_type, forged) in [
        ("application/json", r#"{"value": {"clientState": "state-secret-1"}}"#),
        ("application/json", r#"{"value": "x"}"#),
        ("application/json", r#"{"value": []}"#),
        ("application/json", r#"{"value": [1, 2]}"#),
        ("application/json", r#"{"clientState": "state-secret-1"}"#),
        ("application/json", "[1,2]"),
        ("text/plain", "hello"),
        ("application/x-www-form-urlencoded", "clientState=state-secret-1"),
    ] {
        for url in [
            format!("{base}/graph"),
            format!("{base}/graph?validationToken=abc"),
            format!("{base}/graph?validationToken=abc&extra=chosen-by-the-sender"),
        ] {
            let r = client()
                .post(&url)
                .header("content-type", content_type)
                .body(forged)
                .send()
                .await
                .expect("post");
            assert_eq!(r.status(), 401, "{url} {forged}");
        }
    }
    // A handshake is only `validationToken`: more in the query is refused.
    let r = client()
        .post(format!("{base}/graph?validationToken=abc&extra=chosen-by-the-sender"))
        .header("content-type", "text/plain")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401);
    // Refused requests stored nothing, nor did the handshake (tale answers
    // it itself): 1 GitHub, 1 Slack, 1 Graph notification.
    eventually("the accepted runs", Duration::from_secs(10), async || {
        run_count(&server, "/api/runs").await == 3
    })
    .await;
    server.stop().await.expect("stop");
}

/// A database removed (or replaced) under a running server used to go
/// unnoticed: 200s for events that the next start never saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_database_fails_readiness_and_webhooks_get_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_story(
        dir.path(),
        "plain.yaml",
        &format!("name: Plain\nactions:\n  hook:\n    type: webhook\n    path: plain\n    secret: {SECRET}\n"),
    );
    let server = tale::serve::start(&args(dir.path()), None).await.expect("serve");
    let hook = format!("http://{}/webhook/plain/{SECRET}", server.addr);
    let ready = format!("http://{}/readyz", server.addr);
    assert_eq!(client().post(&hook).send().await.expect("post").status(), 200);
    assert_eq!(client().get(&ready).send().await.expect("get").status(), 200);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("tale.db{suffix}")));
    }
    let r = client().get(&ready).send().await.expect("get");
    assert_eq!(r.status(), 503);
    assert!(r.text().await.expect("text").contains("was removed"));
    eventually(
        "webhooks refused once the file is gone",
        Duration::from_secs(5),
        async || client().post(&hook).send().await.expect("post").status() == 503,
    )
    .await;
    server.stop().await.expect("stop");
}

/// The small ones of the hardening probe: `bearer` in any case, run
/// filters that cannot match are a 400, and a declared body above the
/// limit is refused before a byte of it is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_any_case_strict_run_filters_and_early_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    write_story(
        dir.path(),
        "plain.yaml",
        &format!("name: Plain\nactions:\n  hook:\n    type: webhook\n    path: plain\n    secret: {SECRET}\n"),
    );
    let server = tale::serve::start(&args(dir.path()), None).await.expect("serve");
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = client()
            .post(format!("http://{}/webhook/plain", server.addr))
            .header("authorization", format!("{scheme} {SECRET}"))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200, "{scheme}");
    }
    for query in ["status=bogus", "limit=0"] {
        let r = client()
            .get(format!("http://{}/api/runs?{query}", server.addr))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 400, "{query}");
    }
    let r = client()
        .get(format!("http://{}/api/runs?status=succeeded&limit=2", server.addr))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    // Headers only, announcing 1 GB: the answer comes without the body.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(
            format!(
                "POST /webhook/plain/{SECRET} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000000000\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered before the body")
        .expect("read");
    let head = String::from_utf8_lossy(&answer[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_rate_limit_answers_429_with_retry_after_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_story(
        dir.path(),
        "limited.yaml",
        &format!(
            r#"name: Limited
actions:
  hook:
    type: webhook
    path: limited
    secret: {SECRET}
    rate_limit: {{ requests: 3, per_secs: 60 }}
"#
        ),
    );
    let server = tale::serve::start(&args(dir.path()), None).await.expect("serve");
    let url = format!("http://{}/webhook/limited/{SECRET}", server.addr);
    let mut statuses = Vec::new();
    let mut retry = None;
    for i in 0..5 {
        let r = client().post(&url).json(&json!({"i": i})).send().await.expect("post");
        if r.status() == 429 {
            retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
    let wait: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((1..=61).contains(&wait), "{wait}");
    eventually("three runs", Duration::from_secs(10), async || {
        run_count(&server, "/api/runs").await == 3
    })
    .await;
    server.idle().await;
    assert_eq!(
        get_json(&server, "/api/runs").await["runs"].as_array().map(Vec::len),
        Some(3)
    );
    server.stop().await.expect("stop");
}

/// A request with an idempotency key is a work item of its own: the event it
/// receives (here a trigger's, made in the step before) is stored before the
/// request goes out, so a re-run after a crash derives the same key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_an_idempotency_key_is_sent_only_after_its_input_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    mock.route(
        "/tickets",
        vec![Reply::json(201, "{}").delayed(Duration::from_millis(1500))],
    );
    write_story(
        dir.path(),
        "ticket.yaml",
        &format!(
            r#"name: Ticket
actions:
  hook:
    type: webhook
    path: ticket
    secret: {SECRET}
  high:
    type: trigger
    from: hook
    rules: [{{type: field==value, path: "{{{{ hook.body.severity }}}}", value: high}}]
  open:
    type: http_request
    from: high
    method: post
    url: "{}"
    idempotency_key: true
"#,
            mock.url("/tickets")
        ),
    );
    let server = tale::serve::start(&args(dir.path()), None).await.expect("serve");
    let r = client()
        .post(format!("http://{}/webhook/ticket/{SECRET}", server.addr))
        .json(&json!({"severity": "high"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    eventually("the request in flight", Duration::from_secs(10), async || {
        !mock.received().is_empty()
    })
    .await;
    // The answer takes 1.5 s: the trigger's event is already stored.
    let runs = get_json(&server, "/api/runs").await;
    let run = runs["runs"][0]["id"].as_str().expect("run").to_owned();
    let events = get_json(&server, &format!("/api/runs/{run}/events")).await;
    let high = events["by_action"]["high"][0]["id"]
        .as_str()
        .expect("the trigger's event is stored while the request is in flight")
        .to_owned();
    assert_eq!(
        mock.received()[0].headers.get("idempotency-key"),
        Some(&format!("{high}-open"))
    );
    server.stop().await.expect("stop");
}

/// A SIGKILL in the middle of a long explode: after the restart the explode
/// resumes after the chunks it had committed instead of sending every
/// element again, and every element still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_explode_killed_midway_resumes_after_its_committed_chunks() {
    const N: i64 = 10_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    mock.route("/each", vec![Reply::json(200, "{}").delayed(Duration::from_millis(10))]);
    write_story(
        dir.path(),
        "fanout.yaml",
        &format!(
            r#"name: Fan-out
actions:
  hook:
    type: webhook
    path: fanout
    secret: {SECRET}
  each:
    type: transform
    mode: explode
    from: hook
    path: "{{{{ hook.body.ids | as_object }}}}"
    to: id
    limit: 20000
  send:
    type: http_request
    from: each
    method: post
    url: "{{{{ RESOURCE.sink }}}}"
    payload: {{id: "{{{{ each.id | as_object }}}}"}}
"#
        ),
    );
    let port = crate::support::free_port();
    let mut child = spawn_serve(dir.path(), port, &mock.url("/each"));
    wait_ready(port).await;
    let ids: Vec<i64> = (0..N).collect();
    let r = client()
        .post(format!("http://127.0.0.1:{port}/webhook/fanout/{SECRET}"))
        .json(&json!({"ids": ids}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    // A few chunks are out (1,024 each, more as the queue drains): kill.
    eventually("a quarter delivered", Duration::from_secs(60), async || {
        mock.received().len() >= 2_500
    })
    .await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let before = mock.received().len();
    let mut child = spawn_serve(dir.path(), port, &mock.url("/each"));
    let delivered = || -> std::collections::HashSet<i64> {
        mock.received()
            .iter()
            .filter_map(|r| serde_json::from_str::<J>(&r.body).ok()?["id"].as_i64())
            .collect()
    };
    eventually("every element delivered", Duration::from_secs(90), async || {
        delivered().len() == N as usize
    })
    .await;
    // Nothing more to come: the explode's item is done.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = child.kill();
    let _ = child.wait();
    let total = mock.received().len();
    eprintln!("killed after {before} deliveries; {total} in all for {N} elements");
    // Sending again what was in flight at the kill is allowed (at least
    // once); starting the explode over (another 10,000) is not.
    assert!(
        total < N as usize + 1_024,
        "{total} deliveries for {N} elements: the explode started over"
    );
}

/// A retry's wait is stored like a delay: killed during a `Retry-After`,
/// the server comes back and sends the retry when the wait is over, as
/// that retry (here the last one: its 503 takes the `failure` branch), not
/// as a first attempt with every retry again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_waits_in_the_store_and_resumes_at_its_attempt_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    mock.route(
        "/flaky",
        vec![
            Reply::json(503, "{}").header("retry-after", "3"),
            Reply::json(503, "{}"),
            Reply::json(200, "{}"),
        ],
    );
    mock.route("/failed", vec![Reply::json(200, "{}")]);
    write_story(
        dir.path(),
        "retry.yaml",
        &format!(
            r#"name: Retry
actions:
  hook:
    type: webhook
    path: retry
    secret: {SECRET}
  call:
    type: http_request
    from: hook
    method: post
    url: "{{{{ RESOURCE.sink }}}}/flaky"
    payload: {{n: 1}}
    retry_on_status: [503]
    retries: 1
  report:
    type: http_request
    from: call.failure
    method: post
    url: "{{{{ RESOURCE.sink }}}}/failed"
    payload: {{status: "{{{{ call.status }}}}"}}
"#
        ),
    );
    let port = crate::support::free_port();
    let mut child = spawn_serve(dir.path(), port, &mock.url(""));
    wait_ready(port).await;
    let r = client()
        .post(format!("http://127.0.0.1:{port}/webhook/retry/{SECRET}"))
        .json(&json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let flaky = || mock.received().iter().filter(|r| r.path_and_query == "/flaky").count();
    eventually("the first attempt", Duration::from_secs(20), async || flaky() == 1).await;
    let first = Instant::now();
    // Killed once the retry is stored (its step's trace says so).
    let base = format!("http://127.0.0.1:{port}");
    eventually("the retry stored", Duration::from_secs(20), async || {
        let Ok(runs) = client().get(format!("{base}/api/runs")).send().await else {
            return false;
        };
        let runs: J = runs.json().await.unwrap_or_default();
        let Some(id) = runs["runs"][0]["id"].as_str() else {
            return false;
        };
        let Ok(traces) = client().get(format!("{base}/api/runs/{id}/traces")).send().await else {
            return false;
        };
        traces.text().await.unwrap_or_default().contains("again_at_ms")
    })
    .await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let mut child = spawn_serve(dir.path(), port, &mock.url(""));
    eventually("the failure reported", Duration::from_secs(30), async || {
        mock.received().iter().any(|r| r.path_and_query == "/failed")
    })
    .await;
    let waited = first.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(flaky(), 2, "the retry started over instead of resuming at its attempt");
    assert!(
        waited >= Duration::from_millis(2_500),
        "the retry did not wait for Retry-After: {waited:?}"
    );
}

/// A body over 1 MiB is kept as its JSON text (SPEC §3 outputs; issue 14's
/// W2 memory): the explode walks it in place, each element read from the
/// text, a template reading the body's other fields finds them, and the
/// implode's list (over 1 MiB too) is text the summary reads. What is
/// stored and what the sink gets are what the parsed path gives. Killed
/// midway, the restarted server reads the root back as text and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_is_read_in_place_and_adds_up_after_a_restart() {
    const N: i64 = 16_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    mock.route("/sum", vec![Reply::json(200, "{}")]);
    mock.route("/each", vec![Reply::json(200, "{}").delayed(Duration::from_millis(1))]);
    write_story(
        dir.path(),
        "large.yaml",
        &format!(
            r#"name: Large
actions:
  batch:
    type: webhook
    path: large
    secret: {SECRET}
    max_body_bytes: 8388608
  gate:
    type: trigger
    from: batch
    rules:
      - type: field==value
        path: "{{{{ batch.body.batch_id }}}}"
        value: b-1
  each:
    type: transform
    mode: explode
    from: gate
    path: "{{{{ gate.body.items | as_object }}}}"
    to: alert
    limit: 20000
  shape:
    type: transform
    mode: message_only
    from: each
    payload:
      id: "{{{{ each.alert.id | as_object }}}}"
      title: "{{{{ each.alert.title | upcase }}}} in {{{{ batch.body.batch_id }}}}"
  tick:
    type: http_request
    from: shape
    method: post
    url: "{{{{ RESOURCE.sink }}}}/each"
    payload: {{id: "{{{{ shape.id | as_object }}}}"}}
  joined:
    type: transform
    mode: implode
    from: tick
    guid_path: "{{{{ each.guid }}}}"
    size_path: "{{{{ each.size }}}}"
    item_path: "{{{{ shape | as_object }}}}"
  summary:
    type: http_request
    from: joined
    method: post
    url: "{{{{ RESOURCE.sink }}}}/sum"
    payload:
      batch: "{{{{ batch.body.batch_id }}}}"
      count: "{{{{ joined | size | as_object }}}}"
      sum: "{{{{ joined | map: 'id' | sum | as_object }}}}"
      last: "{{{{ joined | last | as_object }}}}"
      quote: "{{{{ batch.body.quote }}}}"
      matched: "{{{{ gate.rule_matched | as_object }}}}"
"#
        ),
    );
    let port = crate::support::free_port();
    let mut child = spawn_serve(dir.path(), port, &mock.url(""));
    wait_ready(port).await;
    let items: Vec<J> = (1..=N)
        .map(|i| json!({"id": i, "title": format!("Suspicious sign-in number {i} from a new device on host WKS-{i}")}))
        .collect();
    // Escapes and non-ASCII in the text read in place.
    let body = json!({"batch_id": "b-1", "quote": "a \"quoted\" é\n", "items": items});
    let text = body.to_string();
    assert!(text.len() > 1 << 20, "the body must be large: {}", text.len());
    let r = client()
        .post(format!("http://127.0.0.1:{port}/webhook/large/{SECRET}"))
        .header("content-type", "application/json")
        .body(text.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    eventually("some elements sent", Duration::from_secs(60), async || {
        mock.received().iter().filter(|r| r.path_and_query == "/each").count() >= 1_000
    })
    .await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let mut child = spawn_serve(dir.path(), port, &mock.url(""));
    eventually("the summary", Duration::from_secs(120), async || {
        mock.received().iter().any(|r| r.path_and_query == "/sum")
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let sums: Vec<J> = mock
        .received()
        .iter()
        .filter(|r| r.path_and_query == "/sum")
        .map(|r| serde_json::from_str(&r.body).expect("json"))
        .collect();
    assert_eq!(sums.len(), 1, "{sums:?}");
    assert_eq!(sums[0]["batch"], "b-1");
    assert_eq!(sums[0]["count"], N);
    assert_eq!(sums[0]["sum"], N * (N + 1) / 2);
    assert_eq!(sums[0]["quote"], "a \"quoted\" é\n");
    assert_eq!(sums[0]["matched"], true, "the trigger passed the large event on");
    let last = &sums[0]["last"];
    assert!(
        last["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("SUSPICIOUS SIGN-IN NUMBER") && t.ends_with(" in b-1")),
        "{last}"
    );
    // The stored root is the request with the body as it came.
    let db = format!("sqlite:{}", dir.path().join("tale.db").display());
    let runs = crate::support::tale(&["runs", "--db", &db, "--json"]);
    let runs = crate::support::json_lines(&runs.stdout);
    let run = runs.first().and_then(|r| r["id"].as_str()).expect("a run").to_owned();
    let events = crate::support::tale(&["events", &run, "--db", &db]);
    let events = crate::support::json_lines(&events.stdout);
    let root = crate::support::output_of(&events, "batch").expect("the root event");
    assert_eq!(root["body"], body);
    assert_eq!(root["method"], "post");
}

/// The pure actions after a small webhook run before its answer and are
/// stored with its event: once the 2xx is back, the run is already there,
/// finished, with the transform's event. A large body is answered first and
/// its transform runs as a work item of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhooks_pure_actions_are_stored_with_its_first_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_story(
        dir.path(),
        "shape.yaml",
        &format!(
            r#"name: Shape
actions:
  hook:
    type: webhook
    path: shape
    secret: {SECRET}
  shape:
    type: transform
    mode: message_only
    from: hook
    payload:
      sev: "{{{{ hook.body.severity | upcase }}}}"
  check:
    type: trigger
    from: shape
    rules:
      - type: field==value
        path: "{{{{ shape.sev }}}}"
        value: HIGH
"#
        ),
    );
    write_story(
        dir.path(),
        "broken.yaml",
        &format!(
            r#"name: Broken
actions:
  hook:
    type: webhook
    path: broken
    secret: {SECRET}
  divide:
    type: transform
    mode: message_only
    from: hook
    payload:
      q: "{{{{ hook.body.n | divided_by: 0 }}}}"
"#
        ),
    );
    let mut a = args(dir.path());
    a.max_body = 1024 * 1024;
    let server = tale::serve::start(&a, None).await.expect("serve");
    let url = format!("http://{}/webhook/shape/{SECRET}", server.addr);
    let r = client()
        .post(&url)
        .json(&json!({"severity": "high"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    // No waiting: the first commit held the whole run.
    let runs = get_json(&server, "/api/runs").await;
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(1), "{runs}");
    assert_eq!(runs["runs"][0]["status"], "succeeded", "{runs}");
    assert_eq!(runs["runs"][0]["events"], 3, "{runs}");
    let run_id = runs["runs"][0]["id"].as_str().expect("id").to_owned();
    let events = get_json(&server, &format!("/api/runs/{run_id}/events")).await;
    assert_eq!(events["by_action"]["shape"][0]["output"]["sev"], "HIGH", "{events}");
    assert_eq!(events["by_action"]["check"][0]["output"]["sev"], "HIGH", "{events}");

    // A pure action that fails before the answer: the webhook still answers
    // 2xx (its event is stored) and the run is failed, with the reason.
    let r = client()
        .post(format!("http://{}/webhook/broken/{SECRET}", server.addr))
        .json(&json!({"n": 1}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let failed = get_json(&server, "/api/runs?status=failed").await;
    assert_eq!(failed["runs"].as_array().map(Vec::len), Some(1), "{failed}");
    assert!(
        failed["runs"][0]["errors"]
            .to_string()
            .contains("cannot render `payload.q`"),
        "{failed}"
    );

    // Over 64 KiB: answered once the webhook's event is stored; the rest follows.
    let big = "x".repeat(100 * 1024);
    let r = client()
        .post(&url)
        .json(&json!({"severity": "low", "pad": big}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    eventually("the large body's run", Duration::from_secs(10), async || {
        run_count(&server, "/api/runs?status=succeeded").await == 2
    })
    .await;
    server.stop().await.expect("stop");
}
