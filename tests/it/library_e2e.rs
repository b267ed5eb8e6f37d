//! Every library story and the examples, run for real with `tale run` (the
//! binary, as a user runs it) against the Microsoft mock on 127.0.0.1: each
//! reaches its success exit (a scheduled story runs one tick).

use std::process::Command;

use serde_json::{Value as J, json};

use crate::microsoft_mock::{MicrosoftMock, SHARED_KEY, WORKSPACE};
use crate::mock_smtp::SmtpServer;

/// Runs `story` with `event`, every base URL pointing at the mock.
fn run(mock: &MicrosoftMock, smtp: &SmtpServer, story: &str, event: &J) -> (i32, Vec<J>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let event_path = dir.path().join("event.json");
    std::fs::write(&event_path, event.to_string()).expect("event");
    let root = crate::support::root();
    let url = &mock.url;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tale"));
    cmd.arg("run")
        .arg(root.join(story))
        .arg("--event")
        .arg(&event_path)
        .arg("--stories")
        .arg(root.join("stories"))
        // graph-security-poll and mobile-alerting call the alert-triage example.
        .arg("--stories")
        .arg(root.join("examples/alert-triage"))
        .arg("--credentials")
        .arg(credentials_file(dir.path(), url))
        .env("TALE_SMTP_URL", smtp.url())
        .env("TALE_SMTP_FROM", "tale@contoso.com");
    for name in [
        "jira",
        "slack",
        "signl4_api_key",
        "signl4_team_secret",
        "substory_webhook_secret",
        "graph_webhook_secret",
        "forensics_webhook_secret",
        "mobile_alerting_webhook_secret",
        "hunting_webhook_secret",
    ] {
        cmd.env(
            format!("TALE_CREDENTIAL_{}", name.to_uppercase()),
            format!("token-{name}"),
        );
    }
    cmd.env("TALE_CREDENTIAL_LOG_ANALYTICS_SHARED_KEY", SHARED_KEY).env(
        "TALE_CREDENTIAL_GRAPH_CLIENT_STATE",
        "c2VjcmV0Q2xpZW50U3RhdGUtc3Rvcmllcw",
    );
    for name in [
        "graph_base_url",
        "log_analytics_base_url",
        "o365_management_base_url",
        "arm_base_url",
        "sentinel_ti_base_url",
        "adx_base_url",
        "jira_base_url",
        "defender_base_url",
        "data_collector_base_url",
        "logs_ingestion_endpoint",
        "alerting_base_url",
    ] {
        cmd.env(format!("TALE_RESOURCE_{}", name.to_uppercase()), url);
    }
    let resources = [
        ("log_analytics_workspace_id", json!(WORKSPACE)),
        ("o365_tenant_id", json!("41463f53-8812-40f4-890f-865bf6e35190")),
        ("o365_publisher_id", json!("41463f53-8812-40f4-890f-865bf6e35190")),
        (
            "sentinel_subscription_id",
            json!("d0cfe6b2-9ac0-4464-9919-dccaee2e48c0"),
        ),
        ("sentinel_resource_group", json!("soc-rg")),
        ("sentinel_workspace", json!("contoso-sentinel")),
        ("adx_database", json!("SecurityLogs")),
        ("logs_ingestion_rule_id", json!("dcr-5a3e0f6c2b8d4e1f9a7c6b5d4e3f2a1b")),
        ("jira_project_key", json!("SOC")),
        ("soc_email", json!("soc-oncall@contoso.com")),
        ("slack_soc_channel", json!("C0SOC")),
        ("tale_public_url", json!("https://tale.contoso.test")),
        ("phish_mailbox", json!("phish@contoso.com")),
        ("soc_lead_object_id", json!("2046feea-040d-4a46-9e2b-91c2941bfa70")),
        (
            "on_call",
            json!([{"name": "Megan Bowen", "service": "SOC primary", "upn": "megan.bowen@contoso.com"},
                   {"name": "Alex Wilber", "service": "SOC secondary", "upn": "alex.wilber@contoso.com"}]),
        ),
    ];
    for (name, value) in resources {
        let text = match value {
            J::String(s) => s,
            other => other.to_string(),
        };
        cmd.env(format!("TALE_RESOURCE_{}", name.to_uppercase()), text);
    }
    let out = cmd.output().expect("tale run");
    let events = crate::support::json_lines(&String::from_utf8_lossy(&out.stdout));
    (
        out.status.code().unwrap_or(-1),
        events,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The Microsoft credentials as a deployment has them: OAuth2 client
/// credentials against the mock's token endpoints, each for its API's
/// audience (the mock refuses a token issued for another API).
fn credentials_file(dir: &std::path::Path, mock: &str) -> std::path::PathBuf {
    let mut text = String::new();
    for (name, form) in [
        ("graph", "scope: https://graph.microsoft.com/.default"),
        ("log_analytics", "scope: https://api.loganalytics.io/.default"),
        ("azure_management", "scope: https://management.azure.com/.default"),
        ("logs_ingestion", "scope: https://monitor.azure.com/.default"),
        ("o365_management", "scope: https://manage.office.com/.default"),
        ("defender", "scope: https://api.securitycenter.microsoft.com/.default"),
    ] {
        text.push_str(&format!(
            "{name}:\n  type: oauth2_client_credentials\n  token_url: {mock}/tenant-1/oauth2/v2.0/token\n  client_id: app-1\n  client_secret: s3cret-{name}\n  {form}\n  allowed_hosts: [127.0.0.1]\n"
        ));
    }
    // Azure Data Explorer through the v1 endpoint (`resource`, `expires_in` as text).
    text.push_str(&format!(
        "adx:\n  type: oauth2_client_credentials\n  token_url: {mock}/tenant-1/oauth2/token\n  client_id: app-1\n  client_secret: s3cret-adx\n  resource: https://help.kusto.windows.net\n  allowed_hosts: [127.0.0.1]\n"
    ));
    let path = dir.join("credentials.yaml");
    std::fs::write(&path, text).expect("credentials");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    path
}

fn outputs<'a>(events: &'a [J], action: &str) -> Vec<&'a J> {
    events
        .iter()
        .filter(|e| e["action"] == action && e["branch"].is_null())
        .map(|e| &e["output"])
        .collect()
}

