//! Running stories: `tale run` against a real HTTP server on 127.0.0.1,
//! `tale dry-run` of the same stories (no socket opened), every
//! http_request option, and bad input that fails one action but not the run.

use std::time::Duration;

use serde_json::{Value as J, json};

use crate::mock_server::{Reply, Server};
use crate::support::{root, tale};

/// Writes `story` (with `{base}` replaced by the server URL) and an event,
/// then runs `tale <command> …`.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(story: &str, base: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("story.yaml"), story.replace("{base}", base)).expect("write story");
        Case { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn file(&self, name: &str, text: &str) -> String {
        std::fs::write(self.dir.path().join(name), text).expect("write");
        self.path(name)
    }

    fn run(&self, event: &str) -> (u8, Vec<J>, String) {
        let event = self.file("event.json", event);
        let out = tale(&["run", &self.path("story.yaml"), "--event", &event]);
        (out.status, crate::support::json_lines(&out.stdout), out.stderr)
    }

    /// `tale run` of the story on `event` (a file) as a process, for what
    /// needs its own environment (SMTP, credentials).
    fn process(&self, event: &str) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tale"));
        command.args(["run", &self.path("story.yaml"), "--event", event]);
        command
    }

    fn dry_run(&self, event: &str, mocks: Option<&str>) -> (u8, J, String) {
        let event = self.file("event.json", event);
        let mut args = vec![
            "dry-run".to_owned(),
            self.path("story.yaml"),
            "--event".into(),
            event,
            "--format".into(),
            "json".into(),
        ];
        if let Some(m) = mocks {
            args.push("--mocks".into());
            args.push(self.file("story.mocks.yaml", m));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = tale(&args);
        let doc = serde_json::from_str(&out.stdout).unwrap_or(J::Null);
        (out.status, doc, out.stderr)
    }
}

fn outputs_of<'a>(events: &'a [J], action: &str) -> Vec<&'a J> {
    events
        .iter()
        .filter(|e| e["action"] == action)
        .map(|e| &e["output"])
        .collect()
}

const TRIAGE: &str = r#"
name: Alert triage
actions:
  receive:
    type: webhook
    path: alerts
    secret: s3cret
  each_alert:
    type: transform
    mode: explode
    from: receive
    path: "{{ receive.body.value | as_object }}"
    to: alert
  get_alert:
    type: http_request
    from: each_alert
    url: "{base}/v1.0/security/alerts_v2/{{ each_alert.alert.id }}"
    retry_on_status: [429, "500-599"]
    fail_on_status: true
  is_serious:
    type: trigger
    from: get_alert
    rules:
      - { type: "in", path: "{{ get_alert.body.severity }}", value: [high, medium] }
  open_ticket:
    type: http_request
    from: is_serious
    method: post
    url: "{base}/tickets"
    payload:
      title: "{{ get_alert.body.title }}"
      severity: "{{ get_alert.body.severity | upcase }}"
      evidence: "{{ get_alert.body.evidence | as_object }}"
  report_failure:
    type: transform
    mode: message_only
    from: get_alert.failure
    payload:
      failed: "{{ get_alert.error }}"
"#;

