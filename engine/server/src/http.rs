//! The HTTP side of `tale serve`: webhooks, health, metrics and the JSON API
//! (docs/api.md).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use serde::Deserialize;
use serde_json::{Value as J, json};
use tale_engine::runtime::durable::{Delivery, DurableError};
use tale_engine::runtime::event::{EventId, RunId};
use tale_engine::runtime::exec::{WebhookRequest, WebhookResponse};
use tale_engine::runtime::runlog::{RunFilter, RunState};
use tale_engine::runtime::store::StoreError;
use uuid::Uuid;

use super::App;

pub(crate) fn router(app: Arc<App>) -> Router {
    use super::admin;
    let api = Router::new()
        .route("/api/stories", get(stories))
        .route("/api/runs", get(runs))
        .route("/api/runs/{id}", get(run))
        .route("/api/runs/{id}/events", get(run_events))
        .route("/api/runs/{id}/traces", get(run_traces))
        .route("/api/events/{id}/reemit", post(reemit))
        .route("/api/stories/{id}/actions/{slug}/run", post(run_action))
        .route("/api/credentials", get(admin::list_credentials))
        .route(
            "/api/credentials/{name}",
            put(admin::put_credential).delete(admin::delete_credential),
        )
        .route("/api/resources", get(admin::list_resources))
        .route(
            "/api/resources/{name}",
            put(admin::put_resource).delete(admin::delete_resource),
        )
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), admin::guard));
    Router::new()
        .route("/webhook/{*rest}", any(webhook))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .merge(api)
        .with_state(app.clone())
        .merge(super::prompt::router(app.clone()))
        .merge(super::ui::router(app))
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is
/// case-insensitive (RFC 7235).
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

async fn webhook(
    State(app): State<Arc<App>>,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    let response = deliver(&app, rest, query, request).await;
    app.metrics.webhook(response.status().as_u16());
    response
}

async fn deliver(app: &Arc<App>, rest: String, query: Option<String>, request: Request) -> Response {
    let method = request.method().as_str().to_ascii_lowercase();
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .map(str::to_owned);
    // The secret never reaches the event: a Bearer header is left out.
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter(|(k, _)| bearer.is_none() || *k != header::AUTHORIZATION)
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    // `/webhook/<path>` with a Bearer secret, or `/webhook/<path>/<secret>`.
    let loaded = app.durable.loaded();
    let (path, secret) = if loaded.hooks.contains_key(rest.as_str()) {
        (rest, bearer)
    } else {
        match rest.rsplit_once('/') {
            Some((p, s)) if loaded.hooks.contains_key(p) => (p.to_owned(), Some(s.to_owned())),
            _ => return error(StatusCode::NOT_FOUND, "no webhook at this path"),
        }
    };
    drop(loaded);
    // A declared length above the limit is refused before reading a byte.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > app.max_body as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {} bytes", app.max_body),
        );
    }
    let body = match tokio::time::timeout(
        app.body_timeout,
        axum::body::to_bytes(request.into_body(), app.max_body),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {} s", app.body_timeout.as_secs_f64()),
            );
        }
        Ok(Err(_)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {} bytes", app.max_body),
            );
        }
    };
    let query = query
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let request = WebhookRequest {
        method,
        path: path.clone(),
        query,
        headers,
        // Moved, not copied: a body of 100 MB is held once.
        body: Vec::from(body),
        secret,
        trusted: false,
        whole_output: false,
    };
    match app.durable.deliver(&path, request).await {
        Ok(Delivery::Started { response, .. }) | Ok(Delivery::Ignored(response)) => answer(response),
        // A refusal may quote a template error: no credential value in it.
        Ok(Delivery::Refused { status, message }) => {
            let mut r = error(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                app.durable.loaded().redactor.text(&message),
            );
            if status == 429 {
                // "retry in N s" from the webhook's rate limit.
                let wait = message
                    .rsplit("retry in ")
                    .next()
                    .and_then(|w| w.trim_end_matches(" s").parse::<u64>().ok())
                    .unwrap_or(1);
                if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            r
        }
        Ok(Delivery::NoSuchWebhook) => error(StatusCode::NOT_FOUND, "no webhook at this path"),
        Err(DurableError::Store(StoreError::Full(why))) => {
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, format!("busy, try again: {why}"));
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Err(e) => {
            tracing::error!(webhook = %path, "request not stored: {e}");
            error(StatusCode::SERVICE_UNAVAILABLE, "the request could not be stored")
        }
    }
}

fn answer(response: WebhookResponse) -> Response {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK))
        .header(header::CONTENT_TYPE, response.content_type);
    for (k, v) in response.headers {
        builder = builder.header(k, v);
    }
    builder
        .body(Body::from(response.body))
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, format!("invalid response: {e}")))
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    if !app.ready.load(Ordering::Relaxed) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "starting");
    }
    if let Err(why) = app.store.health() {
        return error(StatusCode::SERVICE_UNAVAILABLE, why);
    }
    if app.durable.queue_depth() >= app.durable.max_queued {
        return error(StatusCode::SERVICE_UNAVAILABLE, "saturated");
    }
    "ready".into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    app.metrics.queue_depth.set(app.durable.queue_depth() as i64);
    app.metrics
        .connections
        .set(app.connections.load(Ordering::Relaxed) as i64);
    app.metrics.waiting.set(app.durable.waiting() as i64);
    if let Some(stats) = app.store.cluster() {
        app.metrics.cluster(&stats);
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    (headers, app.metrics.encode()).into_response()
}