fn read(path: &str) -> J {
    let text = std::fs::read_to_string(crate::support::root().join(path)).expect("event file");
    serde_json::from_str(&text).expect("JSON event")
}

#[test]
fn every_library_story_reaches_its_success_exit_against_the_mock() {
    let mock = MicrosoftMock::start();
    let smtp = SmtpServer::start();
    let cases: Vec<(&str, J, &str)> = vec![
        // A 429 with Retry-After first: the story waits and retries.
        (
            "stories/graph-alert.yaml",
            json!({"alert_id": "throttled"}),
            "alert_found",
        ),
        (
            "stories/log-analytics-query.yaml",
            json!({"query": "SigninLogs | where ResultType != 0 | take 3", "timespan": "PT12H"}),
            "rows_as_objects",
        ),
        (
            "stories/threat-indicator.yaml",
            json!({"indicator": {"description": "C2 server", "url": "http://bad.example/c2"}}),
            "indicator_created",
        ),
        (
            "stories/threat-indicator-stix.yaml",
            json!({"indicators": [{"type": "indicator", "spec_version": "2.1", "id": "indicator--10000003-71a2-445c-ab86-927291df48f8",
                                   "name": "C2", "pattern": "[ipv4-addr:value = '203.0.113.5']", "pattern_type": "stix",
                                   "created": "2025-01-14T09:00:00Z", "modified": "2025-01-14T09:00:00Z", "valid_from": "2025-01-14T09:00:00Z"}]}),
            "indicators_uploaded",
        ),
        (
            "stories/sentinel-incident.yaml",
            json!({"incident_id": "73e01a99-5cd7-4139-a149-9f2736ff2ab5", "status": "Active",
                   "owner": {"userPrincipalName": "megan.bowen@contoso.com"}}),
            "incident_updated",
        ),
        // The mock recomputes the SharedKey signature: 403 unless it is right.
        (
            "stories/data-collector.yaml",
            json!({"log_type": "StoryEvents", "records": [{"City": "München", "FailedSignIns": 12}]}),
            "records_sent",
        ),
        // Two listing pages (NextPageUri), one blob each.
        (
            "stories/o365-content.yaml",
            json!({"content_type": "Audit.General"}),
            "content_fetched",
        ),
        (
            "stories/adx-ingest.yaml",
            json!({"table": "O365AtpAlerts", "mapping_name": "O365AtpAlerts_json", "records": [{"Id": "a1"}, {"Id": "a2"}]}),
            "records_ingested",
        ),
        (
            "stories/logs-ingestion.yaml",
            json!({"stream": "Custom-DeviceForensics_CL", "records": [{"TimeGenerated": "2026-12-01T10:00:00Z", "DeviceId": "m1"}]}),
            "records_sent",
        ),
    ];
    for (story, event, exit) in cases {
        let (status, events, stderr) = run(&mock, &smtp, story, &event);
        assert_eq!(status, 0, "{story}: {stderr}");
        let out = outputs(&events, exit);
        assert_eq!(out.len(), 1, "{story}: no `{exit}` event\n{stderr}\n{events:#?}");
        assert_eq!(out[0]["ok"], true, "{story}: {}", out[0]);
    }
    assert_eq!(
        mock.calls("GET /v1.0/security/alerts_v2/throttled"),
        2,
        "the 429 was not retried"
    );
    assert_eq!(
        mock.calls("GET /api/v1.0/41463f53-8812-40f4-890f-865bf6e35190/activity/feed/subscriptions/content"),
        2,
        "NextPageUri was not followed"
    );
}

