//! Credentials and resources kept in the database, set through `tale
//! serve`'s API (docs/api.md): credentials sealed (`runtime::sealed`),
//! resources as JSON. The rows as every store backend keeps them (the
//! `SecretStore` trait of `runlog`); the SQL is the backends' own.

use serde_json::Value as J;

use super::credentials::Entry;
use super::sealed::{SealError, SealKey, Sealed};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Credentials,
    Resources,
}