#[test]
fn a_story_runs_for_real_against_the_apis() {
    let server = Server::start();
    server.route(
        "/v1.0/security/alerts_v2/a1",
        vec![Reply::json(
            200,
            r#"{"id":"a1","severity":"high","title":"Ransomware","evidence":[{"ip":"10.0.0.1"}]}"#,
        )],
    );
    server.route(
        "/v1.0/security/alerts_v2/a2",
        vec![Reply::json(200, r#"{"id":"a2","severity":"low","title":"Noise"}"#)],
    );
    server.route(
        "/v1.0/security/alerts_v2/a3",
        vec![Reply::json(404, r#"{"error":{"code":"NotFound"}}"#)],
    );
    server.route("/tickets", vec![Reply::json(201, r#"{"key":"SOC-1"}"#)]);
    let case = Case::new(TRIAGE, &server.url(""));
    let (status, events, stderr) = case.run(r#"{"value":[{"id":"a1"},{"id":"a2"},{"id":"a3"}]}"#);
    assert_eq!(status, 0, "{stderr}");

    let tickets: Vec<_> = server
        .received()
        .into_iter()
        .filter(|r| r.path_and_query == "/tickets")
        .collect();
    assert_eq!(tickets.len(), 1, "one serious alert, one ticket");
    let body: J = serde_json::from_str(&tickets[0].body).expect("JSON body");
    assert_eq!(
        body,
        json!({"title": "Ransomware", "severity": "HIGH", "evidence": [{"ip": "10.0.0.1"}]})
    );
    assert_eq!(
        tickets[0].headers.get("content-type").map(String::as_str),
        Some("application/json")
    );

    let failures = outputs_of(&events, "report_failure");
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0]["failed"].as_str().is_some_and(|e| e.contains("404")),
        "{failures:?}"
    );
    assert_eq!(outputs_of(&events, "open_ticket")[0]["body"]["key"], "SOC-1");
    // Every event carries its run and its parents.
    let run = &events[0]["run_id"];
    assert!(events.iter().all(|e| &e["run_id"] == run));
    assert!(
        events
            .iter()
            .skip(1)
            .all(|e| e["parent_ids"].as_array().is_some_and(|p| p.len() == 1))
    );
}

#[test]
fn a_dry_run_walks_the_same_graph_and_opens_no_socket() {
    let server = Server::start();
    let case = Case::new(TRIAGE, &server.url(""));
    let mocks = format!(
        r#"
- method: GET
  url: "{base}/v1.0/security/alerts_v2/a1"
  body: {{id: a1, severity: high, title: Ransomware, evidence: []}}
- method: GET
  url: "{base}/v1.0/security/alerts_v2/*"
  status: 404
- method: POST
  url: "{base}/tickets"
  status: 201
  body: {{key: SOC-9}}
"#,
        base = server.url("")
    );
    let (status, doc, stderr) = case.dry_run(r#"{"value":[{"id":"a1"},{"id":"a2"}]}"#, Some(&mocks));
    assert_eq!(status, 0, "{stderr}");
    assert!(server.received().is_empty(), "a dry run must not reach the network");
    let actions: Vec<&str> = doc["trace"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["action"].as_str())
        .collect();
    // The order `tale serve` runs them in: a pure action (the trigger, the
    // failure report) runs in the step of the request that fed it.
    assert_eq!(
        actions,
        [
            "each_alert",
            "get_alert",
            "is_serious",
            "get_alert",
            "report_failure",
            "open_ticket"
        ]
    );
    let ticket = doc["trace"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["action"] == "open_ticket")
        .expect("open_ticket ran");
    assert_eq!(ticket["requests"][0]["method"], "POST");
    assert_eq!(ticket["emitted"][0]["output"]["body"]["key"], "SOC-9");
}

#[test]
fn retries_honour_retry_after_and_give_up_on_the_failure_branch() {
    let server = Server::start();
    server.route(
        "/flaky",
        vec![
            Reply::json(503, "{}").header("retry-after", "0.2"),
            Reply::json(200, r#"{"ok":true}"#),
        ],
    );
    server.route("/down", vec![Reply::json(500, r#"{"error":"boom"}"#)]);
    let story = r#"
actions:
  receive: {type: webhook, path: p, secret: s}
  flaky:
    type: http_request
    from: receive
    url: "{base}/flaky"
    retry_on_status: ["500-599"]
  down:
    type: http_request
    from: receive
    url: "{base}/down"
    retry_on_status: [500]
    retries: 2
  down_failed:
    type: transform
    mode: message_only
    from: down.failure
    payload: {error: "{{ down.error }}", status: "{{ down.status | as_object }}"}
"#;
    let case = Case::new(story, &server.url(""));
    let started = std::time::Instant::now();
    let (status, events, stderr) = case.run("{}");
    assert_eq!(status, 0, "{stderr}");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "Retry-After was honoured"
    );
    assert_eq!(outputs_of(&events, "flaky")[0]["body"], json!({"ok": true}));
    let calls = |p: &str| server.received().iter().filter(|r| r.path_and_query == p).count();
    assert_eq!(calls("/flaky"), 2);
    assert_eq!(calls("/down"), 3, "the first try and two retries");
    let failed = outputs_of(&events, "down_failed");
    assert_eq!(failed[0]["status"], 500);
    assert!(failed[0]["error"].as_str().is_some_and(|e| e.contains("answered 500")));
}

#[test]
fn timeouts_and_network_errors_take_the_failure_branch() {
    let server = Server::start();
    server.route("/slow", vec![Reply::json(200, "{}").delayed(Duration::from_secs(3))]);
    let story = r#"
actions:
  receive: {type: webhook, path: p, secret: s}
  slow:
    type: http_request
    from: receive
    url: "{base}/slow"
    timeout_secs: 0.3
  refused:
    type: http_request
    from: receive
    url: "http://127.0.0.1:9/nothing-listens-here"
  on_slow:
    type: transform
    mode: message_only
    from: slow.failure
    payload: {error: "{{ slow.error }}"}
  on_refused:
    type: transform
    mode: message_only
    from: refused.failure
    payload: {error: "{{ refused.error }}"}
"#;
    let case = Case::new(story, &server.url(""));
    let (status, events, stderr) = case.run("{}");
    assert_eq!(status, 0, "{stderr}");
    assert!(
        outputs_of(&events, "on_slow")[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("timed out"))
    );
    assert!(
        outputs_of(&events, "on_refused")[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("connect"))
    );
}

#[test]
fn pages_follow_odata_next_link_and_the_next_page_uri_header() {
    let server = Server::start();
    let fixture = |name: &str| std::fs::read_to_string(root().join("tests/data/fixtures").join(name)).expect("fixture");
    let page1 = fixture("graph-alerts-v2-list-page1.json").replace("https://graph.microsoft.com", &server.url(""));
    server.route(
        "/v1.0/security/alerts_v2",
        vec![
            Reply::json(200, &page1),
            Reply::json(200, &fixture("graph-alerts-v2-list-page2-last.json")),
        ],
    );
    let content = fixture("o365-content-list.json");
    server.route(
        "/api/v1.0/t/activity/feed/subscriptions/content",
        vec![
            Reply::json(200, &content).header(
                "NextPageUri",
                &server.url("/api/v1.0/t/activity/feed/subscriptions/content?nextpage=2"),
            ),
            Reply::json(200, &content),
        ],
    );
    let story = r#"
actions:
  receive: {type: webhook, path: p, secret: s}
  alerts:
    type: http_request
    from: receive
    url: "{base}/v1.0/security/alerts_v2"
    payload: {"$top": 1}
    pagination:
      next_url: "{{ response.body['@odata.nextLink'] }}"
  content:
    type: http_request
    from: receive
    url: "{base}/api/v1.0/t/activity/feed/subscriptions/content"
    pagination:
      next_url: "{{ response.headers.nextpageuri }}"
      emit: per_page
"#;
    let case = Case::new(story, &server.url(""));
    let (status, events, stderr) = case.run("{}");
    assert_eq!(status, 0, "{stderr}");
    let alerts = outputs_of(&events, "alerts");
    assert_eq!(alerts.len(), 1, "merged into one event");
    assert_eq!(alerts[0]["pages"], 2);
    assert_eq!(alerts[0]["body"]["value"].as_array().map(Vec::len), Some(1));
    let first_alerts = server
        .received()
        .into_iter()
        .find(|r| r.path_and_query.starts_with("/v1.0/security/alerts_v2"))
        .expect("alerts request");
    assert_eq!(
        first_alerts.path_and_query, "/v1.0/security/alerts_v2?%24top=1",
        "GET payload as query string"
    );
    let pages = outputs_of(&events, "content");
    assert_eq!(pages.len(), 2, "one event per page");
    let listed = serde_json::from_str::<J>(&content)
        .expect("fixture")
        .as_array()
        .map(Vec::len);
    assert_eq!(pages[1]["body"].as_array().map(Vec::len), listed);
}

#[test]
fn bodies_as_form_xml_and_data_and_headers_and_basic_auth() {
    let server = Server::start();
    for p in ["/form", "/xml", "/data"] {
        server.route(p, vec![Reply::json(200, "{}")]);
    }
    server.route(
        "/text",
        vec![Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: "not json".into(),
            delay: Duration::ZERO,
        }],
    );
    let story = r#"
actions:
  receive: {type: webhook, path: p, secret: s}
  form:
    type: http_request
    from: receive
    method: post
    url: "{base}/form"
    content_type: form
    payload: {grant_type: client_credentials, scope: "https://graph.microsoft.com/.default"}
    basic_auth: [client, "p@ss"]
  xml:
    type: http_request
    from: receive
    method: put
    url: "{base}/xml"
    content_type: xml
    payload: {alert: {id: "{{ receive.body.id }}", tag: [a, b]}}
    headers: {X-Request-Id: "{{ receive.body.id }}"}
  data:
    type: http_request
    from: receive
    method: post
    url: "{base}/data"
    content_type: text/csv
    payload: "id,severity\n{{ receive.body.id }},high"
  text:
    type: http_request
    from: receive
    url: "{base}/text"
"#;
    let case = Case::new(story, &server.url(""));
    let (status, events, stderr) = case.run(r#"{"id":"x<1>"}"#);
    assert_eq!(status, 0, "{stderr}");
    let got = |p: &str| {
        server
            .received()
            .into_iter()
            .find(|r| r.path_and_query == p)
            .expect("request")
    };
    let form = got("/form");
    assert_eq!(
        form.body,
        "grant_type=client_credentials&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default"
    );
    assert_eq!(form.headers["content-type"], "application/x-www-form-urlencoded");
    assert_eq!(form.headers["authorization"], "Basic Y2xpZW50OnBAc3M=");
    let xml = got("/xml");
    assert_eq!(xml.method, "PUT");
    assert_eq!(xml.body, "<alert><id>x&lt;1&gt;</id><tag>a</tag><tag>b</tag></alert>");
    assert_eq!(xml.headers["x-request-id"], "x<1>");
    let data = got("/data");
    assert_eq!(data.body, "id,severity\nx<1>,high");
    assert_eq!(data.headers["content-type"], "text/csv");
    assert_eq!(
        outputs_of(&events, "text")[0]["body"],
        "not json",
        "a body that is not JSON stays text"
    );
}

#[test]
fn a_failing_action_fails_the_run_but_the_rest_goes_on() {
    let story = r#"
actions:
  receive: {type: webhook, path: p, secret: s}
  bad_explode:
    type: transform
    mode: explode
    from: receive
    path: "{{ receive.body.not_a_list }}"
    to: item
  bad_filter:
    type: transform
    mode: message_only
    from: receive
    payload: {x: "{{ receive.body.n | divided_by: 0 }}"}
  fine:
    type: transform
    mode: message_only
    from: receive
    payload: {ok: true}
  waits:
    type: transform
    mode: explode
    from: receive
    path: "{{ receive.body.items | as_object }}"
    to: item
  only_some:
    type: trigger
    from: waits
    rules: [{type: field==value, path: "{{ waits.item }}", value: keep}]
  collect:
    type: transform
    mode: implode
    from: only_some
    guid_path: "{{ waits.guid }}"
    size_path: "{{ waits.size }}"
    item_path: "{{ waits.item }}"
    seconds: 30
"#;
    let case = Case::new(story, "");
    let (status, doc, _) = case.dry_run(r#"{"not_a_list":"text","n":1,"items":["keep","drop","keep"]}"#, None);
    assert_eq!(status, 1, "the run failed");
    let mut errors: Vec<&str> = doc["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str())
        .collect();
    errors.sort_unstable();
    assert_eq!(errors, ["bad_explode", "bad_filter"]);
    let events = doc["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(outputs_of(&events, "fine")[0], &json!({"ok": true}));
    // Two of three items arrive: after its 30 s window the implode emits them.
    let collected = outputs_of(&events, "collect");
    assert_eq!(collected, [&json!(["keep", "keep"])]);
    let error = doc["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["action"] == "bad_explode")
        .and_then(|e| e["error"].as_str())
        .unwrap_or_default();
    assert!(error.contains("not a list"), "{error}");
}

#[test]
fn webhook_options_shape_the_run() {
    let story = r#"
actions:
  receive:
    type: webhook
    path: p
    secret: s
    verbs: [get, post]
    include_headers: false
    max_body_bytes: 64
    rules: [{type: is_present, path: "{{ receive.id }}"}]
    response:
      status: 202
      content_type: text/plain
      body: "token={{ request.query.validationToken }}{{ request.body.id }}"
  next:
    type: transform
    mode: message_only
    from: receive
    payload: {id: "{{ receive.id }}"}
"#;
    let case = Case::new(story, "");
    let (status, doc, _) = case.dry_run(r#"{"id":"a1"}"#, None);
    assert_eq!(status, 0);
    assert_eq!(
        doc["response"],
        json!({"status": 202, "content_type": "text/plain", "body": "token=a1"})
    );
    assert_eq!(
        doc["events"][0]["output"],
        json!({"id": "a1"}),
        "include_headers: false merges body and query"
    );
    assert_eq!(doc["events"][1]["output"], json!({"id": "a1"}));
    // Rules that do not match: answered, no run.
    let (status, doc, _) = case.dry_run(r#"{"other":1}"#, None);
    assert_eq!(status, 0);
    assert_eq!(doc["events"], json!([]));
    // Too large a body is refused.
    let out = {
        let event = case.file("big.json", &format!(r#"{{"id":"{}"}}"#, "x".repeat(100)));
        tale(&["dry-run", &case.path("story.yaml"), "--event", &event])
    };
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("413"), "{}", out.stderr);
}

#[test]
fn credentials_never_reach_the_output_even_when_echoed() {
    let server = Server::start();
    server.route(
        "/echo",
        vec![Reply::json(
            200,
            r#"{"seen":"Bearer s3cr3t-t0ken","b64":"czNjcjN0LXQwa2Vu"}"#,
        )],
    );
    let story = r#"
actions:
  receive: {type: webhook, path: p, secret: s}
  call:
    type: http_request
    from: receive
    url: "{base}/echo"
    credential: graph
  note:
    type: transform
    mode: message_only
    from: call
    payload: {token: "{{ CREDENTIAL.graph }}", encoded: "{{ CREDENTIAL.graph | base64_encode }}"}
"#;
    let case = Case::new(story, &server.url(""));
    let event = case.file("event.json", "{}");
    let out = case
        .process(&event)
        .env("TALE_CREDENTIAL_GRAPH", "s3cr3t-t0ken")
        .env("TALE_CREDENTIAL_GRAPH_ALLOWED_HOSTS", "127.0.0.1")
        .output()
        .expect("run tale");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        server.received()[0].headers["authorization"],
        "Bearer s3cr3t-t0ken",
        "the request carries it"
    );
    assert!(
        !stdout.contains("s3cr3t-t0ken") && !stdout.contains("czNjcjN0LXQwa2Vu"),
        "{stdout}"
    );
    assert!(stdout.contains("[credential:graph]"));
}

#[test]
fn a_complete_implode_does_not_wait_for_its_window() {
    let story = r#"
actions:
  receive: {type: webhook, path: p, secret: s}
  each:
    type: transform
    mode: explode
    from: receive
    path: "{{ receive.body | as_object }}"
    to: n
  collect:
    type: transform
    mode: implode
    from: each
    guid_path: "{{ each.guid }}"
    size_path: "{{ each.size }}"
    item_path: "{{ each.n | as_object }}"
    seconds: 30
"#;
    let case = Case::new(story, "");
    let started = std::time::Instant::now();
    let (status, events, stderr) = case.run("[1, 2, 3]");
    assert_eq!(status, 0, "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(outputs_of(&events, "collect"), [&json!([1, 2, 3])]);
}

#[test]
fn send_email_talks_smtp_and_fails_on_the_failure_branch() {
    let smtp = crate::mock_smtp::SmtpServer::start();
    let story = r#"
actions:
  receive: {type: webhook, path: p, secret: s}
  notify:
    type: send_email
    from: receive
    recipients: "{{ receive.body.oncall | as_object }}"
    cc: soc-leads@contoso.com
    bcc: [audit@contoso.com]
    subject: "[SOC] {{ receive.body.title }}"
    body: "Alert {{ receive.body.id }}<br/>Severity: high"
    sender_name: Sentinel automation
  refused:
    type: send_email
    from: receive
    recipients: reject-me@contoso.com
    subject: x
    body: y
  on_refused:
    type: transform
    mode: message_only
    from: refused.failure
    payload: {error: "{{ refused.error }}"}
"#;
    let case = Case::new(story, "");
    let event = case.file(
        "event.json",
        r#"{"id":"a1","title":"Ransomware","oncall":["alice@contoso.com","bob@contoso.com"]}"#,
    );
    let out = case
        .process(&event)
        .env("TALE_SMTP_URL", smtp.url())
        .env("TALE_SMTP_FROM", "automation@contoso.com")
        .output()
        .expect("run tale");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mails = smtp.mails.lock().expect("mails").clone();
    assert_eq!(mails.len(), 1, "the refused message is not delivered");
    let mail = &mails[0];
    assert_eq!(mail.from, "<automation@contoso.com>");
    assert_eq!(
        mail.rcpt,
        [
            "<alice@contoso.com>",
            "<bob@contoso.com>",
            "<soc-leads@contoso.com>",
            "<audit@contoso.com>"
        ]
    );
    assert!(mail.data.contains("Subject: [SOC] Ransomware"), "{}", mail.data);
    assert!(
        mail.data
            .contains("From: \"Sentinel automation\" <automation@contoso.com>")
            || mail.data.contains("From: Sentinel automation <automation@contoso.com>"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("text/html"), "{}", mail.data);
    assert!(!mail.data.contains("audit@contoso.com"), "bcc is not in the headers");
    let events = crate::support::json_lines(&stdout);
    assert!(
        outputs_of(&events, "notify")[0]["message_id"]
            .as_str()
            .is_some_and(|id| id.ends_with("@tale>"))
    );
    assert!(
        outputs_of(&events, "on_refused")[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("550") || e.contains("no such user"))
    );
}

#[test]
fn send_email_without_a_server_is_a_clear_error() {
    let story = r#"
actions:
  receive: {type: webhook, path: p, secret: s}
  notify: {type: send_email, from: receive, recipients: soc@contoso.com, subject: s, body: b}
"#;
    let case = Case::new(story, "");
    let event = case.file("event.json", "{}");
    let out = case
        .process(&event)
        .env_remove("TALE_SMTP_URL")
        .output()
        .expect("run tale");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TALE_SMTP_URL"));
}

#[test]
fn transform_modes_on_the_virtual_clock() {
    let story = r#"
actions:
  receive: {type: webhook, path: p, secret: s}
  each:
    type: transform
    mode: explode
    from: receive
    path: "{{ receive.body.ips | as_object }}"
    to: ip
  unique:
    type: transform
    mode: deduplicate
    from: each
    path: "{{ each.ip }}"
  slow_down:
    type: transform
    mode: throttle
    from: unique
    interval: 60
    runs_per_interval: 1
    events_per_run: 1
  later:
    type: transform
    mode: delay
    from: receive
    seconds: "{{ receive.body.wait | as_object }}"
  words:
    type: transform
    mode: extract
    from: receive
    matchers:
      - {path: "{{ receive.body.text }}", regexp: "CVE-\\d{4}-\\d+", to: cves}
      - {path: "{{ receive.body.text }}", regexp: "CVE-(\\d{4})-(\\d+)(x)?", to: parts}
  years:
    type: transform
    mode: message_only
    from: words
    payload: {second_year: "{{ words.parts[1][0] }}", first_number: "{{ words.parts.first[1] }}"}
  listed:
    type: transform
    mode: message_only
    from: receive
    loop: "{{ receive.body.ips | as_object }}"
    payload: {n: "{{ LOOP.index | plus: 1 }}", ip: "{{ LOOP.value }}"}
"#;
    let case = Case::new(story, "");
    let event = r#"{"ips":["10.0.0.1","10.0.0.2","10.0.0.1","10.0.0.3"],"wait":90,"text":"see CVE-2024-3400 and CVE-2023-4966"}"#;
    let (status, doc, stderr) = case.dry_run(event, None);
    assert_eq!(status, 0, "{stderr}");
    let events = doc["events"].as_array().cloned().unwrap_or_default();
    let ips: Vec<&J> = outputs_of(&events, "unique").into_iter().map(|o| &o["ip"]).collect();
    assert_eq!(
        ips,
        [&json!("10.0.0.1"), &json!("10.0.0.2"), &json!("10.0.0.3")],
        "the repeated IP is dropped"
    );
    assert!(outputs_of(&events, "unique").iter().all(|o| o["unique_event"] == true));
    // One event per minute: the third passes two (virtual) minutes after the first.
    let passes: Vec<i64> = doc["trace"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["action"] == "slow_down" && !t["emitted"].as_array().is_none_or(Vec::is_empty))
        .filter_map(|t| t["at_ms"].as_i64())
        .collect();
    assert_eq!(passes.len(), 3);
    assert_eq!(passes[2] - passes[0], 120_000);
    assert_eq!(outputs_of(&events, "later"), [&json!({"seconds": 90})]);
    // As Tines (Ruby's `scan`): a match is its text, or with groups the
    // list of its groups, `null` for one that took no part.
    assert_eq!(
        outputs_of(&events, "words"),
        [
            &json!({"cves": ["CVE-2024-3400", "CVE-2023-4966"], "parts": [["2024", "3400", null], ["2023", "4966", null]]})
        ]
    );
    assert_eq!(
        outputs_of(&events, "years"),
        [&json!({"second_year": "2023", "first_number": "3400"})]
    );
    assert_eq!(
        outputs_of(&events, "listed")[0],
        &json!([{"n": "1", "ip": "10.0.0.1"}, {"n": "2", "ip": "10.0.0.2"}, {"n": "3", "ip": "10.0.0.1"}, {"n": "4", "ip": "10.0.0.3"}])
    );
}

#[test]
fn the_quickstart_of_the_readme_runs() {
    let out = tale(&[
        "run",
        &root()
            .join("examples/quickstart/alert-summary.yaml")
            .display()
            .to_string(),
        "--event",
        &root().join("examples/quickstart/alerts.json").display().to_string(),
    ]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let last: J = out
        .stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("events");
    assert_eq!(last["action"], "report");
    assert_eq!(last["output"]["serious"], 2);
    assert_eq!(last["output"]["alerts"][0]["user"], "nathan@contoso.com");
}

#[test]
fn a_credential_is_never_sent_to_a_host_it_does_not_allow() {
    let server = Server::start();
    server.route("/collect", vec![Reply::json(200, "{}")]);
    let story = r#"
actions:
  receive: {type: webhook, path: p, secret: s}
  exfiltrate:
    type: http_request
    from: receive
    method: post
    url: "{{ receive.body.callback }}"
    headers: {Authorization: "Bearer {{ CREDENTIAL.graph }}"}
  as_basic:
    type: http_request
    from: receive
    url: "{{ receive.body.callback }}"
    basic_auth: [svc, "{{ CREDENTIAL.graph }}"]
  as_base64:
    type: http_request
    from: receive
    url: "{{ receive.body.callback }}"
    headers: {X-Token: "{{ CREDENTIAL.graph | base64_encode }}"}
  in_query:
    type: http_request
    from: receive
    url: "{{ receive.body.callback }}?k={{ CREDENTIAL.graph | url_encode }}"
  basic_in_body:
    type: http_request
    from: receive
    method: post
    url: "{{ receive.body.callback }}"
    payload: {auth: "{{ 'svc:' | append: CREDENTIAL.graph | base64_encode }}"}
  unpadded:
    type: http_request
    from: receive
    url: "{{ receive.body.callback }}"
    headers: {X-Token: "{{ CREDENTIAL.graph | base64_encode | remove: '=' }}"}
  refused:
    type: transform
    mode: message_only
    from: [exfiltrate.failure, as_basic.failure, as_base64.failure, in_query.failure, basic_in_body.failure, unpadded.failure]
    payload: {error: "refused"}
"#;
    let case = Case::new(story, "");
    let event = case.file("event.json", &format!(r#"{{"callback":"{}"}}"#, server.url("/collect")));
    let out = case
        .process(&event)
        .env("TALE_CREDENTIAL_GRAPH", "s3cr3t/t0ken+")
        .env("TALE_CREDENTIAL_GRAPH_ALLOWED_HOSTS", "graph.microsoft.com")
        .output()
        .expect("run tale");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        server.received().is_empty(),
        "nothing may reach a host the credential does not allow"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events = crate::support::json_lines(&stdout);
    assert_eq!(outputs_of(&events, "refused").len(), 6, "every encoding is caught");
    let failures: Vec<&J> = events
        .iter()
        .filter(|e| e["branch"] == "failure")
        .map(|e| &e["output"]["error"])
        .collect();
    assert_eq!(failures.len(), 6);
    assert!(
        failures
            .iter()
            .all(|e| e.as_str().is_some_and(|e| e.contains("may not be sent to `127.0.0.1`"))),
        "{failures:?}"
    );
}

#[test]
fn redirects_network_retries_page_limits_and_logged_statuses() {
    let server = Server::start();
    server.route("/moved", vec![Reply::json(302, "{}").header("location", "/target")]);
    server.route("/target", vec![Reply::json(200, r#"{"here":true}"#)]);
    server.route(
        "/slow",
        vec![
            Reply::json(200, "{}").delayed(Duration::from_secs(2)),
            Reply::json(200, r#"{"second":true}"#),
        ],
    );
    server.route("/pages", vec![Reply::json(200, r#"{"value":[1],"next":"/pages"}"#)]);
    server.route("/gone", vec![Reply::json(410, "{}")]);
    let story = r#"
actions:
  receive: {type: webhook, path: p, secret: s}
  follow:
    type: http_request
    from: receive
    url: "{base}/moved"
  no_follow:
    type: http_request
    from: receive
    url: "{base}/moved"
    disable_redirect_follow: true
  timeout_retried:
    type: http_request
    from: receive
    url: "{base}/slow"
    timeout_secs: 0.5
    retry_on_status: [0]
    retries: 1
  one_page:
    type: http_request
    from: receive
    url: "{base}/pages"
    pagination: {next_url: "{base}{{ response.body.next }}", max_pages: 2}
  logged:
    type: http_request
    from: receive
    url: "{base}/gone"
    log_error_on_status: ["400-499"]
"#;
    let case = Case::new(story, &server.url(""));
    let (status, events, stderr) = case.run("{}");
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(outputs_of(&events, "follow")[0]["body"], json!({"here": true}));
    assert_eq!(outputs_of(&events, "no_follow")[0]["status"], 302);
    assert_eq!(
        outputs_of(&events, "timeout_retried")[0]["body"],
        json!({"second": true}),
        "a timeout counts as status 0"
    );
    let pages = outputs_of(&events, "one_page");
    assert_eq!(pages[0]["pages"], 2, "max_pages stops the paging");
    assert_eq!(
        server
            .received()
            .iter()
            .filter(|r| r.path_and_query == "/pages")
            .count(),
        2
    );
    assert_eq!(
        outputs_of(&events, "logged")[0]["status"],
        410,
        "a logged status still emits"
    );
    assert!(
        stderr.contains("warning: action `logged`") && stderr.contains("answered 410"),
        "{stderr}"
    );
}

#[test]
fn a_dry_run_trace_shows_what_an_explode_emitted() {
    let root = crate::support::root();
    let story = root.join("examples/quickstart/alert-summary.yaml");
    let event = root.join("examples/quickstart/alerts.json");
    let out = crate::support::tale(&[
        "dry-run",
        story.to_str().expect("path"),
        "--event",
        event.to_str().expect("path"),
        "--format",
        "json",
    ]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let trace: J = serde_json::from_str(&out.stdout).expect("json");
    let explode = trace["trace"]
        .as_array()
        .and_then(|t| t.iter().find(|e| e["action"] == "each_alert"))
        .expect("the explode's entry");
    assert_eq!(explode["emitted"].as_array().map(Vec::len), Some(4), "{explode}");
}

/// An explode past its `limit` emits the first elements and says what it
/// dropped.
#[test]
fn an_explode_past_its_limit_warns_about_what_it_dropped() {
    let case = Case::new(
        r#"
actions:
  receive: {type: webhook, path: p, secret: s}
  each:
    type: transform
    mode: explode
    from: receive
    path: "{{ receive.body.ids | as_object }}"
    to: id
    limit: 3
"#,
        "",
    );
    let (status, events, stderr) = case.run(r#"{"ids": [1, 2, 3, 4, 5]}"#);
    assert_eq!(status, 0, "{stderr}");
    let ids: Vec<&J> = outputs_of(&events, "each").iter().map(|o| &o["id"]).collect();
    assert_eq!(ids, [&json!(1), &json!(2), &json!(3)]);
    assert!(
        stderr.contains("the list has 5 elements; only the first 3 are exploded"),
        "{stderr}"
    );
}

/// `idempotency_key`: every attempt of one work item carries the same key,
/// derived from the stored input event (what a re-run after a crash uses
/// too); each page gets its own.
#[test]
fn retries_and_pages_carry_an_idempotency_key_derived_from_the_event() {
    let server = Server::start();
    server.route(
        "/tickets",
        vec![
            Reply::json(500, "{}").header("retry-after", "0"),
            Reply::json(201, r#"{"id": 9}"#),
        ],
    );
    server.route("/plain", vec![Reply::json(200, "{}")]);
    let first_page = format!(r#"{{"items": [1], "next": "{}"}}"#, server.url("/pages?p=2"));
    server.route(
        "/pages",
        vec![
            Reply::json(200, &first_page),
            Reply::json(200, r#"{"items": [2], "next": ""}"#),
        ],
    );
    let story = r#"
actions:
  receive: {type: webhook, path: p, secret: s}
  ticket:
    type: http_request
    from: receive
    method: post
    url: "{base}/tickets"
    idempotency_key: true
    retry_on_status: [500]
    payload: {title: "{{ receive.body.title }}"}
  listing:
    type: http_request
    from: receive
    url: "{base}/pages"
    idempotency_header: X-Request-Id
    pagination:
      next_url: "{{ response.body.next }}"
  plain:
    type: http_request
    from: receive
    url: "{base}/plain"
"#;
    let case = Case::new(story, &server.url(""));
    let (status, events, stderr) = case.run(r#"{"title": "t"}"#);
    assert_eq!(status, 0, "{stderr}");
    let hook = events
        .iter()
        .find(|e| e["action"] == "receive")
        .and_then(|e| e["id"].as_str())
        .expect("the webhook's event id")
        .to_owned();
    let received = server.received();
    let keys: Vec<Option<&String>> = received
        .iter()
        .filter(|r| r.path_and_query == "/tickets")
        .map(|r| r.headers.get("idempotency-key"))
        .collect();
    let want = format!("{hook}-ticket");
    assert_eq!(keys, [Some(&want), Some(&want)], "the retry repeats the key");
    let pages: Vec<Option<&String>> = received
        .iter()
        .filter(|r| r.path_and_query.starts_with("/pages"))
        .map(|r| r.headers.get("x-request-id"))
        .collect();
    assert_eq!(
        pages,
        [Some(&format!("{hook}-listing")), Some(&format!("{hook}-listing-2"))]
    );
    let plain = received
        .iter()
        .find(|r| r.path_and_query == "/plain")
        .expect("the plain request");
    assert!(!plain.headers.contains_key("idempotency-key"), "off unless asked");
}

/// Trigger rules as Tines reads them (docs: tines.com/docs/actions/types/trigger,
/// ../shared/TINES.md §3.4): `regex` ignores case unless `case_sensitive`
/// (on the rule, or on the trigger); `in` / `not in` ask whether the path
/// contains the value (any value of a list); comparisons keep case.
#[test]
fn trigger_rules_follow_tines_regex_case_and_in_containment() {
    let story = r#"
actions:
  receive: {type: webhook, path: p, secret: s}
  regex_ignores_case:
    type: trigger
    from: receive
    rules: [{type: regex, path: "{{ receive.body.title }}", value: "RANSOMWARE"}]
  regex_case_sensitive:
    type: trigger
    from: receive
    rules: [{type: regex, path: "{{ receive.body.title }}", value: "RANSOMWARE", case_sensitive: true}]
  trigger_case_sensitive:
    type: trigger
    from: receive
    case_sensitive: true
    rules: [{type: regex, path: "{{ receive.body.title }}", value: "RANSOMWARE"}]
  equality_keeps_case:
    type: trigger
    from: receive
    rules: [{type: field==value, path: "{{ receive.body.severity }}", value: "HIGH"}]
  in_contains:
    type: trigger
    from: receive
    rules: [{type: in, path: "{{ receive.body.title }}", value: [phishing, ransomware]}]
  not_in:
    type: trigger
    from: receive
    rules: [{type: "not in", path: "{{ receive.body.title }}", value: "sign-in"}]
"#;
    let case = Case::new(story, "");
    let (status, doc, stderr) = case.dry_run(r#"{"title":"Possible ransomware activity","severity":"high"}"#, None);
    assert_eq!(status, 0, "{stderr}");
    let events = doc["events"].as_array().cloned().unwrap_or_default();
    // A trigger emits on its main output when it matches, on `no_match` when not.
    let fired = |slug: &str| events.iter().any(|e| e["action"] == slug && e["branch"].is_null());
    assert!(fired("regex_ignores_case"), "a regex ignores case by default");
    assert!(!fired("regex_case_sensitive"), "unless the rule says case_sensitive");
    assert!(!fired("trigger_case_sensitive"), "or the trigger does");
    assert!(!fired("equality_keeps_case"), "comparisons keep case");
    assert!(fired("in_contains"), "`in`: the title contains `ransomware`");
    assert!(fired("not_in"), "`not in`: the title does not contain `sign-in`");
}

/// XML response bodies read as Tines reads them (Ruby's `Hash.from_xml`,
/// which the CISA RSS export in the shared corpus relies on:
/// `{{ .get_cisa_rss.body.rss.channel.item }}`), so an RSS feed explodes
/// into its items; a body that is not XML stays text.
#[test]
fn an_rss_response_is_read_as_an_object_and_its_items_explode() {
    let server = Server::start();
    let rss = r#"<?xml version="1.0"?><rss version="2.0"><channel><title>CISA</title>
<item><title>npm package hijacked</title><link>https://a.test/1</link></item>
<item><title>Routine &amp; boring</title><link>https://a.test/2</link></item>
</channel></rss>"#;
    let mut reply = Reply::json(200, rss);
    reply.headers = vec![("content-type".into(), "application/rss+xml; charset=utf-8".into())];
    server.route("/feed.xml", vec![reply]);
    let mut broken = Reply::json(200, "<?xml version=\"1.0\"?><rss><channel>");
    broken.headers = vec![("content-type".into(), "text/xml".into())];
    server.route("/broken.xml", vec![broken]);
    let case = Case::new(
        r#"name: Feed
actions:
  hook: {type: webhook, path: feed, secret: abcdefghijklmnop}
  get_feed:
    type: http_request
    from: hook
    url: "{base}/feed.xml"
  each_item:
    type: transform
    mode: explode
    from: get_feed
    path: "{{ get_feed.body.rss.channel.item | as_object }}"
    to: item
  get_broken:
    type: http_request
    from: hook
    url: "{base}/broken.xml"
"#,
        &server.url(""),
    );
    let (status, events, stderr) = case.run("{}");
    assert_eq!(status, 0, "{stderr}");
    let feed = events.iter().find(|e| e["action"] == "get_feed").expect("the feed");
    assert_eq!(feed["output"]["body"]["rss"]["version"], "2.0");
    assert_eq!(feed["output"]["body"]["rss"]["channel"]["title"], "CISA");
    let items: Vec<&J> = events.iter().filter(|e| e["action"] == "each_item").collect();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[1]["output"]["item"],
        json!({"title": "Routine & boring", "link": "https://a.test/2"})
    );
    let broken = events
        .iter()
        .find(|e| e["action"] == "get_broken")
        .expect("the broken one");
    assert_eq!(
        broken["output"]["body"],
        json!("<?xml version=\"1.0\"?><rss><channel>"),
        "malformed XML stays text"
    );
}

/// `poll` repeats a request until its response satisfies `until` (the
/// "job still running?" pattern without a loop in the graph), then emits
/// the last response; after `max_attempts` it takes the `failure` branch.
#[test]
fn poll_repeats_a_request_until_its_response_says_done() {
    let server = Server::start();
    let running = || Reply::json(200, r#"{"status": "running"}"#);
    server.route(
        "/job/1",
        vec![
            running(),
            running(),
            Reply::json(200, r#"{"status": "done", "verdict": "clean"}"#),
        ],
    );
    server.route("/job/2", vec![running()]);
    let case = Case::new(
        r#"name: Sandbox
actions:
  hook: {type: webhook, path: sandbox, secret: abcdefghijklmnop}
  check_job:
    type: http_request
    from: hook
    url: "{base}/job/{{ hook.body.job }}"
    poll:
      until:
        - {type: field==value, path: "{{ response.body.status }}", value: done}
      interval_secs: 0.05
      max_attempts: 3
  verdict:
    type: transform
    mode: message_only
    from: check_job
    payload: {verdict: "{{ check_job.body.verdict }}", attempts: "{{ check_job.poll_attempts }}"}
  gave_up:
    type: transform
    mode: message_only
    from: check_job.failure
    payload: {error: "{{ check_job.error }}"}
"#,
        &server.url(""),
    );
    let (status, events, stderr) = case.run(r#"{"job": 1}"#);
    assert_eq!(status, 0, "{stderr}");
    let verdict = events.iter().find(|e| e["action"] == "verdict").expect("a verdict");
    assert_eq!(verdict["output"], json!({"verdict": "clean", "attempts": "3"}));
    assert_eq!(server.received().len(), 3, "three attempts");
    assert!(events.iter().all(|e| e["action"] != "gave_up"));

    let (status, events, stderr) = case.run(r#"{"job": 2}"#);
    assert_eq!(status, 0, "a handled failure: {stderr}");
    let gave_up = events.iter().find(|e| e["action"] == "gave_up").expect("gave up");
    assert_eq!(
        gave_up["output"]["error"],
        "the response did not satisfy `poll.until` after 3 attempts"
    );
    assert_eq!(server.received().len(), 6);
    assert!(events.iter().all(|e| e["action"] != "verdict"));

    // A rule type that does not exist is refused by check.
    let bad = case.file(
        "bad.yaml",
        &std::fs::read_to_string(case.path("story.yaml"))
            .expect("story")
            .replace("type: field==value", "type: field=value"),
    );
    let out = tale(&["check", &bad]);
    assert_eq!(out.status, 1);
    assert!(out.stdout.contains("E106"), "{}", out.stdout);
}

/// `send_email` attachments as Tines writes them (`filename`,
/// `base64encodedcontents`, `content_type`, `auto` guessed from the name):
/// a MIME multipart message through a real SMTP exchange.
#[test]
fn send_email_attaches_files_as_tines_writes_them() {
    let smtp = crate::mock_smtp::SmtpServer::start();
    let story = r#"
actions:
  receive: {type: webhook, path: p, secret: s}
  mail_report:
    type: send_email
    from: receive
    recipients: soc@contoso.com
    subject: Daily report
    body: See the attachment.
    attachments:
      - filename: "report-{{ receive.body.day }}.csv"
        base64encodedcontents: "{{ receive.body.csv | base64_encode }}"
        content_type: auto
      - filename: evidence.bin
        base64encodedcontents: AAEC/w==
  bad_attachment:
    type: send_email
    from: receive
    recipients: soc@contoso.com
    subject: x
    body: y
    attachments: [{base64encodedcontents: "AAEC"}]
"#;
    let case = Case::new(story, "");
    let event = case.file("event.json", r#"{"day":"2026-12-07","csv":"host,risk\nws-17,high\n"}"#);
    let out = case
        .process(&event)
        .env("TALE_SMTP_URL", smtp.url())
        .env("TALE_SMTP_FROM", "automation@contoso.com")
        .output()
        .expect("run tale");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("attachment 1 has no `filename`"), "{stderr}");
    let mails = smtp.mails.lock().expect("mails").clone();
    assert_eq!(mails.len(), 1, "the message with a broken attachment is not sent");
    let data = &mails[0].data;
    assert!(data.contains("multipart/mixed"), "{data}");
    assert!(data.contains("filename=\"report-2026-12-07.csv\""), "{data}");
    assert!(data.contains("Content-Type: text/csv"), "{data}");
    assert!(data.contains("filename=\"evidence.bin\""), "{data}");
    assert!(data.contains("application/octet-stream"), "{data}");
    // The CSV travels base64-encoded (or as text): either way its rows are there.
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode("host,risk\nws-17,high\n");
    assert!(data.contains("ws-17,high") || data.contains(&encoded[..16]), "{data}");
}

/// `content_type: data` as Tines sends it (tines.com/docs/actions/types/http-request:
/// `data` = multipart/form-data): each payload key a field, `{contents,
/// filename}` a file; `base64encodedcontents` for bytes that are not text.
#[test]
fn content_type_data_uploads_a_multipart_form() {
    let mock = Server::start();
    mock.route("/submit", vec![Reply::json(201, r#"{"job_id":"j1"}"#)]);
    let case = Case::new(
        r#"name: Upload
actions:
  hook: {type: webhook, path: upload}
  submit:
    type: http_request
    from: hook
    method: post
    url: "{base}/submit"
    content_type: data
    payload:
      environment_id: "100"
      report:
        contents: "{{ hook.body.text }}"
        filename: report.csv
        content_type: text/csv
      sample:
        base64encodedcontents: "{{ hook.body.b64 }}"
        filename: sample.bin
"#,
        &mock.url(""),
    );
    let (status, events, stderr) = case.run(r#"{"text": "a,b\n1,2", "b64": "SGVsbG8gYmluYXJ5"}"#);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(
        crate::support::output_of(&events, "submit").expect("submit")["status"],
        201
    );
    let received = mock.received();
    let request = received.last().expect("the upload");
    let content_type = &request.headers["content-type"];
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap_or_else(|| panic!("a multipart content type: {content_type}"));
    let body = &request.body;
    assert!(
        body.contains(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"environment_id\"\r\n\r\n100\r\n"
        )),
        "{body}"
    );
    assert!(
        body.contains("name=\"report\"; filename=\"report.csv\"\r\nContent-Type: text/csv\r\n\r\na,b\n1,2\r\n"),
        "{body}"
    );
    assert!(
        body.contains("filename=\"sample.bin\"\r\nContent-Type: application/octet-stream\r\n\r\nHello binary\r\n"),
        "{body}"
    );
    assert!(body.ends_with(&format!("--{boundary}--\r\n")), "{body}");
}

/// Tines' template actions build one `local` value from others
/// (`final_payload: =REJECT(LOCAL.all_options, …)` after `all_options`):
/// a local value reads the ones it names, in whatever order they are written.
#[test]
fn a_local_value_reads_the_local_values_it_names() {
    let case = Case::new(
        r#"
name: Locals
actions:
  receive:
    type: webhook
    path: locals
  build:
    type: transform
    mode: message_only
    from: receive
    local:
      final: "{{ LOCAL.options | set_key: 'n', LOCAL.count | as_object }}"
      options: {channel: "{{ receive.body.channel }}"}
      count: "{{ receive.body.items | size | as_object }}"
    payload:
      body: "{{ LOCAL.final | as_object }}"
"#,
        "",
    );
    let (status, events, stderr) = case.run(r#"{"channel": "C1", "items": [1, 2]}"#);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(
        outputs_of(&events, "build")[0]["body"],
        json!({"channel": "C1", "n": 2})
    );
}