#[test]
fn the_examples_run_against_the_mock() {
    let mock = MicrosoftMock::start();
    let smtp = SmtpServer::start();
    let cases: Vec<(&str, J, &str)> = vec![
        (
            "examples/quickstart/alert-summary.yaml",
            read("examples/quickstart/alerts.json"),
            "report",
        ),
        (
            "examples/alert-triage/alert-triage.yaml",
            read("examples/alert-triage/sample-event.json"),
            "triage_done",
        ),
        (
            "examples/endpoint-forensics/endpoint-forensics.yaml",
            json!({}),
            "uploaded",
        ),
        (
            "examples/mobile-alerting/mobile-alerting.yaml",
            read("examples/mobile-alerting/sample-event.json"),
            "take_ownership",
        ),
    ];
    for (story, event, action) in cases {
        let (status, events, stderr) = run(&mock, &smtp, story, &event);
        assert_eq!(status, 0, "{story}: {stderr}");
        assert!(
            !outputs(&events, action).is_empty(),
            "{story}: no `{action}` event; events: {:?}\n{stderr}",
            events
                .iter()
                .map(|e| match e["branch"].as_str() {
                    Some(b) => format!("{}.{b}: {}", e["action"], e["output"]),
                    None => e["action"].to_string(),
                })
                .collect::<Vec<_>>()
        );
    }
    assert!(
        !smtp.mails.lock().expect("mails").is_empty(),
        "alert-triage sent no e-mail"
    );
    // The mobile-alerting example pages through SIGNL4's API: an event, its
    // overview, the alert, who acknowledged it.
    for call in [
        "POST /api/v2/events/token-signl4_team_secret",
        "GET /api/events/ev-1/overview",
        "GET /api/alerts/al-1",
        "GET /api/users/u-megan",
    ] {
        assert_eq!(mock.calls(call), 1, "{call}");
    }
    // The forensics example posts through the Logs Ingestion API, not the
    // retired Data Collector API.
    assert_eq!(
        mock.calls("POST /dataCollectionRules/dcr-5a3e0f6c2b8d4e1f9a7c6b5d4e3f2a1b/streams/Custom-DeviceForensics_CL"),
        1
    );
    assert_eq!(mock.calls("POST /api/logs"), 0);
}

