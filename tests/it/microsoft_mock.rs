//! A mock of the Microsoft APIs the library and the examples call (and of
//! the ticketing and alerting services beside them): a real HTTP server on
//! 127.0.0.1, answering from the fixtures in `tests/data/fixtures/` and
//! behaving as `../shared/fixtures/sentinel/README.md` describes — OAuth2
//! token endpoints (v1 `resource`, v2 `scope`), Graph alerts (paging, 429
//! with Retry-After) and subscriptions, Log Analytics queries, indicators,
//! ARM incidents (ETag, 412), the Data Collector API (verifies the SharedKey
//! signature, 403), the O365 Management Activity API (`NextPageUri`), ADX
//! streaming ingest, Defender machines, Jira, SIGNL4 mobile alerting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value as J, json};

use crate::mock_server::spawn_router;

/// The workspace key the Data Collector mock verifies (the fixture vectors' key).
pub(crate) const SHARED_KEY: &str =
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";
pub(crate) const WORKSPACE: &str = "0f2a6c1e-5d4b-4a3c-9e8f-7a6b5c4d3e2f";

#[derive(Default)]
struct World {
    base: String,
    /// Calls per `METHOD path`.
    calls: HashMap<String, usize>,
    /// ARM incident etags by incident name.
    etags: HashMap<String, u32>,
    /// Data Collector uploads: the status answered and the body received.
    uploads: Vec<(u16, String)>,
    /// Graph subscriptions created (what `GET /subscriptions` lists).
    subscriptions: Vec<J>,
}

#[derive(Clone)]
pub(crate) struct MicrosoftMock {
    pub(crate) url: String,
    world: Arc<Mutex<World>>,
}

impl MicrosoftMock {
    pub(crate) fn start() -> Self {
        let world = Arc::new(Mutex::new(World::default()));
        // Bodies as large as the real APIs take (axum's own limit is 2 MB).
        let app = Router::new()
            .fallback(handle)
            .with_state(world.clone())
            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024));
        let addr = spawn_router(app);
        let url = format!("http://{addr}");
        // Before any request: links in answers (nextLink, NextPageUri) point here.
        world.lock().expect("world").base = url.clone();
        Self { url, world }
    }

    /// The Data Collector uploads so far: (status answered, body).
    pub(crate) fn uploads(&self) -> Vec<(u16, String)> {
        self.world.lock().expect("world").uploads.clone()
    }

    /// How many times `METHOD /path` was called.
    /// The Graph subscriptions created so far.
    pub(crate) fn subscriptions(&self) -> Vec<J> {
        self.world.lock().expect("world").subscriptions.clone()
    }

    pub(crate) fn calls(&self, key: &str) -> usize {
        self.world.lock().expect("world").calls.get(key).copied().unwrap_or(0)
    }
}

pub(crate) fn fixture_json(name: &str) -> J {
    let path = crate::support::root().join("tests/data/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture JSON")
}

fn reply(status: u16, body: &J) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("status"))
        .header("content-type", "application/json")
        .body(Body::from(if body.is_null() {
            String::new()
        } else {
            body.to_string()
        }))
        .expect("response")
}

fn graph_error(status: u16, code: &str, message: &str) -> Response<Body> {
    reply(status, &json!({"error": {"code": code, "message": message}}))
}

