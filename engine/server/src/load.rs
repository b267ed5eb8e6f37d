//! Loading the stories `tale serve` runs: every story under `--stories` is
//! checked; one with errors is refused (its diagnostics go to the log) and
//! the version served before, if any, keeps running.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use tale_engine::diagnostic::Severity;
use tale_engine::report;
use tale_engine::runtime::build::{BuiltStory, build};
use tale_engine::runtime::call::Library;
use tale_engine::runtime::redact::Redactor;
use tale_engine::template::TemplateParser;

use tale_engine::runtime::credentials::{Entry, Vault};

use tale_engine::checked::check_paths;
use tale_engine::environment::globals;

/// Credentials (opened) and resources set through the API.
#[derive(Debug, Default)]
pub(crate) struct Stored {
    pub(crate) credentials: Vec<(String, Entry)>,
    pub(crate) resources: serde_json::Map<String, serde_json::Value>,
}

/// The credentials of the file and the store (the file and the
/// environment win; a stored credential they define too is left out, with
/// a warning).
fn vault(file: Option<&Path>, stored: &[(String, Entry)]) -> anyhow::Result<Arc<Vault>> {
    let (vault, shadowed) = tale_engine::environment::vault_with_stored(file, stored)?;
    for (name, place) in shadowed {
        tracing::warn!(credential = %name, "the stored credential is not used: {place} defines it too");
    }
    Ok(Arc::new(vault))
}

/// A story file and whether it is served.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StoryStatus {
    pub(crate) id: Option<String>,
    pub(crate) file: String,
    /// `ok`, `refused` (errors; nothing served) or `stale` (errors; the
    /// previous version is served).
    pub(crate) status: &'static str,
    pub(crate) errors: Vec<String>,
    pub(crate) warnings: usize,
}

pub(crate) struct LoadedStories {
    pub(crate) library: Library,
    pub(crate) statuses: Vec<StoryStatus>,
    pub(crate) redactor: Redactor,
    /// The files read and when they changed, to notice edits.
    pub(crate) fingerprint: Fingerprint,
    /// Every credential value served since the start (what the redactor
    /// hides): a step that began under an older version may commit now.
    pub(crate) seen: Vec<(String, String)>,
}

pub(crate) type Fingerprint = Vec<(PathBuf, Option<std::time::SystemTime>, u64)>;

/// The story files under `dirs` with their modification times.
pub(crate) fn fingerprint(dirs: &[PathBuf]) -> Fingerprint {
    let found = tale_engine::files::discover(dirs);
    let mut out: Fingerprint = found
        .stories
        .iter()
        .chain(&found.resources)
        .map(|f| {
            let meta = std::fs::metadata(&*f.path).ok();
            (
                f.path.to_path_buf(),
                meta.as_ref().and_then(|m| m.modified().ok()),
                meta.map_or(0, |m| m.len()),
            )
        })
        .collect();
    out.sort();
    out
}