#[test]
fn the_token_endpoints_answer_both_forms_and_refuse_bad_requests() {
    let mock = MicrosoftMock::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let http = reqwest::Client::new();
        let v2 = http
            .post(format!("{}/tenant-1/oauth2/v2.0/token", mock.url))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "app"),
                ("client_secret", "s3cret"),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .send()
            .await
            .expect("v2");
        assert_eq!(v2.status(), 200);
        let token: J = v2.json().await.expect("json");
        assert!(token["expires_in"].is_number());
        let v1 = http
            .post(format!("{}/tenant-1/oauth2/token", mock.url))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "app"),
                ("client_secret", "s3cret"),
                ("resource", "https://help.kusto.windows.net"),
            ])
            .send()
            .await
            .expect("v1");
        let token: J = v1.json().await.expect("json");
        assert!(token["expires_in"].is_string(), "v1 sends expires_in as a string");
        let bad = http
            .post(format!("{}/tenant-1/oauth2/v2.0/token", mock.url))
            .form(&[("grant_type", "client_credentials"), ("client_id", "app")])
            .send()
            .await
            .expect("bad");
        assert_eq!(bad.status(), 400);
        // A token for another API is refused, as Entra's audience check does.
        let alert = format!("{}/v1.0/security/alerts_v2/a1", mock.url);
        let wrong = http
            .get(&alert)
            .bearer_auth(crate::microsoft_mock::token_for("api.loganalytics.io"))
            .send()
            .await
            .expect("wrong audience");
        assert_eq!(wrong.status(), 401);
        let right = http
            .get(&alert)
            .bearer_auth(crate::microsoft_mock::token_for("graph.microsoft.com"))
            .send()
            .await
            .expect("right audience");
        assert_eq!(right.status(), 200);
    });
}

/// The STIX upload documents 10,000 objects per call: 3,000 (about 1.3 MB)
/// went past its webhook's default body limit and were refused with a 413.
#[test]
fn three_thousand_stix_indicators_upload_in_batches() {
    let mock = MicrosoftMock::start();
    let smtp = SmtpServer::start();
    let indicators: Vec<J> = (0..3000)
        .map(|i| {
            json!({"type": "indicator", "spec_version": "2.1", "id": format!("indicator--{i:08}-71a2-445c-ab86-927291df48f8"),
                   "name": format!("C2 {i}"), "pattern": format!("[ipv4-addr:value = '203.0.{}.{}']", i / 250, i % 250),
                   "pattern_type": "stix", "created": "2025-01-14T09:00:00Z", "modified": "2025-01-14T09:00:00Z",
                   "valid_from": "2025-01-14T09:00:00Z", "description": "a command and control server seen in the incident"})
        })
        .collect();
    let event = json!({"indicators": indicators});
    assert!(
        event.to_string().len() > 1024 * 1024,
        "more than the default body limit"
    );
    let (status, events, stderr) = run(&mock, &smtp, "stories/threat-indicator-stix.yaml", &event);
    assert_eq!(status, 0, "{stderr}");
    let uploaded = outputs(&events, "indicators_uploaded");
    assert_eq!(uploaded.len(), 1, "{stderr}");
    assert_eq!(uploaded[0]["submitted"], 3000, "{}", uploaded[0]);
}

/// The Logs Ingestion API takes 1 MB per call (the mock answers 413 beyond
/// it): 2.5 MB of records go out in three calls, every record once.
#[test]
fn logs_ingestion_splits_records_into_calls_under_one_megabyte() {
    let mock = MicrosoftMock::start();
    let smtp = SmtpServer::start();
    let records: Vec<J> = (0..2500)
        .map(|i| json!({"TimeGenerated": "2026-12-01T10:00:00Z", "N": i, "Text": "x".repeat(1000)}))
        .collect();
    let event = json!({"stream": "Custom-Big_CL", "records": records});
    assert!(event.to_string().len() > 2_500_000);
    let (status, events, stderr) = run(&mock, &smtp, "stories/logs-ingestion.yaml", &event);
    assert_eq!(status, 0, "{stderr}");
    let sent = outputs(&events, "records_sent");
    assert_eq!(sent.len(), 1, "{stderr} {:?}", outputs(&events, "send_failed"));
    assert_eq!(sent[0]["records_sent"], 2500);
    assert_eq!(sent[0]["requests"], 3, "{}", sent[0]);
}

