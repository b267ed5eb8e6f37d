//! The web UI at `/ui/` (docs/ui.md): server-rendered HTML from templates
//! compiled into the binary, one stylesheet, no scripts (a CSP of
//! `'self'` and nothing else). Every value a story or an event supplies
//! goes through the templates' HTML escaping.

mod auth;
pub(crate) mod graph;
pub(crate) mod layout;

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value as J;
use tale_engine::runtime::durable::DurableError;
use tale_engine::runtime::event::{EventId, RunId};
use tale_engine::runtime::runlog::{RunFilter, RunRow, RunState};
use tale_engine::runtime::store::StoreError;
use tale_engine::runtime::trace::StepTrace;
use uuid::Uuid;

pub(crate) use auth::UiKeys;

use super::App;

/// Runs a story page counts over (bounded work on any database).
const STORY_WINDOW: usize = 200;
/// Rows on a page of runs.
const RUNS_PAGE: usize = 50;
/// Events listed for a selected action.
const ACTION_EVENTS: usize = 20;

pub(crate) const CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
pub(crate) const CSS: &str = include_str!("static/tale.css");
const FAVICON: &str = include_str!("static/favicon.svg");

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(stories))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/stories/{id}", get(story))
        .route("/ui/runs", get(runs))
        .route("/ui/runs/{id}", get(run))
        .route("/ui/events/{id}", get(event))
        .route("/ui/events/{id}/reemit", post(reemit))
        .route("/ui/static/tale.css", get(css))
        .route("/ui/static/favicon.svg", get(favicon))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// What every page's frame needs.
pub(crate) struct Chrome {
    title: String,
    nav: &'static str,
    csrf: String,
    login_required: bool,
    refresh: Option<u32>,
}

/// The session a request carries, put there by [`guard`].
#[derive(Clone)]
struct Session(String);

/// Security headers on every UI response; a login asked for when the API
/// token is set and the request has no valid session (pages: a redirect to
/// the form; forms: 403).
async fn guard(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let open = path == "/ui/login" || path.starts_with("/ui/static/") || path == "/" || path == "/ui";
    let session = app.ui.session_of(request.headers());
    let mut response = match session {
        Some(s) => {
            request.extensions_mut().insert(Session(s));
            next.run(request).await
        }
        None if open => {
            request.extensions_mut().insert(Session(String::new()));
            next.run(request).await
        }
        None if request.method() == axum::http::Method::GET => {
            let target = request.uri().path_and_query().map_or("/ui/", |p| p.as_str()).to_owned();
            Redirect::to(&format!("/ui/login?next={}", urlencode(&target))).into_response()
        }
        None => message(
            &app,
            "",
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Log in with the API token first.",
        ),
    };
    secure(response.headers_mut(), !path.starts_with("/ui/static/"));
    response
}

/// The headers of every page tale serves to a browser (the UI's, the
/// prompt pages'): the CSP, no sniffing, no referrer, no framing, and
/// `no-store` unless it is a static file.
pub(crate) fn secure(headers: &mut axum::http::HeaderMap, no_store: bool) {
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if no_store {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Chrome {
    fn new(app: &App, session: &str, title: impl Into<String>, nav: &'static str) -> Self {
        Chrome {
            title: title.into(),
            nav,
            csrf: app.ui.csrf(session),
            login_required: app.ui.required,
            refresh: None,
        }
    }
}

/// A rendered page, or a plain 500 when a template fails.
fn html(status: StatusCode, page: Result<String, askama::Error>) -> Response {
    match page {
        Ok(body) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the page could not be rendered: {e}"),
        )
            .into_response(),
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    page: Chrome,
    heading: &'a str,
    message: &'a str,
    class: &'a str,
}

fn message(app: &App, session: &str, status: StatusCode, heading: &str, text: &str) -> Response {
    let page = MessagePage {
        page: Chrome::new(app, session, heading, ""),
        heading,
        message: text,
        class: if status.is_success() { "" } else { "error" },
    };
    html(status, page.render())
}

fn store_failed(app: &App, session: &str, e: &StoreError) -> Response {
    message(
        app,
        session,
        StatusCode::SERVICE_UNAVAILABLE,
        "The database did not answer",
        &e.to_string(),
    )
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        CSS,
    )
        .into_response()
}

async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        FAVICON,
    )
        .into_response()
}

