//! The environment a story runs in, as `check` sees it: which credentials
//! (with their allowed hosts) and resources are configured. Values are never
//! needed here and never kept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use indexmap::IndexMap;

use crate::action::issue_to_diagnostic;
use crate::diagnostic::{Code, Diagnostic};
use crate::story::Story;
use crate::yaml::{self, DeCx, Limits, NodeKind};

use super::templates::{SourceMap, missing_credential};
use crate::span::Span;
use crate::template;
use crate::values;

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

/// The environment variables that configure credentials and resources:
/// `TALE_CREDENTIAL_<NAME>`, `TALE_CREDENTIAL_<NAME>_ALLOWED_HOSTS`,
/// `TALE_RESOURCE_<NAME>` (the engine reads their values by the same names).
pub const CREDENTIAL_PREFIX: &str = "TALE_CREDENTIAL_";
pub const RESOURCE_PREFIX: &str = "TALE_RESOURCE_";
pub const HOSTS_SUFFIX: &str = "_ALLOWED_HOSTS";

impl Environment {
    /// A configured credential; names compare case-insensitively, as the
    /// environment variables that configure them are upper case.
    pub fn credential(&self, name: &str) -> Option<&CredentialInfo> {
        self.credentials.get(&name.to_ascii_lowercase())
    }

    pub fn has_resource(&self, name: &str) -> bool {
        self.resources.contains(&name.to_ascii_lowercase())
    }

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
                    .map(|(_, v)| values::host_list(v))
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
                out.push(super::load::yaml_error(file, text, &e));
                return;
            }
        };
        match &root.kind {
            NodeKind::Map(entries) => {
                for (k, _) in entries {
                    if let Some(name) = k.key_text() {
                        self.resources.insert(name.to_ascii_lowercase());
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

    /// Reads the names and hosts of a credentials file's text: a mapping of
    /// name to `{type, allowed_hosts, …}` (the caller reads the file).
    pub fn add_credentials_text(&mut self, file: &Arc<PathBuf>, text: &str, out: &mut Vec<Diagnostic>) {
        let root = match yaml::parse(text, &Limits::default()) {
            Ok(r) => r,
            Err(e) => {
                out.push(super::load::yaml_error(file, text, &e));
                return;
            }
        };
        let de = DeCx::default();
        let parsed: Result<IndexMap<String, crate::runtime::credentials::Entry>, _> = yaml::decode(&root, &de);
        for issue in de.take() {
            out.push(issue_to_diagnostic(file, "a credential", &[], issue));
        }
        match parsed {
            Ok(entries) => {
                for (name, entry) in entries {
                    self.credentials.insert(
                        name.to_ascii_lowercase(),
                        CredentialInfo {
                            allowed_hosts: entry.allowed_hosts.unwrap_or_default(),
                        },
                    );
                }
            }
            Err(issue) => out.push(issue_to_diagnostic(file, "a credential", &[], issue)),
        }
    }
}

/// A credential a request carries: by `credential:` or read in one of the
/// action's templates (a header, the payload, the URL itself).
struct Carried<'a> {
    name: String,
    span: Span,
    /// Read in a template: a missing credential is reported by the template phase.
    in_template: bool,
    how: &'a str,
}

/// Phase 6: the credentials each request carries, against their allowed hosts.
pub(crate) fn check_story(story: &Story, source: &SourceMap<'_>, env: &Environment, out: &mut Vec<Diagnostic>) {
    let file = &story.file;
    let mut warned_unrestricted = BTreeSet::new();
    for action in &story.actions {
        let Some(config) = &action.config else { continue };
        let mut carried = Vec::new();
        if let Some(cred) = config.credential() {
            carried.push(Carried {
                name: cred.name.to_owned(),
                span: cred.span,
                in_template: false,
                how: "credential attached here",
            });
        }
        let url = config.request_url();
        if url.is_some() {
            let mut fields = Vec::new();
            config.templates(&mut fields);
            for field in fields
                .iter()
                .filter(|f| f.text.contains("CREDENTIAL") || f.text.contains("credential"))
            {
                for (name, offset) in template::credential_names(field.text) {
                    carried.push(Carried {
                        span: source.inner(field.span, field.text, offset, name.len()),
                        name,
                        in_template: true,
                        how: "credential read here",
                    });
                }
            }
        }
        for cred in carried {
            let Some(info) = env.credential(&cred.name) else {
                if !cred.in_template {
                    out.push(missing_credential(&cred.name, cred.span, env, file));
                }
                continue;
            };
            if info.allowed_hosts.is_empty() {
                if warned_unrestricted.insert(cred.name.to_ascii_lowercase()) {
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
            let Some((url, url_span)) = url else { continue };
            let Some(host) = values::literal_host(url) else {
                continue;
            };
            if !values::host_allowed(&host, &info.allowed_hosts) {
                out.push(
                    Diagnostic::new(
                        Code::HostNotAllowed,
                        file,
                        url_span,
                        format!("credential `{}` may not be sent to `{host}`", cred.name),
                    )
                    .label("this host is not allowed")
                    .secondary(file, cred.span, cred.how)
                    .help(format!("its allowed hosts are {}", info.allowed_hosts.join(", "))),
                );
            }
        }
    }
}
