//! The environment a run sees, read from outside (the engine's IO):
//! credentials from the environment, the credentials file and the store,
//! and which of them wins (environment, then file, then store); resources
//! from the environment and resources files. `check` gets names only
//! (`check::Environment`); runs get values (`Globals`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value as J, json};

use crate::check::{CREDENTIAL_PREFIX, HOSTS_SUFFIX, RESOURCE_PREFIX};
use crate::runtime::credentials::{CredentialError, Entry, Vault};
use crate::runtime::scope::Globals;
use crate::story::Story;

#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error("{0}")]
    Resources(String),
}

/// A file only its owner may read (credentials): its text, or why not.
pub fn read_private_text(path: &Path) -> Result<String, String> {
    if let Some(problem) = crate::files::permission_problem(path) {
        return Err(problem);
    }
    crate::files::read_regular_text(path, crate::files::MAX_FILE_BYTES).map_err(|e| e.to_string())
}

/// The typed credentials of a credentials file, refused when other users
/// may read it.
pub fn read_credentials_file(path: &Path) -> Result<Vault, CredentialError> {
    let text = read_private_text(path).map_err(|e| CredentialError::File(format!("{}: {e}", path.display())))?;
    Vault::from_text(&path.display().to_string(), &text)
}

/// Where a credential is defined besides the store, if anywhere: the
/// environment and the credentials file win over the store.
pub fn credential_configured_elsewhere(name: &str, file: Option<&Vault>) -> Option<&'static str> {
    let variable = format!("{CREDENTIAL_PREFIX}{}", name.to_ascii_uppercase());
    if std::env::var_os(variable).is_some() {
        Some("the environment")
    } else if file.is_some_and(|v| v.get(name).is_some()) {
        Some("the credentials file")
    } else {
        None
    }
}

/// A stored credential left out, and where it is defined instead.
pub type Shadowed = (String, &'static str);

/// The credentials file's credentials, then the stored ones neither it nor
/// the environment defines; the names left out (defined elsewhere too) are
/// returned for a warning.
pub fn vault_with_stored(
    file: Option<&Path>,
    stored: &[(String, Entry)],
) -> Result<(Vault, Vec<Shadowed>), CredentialError> {
    let mut vault = match file {
        Some(f) => read_credentials_file(f)?,
        None => Vault::default(),
    };
    let mut shadowed = Vec::new();
    for (name, entry) in stored {
        if let Some(place) = credential_configured_elsewhere(name, Some(&vault)) {
            shadowed.push((name.clone(), place));
            continue;
        }
        vault
            .insert(name, entry)
            .map_err(|e| CredentialError::File(format!("stored credential {e}")))?;
    }
    Ok((vault, shadowed))
}

/// Credentials the story uses but the environment lacks still render in a
/// dry run: as `[credential:name]`.
pub fn add_stand_ins(story: &Story, credentials: &mut serde_json::Map<String, J>) {
    for action in &story.actions {
        let Some(config) = &action.config else { continue };
        let mut names = crate::runtime::build::credentials_read(action);
        names.extend(config.credential().map(|c| c.name.to_ascii_lowercase()));
        for n in names {
            credentials
                .entry(n.clone())
                .or_insert_with(|| J::String(format!("[credential:{n}]")));
        }
    }
}

/// Credentials, resources and story names for templates. A dry run never
/// sees a credential's value: it gets `[credential:name]`.
pub fn globals(
    story: &Story,
    path: &Path,
    resource_files: &[PathBuf],
    vault: &Arc<Vault>,
    dry: bool,
) -> Result<Globals, EnvironmentError> {
    let mut credentials = serde_json::Map::new();
    let mut resources = serde_json::Map::new();
    let mut allowed_hosts = std::collections::BTreeMap::new();
    for (key, value) in std::env::vars() {
        if let Some(name) = key
            .strip_prefix(CREDENTIAL_PREFIX)
            .and_then(|n| n.strip_suffix(HOSTS_SUFFIX))
        {
            allowed_hosts.insert(name.to_ascii_lowercase(), crate::values::host_list(&value));
        }
        if let Some(name) = key.strip_prefix(CREDENTIAL_PREFIX) {
            if !name.ends_with(HOSTS_SUFFIX) && !name.is_empty() {
                let name = name.to_ascii_lowercase();
                let v = if dry { format!("[credential:{name}]") } else { value };
                credentials.insert(name, J::String(v));
            }
        } else if let Some(name) = key.strip_prefix(RESOURCE_PREFIX) {
            let parsed = serde_json::from_str(&value).unwrap_or(J::String(value));
            resources.insert(name.to_ascii_lowercase(), parsed);
        }
    }
    if dry {
        add_stand_ins(story, &mut credentials);
    }
    let mut files: Vec<PathBuf> = resource_files.to_vec();
    let beside = path.parent().unwrap_or(Path::new("")).join("resources.yaml");
    if beside.is_file() {
        files.push(beside);
    }
    for file in files {
        let text = crate::files::read_regular_text(&file, crate::files::MAX_FILE_BYTES)
            .map_err(|e| EnvironmentError::Resources(format!("cannot read {}: {e}", file.display())))?;
        let node = crate::yaml::parse(&text, &crate::yaml::Limits::default())
            .map_err(|e| EnvironmentError::Resources(format!("{}: {e}", file.display())))?;
        if let J::Object(o) = node.to_json() {
            for (k, v) in o {
                resources.entry(k).or_insert(v);
            }
        }
    }
    // Typed credentials (a dry run's vault is empty: it keeps the stand-ins).
    for name in vault.names() {
        if let Some(value) = vault.template_value(name) {
            credentials.entry(name.to_owned()).or_insert(J::String(value));
        }
        // The hosts written beside a typed credential win: a leftover
        // `TALE_CREDENTIAL_<NAME>_ALLOWED_HOSTS` may narrow "anywhere", never
        // widen a list.
        if let Some(hosts) = vault.allowed_hosts.get(name) {
            allowed_hosts.insert(name.to_owned(), hosts.clone());
        }
    }
    Ok(Globals {
        credentials: J::Object(credentials).into(),
        resources: J::Object(resources),
        story: json!({"id": story.id.value, "name": story.name}),
        allowed_hosts,
        vault: vault.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credentials_file_others_may_read_is_refused() {
        let dir = std::env::temp_dir().join(format!("tale-vault-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("credentials.yaml");
        std::fs::write(&path, "jira: {type: basic, username: bot, password: pw-123456}\n").expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            assert!(read_credentials_file(&path).is_err(), "a world-readable file was read");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let vault = read_credentials_file(&path).expect("vault");
        assert_eq!(vault.template_value("jira").as_deref(), Some("bot:pw-123456"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
