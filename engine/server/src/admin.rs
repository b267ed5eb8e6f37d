//! The administrative side of the API: the `TALE_API_TOKEN` guard, and the
//! credentials (sealed with `TALE_SECRET_KEY`, never returned) and
//! resources kept in the database (docs/api.md).

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde_json::{Value as J, json};
use tale_engine::runtime::credentials::Entry;
use tale_engine::runtime::sealed::{KEY_VARIABLE, SealKey};
use tale_engine::runtime::stored::{StoredCredential, StoredResource, Table};
use tale_store::backend::ServeStore;

use super::App;
use super::http::error;
use super::load::Stored;
use tale_engine::environment::credential_configured_elsewhere;

/// Longest credential or resource name.
const MAX_NAME: usize = 100;

/// With `TALE_API_TOKEN` set, every `/api` request needs it as a Bearer token.
pub(crate) async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Some(token) = &app.admin.api_token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(super::http::bearer_token)
        .unwrap_or("");
    if is_api_token(token, presented) {
        next.run(request).await
    } else {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "this API needs `Authorization: Bearer <TALE_API_TOKEN>`",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        r
    }
}

/// Whether `presented` is the API token (the API's Bearer token, the UI's
/// login form). Digests of equal length, compared in constant time: the
/// comparison says nothing of the token's length or content.
pub(crate) fn is_api_token(token: &secrecy::SecretString, presented: &str) -> bool {
    use sha2::Digest as _;
    let (a, b) = (
        sha2::Sha256::digest(presented.as_bytes()),
        sha2::Sha256::digest(token.expose_secret().as_bytes()),
    );
    bool::from(subtle::ConstantTimeEq::ct_eq(a.as_slice(), b.as_slice()))
}

/// What the administrative handlers need beside the store.
pub(crate) struct Admin {
    pub(crate) api_token: Option<secrecy::SecretString>,
    pub(crate) key: Option<Arc<SealKey>>,
    pub(crate) credentials_file: Option<PathBuf>,
    pub(crate) stories_dirs: Vec<PathBuf>,
    pub(crate) resources: Vec<PathBuf>,
    /// Asks the server to reload; answered once the new stories serve (or
    /// with why they could not be loaded).
    pub(crate) reload: tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<Result<(), String>>>,
}

impl Admin {
    /// Every resources file the stories read.
    fn resource_files(&self) -> Vec<PathBuf> {
        let found = tale_engine::files::discover(&self.stories_dirs);
        self.resources
            .iter()
            .cloned()
            .chain(found.resources.iter().map(|f| f.path.to_path_buf()))
            .collect()
    }
}

/// Reads what the API stored, opening the credentials with `key`. At
/// start (`strict`) a credential that does not open stops the server; at a
/// reload it is left out and logged, so one bad row cannot stop every
/// later reload.
pub(crate) async fn read_stored(store: &dyn ServeStore, key: Option<&SealKey>, strict: bool) -> anyhow::Result<Stored> {
    let rows = store.stored_credentials().await?;
    let mut credentials = Vec::with_capacity(rows.len());
    for row in rows {
        let opened = match key {
            None => Err(anyhow::anyhow!(
                "the database holds credentials set through the API (`{}`…): set {KEY_VARIABLE} to the key they were set with",
                row.name
            )),
            Some(key) => row.open(key).map_err(anyhow::Error::from),
        };
        match opened {
            Ok(entry) => credentials.push((row.name.clone(), entry)),
            Err(e) if strict => return Err(e),
            Err(e) => tracing::error!(credential = %row.name, "left out: {e:#}"),
        }
    }
    let resources = store
        .stored_resources()
        .await?
        .into_iter()
        .map(|r| (r.name, r.value))
        .collect();
    Ok(Stored { credentials, resources })
}

/// Where else a resource of this name is defined: the environment, or a
/// resources file (`--resources`, `resources.yaml` under the stories).
fn resource_defined_elsewhere(name: &str, files: &[PathBuf]) -> Option<String> {
    if std::env::var_os(format!("TALE_RESOURCE_{}", name.to_ascii_uppercase())).is_some() {
        return Some("the environment".into());
    }
    for file in files {
        let Ok(text) = tale_engine::files::read_regular_text(file, tale_engine::files::MAX_FILE_BYTES) else {
            continue;
        };
        let Ok(node) = tale_engine::yaml::parse(&text, &tale_engine::yaml::Limits::default()) else {
            continue;
        };
        if let J::Object(o) = node.to_json() {
            if o.keys().any(|k| k.eq_ignore_ascii_case(name)) {
                return Some(file.display().to_string());
            }
        }
    }
    None
}

/// A refused request: the status and why.
pub(crate) struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn refuse(status: StatusCode, why: impl Into<String>) -> Refusal {
    Refusal(status, why.into())
}

fn valid_name(name: &str) -> Result<String, Refusal> {
    let ok = !name.is_empty() && name.len() <= MAX_NAME && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("a name is 1 to {MAX_NAME} letters, digits or `_` (it becomes TALE_CREDENTIAL_<NAME>)"),
        ))
    }
}

/// Writes need the API token: without one, anyone who reaches the port
/// could replace what stories send.
fn writable(app: &App) -> Result<(), Refusal> {
    if app.admin.api_token.is_none() {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "set TALE_API_TOKEN to change credentials and resources through the API",
        ));
    }
    Ok(())
}

