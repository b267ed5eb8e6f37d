//! Credentials and resources in SQLite, set through `tale serve`'s API.
//! Such writes are rare and small, so they go through the store's reading
//! connection instead of the writer's queue.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value as J;
use tale_engine::runtime::sealed::Sealed;
use tale_engine::runtime::store::StoreError;
use tale_engine::runtime::stored::{StoredCredential, StoredResource, Table};

fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(e.to_string())
}

pub(super) fn credentials(conn: &Connection) -> Result<Vec<StoredCredential>, StoreError> {
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

pub(super) fn put_credential(conn: &Connection, c: &StoredCredential) -> Result<(), StoreError> {
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

pub(super) fn resources(conn: &Connection) -> Result<Vec<StoredResource>, StoreError> {
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

pub(super) fn put_resource(conn: &Connection, r: &StoredResource) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO resources (name, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET value = ?2, updated_at = ?3",
        params![r.name, r.value.to_string(), r.updated_at],
    )
    .map_err(failed)?;
    Ok(())
}

/// Deletes a credential or resource row; whether there was one.
pub(super) fn delete(conn: &Connection, table: Table, name: &str) -> Result<bool, StoreError> {
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