async fn stories(State(app): State<Arc<App>>) -> Response {
    let statuses = app.statuses.read().unwrap_or_else(|p| p.into_inner()).clone();
    let loaded = app.durable.loaded();
    let list: Vec<J> = statuses
        .iter()
        .map(|s| {
            let built = s.id.as_ref().and_then(|id| loaded.runtime.library.get(id));
            json!({
                "id": s.id,
                "file": s.file,
                "status": s.status,
                "errors": s.errors,
                "warnings": s.warnings,
                "name": built.map(|b| b.name.clone()),
                "actions": built.map(|b| b.actions.iter().map(|a| json!({
                    "slug": &*a.slug,
                    "type": a.type_name,
                    "webhook": a.webhook_path,
                    "schedule": a.schedule.as_ref().map(|s| json!({"cron": s.cron, "timezone": s.timezone})),
                })).collect::<Vec<_>>()),
            })
        })
        .collect();
    axum::Json(json!({ "stories": list })).into_response()
}

#[derive(Debug, Deserialize)]
struct RunsQuery {
    story: Option<String>,
    status: Option<String>,
    /// RFC 3339 or ms since the epoch.
    since: Option<String>,
    until: Option<String>,
    after: Option<Uuid>,
    limit: Option<usize>,
}

fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("`{s}` is neither ms since the epoch nor RFC 3339: {e}"))
}

async fn runs(
    State(app): State<Arc<App>>,
    q: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let since = match q.since.as_deref().map(parse_time).transpose() {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let until = match q.until.as_deref().map(parse_time).transpose() {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let status = match q.status.as_deref().map(str::parse::<RunState>).transpose() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if q.limit == Some(0) {
        return error(StatusCode::BAD_REQUEST, "`limit` must be at least 1");
    }
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let filter = RunFilter {
        story: q.story,
        status,
        since,
        until,
        after: q.after,
        limit,
    };
    match app.store.runs(&filter).await {
        Ok(runs) => {
            let next = (runs.len() == limit)
                .then(|| runs.last().map(|r| r.id.clone()))
                .flatten();
            axum::Json(json!({"runs": runs, "next": next})).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A read of the run log, on a blocking thread: SQLite reads (and their
/// wait for the read connection) must not hold an async worker.
async fn run(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<RunId>() else {
        return error(StatusCode::NOT_FOUND, format!("`{id}` is not an id"));
    };
    match app.store.run(id).await {
        Ok(Some(run)) => axum::Json(run).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such run"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn run_events(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<RunId>() else {
        return error(StatusCode::NOT_FOUND, format!("`{id}` is not an id"));
    };
    let events = match app.store.events_json(id).await {
        Ok(e) => e,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut by_action = serde_json::Map::new();
    for e in &events {
        let slug = e["action"].as_str().unwrap_or_default().to_owned();
        if let J::Array(list) = by_action.entry(slug).or_insert_with(|| J::Array(Vec::new())) {
            list.push(e.clone());
        }
    }
    axum::Json(json!({"run_id": id.to_string(), "events": events, "by_action": by_action})).into_response()
}

/// A run's action executions: requests and their attempts, rules, branch,
/// error, duration (docs/api.md).
async fn run_traces(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<RunId>() else {
        return error(StatusCode::NOT_FOUND, format!("`{id}` is not an id"));
    };
    match app.store.traces(id).await {
        Ok(traces) => axum::Json(json!({
            "run_id": id.to_string(),
            "traces": traces.iter().map(|t| t.to_json()).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Starts a run at an action by hand: one without `from` (Tines' manual
/// actions) or a scheduled one (outside its schedule). It gets no event.
async fn run_action(State(app): State<Arc<App>>, Path((id, slug)): Path<(String, String)>) -> Response {
    let loaded = app.durable.loaded();
    let Some(story) = loaded.runtime.library.get(&*id).cloned() else {
        return error(StatusCode::NOT_FOUND, format!("no story `{id}` is served"));
    };
    let Some(action) = story.action(&slug) else {
        return error(StatusCode::NOT_FOUND, format!("story `{id}` has no action `{slug}`"));
    };
    if !story.starts_without_event(action) {
        return error(
            StatusCode::CONFLICT,
            format!(
                "`{slug}` cannot be started by hand: only an action without `from` (or a scheduled one) can; a webhook is called at /webhook/…"
            ),
        );
    }
    if story.actions[action].disabled {
        return error(StatusCode::CONFLICT, format!("`{slug}` is disabled"));
    }
    match app.durable.run_now(&story, action).await {
        Ok(run) => (StatusCode::ACCEPTED, axum::Json(json!({"run_id": run.to_string()}))).into_response(),
        Err(StoreError::Full(why)) => error(StatusCode::SERVICE_UNAVAILABLE, why),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn reemit(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<EventId>() else {
        return error(StatusCode::NOT_FOUND, format!("`{id}` is not an id"));
    };
    let event = match app.store.event(id).await {
        Ok(Some(e)) => e,
        Ok(None) => return error(StatusCode::NOT_FOUND, "no such event"),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    match app.durable.reemit(&event).await {
        Ok(run) => (StatusCode::ACCEPTED, axum::Json(json!({"run_id": run.to_string()}))).into_response(),
        Err(DurableError::Gone(why)) => error(StatusCode::CONFLICT, why),
        Err(DurableError::Store(StoreError::Full(why))) => error(StatusCode::SERVICE_UNAVAILABLE, why),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
