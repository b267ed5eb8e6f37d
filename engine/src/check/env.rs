//! The environment a story runs in, as `check` sees it: which credentials
//! (with their allowed hosts) and resources are configured. Values are never
//! needed here and never kept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;

use crate::action::issue_to_diagnostic;
use crate::diagnostic::{Code, Diagnostic};
use crate::span::Spanned;
use crate::story::Story;
use crate::yaml::{self, DeCx, Limits, NodeKind};

use super::templates::missing_credential;
use super::values;

#[derive(Clone, Debug, Default)]
pub struct Environment {
    pub credentials: BTreeMap<String, CredentialInfo>,
    pub resources: BTreeSet<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CredentialInfo {
    /// Empty: the credential may be sent anywhere (and `check` warns).
    pub allowed_hosts: Vec<String>,
}

const CREDENTIAL_PREFIX: &str = "TALE_CREDENTIAL_";
const RESOURCE_PREFIX: &str = "TALE_RESOURCE_";
const HOSTS_SUFFIX: &str = "_ALLOWED_HOSTS";

impl Environment {
    /// Credentials and resources named by `TALE_CREDENTIAL_<NAME>`,
    /// `TALE_CREDENTIAL_<NAME>_ALLOWED_HOSTS` and `TALE_RESOURCE_<NAME>`.
    pub fn add_vars(&mut self, vars: impl IntoIterator<Item = (String, String)>) {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        for (key, _) in &vars {
            if let Some(name) = key.strip_prefix(CREDENTIAL_PREFIX) {
                if name.ends_with(HOSTS_SUFFIX) || name.is_empty() {
                    continue;
                }
                let hosts = vars
                    .iter()
                    .find(|(k, _)| {
                        k.strip_prefix(CREDENTIAL_PREFIX)
                            .and_then(|k| k.strip_suffix(HOSTS_SUFFIX))
                            == Some(name)
                    })
                    .map(|(_, v)| {
                        v.split(',')
                            .map(|h| h.trim().to_owned())
                            .filter(|h| !h.is_empty())
                            .collect()
                    })
                    .unwrap_or_default();
                self.credentials
                    .insert(name.to_ascii_lowercase(), CredentialInfo { allowed_hosts: hosts });
            } else if let Some(name) = key.strip_prefix(RESOURCE_PREFIX) {
                if !name.is_empty() {
                    self.resources.insert(name.to_ascii_lowercase());
                }
            }
        }
    }

    /// Reads the names of a `resources.yaml` (a mapping of name to value).
    pub fn add_resources_file(&mut self, file: &Arc<PathBuf>, text: &str, out: &mut Vec<Diagnostic>) {
        let root = match yaml::parse(text, &Limits::default()) {
            Ok(root) => root,
            Err(e) => {
                out.push(super::load::yaml_error(file, &e));
                return;
            }
        };
        match &root.kind {
            NodeKind::Map(entries) => {
                for (k, _) in entries {
                    if let Some(name) = k.key_text() {
                        self.resources.insert(name);
                    }
                }
            }
            _ => out.push(
                Diagnostic::new(
                    Code::WrongType,
                    file,
                    root.span,
                    format!(
                        "resources.yaml is a mapping of name to value, found {}",
                        root.type_name()
                    ),
                )
                .label("expected a mapping"),
            ),
        }
    }

    /// Reads a credentials file: a mapping of name to `{type, allowed_hosts, …}`.
    /// A file other users may read is refused.
    pub fn add_credentials_file(&mut self, path: &Path, out: &mut Vec<Diagnostic>) {
        let file = Arc::new(path.to_path_buf());
        if let Some(problem) = permission_problem(path) {
            out.push(
                Diagnostic::new(Code::FileRead, &file, crate::span::Span::start_of_file(), problem)
                    .help(format!("run `chmod 600 {}`", path.display())),
            );
            return;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                out.push(Diagnostic::new(
                    Code::FileRead,
                    &file,
                    crate::span::Span::start_of_file(),
                    format!("cannot read the credentials file: {e}"),
                ));
                return;
            }
        };
        let root = match yaml::parse(&text, &Limits::default()) {
            Ok(r) => r,
            Err(e) => {
                out.push(super::load::yaml_error(&file, &e));
                return;
            }
        };
        let de = DeCx::default();
        let parsed: Result<IndexMap<String, CredentialEntry>, _> = yaml::decode(&root, &de);
        for issue in de.take() {
            out.push(issue_to_diagnostic(&file, "a credential", &[], issue));
        }
        match parsed {
            Ok(entries) => {
                for (name, entry) in entries {
                    self.credentials.insert(
                        name,
                        CredentialInfo {
                            allowed_hosts: entry.allowed_hosts.unwrap_or_default(),
                        },
                    );
                }
            }
            Err(issue) => out.push(issue_to_diagnostic(&file, "a credential", &[], issue)),
        }
    }
}

/// One credential of the credentials file (the value fields are read by the
/// runtime; `check` only needs the names and hosts).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct CredentialEntry {
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    value: Option<String>,
    username: Option<String>,
    password: Option<String>,
    header: Option<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
    allowed_hosts: Option<Vec<String>>,
}

#[cfg(unix)]
fn permission_problem(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "the credentials file is readable by other users (mode {:o}); tale refuses to read it",
            mode & 0o777
        )
    })
}

#[cfg(not(unix))]
fn permission_problem(_: &Path) -> Option<String> {
    None
}

/// Phase 6: credentials attached to requests, their hosts.
pub(crate) fn check_story(story: &Story, env: &Environment, out: &mut Vec<Diagnostic>) {
    let file = &story.file;
    let mut warned_unrestricted = BTreeSet::new();
    for action in &story.actions {
        let Some(cred) = action.config.as_ref().and_then(|c| c.credential()) else {
            continue;
        };
        let Some(info) = env.credentials.get(cred.name) else {
            out.push(missing_credential(cred.name, cred.span, env, file));
            continue;
        };
        if info.allowed_hosts.is_empty() {
            if warned_unrestricted.insert(cred.name.to_owned()) {
                out.push(
                    Diagnostic::new(
                        Code::UnrestrictedCredential,
                        file,
                        cred.span,
                        format!(
                            "credential `{}` has no allowed hosts: it may be sent anywhere",
                            cred.name
                        ),
                    )
                    .help(format!(
                        "set TALE_CREDENTIAL_{}_ALLOWED_HOSTS (or `allowed_hosts` in the credentials file)",
                        cred.name.to_ascii_uppercase()
                    )),
                );
            }
            continue;
        }
        if let Some((url, span)) = cred.url {
            if let Some(host) = values::literal_host(url) {
                if !values::host_allowed(&host, &info.allowed_hosts) {
                    out.push(
                        Diagnostic::new(
                            Code::HostNotAllowed,
                            file,
                            span,
                            format!("credential `{}` may not be sent to `{host}`", cred.name),
                        )
                        .label("this host is not allowed")
                        .secondary(file, cred.span, "credential attached here")
                        .help(format!("its allowed hosts are {}", info.allowed_hosts.join(", "))),
                    );
                }
            }
        }
    }
}