// ---- login ----

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    page: Chrome,
    next: String,
    failed: Option<&'static str>,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Only a path of this UI is a place to go back to after a login.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/ui/".to_owned(),
    }
}

async fn login_form(State(app): State<Arc<App>>, Query(q): Query<NextQuery>) -> Response {
    if !app.ui.required {
        return Redirect::to("/ui/").into_response();
    }
    let page = LoginPage {
        page: Chrome {
            login_required: false,
            ..Chrome::new(&app, "", "Log in", "")
        },
        next: safe_next(q.next.as_deref()),
        failed: None,
    };
    html(StatusCode::OK, page.render())
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    next: Option<String>,
}

async fn login(State(app): State<Arc<App>>, Form(form): Form<LoginForm>) -> Response {
    let Some(token) = &app.admin.api_token else {
        return Redirect::to("/ui/").into_response();
    };
    let next = safe_next(form.next.as_deref());
    if !super::admin::is_api_token(token, &form.token) {
        let page = LoginPage {
            page: Chrome {
                login_required: false,
                ..Chrome::new(&app, "", "Log in", "")
            },
            next,
            failed: Some("That is not the API token."),
        };
        return html(StatusCode::UNAUTHORIZED, page.render());
    }
    let session = app.ui.session();
    let mut response = Redirect::to(&next).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&auth::set_cookie(Some(&session))) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The 403 page of a form whose CSRF token is not its session's.
fn csrf_refused(app: &App, session: &str, form: &CsrfForm) -> Option<Response> {
    (!app.ui.csrf_ok(session, &form.csrf)).then(|| {
        message(
            app,
            session,
            StatusCode::FORBIDDEN,
            "Not allowed",
            "The form's token is not valid: reload the page.",
        )
    })
}

