//! Credentials and resources kept in the database, set through `tale
//! serve`'s API (docs/api.md): credentials sealed (`runtime::sealed`),
//! resources as JSON. Such writes are rare and small, so they go through the
//! store's reading connection instead of the writer's queue.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value as J;

use super::credentials::Entry;
use super::sealed::{SealError, SealKey, Sealed};
use super::store::StoreError;

/// A credential row: everything but the value is readable.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCredential {
    pub name: String,
    /// `text`, `basic`, `header` or `oauth2_client_credentials`.
    pub kind: String,
    /// `None`: it may be sent anywhere.
    pub allowed_hosts: Option<Vec<String>>,
    pub sealed: Sealed,
    pub updated_at: i64,
}

impl StoredCredential {
    /// Seals `entry` (already checked to make a credential) under `key`.
    pub fn seal(name: &str, entry: &Entry, key: &SealKey, now_ms: i64) -> Result<Self, SealError> {
        let name = name.to_ascii_lowercase();
        // The hosts live beside the ciphertext (and in its associated data).
        let secret = Entry {
            allowed_hosts: None,
            kind: entry.kind.clone(),
            value: entry.value.clone(),
            username: entry.username.clone(),
            password: entry.password.clone(),
            header: entry.header.clone(),
            token_url: entry.token_url.clone(),
            client_id: entry.client_id.clone(),
            client_secret: entry.client_secret.clone(),
            scope: entry.scope.clone(),
            resource: entry.resource.clone(),
        };
        let plain =
            secrecy::zeroize::Zeroizing::new(serde_json::to_vec(&secret).map_err(|_| SealError::Seal(name.clone()))?);
        Ok(Self {
            sealed: key.seal(&name, entry.allowed_hosts.as_deref(), &plain)?,
            kind: entry.kind.clone().unwrap_or_else(|| "text".into()),
            allowed_hosts: entry.allowed_hosts.clone(),
            updated_at: now_ms,
            name,
        })
    }

    /// The entry back, hosts included.
    pub fn open(&self, key: &SealKey) -> Result<Entry, SealError> {
        let plain = key.open(&self.name, self.allowed_hosts.as_deref(), &self.sealed)?;
        let mut entry: Entry = serde_json::from_slice(&plain).map_err(|_| SealError::Tampered(self.name.clone()))?;
        entry.allowed_hosts = self.allowed_hosts.clone();
        Ok(entry)
    }
}

/// A resource row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredResource {
    pub name: String,
    pub value: J,
    pub updated_at: i64,
}

fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(e.to_string())
}

pub(crate) fn credentials(conn: &Connection) -> Result<Vec<StoredCredential>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT name, kind, allowed_hosts, key_id, nonce, sealed, updated_at FROM credentials ORDER BY name",
        )
        .map_err(failed)?;
    let rows = stmt
        .query_map([], |r| {
            let hosts: Option<String> = r.get(2)?;
            Ok(StoredCredential {
                name: r.get(0)?,
                kind: r.get(1)?,
                allowed_hosts: hosts.and_then(|h| serde_json::from_str(&h).ok()),
                sealed: Sealed {
                    key_id: r.get(3)?,
                    nonce: r.get(4)?,
                    ciphertext: r.get(5)?,
                },
                updated_at: r.get(6)?,
            })
        })
        .map_err(failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    Ok(rows)
}

pub(crate) fn put_credential(conn: &Connection, c: &StoredCredential) -> Result<(), StoreError> {
    let hosts = c
        .allowed_hosts
        .as_ref()
        .map(|h| serde_json::to_string(h).unwrap_or_default());
    conn.execute(
        "INSERT INTO credentials (name, kind, allowed_hosts, key_id, nonce, sealed, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (name) DO UPDATE SET kind = ?2, allowed_hosts = ?3, key_id = ?4, nonce = ?5,
             sealed = ?6, updated_at = ?7",
        params![
            c.name,
            c.kind,
            hosts,
            c.sealed.key_id,
            c.sealed.nonce,
            c.sealed.ciphertext,
            c.updated_at
        ],
    )
    .map_err(failed)?;
    Ok(())
}

pub(crate) fn resources(conn: &Connection) -> Result<Vec<StoredResource>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT name, value, updated_at FROM resources ORDER BY name")
        .map_err(failed)?;
    let rows = stmt
        .query_map([], |r| {
            let text: String = r.get(1)?;
            Ok(StoredResource {
                name: r.get(0)?,
                value: serde_json::from_str(&text).unwrap_or(J::String(text)),
                updated_at: r.get(2)?,
            })
        })
        .map_err(failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    Ok(rows)
}

pub(crate) fn put_resource(conn: &Connection, r: &StoredResource) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO resources (name, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET value = ?2, updated_at = ?3",
        params![r.name, r.value.to_string(), r.updated_at],
    )
    .map_err(failed)?;
    Ok(())
}

/// Deletes a credential or resource row; whether there was one.
pub(crate) fn delete(conn: &Connection, table: Table, name: &str) -> Result<bool, StoreError> {
    let sql = match table {
        Table::Credentials => "DELETE FROM credentials WHERE name = ?1 RETURNING name",
        Table::Resources => "DELETE FROM resources WHERE name = ?1 RETURNING name",
    };
    let gone: Option<String> = conn
        .query_row(sql, [name.to_ascii_lowercase()], |r| r.get(0))
        .optional()
        .map_err(failed)?;
    Ok(gone.is_some())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Credentials,
    Resources,
}
