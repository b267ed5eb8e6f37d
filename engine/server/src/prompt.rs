//! `/prompt/<token>`: where a `{% prompt status %}` link lands. Opening it
//! shows what answering does; pressing its button (a POST) answers: the
//! execution that rendered the link emits `{"prompt": {"status": …}}` and
//! its run goes on. Opening alone never answers: mail link scanners (Safe
//! Links) open every link of a message. The link is the credential: it is
//! signed, expires, and answers once.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tale_engine::runtime::links::PromptClaim;

use super::App;

pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/prompt/{token}", get(page).post(answer))
        .with_state(app)
}

#[derive(Template)]
#[template(path = "prompt.html")]
struct PromptPage<'a> {
    heading: &'a str,
    message: String,
    class: &'a str,
    ask: Option<&'a str>,
}

fn render(status: StatusCode, page: PromptPage<'_>) -> Response {
    let body = page
        .render()
        .unwrap_or_else(|e| format!("the page could not be rendered: {e}"));
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    super::ui::secure(response.headers_mut(), true);
    response
}

/// The claim of a link this server signed and that has not expired, or
/// the page that says why not.
fn valid(app: &App, token: &str) -> Result<PromptClaim, Box<Response>> {
    let claim = app.links.verify(token).map_err(|e| {
        Box::new(render(
            StatusCode::NOT_FOUND,
            PromptPage {
                heading: "Not a valid link",
                message: format!("{e}."),
                class: "error",
                ask: None,
            },
        ))
    })?;
    let now = app.durable.loaded().runtime.clock.now_ms();
    if now > claim.expires_ms {
        return Err(Box::new(render(
            StatusCode::GONE,
            PromptPage {
                heading: "This link has expired",
                message: "The story stopped waiting for an answer.".to_owned(),
                class: "error",
                ask: None,
            },
        )));
    }
    Ok(claim)
}

async fn page(State(app): State<Arc<App>>, Path(token): Path<String>) -> Response {
    let claim = match valid(&app, &token) {
        Ok(c) => c,
        Err(page) => return *page,
    };
    render(
        StatusCode::OK,
        PromptPage {
            heading: "Answer",
            message: format!(
                "Answer “{}” to the action `{}` of run {}?",
                claim.status, claim.action, claim.run
            ),
            class: "",
            ask: Some(&claim.status),
        },
    )
}

async fn answer(State(app): State<Arc<App>>, Path(token): Path<String>) -> Response {
    let claim = match valid(&app, &token) {
        Ok(c) => c,
        Err(page) => return *page,
    };
    match app.durable.answer_prompt(&claim).await {
        Ok(true) => render(
            StatusCode::OK,
            PromptPage {
                heading: "Answered",
                message: format!("“{}” is recorded; the story goes on.", claim.status),
                class: "",
                ask: None,
            },
        ),
        Ok(false) => render(
            StatusCode::CONFLICT,
            PromptPage {
                heading: "Already answered",
                message: "This prompt was answered already, or its wait has ended.".to_owned(),
                class: "error",
                ask: None,
            },
        ),
        Err(e) => render(
            StatusCode::SERVICE_UNAVAILABLE,
            PromptPage {
                heading: "Not recorded",
                message: format!("The answer could not be recorded: {e}. Try again."),
                class: "error",
                ask: None,
            },
        ),
    }
}