/// Checks and builds every story under `dirs`. `previous` holds what was
/// served so far (by id, with its file), kept for stories now broken.
pub(crate) fn load(
    dirs: &[PathBuf],
    resources: &[PathBuf],
    credentials: Option<&Path>,
    stored: &Stored,
    previous: &HashMap<String, (Arc<BuiltStory>, PathBuf)>,
    earlier: &[(String, String)],
) -> LoadedStories {
    let fingerprint = fingerprint(dirs);
    let checked = check_paths(dirs, &[], false, credentials, resources, &tale_actions::Registry);
    let mut errors_by_file: HashMap<PathBuf, Vec<String>> = HashMap::new();
    let mut warnings_by_file: HashMap<PathBuf, usize> = HashMap::new();
    for d in &checked.output.diagnostics {
        match d.severity {
            Severity::Error => {
                let text = report::human(std::slice::from_ref(d), &checked.sources, false);
                errors_by_file.entry(d.file.to_path_buf()).or_default().push(text);
            }
            _ => *warnings_by_file.entry(d.file.to_path_buf()).or_default() += 1,
        }
    }
    // Read once: every story shares the credentials and their token cache.
    let vault = vault(credentials, &stored.credentials).map_err(|e| format!("{e:#}"));
    let parser = TemplateParser::new();
    let mut library = Library::new();
    let mut statuses = Vec::new();
    for story in &checked.output.stories {
        let file = story.file.to_path_buf();
        let mut errors = errors_by_file.remove(&file).unwrap_or_default();
        let id = story.id.value.clone();
        if errors.is_empty() {
            let built = vault
                .as_ref()
                .map_err(|e| anyhow::anyhow!("{e}"))
                .and_then(|v| globals(story, &file, resources, v, false).map_err(anyhow::Error::from))
                .map(|mut g| {
                    // Stored resources come last: files and the environment win.
                    if let serde_json::Value::Object(o) = &mut g.resources {
                        for (k, v) in &stored.resources {
                            o.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                    g
                })
                .and_then(|g| build_alone(story, &parser, g));
            match built {
                Ok(built) => {
                    library.insert(id.clone(), Arc::new(built));
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        let status = if errors.is_empty() {
            "ok"
        } else if let Some((old, _)) = previous.get(&id) {
            library.entry(id.clone()).or_insert_with(|| old.clone());
            "stale"
        } else {
            "refused"
        };
        statuses.push(StoryStatus {
            id: Some(id),
            file: file.display().to_string(),
            status,
            errors,
            warnings: warnings_by_file.get(&file).copied().unwrap_or(0),
        });
    }
    // Files that did not even parse: keep what they served before.
    for (file, errors) in errors_by_file {
        let kept = previous.iter().find(|(_, (_, f))| *f == file);
        let status = match kept {
            Some((id, (old, _))) => {
                library.entry(id.clone()).or_insert_with(|| old.clone());
                "stale"
            }
            None => "refused",
        };
        statuses.push(StoryStatus {
            id: kept.map(|(id, _)| id.clone()),
            file: file.display().to_string(),
            status,
            errors,
            warnings: 0,
        });
    }
    statuses.sort_by(|a, b| a.file.cmp(&b.file));
    // SPEC §5: a credential without allowed hosts may go anywhere; say so,
    // for the credentials a request carries (`check`'s W603): one only a
    // webhook reads (its secret) is sent nowhere.
    let unrestricted: std::collections::BTreeSet<String> = checked
        .output
        .diagnostics
        .iter()
        .filter(|d| d.code == tale_engine::diagnostic::Code::UnrestrictedCredential)
        .filter_map(|d| d.message.split('`').nth(1).map(str::to_owned))
        .collect();
    for name in &unrestricted {
        tracing::warn!(
            credential = %name,
            "credential `{name}` has no allowed hosts: it may be sent to any host (set `allowed_hosts` or TALE_CREDENTIAL_{}_ALLOWED_HOSTS)",
            name.to_ascii_uppercase()
        );
    }
    // Earlier versions' too: a step that started before this reload (a
    // credential just rotated through the API) commits after it.
    let before = previous.values().map(|(s, _)| s);
    let mut secrets: Vec<(String, String)> = library
        .values()
        .chain(before.clone())
        .flat_map(|s| s.globals.secrets())
        .chain(earlier.iter().cloned())
        .collect();
    secrets.sort();
    secrets.dedup();
    let mut redactor = Redactor::from_pairs(secrets.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    // Tokens fetched from now on, by any vault a served story holds.
    for story in library.values().chain(before) {
        redactor = redactor.with_live(story.globals.vault.live.clone());
    }
    LoadedStories {
        library,
        statuses,
        redactor,
        fingerprint,
        seen: secrets,
    }
}

/// Builds one story; a panic while building (a defect: `check` should have
/// refused what causes it) refuses this story alone instead of stopping the
/// server or every reload.
fn build_alone(
    story: &tale_engine::story::Story,
    parser: &TemplateParser,
    globals: tale_engine::runtime::scope::Globals,
) -> anyhow::Result<BuiltStory> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| build(story, parser, globals))) {
        Ok(built) => Ok(built?),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            anyhow::bail!("the story could not be built ({why}); please report this as a bug")
        }
    }
}

/// The stories served, by id, with their files (what a reload keeps).
pub(crate) fn served(library: &Library, statuses: &[StoryStatus]) -> HashMap<String, (Arc<BuiltStory>, PathBuf)> {
    let mut out = HashMap::new();
    for (id, story) in library {
        if let Some(s) = statuses.iter().find(|s| s.id.as_deref() == Some(id)) {
            out.insert(id.clone(), (story.clone(), PathBuf::from(&s.file)));
        }
    }
    out
}