async fn logout(
    State(app): State<Arc<App>>,
    axum::Extension(Session(session)): axum::Extension<Session>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = csrf_refused(&app, &session, &form) {
        return refused;
    }
    let mut response = Redirect::to("/ui/login").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&auth::set_cookie(None)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

// ---- stories ----

struct StoryLine {
    id: Option<String>,
    name: String,
    file: String,
    status: &'static str,
    errors: Vec<String>,
    warnings: usize,
    runs: i64,
    failed: i64,
    running: i64,
    last: String,
}

#[derive(Template)]
#[template(path = "stories.html")]
struct StoriesPage {
    page: Chrome,
    stories: Vec<StoryLine>,
}

async fn stories(State(app): State<Arc<App>>, axum::Extension(Session(session)): axum::Extension<Session>) -> Response {
    let since = tale_engine::runtime::event::now_millis() - 24 * 3600 * 1000;
    let activity = match app.store.activity(since).await {
        Ok(a) => a,
        Err(e) => return store_failed(&app, &session, &e),
    };
    let statuses = app.statuses.read().unwrap_or_else(|p| p.into_inner()).clone();
    let loaded = app.durable.loaded();
    let lines = statuses
        .into_iter()
        .map(|s| {
            let built = s.id.as_deref().and_then(|id| loaded.runtime.library.get(id));
            let seen =
                s.id.as_deref()
                    .and_then(|id| activity.iter().find(|a| a.story == id))
                    .cloned()
                    .unwrap_or_default();
            StoryLine {
                name: built.map_or_else(|| s.id.clone().unwrap_or_else(|| s.file.clone()), |b| b.name.clone()),
                id: s.id,
                file: s.file,
                status: s.status,
                errors: s.errors,
                warnings: s.warnings,
                runs: seen.runs,
                failed: seen.failed,
                running: seen.running,
                last: seen.last_started.map(when).unwrap_or_default(),
            }
        })
        .collect();
    let page = StoriesPage {
        page: Chrome::new(&app, &session, "Stories", "stories"),
        stories: lines,
    };
    html(StatusCode::OK, page.render())
}

// ---- one story ----

struct ActionLine {
    slug: String,
    label: String,
    type_name: &'static str,
    events: i64,
    failures: i64,
    selected: bool,
}

struct EventLine {
    id: String,
    short_id: String,
    run_id: String,
    short_run: String,
    action: String,
    branch: String,
    at: String,
    excerpt: String,
}

impl EventLine {
    fn of(e: &J) -> Self {
        let id = e["id"].as_str().unwrap_or_default().to_owned();
        let run_id = e["run_id"].as_str().unwrap_or_default().to_owned();
        EventLine {
            short_id: short(&id),
            short_run: short(&run_id),
            id,
            run_id,
            action: e["action"].as_str().unwrap_or_default().to_owned(),
            branch: e["branch"].as_str().unwrap_or_default().to_owned(),
            at: e["created_at"].as_i64().map(when).unwrap_or_default(),
            excerpt: excerpt(&e["output"], 140),
        }
    }
}

#[derive(Template)]
#[template(path = "story.html")]
struct StoryPage {
    page: Chrome,
    id: String,
    name: String,
    file: String,
    window: usize,
    graph: String,
    actions: Vec<ActionLine>,
    selected: Option<String>,
    events: Vec<EventLine>,
}

#[derive(Deserialize)]
struct StoryQuery {
    action: Option<String>,
}

async fn story(
    State(app): State<Arc<App>>,
    axum::Extension(Session(session)): axum::Extension<Session>,
    Path(id): Path<String>,
    Query(q): Query<StoryQuery>,
) -> Response {
    let loaded = app.durable.loaded();
    let Some(built) = loaded.runtime.library.get(id.as_str()).cloned() else {
        drop(loaded);
        return message(
            &app,
            &session,
            StatusCode::NOT_FOUND,
            "No such story",
            &format!("No story `{id}` is served."),
        );
    };
    drop(loaded);
    let activity = match app.store.action_activity(&id, STORY_WINDOW).await {
        Ok(a) => a,
        Err(e) => return store_failed(&app, &session, &e),
    };
    let selected = q.action.filter(|a| built.action(a).is_some());
    let events = match &selected {
        Some(action) => match app.store.action_events(&id, action, STORY_WINDOW, ACTION_EVENTS).await {
            Ok(e) => e.iter().map(EventLine::of).collect(),
            Err(e) => return store_failed(&app, &session, &e),
        },
        None => Vec::new(),
    };
    let counts: HashMap<&str, (i64, i64)> = activity
        .iter()
        .map(|a| (a.action.as_str(), (a.events, a.failures)))
        .collect();
    let marks: Vec<graph::Mark> = built
        .actions
        .iter()
        .map(|a| {
            let (events, failures) = counts.get(&*a.slug).copied().unwrap_or_default();
            graph::Mark {
                class: if selected.as_deref() == Some(&*a.slug) {
                    "selected"
                } else if failures > 0 {
                    "failed"
                } else {
                    ""
                },
                badge: match failures {
                    0 => format!("{events} ev"),
                    f => format!("{events} ev, {f} failed"),
                },
                href: format!("/ui/stories/{}?action={}#events", urlencode(&id), urlencode(&a.slug)),
            }
        })
        .collect();
    let actions = built
        .actions
        .iter()
        .map(|a| {
            let (events, failures) = counts.get(&*a.slug).copied().unwrap_or_default();
            ActionLine {
                slug: a.slug.to_string(),
                label: a.name.clone().unwrap_or_else(|| a.slug.to_string()),
                type_name: a.type_name,
                events,
                failures,
                selected: selected.as_deref() == Some(&*a.slug),
            }
        })
        .collect();
    let statuses = app.statuses.read().unwrap_or_else(|p| p.into_inner()).clone();
    let file = statuses
        .iter()
        .find(|s| s.id.as_deref() == Some(id.as_str()))
        .map(|s| s.file.clone())
        .unwrap_or_default();
    let page = StoryPage {
        page: Chrome::new(&app, &session, built.name.clone(), "stories"),
        graph: graph::svg(&built, &marks),
        name: built.name.clone(),
        id,
        file,
        window: STORY_WINDOW,
        actions,
        selected,
        events,
    };
    html(StatusCode::OK, page.render())
}

// ---- runs ----

struct RunLine {
    id: String,
    short_id: String,
    story: String,
    status: &'static str,
    events: i64,
    started: String,
    took: String,
    first_error: String,
    called: bool,
}

impl RunLine {
    fn of(r: &RunRow) -> Self {
        RunLine {
            short_id: short(&r.id),
            id: r.id.clone(),
            story: r.story.clone(),
            status: r.status.as_str(),
            events: r.events,
            started: when(r.started_at),
            took: r.finished_at.map(|f| took(f - r.started_at)).unwrap_or_default(),
            first_error: r
                .errors
                .as_array()
                .and_then(|e| e.first())
                .and_then(J::as_str)
                .map(|e| cut(e, 160))
                .unwrap_or_default(),
            called: r.parent_run.is_some(),
        }
    }
}

const WINDOWS: [(&str, &str); 5] = [
    ("", "any time"),
    ("1h", "last hour"),
    ("24h", "last 24 hours"),
    ("7d", "last 7 days"),
    ("30d", "last 30 days"),
];

fn window_ms(w: &str) -> Option<i64> {
    let hour = 3600 * 1000;
    match w {
        "1h" => Some(hour),
        "24h" => Some(24 * hour),
        "7d" => Some(7 * 24 * hour),
        "30d" => Some(30 * 24 * hour),
        _ => None,
    }
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    page: Chrome,
    story_ids: Vec<String>,
    statuses: [&'static str; 3],
    windows: [(&'static str, &'static str); 5],
    story: Option<String>,
    status: Option<String>,
    window: String,
    runs: Vec<RunLine>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct RunsQuery {
    story: Option<String>,
    status: Option<String>,
    window: Option<String>,
    /// Keyset paging: runs older than this one.
    after: Option<String>,
}

async fn runs(
    State(app): State<Arc<App>>,
    axum::Extension(Session(session)): axum::Extension<Session>,
    Query(q): Query<RunsQuery>,
) -> Response {
    let story = q.story.filter(|s| !s.is_empty());
    let status = q.status.filter(|s| !s.is_empty());
    let window = q.window.unwrap_or_default();
    let state = match status.as_deref().map(str::parse::<RunState>).transpose() {
        Ok(s) => s,
        Err(e) => return message(&app, &session, StatusCode::BAD_REQUEST, "Bad filter", &e),
    };
    let after = match q
        .after
        .as_deref()
        .filter(|a| !a.is_empty())
        .map(str::parse::<Uuid>)
        .transpose()
    {
        Ok(a) => a,
        Err(e) => {
            return message(
                &app,
                &session,
                StatusCode::BAD_REQUEST,
                "Bad filter",
                &format!("`after`: {e}"),
            );
        }
    };
    let filter = RunFilter {
        story: story.clone(),
        status: state,
        since: window_ms(&window).map(|w| tale_engine::runtime::event::now_millis() - w),
        until: None,
        after,
        limit: RUNS_PAGE,
    };
    let rows = match app.store.runs(&filter).await {
        Ok(r) => r,
        Err(e) => return store_failed(&app, &session, &e),
    };
    let next = (rows.len() == RUNS_PAGE).then(|| rows.last()).flatten().map(|last| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(s) = &story {
            q.append_pair("story", s);
        }
        if let Some(s) = &status {
            q.append_pair("status", s);
        }
        if !window.is_empty() {
            q.append_pair("window", &window);
        }
        q.append_pair("after", &last.id);
        format!("/ui/runs?{}", q.finish())
    });
    let mut story_ids: Vec<String> = app
        .statuses
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(|s| s.id.clone())
        .collect();
    story_ids.sort();
    let page = RunsPage {
        page: Chrome::new(&app, &session, "Runs", "runs"),
        story_ids,
        statuses: RunState::ALL.map(RunState::as_str),
        windows: WINDOWS,
        story,
        status,
        window,
        runs: rows.iter().map(RunLine::of).collect(),
        next,
    };
    html(StatusCode::OK, page.render())
}

// ---- one run ----

struct RequestLine {
    method: String,
    url: String,
    attempt: String,
    answer: String,
    duration: String,
    headers: String,
    body: Option<String>,
}

struct RuleLine {
    rule: String,
    path: String,
    value: String,
    matched: bool,
}

struct StepLine {
    action: String,
    /// The page anchor of an action's first execution (the graph links it).
    anchor: Option<String>,
    status: &'static str,
    offset: String,
    duration: String,
    branch: Option<&'static str>,
    emitted: i64,
    input: Option<String>,
    error: Option<String>,
    requests: Vec<RequestLine>,
    rules: Vec<RuleLine>,
    notes: Vec<String>,
    bar_x: f64,
    bar_y: f64,
    bar_w: f64,
    label_y: f64,
}

/// The timeline's geometry.
const TIMELINE_LABEL_W: f64 = 200.0;
const TIMELINE_BAR_W: f64 = 700.0;
const TIMELINE_ROW_H: f64 = 20.0;

impl StepLine {
    fn of(t: &StepTrace, start: i64) -> Self {
        let detail: Vec<J> = t
            .detail
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_default();
        let mut requests = Vec::new();
        let mut rules = Vec::new();
        let mut notes = Vec::new();
        for d in &detail {
            if let Some(method) = d["method"].as_str() {
                let headers = d["headers"]
                    .as_object()
                    .map(|h| {
                        h.iter()
                            .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default()))
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default();
                requests.push(RequestLine {
                    method: method.to_owned(),
                    url: d["url"].as_str().unwrap_or_default().to_owned(),
                    attempt: d["attempt"].to_string(),
                    answer: match (d.get("status"), d["error"].as_str()) {
                        (Some(s), _) => s.to_string(),
                        (None, Some(e)) => e.to_owned(),
                        _ => "no answer".to_owned(),
                    },
                    duration: d["duration_ms"]
                        .as_u64()
                        .map(|ms| format!("{ms} ms"))
                        .unwrap_or_default(),
                    headers,
                    body: d["body"].as_str().map(|b| match d["body_bytes"].as_u64() {
                        Some(n) if n as usize > b.len() => format!("{b}\n({n} bytes in all)"),
                        _ => b.to_owned(),
                    }),
                });
            } else if let Some(list) = d["rules"].as_array() {
                rules.extend(list.iter().map(|r| RuleLine {
                    rule: r["rule"].as_str().unwrap_or_default().to_owned(),
                    path: r["path"].as_str().unwrap_or_default().to_owned(),
                    value: r["value"].as_str().unwrap_or_default().to_owned(),
                    matched: r["matched"] == true,
                }));
            } else if let Some(sub) = d["sub_story"].as_str() {
                notes.push(format!(
                    "called story `{sub}`, run {}",
                    d["run_id"].as_str().unwrap_or_default()
                ));
            } else if let Some(note) = d["log_error"].as_str() {
                notes.push(note.to_owned());
            } else {
                notes.push(d.to_string());
            }
        }
        StepLine {
            action: t.action.to_string(),
            anchor: None,
            status: t.status.as_str(),
            offset: took(t.at_ms - start),
            duration: format!("{:.3} ms", t.duration_us as f64 / 1000.0),
            branch: t.branch,
            emitted: t.emitted,
            input: t.input.map(|i| i.to_string()),
            error: t.error.clone(),
            requests,
            rules,
            notes,
            bar_x: 0.0,
            bar_y: 0.0,
            bar_w: 0.0,
            label_y: 0.0,
        }
    }
}

struct RunHead {
    id: String,
    story: String,
    status: &'static str,
    started: String,
    took: String,
    events: i64,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    page: Chrome,
    run: RunHead,
    running: bool,
    parent: Option<String>,
    errors: Vec<String>,
    graph: Option<String>,
    children: Vec<RunLine>,
    steps: Vec<StepLine>,
    traced: bool,
    timeline_w: f64,
    timeline_h: f64,
    events: Vec<EventLine>,
}

async fn run(
    State(app): State<Arc<App>>,
    axum::Extension(Session(session)): axum::Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let Ok(run_id) = id.parse::<RunId>() else {
        return message(
            &app,
            &session,
            StatusCode::NOT_FOUND,
            "No such run",
            &format!("`{id}` is not a run id."),
        );
    };
    let (row, events, traces, children) = tokio::join!(
        app.store.run(run_id),
        app.store.events_json(run_id),
        app.store.traces(run_id),
        app.store.called_by(run_id)
    );
    let row = match row {
        Ok(Some(r)) => r,
        Ok(None) => {
            return message(
                &app,
                &session,
                StatusCode::NOT_FOUND,
                "No such run",
                "No run has this id (pruned, or never stored).",
            );
        }
        Err(e) => return store_failed(&app, &session, &e),
    };
    let (events, traces, children) = match (events, traces, children) {
        (Ok(e), Ok(t), Ok(c)) => (e, t, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return store_failed(&app, &session, &e),
    };
    let start = row.started_at;
    let end = traces
        .iter()
        .map(|t| t.at_ms + t.duration_us / 1000)
        .chain(row.finished_at)
        .max()
        .unwrap_or(start)
        .max(start + 1);
    let span = (end - start) as f64;
    let mut steps: Vec<StepLine> = traces.iter().map(|t| StepLine::of(t, start)).collect();
    let mut anchored = std::collections::HashSet::new();
    for s in &mut steps {
        if anchored.insert(s.action.clone()) {
            s.anchor = Some(format!("step-{}", s.action));
        }
    }
    for (i, (s, t)) in steps.iter_mut().zip(&traces).enumerate() {
        s.bar_x = TIMELINE_LABEL_W + ((t.at_ms - start) as f64 / span * TIMELINE_BAR_W).clamp(0.0, TIMELINE_BAR_W);
        s.bar_w = ((t.duration_us as f64 / 1000.0) / span * TIMELINE_BAR_W).clamp(2.0, TIMELINE_BAR_W);
        s.bar_y = 4.0 + i as f64 * TIMELINE_ROW_H;
        s.label_y = s.bar_y + 11.0;
    }
    // Each action: failed if an execution failed, else succeeded if one ran
    // or it emitted (an entry webhook), else skipped, else not reached.
    let mut state: HashMap<&str, &'static str> = HashMap::new();
    for t in &traces {
        let s = state.entry(&t.action).or_insert("skipped");
        *s = match (t.status.as_str(), *s) {
            ("failed", _) | (_, "failed") => "failed",
            ("succeeded", _) | (_, "succeeded") => "succeeded",
            _ => "skipped",
        };
    }
    for e in &events {
        if let Some(a) = e["action"].as_str() {
            state.entry(a).or_insert("succeeded");
        }
    }
    let loaded = app.durable.loaded();
    let graph = loaded.runtime.library.get(row.story.as_str()).map(|built| {
        let marks: Vec<graph::Mark> = built
            .actions
            .iter()
            .map(|a| {
                let class = state.get(&*a.slug).copied().unwrap_or("unreached");
                let n = traces.iter().filter(|t| *t.action == *a.slug).count();
                graph::Mark {
                    class,
                    badge: match (class, n) {
                        ("unreached", _) => "not reached".to_owned(),
                        (c, 0) => c.to_owned(),
                        (c, 1) => c.to_owned(),
                        (c, n) => format!("{c} ×{n}"),
                    },
                    href: format!("#step-{}", a.slug),
                }
            })
            .collect();
        graph::svg(built, &marks)
    });
    drop(loaded);
    let running = row.status == RunState::Running;
    let page = RunPage {
        page: Chrome {
            refresh: running.then_some(2),
            ..Chrome::new(&app, &session, format!("Run {}", short(&row.id)), "runs")
        },
        running,
        parent: row.parent_run.clone(),
        errors: row
            .errors
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(J::as_str)
            .map(str::to_owned)
            .collect(),
        graph,
        children: children.iter().map(RunLine::of).collect(),
        timeline_w: TIMELINE_LABEL_W + TIMELINE_BAR_W + 8.0,
        timeline_h: 8.0 + steps.len() as f64 * TIMELINE_ROW_H,
        traced: !steps.is_empty(),
        steps,
        events: events.iter().map(EventLine::of).collect(),
        run: RunHead {
            id: row.id.clone(),
            story: row.story.clone(),
            status: row.status.as_str(),
            started: when(row.started_at),
            took: row.finished_at.map_or_else(
                || "still running".to_owned(),
                |f| format!("took {}", took(f - row.started_at)),
            ),
            events: row.events,
        },
    };
    html(StatusCode::OK, page.render())
}

// ---- one event ----

#[derive(Template)]
#[template(path = "event.html")]
struct EventPage {
    page: Chrome,
    id: String,
    run_id: String,
    story: String,
    action: String,
    branch: Option<&'static str>,
    at: String,
    parents: Vec<(String, String)>,
    json: String,
}

async fn event(
    State(app): State<Arc<App>>,
    axum::Extension(Session(session)): axum::Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let event = match stored_event(&app, &session, &id).await {
        Ok(e) => e,
        Err(page) => return *page,
    };
    let page = EventPage {
        page: Chrome::new(&app, &session, format!("Event {}", short(&id)), "runs"),
        id: event.id.to_string(),
        run_id: event.run_id.to_string(),
        story: event.story.to_string(),
        action: event.action.to_string(),
        branch: event.branch,
        at: when(event.created_at),
        parents: event
            .parents
            .iter()
            .map(|p| (p.id.to_string(), p.action.to_string()))
            .collect(),
        json: serde_json::to_string_pretty(event.output()).unwrap_or_default(),
    };
    html(StatusCode::OK, page.render())
}

/// The stored event `id` names, or the page that says why there is none.
async fn stored_event(
    app: &App,
    session: &str,
    id: &str,
) -> Result<Arc<tale_engine::runtime::event::Event>, Box<Response>> {
    let Ok(event_id) = id.parse::<EventId>() else {
        return Err(Box::new(message(
            app,
            session,
            StatusCode::NOT_FOUND,
            "No such event",
            &format!("`{id}` is not an event id."),
        )));
    };
    match app.store.event(event_id).await {
        Ok(Some(e)) => Ok(e),
        Ok(None) => Err(Box::new(message(
            app,
            session,
            StatusCode::NOT_FOUND,
            "No such event",
            "No event has this id (pruned, or never stored).",
        ))),
        Err(e) => Err(Box::new(store_failed(app, session, &e))),
    }
}

async fn reemit(
    State(app): State<Arc<App>>,
    axum::Extension(Session(session)): axum::Extension<Session>,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = csrf_refused(&app, &session, &form) {
        return refused;
    }
    let event = match stored_event(&app, &session, &id).await {
        Ok(e) => e,
        Err(page) => return *page,
    };
    match app.durable.reemit(&event).await {
        Ok(run) => Redirect::to(&format!("/ui/runs/{run}")).into_response(),
        Err(DurableError::Gone(why)) => message(&app, &session, StatusCode::CONFLICT, "Cannot re-emit", &why),
        Err(e) => message(
            &app,
            &session,
            StatusCode::SERVICE_UNAVAILABLE,
            "Cannot re-emit",
            &e.to_string(),
        ),
    }
}

// ---- formatting ----

/// A time in UTC, to the millisecond.
fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// A duration in ms, in the unit that reads best.
fn took(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.2} s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// The end of an id: its random part (ids share their time prefix).
fn short(id: &str) -> String {
    match id.len().checked_sub(12).and_then(|at| id.get(at..)) {
        Some(tail) => format!("…{tail}"),
        None => id.to_owned(),
    }
}

fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

/// A JSON value on one line, cut.
fn excerpt(v: &J, max: usize) -> String {
    cut(&v.to_string(), max)
}
