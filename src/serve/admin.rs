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
use tale_engine::runtime::credentials::{Entry, Vault};
use tale_engine::runtime::sealed::{KEY_VARIABLE, SealKey};
use tale_engine::runtime::sqlite::SqliteStore;
use tale_engine::runtime::stored::{StoredCredential, StoredResource, Table};

use super::App;
use super::http::error;
use super::load::{Stored, credential_configured_elsewhere};

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
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(subtle::ConstantTimeEq::ct_eq(
        presented.as_bytes(),
        token.expose_secret().as_bytes(),
    )) {
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

/// What the administrative handlers need beside the store.
pub(crate) struct Admin {
    pub(crate) api_token: Option<secrecy::SecretString>,
    pub(crate) key: Option<Arc<SealKey>>,
    pub(crate) credentials_file: Option<PathBuf>,
    /// Asks the server to reload; answered once the new stories serve.
    pub(crate) reload: tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<()>>,
}

/// Reads what the API stored, opening the credentials with `key`.
pub(crate) fn read_stored(store: &SqliteStore, key: Option<&SealKey>) -> anyhow::Result<Stored> {
    let rows = store.stored_credentials()?;
    let mut credentials = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(key) = key else {
            anyhow::bail!(
                "the database holds credentials set through the API (`{}`…): set {KEY_VARIABLE} to the key they were set with",
                row.name
            );
        };
        credentials.push((row.name.clone(), row.open(key)?));
    }
    let resources = store
        .stored_resources()?
        .into_iter()
        .map(|r| (r.name, r.value))
        .collect();
    Ok(Stored { credentials, resources })
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

async fn reload(app: &App) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if app.admin.reload.send(tx).await.is_ok() {
        let _ = rx.await;
    }
}

fn credential_json(c: &StoredCredential) -> J {
    json!({"name": c.name, "type": c.kind, "allowed_hosts": c.allowed_hosts,
           "updated_at": c.updated_at, "key_id": c.sealed.key_id})
}

fn internal(e: impl std::fmt::Display) -> Refusal {
    refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

pub(crate) async fn list_credentials(State(app): State<Arc<App>>) -> Result<Response, Refusal> {
    let rows = app.store.stored_credentials().map_err(internal)?;
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
    // serde's messages name keys and types, never a value of a string.
    let entry: Entry = serde_json::from_slice(&body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("the body is not a credential: {e}")))?;
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
        .and_then(|f| Vault::from_file(f).ok());
    if let Some(place) = credential_configured_elsewhere(&name, file.as_ref()) {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!("credential `{name}` is defined in {place}, which wins over the store: change it there"),
        ));
    }
    let now = app.durable.loaded().runtime.clock.now_ms();
    let row = StoredCredential::seal(&name, &entry, &key, now).map_err(internal)?;
    drop(entry);
    app.store.put_credential(&row).map_err(internal)?;
    tracing::info!(credential = %name, kind = %row.kind, "credential set through the API");
    reload(&app).await;
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
    if !app.store.delete_stored(table, &name).map_err(internal)? {
        return Err(refuse(StatusCode::NOT_FOUND, format!("nothing stored under `{name}`")));
    }
    tracing::info!(name = %name, ?table, "deleted through the API");
    reload(&app).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn list_resources(State(app): State<Arc<App>>) -> Result<Response, Refusal> {
    let rows = app.store.stored_resources().map_err(internal)?;
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
    if std::env::var_os(format!("TALE_RESOURCE_{}", name.to_ascii_uppercase())).is_some() {
        return Err(refuse(
            StatusCode::CONFLICT,
            format!("resource `{name}` is defined in the environment, which wins over the store: change it there"),
        ));
    }
    let row = StoredResource {
        name,
        value,
        updated_at: app.durable.loaded().runtime.clock.now_ms(),
    };
    app.store.put_resource(&row).map_err(internal)?;
    tracing::info!(resource = %row.name, "resource set through the API");
    reload(&app).await;
    Ok(axum::Json(row).into_response())
}