/// Streaming ingestion takes 4 MB per request: 5 MB of records go out as
/// two requests of JSON lines, each under the limit (the mock answers 413
/// beyond it), with the JSON content type.
#[test]
fn five_megabytes_of_adx_records_go_out_in_requests_under_four() {
    let mock = MicrosoftMock::start();
    let smtp = SmtpServer::start();
    let records: Vec<J> = (0..5000).map(|i| json!({"Id": i, "Text": "x".repeat(1000)})).collect();
    let event = json!({"table": "T", "mapping_name": "T_json", "records": records});
    assert!(event.to_string().len() > 5_000_000);
    let (status, events, stderr) = run(&mock, &smtp, "stories/adx-ingest.yaml", &event);
    assert_eq!(status, 0, "{stderr}");
    let done = outputs(&events, "records_ingested");
    let actions: Vec<&J> = events.iter().map(|e| &e["action"]).collect();
    assert_eq!(
        done.len(),
        1,
        "{actions:?} {:?} {stderr}",
        outputs(&events, "ingest_failed")
    );
    assert_eq!(done[0]["records_sent"], 5000);
    assert_eq!(done[0]["requests"], 2, "{}", done[0]);
    assert!(outputs(&events, "ingest_failed").is_empty());
}

/// Graph validates a subscription by calling its notification URL: here a
/// real `tale serve` with the reported-phish example answers the mock's
/// handshake. Asked twice without an id, the subscription story creates one
/// subscription and then renews it (it used to create one a day); a
/// lifetime past the resource's cap and a retired resource are refused.
#[test]
fn a_graph_subscription_passes_the_handshake_of_a_tale_webhook_and_is_renewed_not_duplicated() {
    let mock = MicrosoftMock::start();
    let smtp = SmtpServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let stories = dir.path().join("stories");
    std::fs::create_dir_all(&stories).expect("mkdir");
    std::fs::copy(
        crate::support::root().join("examples/graph-mail-subscription/reported-phish-notifications.yaml"),
        stories.join("reported-phish-notifications.yaml"),
    )
    .expect("copy");
    let port = crate::support::free_port();
    let mut serve = crate::serve::serve_process(
        dir.path(),
        port,
        &[],
        &[("TALE_CREDENTIAL_GRAPH_WEBHOOK_SECRET", "hook-77")],
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(crate::serve::wait_ready(port));
    let mailbox = "users/phish@contoso.com/mailFolders('inbox')/messages";
    let event = json!({"notification_url": format!("http://127.0.0.1:{port}/webhook/graph-mail/hook-77"),
                       "resource": mailbox, "change_type": "created", "expiration_minutes": 4200});
    let (status, events, stderr) = run(&mock, &smtp, "stories/graph-subscription.yaml", &event);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(outputs(&events, "subscription_created").len(), 1, "{stderr}");
    let (status, events, stderr) = run(&mock, &smtp, "stories/graph-subscription.yaml", &event);
    assert_eq!(status, 0, "{stderr}");
    let renewed = outputs(&events, "subscription_renewed");
    assert_eq!(renewed.len(), 1, "{stderr}");
    assert_eq!(renewed[0]["subscription_id"], "sub-1");
    assert_eq!(mock.subscriptions().len(), 1, "one subscription, renewed");

    // Outlook messages allow 4230 minutes; the retired security/alerts nothing.
    for (resource, minutes, why) in [
        ("users", 50_000, "minutes in the future"),
        (
            "security/alerts?$filter=vendorInformation/provider eq 'IPC'",
            4200,
            "not supported",
        ),
    ] {
        let event = json!({"notification_url": format!("http://127.0.0.1:{port}/webhook/graph-mail/hook-77"),
                           "resource": resource, "change_type": "updated", "expiration_minutes": minutes});
        let (_, events, stderr) = run(&mock, &smtp, "stories/graph-subscription.yaml", &event);
        let failed = events
            .iter()
            .filter(|e| e["action"] == "subscription_failed")
            .map(|e| &e["output"])
            .collect::<Vec<_>>();
        assert_eq!(failed.len(), 1, "{resource}: {stderr}");
        assert_eq!(failed[0]["status"], 400, "{}", failed[0]);
        assert!(failed[0].to_string().contains(why), "{}", failed[0]);
    }
    // A notification URL that does not echo the token fails Graph's validation.
    let event = json!({"notification_url": format!("http://127.0.0.1:{port}/webhook/graph-mail/wrong-secret"),
                       "resource": mailbox, "change_type": "created", "expiration_minutes": 4200});
    let (_, events, _) = run(&mock, &smtp, "stories/graph-subscription.yaml", &event);
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "subscription_failed"
                && e["output"].to_string().contains("validation request failed")),
        "{events:?}"
    );
    assert_eq!(mock.subscriptions().len(), 1);
    let _ = serve.kill();
    let _ = serve.wait();
}