/// The Data Collector signature, as Azure computes it from what arrived
/// (`tests/data/fixtures/datacollector-signature-vectors.json`).
pub(crate) fn signature(key_b64: &str, content_length: usize, date: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD.decode(key_b64).expect("key");
    let sts = format!("POST\n{content_length}\napplication/json\nx-ms-date:{date}\n/api/logs");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("hmac");
    mac.update(sts.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The access token the mock's token endpoints issue for an audience (the
/// host of a v2 `scope` or a v1 `resource`).
pub(crate) fn token_for(audience: &str) -> String {
    format!("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.mock-token-for.{audience}")
}

/// The audience a Microsoft API's path wants its token for (`None`: not a
/// Microsoft API behind Entra tokens: Jira, SIGNL4, the Data Collector's
/// SharedKey).
fn audience_of(segments: &[&str]) -> Option<&'static str> {
    Some(match segments {
        ["v1.0" | "beta", ..] => "graph.microsoft.com",
        ["v1", "workspaces", ..] => "api.loganalytics.io",
        ["subscriptions", ..] | ["workspaces", ..] => "management.azure.com",
        ["dataCollectionRules", ..] => "monitor.azure.com",
        ["api", "v1.0", _, "activity", ..] => "manage.office.com",
        ["v1", "rest", "ingest", ..] => "help.kusto.windows.net",
        ["api", "machines", ..] => "api.securitycenter.microsoft.com",
        _ => return None,
    })
}

/// The longest lifetime Graph gives a subscription to `resource`, in
/// minutes; `None` for a resource it sends no change notifications for
/// (the legacy `security/alerts`, retired on 2026-10-15; `alerts_v2` and
/// `incidents` never had them). From the subscription resource's
/// documented maximum-length table.
fn max_subscription_minutes(resource: &str) -> Option<i64> {
    let r = resource.trim_start_matches('/').to_ascii_lowercase();
    let path = r.split('?').next().unwrap_or("");
    if path.starts_with("security/") {
        return None;
    }
    let last = path.rsplit('/').next().unwrap_or("");
    match last {
        "messages" | "events" | "contacts" => Some(4230),
        "callrecords" => Some(4230),
        "users" | "groups" => Some(41760),
        "root" => Some(42300),
        _ if path.starts_with("users/") && path.contains("/messages") => Some(4230),
        _ => None,
    }
}

/// A 400 when the requested expiry is past the resource's maximum (Graph
/// does not document the text; this is what the fixtures README asks of a
/// mock), or missing.
fn expiry_refused(body: &J, cap_minutes: i64) -> Option<Response<Body>> {
    let Some(at) = body["expirationDateTime"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    else {
        return Some(graph_error(400, "InvalidRequest", "expirationDateTime is required"));
    };
    let latest = chrono::Utc::now() + chrono::Duration::minutes(cap_minutes);
    (at > latest).then(|| {
        graph_error(
            400,
            "InvalidRequest",
            &format!("Subscription expiration can only be {cap_minutes} minutes in the future."),
        )
    })
}

/// Graph's validation request: `POST {url}?validationToken=…` with a token
/// holding characters that need URL-encoding; the webhook must answer 200,
/// `text/plain` and the decoded token within 10 s.
async fn handshake(url: &str) -> bool {
    let token = "Validation: Testing client application reachability for subscription Request-Id: 1f2e+3d/4c=";
    let Ok(client) = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
    else {
        return false;
    };
    let separator = if url.contains('?') { '&' } else { '?' };
    let target = format!(
        "{url}{separator}validationToken={}",
        url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    );
    let Ok(answer) = client
        .post(target)
        .header("content-type", "text/plain; charset=utf-8")
        .send()
        .await
    else {
        return false;
    };
    let plain = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    answer.status() == 200 && plain && answer.text().await.is_ok_and(|body| body == token)
}

async fn handle(
    State(world): State<Arc<Mutex<World>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or("").to_owned();
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let (base, call) = {
        let mut w = world.lock().expect("world");
        let key = format!("{method} {path}");
        let n = {
            let n = w.calls.entry(key).or_insert(0);
            *n += 1;
            *n
        };
        (w.base.clone(), n)
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let body_json: J = serde_json::from_slice(&body).unwrap_or(J::Null);

    // OAuth2 client credentials, v1 (`resource`) and v2 (`scope`).
    if method == Method::POST && (path.ends_with("/oauth2/token") || path.ends_with("/oauth2/v2.0/token")) {
        let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
        let v2 = path.ends_with("/v2.0/token");
        let target = if v2 { form.get("scope") } else { form.get("resource") };
        if form.get("grant_type").map(String::as_str) != Some("client_credentials")
            || form.get("client_secret").is_none_or(|s| s.is_empty())
            || target.is_none()
        {
            return reply(400, &fixture_json("token-error.json"));
        }
        let mut token = fixture_json(if v2 {
            "token-response.json"
        } else {
            "token-response-v1-endpoint.json"
        });
        let audience = target
            .and_then(|t| url::Url::parse(t).ok())
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        token["access_token"] = J::String(token_for(&audience));
        return reply(200, &token);
    }

    // Everything else wants a credential (Data Collector: its SharedKey;
    // SIGNL4: its API key header, checked with its routes).
    let authorization = header("authorization");
    let signl4 = matches!(segments.as_slice(), ["api", "v2" | "events" | "alerts" | "users", ..]);
    if signl4 && !authorization.is_empty() {
        return reply(
            400,
            &json!({"code": 400, "message": "SIGNL4 takes its key in X-S4-Api-Key, not Authorization"}),
        );
    }
    if path != "/api/logs" && !signl4 && !authorization.starts_with("Bearer ") {
        return graph_error(401, "InvalidAuthenticationToken", "Access token is empty.");
    }
    // Each Microsoft API takes only a token issued for it.
    if let Some(audience) = audience_of(&segments) {
        if authorization.trim_start_matches("Bearer ") != token_for(audience) {
            return graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
            );
        }
    }

    match (method.as_str(), segments.as_slice()) {
        // Graph security alerts v2: one, and the paged list.
        ("GET", ["v1.0", "security", "alerts_v2", id]) => match *id {
            "missing" => graph_error(404, "NotFound", "Alert not found"),
            "throttled" if call == 1 => Response::builder()
                .status(429)
                .header("retry-after", "1")
                .header("content-type", "application/json")
                .body(Body::from(fixture_json("graph-error-429.json").to_string()))
                .expect("response"),
            _ => {
                let mut alert = fixture_json("graph-alert-v2.json");
                alert["id"] = J::String((*id).to_owned());
                reply(200, &alert)
            }
        },
        ("GET", ["v1.0", "security", "alerts_v2"]) => {
            if query.contains("skiptoken") {
                reply(200, &fixture_json("graph-alerts-v2-list-page2-last.json"))
            } else {
                let mut page = fixture_json("graph-alerts-v2-list-page1.json");
                page["@odata.nextLink"] = J::String(format!("{base}/v1.0/security/alerts_v2?$skiptoken=page2"));
                reply(200, &page)
            }
        }
        // Graph change-notification subscriptions.
        ("POST", ["v1.0", "subscriptions"]) => {
            let url = body_json["notificationUrl"].as_str().unwrap_or("").to_owned();
            // Graph takes https only; a test's `tale serve` listens on plain
            // http on loopback.
            if !(url.starts_with("https://") || url.starts_with("http://127.0.0.1:")) {
                return graph_error(400, "InvalidRequest", "notificationUrl must use https");
            }
            let resource = body_json["resource"].as_str().unwrap_or("");
            let Some(cap) = max_subscription_minutes(resource) else {
                return graph_error(
                    400,
                    "InvalidRequest",
                    &format!("Resource '{resource}' is not supported for change notifications."),
                );
            };
            if let Some(refused) = expiry_refused(&body_json, cap) {
                return refused;
            }
            // The validation handshake, while the POST is pending: the
            // URL-decoded token back, 200, text/plain, within 10 s.
            if !handshake(&url).await {
                return reply(400, &fixture_json("graph-error-subscription-validation-failed.json"));
            }
            let mut w = world.lock().expect("world");
            let mut s = fixture_json("graph-subscription-response.json");
            s["id"] = J::String(format!("sub-{}", w.subscriptions.len() + 1));
            for key in ["resource", "notificationUrl", "changeType", "expirationDateTime"] {
                s[key] = body_json[key].clone();
            }
            w.subscriptions.push(s.clone());
            reply(201, &s)
        }
        // The app's own subscriptions, as created here.
        ("GET", ["v1.0", "subscriptions"]) => {
            let w = world.lock().expect("world");
            reply(200, &json!({"value": w.subscriptions}))
        }
        ("PATCH", ["v1.0", "subscriptions", id]) => {
            let mut w = world.lock().expect("world");
            let Some(s) = w.subscriptions.iter_mut().find(|s| s["id"] == *id) else {
                return graph_error(404, "ResourceNotFound", "The object was not found.");
            };
            let cap = max_subscription_minutes(s["resource"].as_str().unwrap_or("")).unwrap_or(0);
            if let Some(refused) = expiry_refused(&body_json, cap) {
                return refused;
            }
            s["expirationDateTime"] = body_json["expirationDateTime"].clone();
            reply(200, &s.clone())
        }
        // Graph tiIndicators.
        ("POST", ["beta", "security", "tiIndicators"]) => {
            let mut created = fixture_json("ti-indicator-response.json");
            if let (J::Object(c), J::Object(sent)) = (&mut created, &body_json) {
                c.extend(sent.clone());
            }
            reply(201, &created)
        }
        // Log Analytics query API.
        ("POST", ["v1", "workspaces", ws, "query"]) => {
            let q = body_json["query"].as_str().unwrap_or("");
            // A busy workspace throttles its first query (429, Retry-After).
            if *ws == "busy-workspace" && call == 1 {
                let mut r = reply(
                    429,
                    &json!({"error": {"code": "TooManyRequests", "message": "Too many requests. Retry after 1 seconds."}}),
                );
                r.headers_mut().insert("Retry-After", "1".parse().expect("header"));
                return r;
            }
            // SecurityAlert keeps a Graph alert's providerAlertId as VendorOriginalId.
            if q.contains("SecurityAlert") && q.contains("SystemAlertId") {
                return reply(200, &fixture_json("la-query-response-empty.json"));
            }
            if q.contains("whre") {
                reply(400, &fixture_json("la-query-error-syntax.json"))
            } else if q.starts_with("Heartbeat") {
                // A workspace with no data answers 204, no body.
                Response::builder().status(204).body(Body::empty()).expect("response")
            } else if q.contains("ago(365d)") {
                // A limit hit part-way: the rows so far and a PartialError, with 200.
                reply(200, &fixture_json("la-query-response-partial-error.json"))
            } else {
                reply(200, &fixture_json("la-query-response-signin-failures.json"))
            }
        }
        // Sentinel STIX upload: at most 100 objects a request; 200 with an
        // empty body when all are valid, with `errors` (0-based recordIndex)
        // when some are not.
        ("POST", ["workspaces", _ws, upload]) if upload.starts_with("threat-intelligence-stix-objects") => {
            let Some(objects) = body_json["stixobjects"].as_array() else {
                return reply(
                    400,
                    &json!({"error": {"code": "BadRequest", "message": "stixobjects is required"}}),
                );
            };
            if objects.len() > 100 {
                return reply(
                    400,
                    &json!({"error": {"code": "BadRequest", "message": "At most 100 objects per request"}}),
                );
            }
            let required = [
                "type",
                "id",
                "created",
                "modified",
                "pattern",
                "pattern_type",
                "valid_from",
            ];
            let errors: Vec<J> = objects
                .iter()
                .enumerate()
                .filter_map(|(i, o)| {
                    let missing: Vec<J> = required
                        .iter()
                        .filter(|k| o[**k].is_null())
                        .map(|k| {
                            J::String(format!(
                                "Error for Property={k}: Required property is missing. Actual value: NULL."
                            ))
                        })
                        .collect();
                    (!missing.is_empty()).then(|| json!({"recordIndex": i, "errorMessages": missing}))
                })
                .collect();
            if errors.is_empty() {
                Response::builder().status(200).body(Body::empty()).expect("response")
            } else {
                reply(200, &json!({"errors": errors}))
            }
        }
        // ARM incidents, with ETags: a PUT with a stale one is refused (412).
        ("GET", [.., "incidents", name]) => {
            let version = *world
                .lock()
                .expect("world")
                .etags
                .entry((*name).to_owned())
                .or_insert(1);
            let mut incident = fixture_json("sentinel-incident.json");
            incident["name"] = J::String((*name).to_owned());
            incident["id"] = J::String(path.clone());
            incident["etag"] = J::String(format!("\"etag-{version}\""));
            reply(200, &incident)
        }
        ("PUT", [.., "incidents", name]) => {
            let mut w = world.lock().expect("world");
            let version = w.etags.entry((*name).to_owned()).or_insert(1);
            if body_json["etag"].as_str() != Some(&format!("\"etag-{version}\"")) {
                return reply(412, &fixture_json("sentinel-error-conflict.json"));
            }
            *version += 1;
            let mut incident = body_json.clone();
            incident["etag"] = J::String(format!("\"etag-{version}\""));
            reply(200, &incident)
        }
        // Data Collector API: the signature is recomputed from what arrived.
        ("POST", ["api", "logs"]) => {
            let expected = format!(
                "SharedKey {WORKSPACE}:{}",
                signature(SHARED_KEY, body.len(), &header("x-ms-date"))
            );
            let (status, answer) = if header("content-type") != "application/json" {
                (
                    400,
                    json!({"Error": "UnsupportedContentType", "Message": "send application/json"}),
                )
            } else if authorization != expected {
                (
                    403,
                    json!({"Error": "InvalidAuthorization", "Message": "An invalid scheme was specified in the Authorization header"}),
                )
            } else if header("log-type").is_empty() {
                (
                    400,
                    json!({"Error": "MissingLogType", "Message": "The log type is missing"}),
                )
            } else {
                (200, J::Null)
            };
            world
                .lock()
                .expect("world")
                .uploads
                .push((status, String::from_utf8_lossy(&body).into_owned()));
            reply(status, &answer)
        }
        // O365 Management Activity API: start, the paged listing, blobs.
        ("POST", ["api", "v1.0", _tenant, "activity", "feed", "subscriptions", "start"]) => {
            reply(200, &fixture_json("o365-subscription-start-response.json"))
        }
        ("GET", ["api", "v1.0", tenant, "activity", "feed", "subscriptions", "content"]) => {
            let page = |n: usize| {
                json!([{
                    "contentType": "Audit.General",
                    "contentId": format!("blob-{n}"),
                    "contentUri": format!("{base}/api/v1.0/{tenant}/activity/feed/audit/blob-{n}"),
                    "contentCreated": "2025-01-14T09:15:00.823Z",
                    "contentExpiration": "2025-01-21T09:15:00.823Z"
                }])
            };
            if query.contains("nextPage=2") {
                reply(200, &page(2))
            } else {
                let next = format!("{base}/api/v1.0/{tenant}/activity/feed/subscriptions/content?{query}&nextPage=2");
                let mut r = reply(200, &page(1));
                r.headers_mut().insert("NextPageUri", next.parse().expect("header"));
                r
            }
        }
        ("GET", ["api", "v1.0", _tenant, "activity", "feed", "audit", _blob]) => {
            reply(200, &fixture_json("o365-content-blob-aad-doc.json"))
        }
        // ADX streaming ingest.
        ("POST", ["v1", "rest", "ingest", _db, _table]) => {
            // Streaming ingestion takes at most 4 MB of data per request.
            if body.len() > 4 * 1024 * 1024 {
                return reply(
                    413,
                    &json!({"error": {"code": "Stream_InputStreamTooLarge", "message": "The input stream is too large", "@permanent": true}}),
                );
            }
            if !query.contains("mappingName=") {
                return reply(
                    400,
                    &json!({"error": {"code": "BadRequest", "message": "mappingName is required"}}),
                );
            }
            reply(200, &fixture_json("kusto-streaming-ingest-response.json"))
        }
        // Logs Ingestion API: a JSON array of at most 1 MB for a rule's stream; 204.
        ("POST", ["dataCollectionRules", rule, "streams", stream]) => {
            if query != "api-version=2023-01-01" {
                return reply(
                    400,
                    &json!({"error": {"code": "InvalidApiVersion", "message": "The api-version is missing or not supported"}}),
                );
            }
            if !rule.starts_with("dcr-") {
                return reply(
                    404,
                    &json!({"error": {"code": "NotFound", "message": format!("Data collection rule {rule} not found")}}),
                );
            }
            if body.len() > 1024 * 1024 {
                return reply(
                    413,
                    &json!({"error": {"code": "ContentLengthLimitExceeded", "message": "Maximum request body size is 1048576 bytes"}}),
                );
            }
            match serde_json::from_slice::<J>(&body) {
                Ok(J::Array(_)) if stream.starts_with("Custom-") || stream.starts_with("Microsoft-") => {
                    reply(204, &J::Null)
                }
                Ok(J::Array(_)) => reply(
                    400,
                    &json!({"error": {"code": "InvalidStream", "message": format!("Stream {stream} is not defined in the data collection rule")}}),
                ),
                _ => reply(
                    400,
                    &json!({"error": {"code": "InvalidPayload", "message": "The body must be a JSON array of records"}}),
                ),
            }
        }
        // Defender for Endpoint machines.
        ("GET", ["api", "machines"]) => reply(200, &fixture_json("mde-machines-list.json")),
        // Jira.
        ("POST", ["rest", "api", "2", "issue"]) => reply(
            201,
            &json!({"id": "10042", "key": format!("SOC-{call}"), "self": format!("{base}/rest/api/2/issue/10042")}),
        ),
        // Graph: a message of the reported-phish mailbox.
        ("GET", ["v1.0", "users", _mailbox, "messages", id]) => reply(
            200,
            &json!({"id": id, "subject": "Your mailbox is full", "hasAttachments": false,
                    "receivedDateTime": "2025-01-14T08:58:11Z", "internetMessageId": "<a1@contoso.com>",
                    "webLink": "https://outlook.office365.com/owa/?ItemID=x",
                    "from": {"emailAddress": {"name": "IT Desk", "address": "it-desk@phish.example"}}}),
        ),
        // SIGNL4 (REST API: events v2, overview, alerts, users), behind its
        // API key header; an event is acknowledged as soon as it is read.
        ("POST" | "GET", ["api", "v2" | "events" | "alerts" | "users", ..])
            if header("x-s4-api-key") != "token-signl4_api_key" =>
        {
            reply(
                401,
                &json!({"code": 401, "message": "Unauthorized", "details": "A valid X-S4-Api-Key header is required.", "requestId": "r-1"}),
            )
        }
        ("POST", ["api", "v2", "events", secret]) => {
            if *secret != "token-signl4_team_secret" {
                return reply(
                    404,
                    &json!({"code": 3004, "message": "Error raising event.", "details": format!("An event source with ID {secret} was not found."), "requestId": "r-2"}),
                );
            }
            let fine = body_json["Title"].as_str().is_some_and(|t| !t.is_empty())
                && body_json["X-S4-Status"] == "new"
                && body_json["X-S4-Filtering"] == false
                && ["single_ack", "multi_ack", "emergency"]
                    .contains(&body_json["X-S4-AlertingScenario"].as_str().unwrap_or(""));
            if !fine {
                return reply(
                    400,
                    &json!({"code": 400, "message": "Bad request", "details": "Invalid event", "requestId": "r-3"}),
                );
            }
            reply(201, &json!({"eventId": format!("ev-{call}")}))
        }
        ("GET", ["api", "events", id, "overview"]) => reply(
            200,
            &json!({"id": id, "alertId": "al-1", "acknowledgedAlerts": ["al-1"], "closedAlerts": []}),
        ),
        ("GET", ["api", "alerts", id]) => reply(
            200,
            &json!({"id": id, "eventId": "ev-1", "status": 2, "history": {"created": "2025-01-14T09:00:05Z",
                    "acknowledged": "2025-01-14T09:01:40Z", "acknowledgedgements": ["u-megan"], "closed": null, "closedBy": null}}),
        ),
        ("GET", ["api", "users", id]) => reply(
            200,
            &json!({"id": id, "name": "Megan Bowen", "mail": "megan.bowen@contoso.com"}),
        ),
        _ => graph_error(404, "NotFound", &format!("the mock has no {method} {path}")),
    }
}