/// Reloads the stories; the change is stored either way, so a failed
/// reload is a 500 that says so.
async fn reload(app: &App) -> Result<(), Refusal> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let answer = match app.admin.reload.send(tx).await {
        Ok(()) => rx.await.unwrap_or_else(|_| Err("the reload stopped".into())),
        Err(_) => Err("the server is stopping".into()),
    };
    answer.map_err(|why| {
        refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stored, but the stories were not reloaded: {why}"),
        )
    })
}

/// Why a body is not a credential, without quoting any of its values
/// (serde's "invalid type: string \"…\"" would echo a secret back).
fn not_a_credential(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let why = if text.starts_with("unknown field") || text.starts_with("missing field") {
        text.split(" at line").next().unwrap_or("").to_owned()
    } else if e.is_data() {
        "a field has the wrong type: every field is text, `allowed_hosts` a list of text".to_owned()
    } else {
        "it is not a JSON object".to_owned()
    };
    format!(
        "the body is not a credential: {why} (line {}, column {})",
        e.line(),
        e.column()
    )
}

/// A store call off the async threads (it may wait for the writer's lock).
fn credential_json(c: &StoredCredential) -> J {
    json!({"name": c.name, "type": c.kind, "allowed_hosts": c.allowed_hosts,
           "updated_at": c.updated_at, "key_id": c.sealed.key_id})
}

fn internal(e: impl std::fmt::Display) -> Refusal {
    refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

pub(crate) async fn list_credentials(State(app): State<Arc<App>>) -> Result<Response, Refusal> {
    let rows = app.store.stored_credentials().await.map_err(internal)?;
    Ok(axum::Json(json!({"credentials": rows.iter().map(credential_json).collect::<Vec<_>>()})).into_response())
}

pub(crate) async fn put_credential(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Refusal> {
    writable(&app)?;
    let name = valid_name(&name)?;
    let key = app.admin.key.clone().ok_or_else(|| {
        refuse(
            StatusCode::CONFLICT,
            format!("set {KEY_VARIABLE} (32 random bytes, base64) so credentials can be stored sealed"),
        )
    })?;
    let entry: Entry =
        serde_json::from_slice(&body).map_err(|e| refuse(StatusCode::BAD_REQUEST, not_a_credential(&e)))?;
    entry
        .to_credential(&name)
        .map_err(|why| refuse(StatusCode::BAD_REQUEST, why))?;
    if let Some(bad) = entry
        .allowed_hosts
        .iter()
        .flatten()
        .find(|h| h.is_empty() || h.contains(['/', ':', ' ', '@']))
    {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("`{bad}` is not a host name (write `graph.microsoft.com` or `*.example.com`)"),
        ));
    }
    let file = app
        .admin
        .credentials_file
        .as_deref()
        .and_then(|f| tale_engine::environment::read_credentials_file(f).ok());
    if let Some(place) = credential_configured_elsewhere(&name, file.as_ref()) {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!("credential `{name}` is defined in {place}, which wins over the store: change it there"),
        ));
    }
    let now = app.durable.loaded().runtime.clock.now_ms();
    let row = StoredCredential::seal(&name, &entry, &key, now).map_err(internal)?;
    drop(entry);
    let stored = row.clone();
    app.store.put_credential(stored).await.map_err(internal)?;
    tracing::info!(credential = %name, kind = %row.kind, "credential set through the API");
    reload(&app).await?;
    Ok(axum::Json(credential_json(&row)).into_response())
}

pub(crate) async fn delete_credential(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Response, Refusal> {
    delete(app, name, Table::Credentials).await
}

pub(crate) async fn delete_resource(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Response, Refusal> {
    delete(app, name, Table::Resources).await
}

async fn delete(app: Arc<App>, name: String, table: Table) -> Result<Response, Refusal> {
    writable(&app)?;
    let name = valid_name(&name)?;
    let gone = name.clone();
    if !app.store.delete_stored(table, gone).await.map_err(internal)? {
        return Err(refuse(StatusCode::NOT_FOUND, format!("nothing stored under `{name}`")));
    }
    tracing::info!(name = %name, ?table, "deleted through the API");
    reload(&app).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn list_resources(State(app): State<Arc<App>>) -> Result<Response, Refusal> {
    let rows = app.store.stored_resources().await.map_err(internal)?;
    Ok(axum::Json(json!({"resources": rows})).into_response())
}

pub(crate) async fn put_resource(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Refusal> {
    writable(&app)?;
    let name = valid_name(&name)?;
    let value: J = serde_json::from_slice(&body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")))?;
    let files = app.admin.resource_files();
    let lookup = name.clone();
    if let Some(place) = tokio::task::spawn_blocking(move || resource_defined_elsewhere(&lookup, &files))
        .await
        .map_err(internal)?
    {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!("resource `{name}` is defined in {place}, which wins over the store: change it there"),
        ));
    }
    let row = StoredResource {
        name,
        value,
        updated_at: app.durable.loaded().runtime.clock.now_ms(),
    };
    let stored = row.clone();
    app.store.put_resource(stored).await.map_err(internal)?;
    tracing::info!(resource = %row.name, "resource set through the API");
    reload(&app).await?;
    Ok(axum::Json(row).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_api_token_is_the_api_token() {
        let token = secrecy::SecretString::from("s3cret".to_owned());
        assert!(is_api_token(&token, "s3cret") && !is_api_token(&token, "s3cre"));
    }
}