/// Documented answers beyond success: a STIX batch with an invalid object
/// answers 200 with `errors` (the valid ones are taken); Log Analytics
/// answers 204 for a workspace without data, a PartialError with 200, and
/// 429 with Retry-After.
#[test]
fn validation_errors_empty_workspaces_and_partial_results_come_back_as_documented() {
    let mock = MicrosoftMock::start();
    let smtp = SmtpServer::start();
    let good = |i: u32| {
        json!({"type": "indicator", "spec_version": "2.1", "id": format!("indicator--{i:08}-71a2-445c-ab86-927291df48f8"),
               "pattern": "[ipv4-addr:value = '203.0.113.5']", "pattern_type": "stix",
               "created": "2025-01-14T09:00:00Z", "modified": "2025-01-14T09:00:00Z", "valid_from": "2025-01-14T09:00:00Z"})
    };
    let mut broken = good(3);
    broken.as_object_mut().expect("object").remove("pattern");
    let event = json!({"indicators": [good(1), good(2), broken]});
    let (_, events, stderr) = run(&mock, &smtp, "stories/threat-indicator-stix.yaml", &event);
    let failed = outputs(&events, "validation_failed");
    assert_eq!(failed.len(), 1, "{stderr}");
    assert_eq!(failed[0]["rejected"], 1, "{}", failed[0]);
    assert!(
        failed[0]["errors"].to_string().contains("Property=pattern"),
        "{}",
        failed[0]
    );

    let (status, events, stderr) = run(
        &mock,
        &smtp,
        "stories/log-analytics-query.yaml",
        &json!({"query": "Heartbeat | take 10", "timespan": "PT1H"}),
    );
    assert_eq!(status, 0, "{stderr}");
    let rows = outputs(&events, "rows_as_objects");
    assert_eq!(rows.len(), 1, "{stderr}");
    assert_eq!(rows[0]["rows"], json!([]), "{}", rows[0]);

    let (status, events, stderr) = run(
        &mock,
        &smtp,
        "stories/log-analytics-query.yaml",
        &json!({"query": "SigninLogs | where TimeGenerated > ago(365d) | summarize count() by Location", "timespan": "P365D"}),
    );
    assert_eq!(status, 0, "{stderr}");
    let rows = outputs(&events, "rows_as_objects");
    assert_eq!(rows.len(), 1, "{stderr}");
    assert_eq!(rows[0]["partial_error"]["code"], "PartialError", "{}", rows[0]);
    assert_eq!(rows[0]["rows"][0]["Location"], "NL", "{}", rows[0]);

    // A throttled query is asked again after Retry-After.
    let (status, events, stderr) = run(
        &mock,
        &smtp,
        "stories/log-analytics-query.yaml",
        &json!({"query": "SigninLogs | take 3", "timespan": "PT1H", "workspace_id": "busy-workspace"}),
    );
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(outputs(&events, "rows_as_objects").len(), 1, "{stderr}");
    assert_eq!(mock.calls("POST /v1/workspaces/busy-workspace/query"), 2);
}
