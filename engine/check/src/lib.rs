//! `tale check`: phased validation that reports every problem at once.
//!
//! 1. syntax: YAML, budgets, duplicate keys;
//! 2. shape: keys, types, action types, rules;
//! 3. graph: sources, branches, cycles, reachability, entry and exits;
//! 4. values and templates;
//! 5. calls across stories;
//! 6. environment.
//!
//! **Invariant:** checking does no IO (a test holds it): the engine reads
//! files (`tale_engine::files`) and the environment, and passes them in.

mod calls;
mod env;
mod graph;
mod load;
pub mod schema;
mod templates;

use tale_core::{action, diagnostic, model, runtime, span, story, template, values, yaml};

use std::path::PathBuf;
use std::sync::Arc;

pub use calls::{StoryIndex, call_target};
pub use env::{CREDENTIAL_PREFIX, CredentialInfo, Environment, HOSTS_SUFFIX, RESOURCE_PREFIX};
pub use load::{check_rules, parse_yaml};

use crate::action::{ActionRegistry, ValueCx};
use crate::diagnostic::{Diagnostic, Severity};
use crate::story::Story;
use crate::template::TemplateParser;
use crate::yaml::Limits;

/// A story file's text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub path: Arc<PathBuf>,
    pub text: Arc<str>,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<Arc<str>>) -> Self {
        Self {
            path: Arc::new(path.into()),
            text: text.into(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Environment warnings become errors.
    pub strict: bool,
    pub limits: Limits,
    pub env: Environment,
}

#[derive(Debug, Default)]
pub struct CheckOutput {
    /// Sorted by file, line and column.
    pub diagnostics: Vec<Diagnostic>,
    /// The checked stories, in the order of their files (library stories excluded).
    pub stories: Vec<Story>,
    /// The library stories calls may reach (their own problems unreported).
    pub library: Vec<Story>,
}

impl CheckOutput {
    pub fn errors(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
    pub fn warnings(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }
}

/// Checks `files`. `library` holds stories that calls may target (the
/// caller's folder, `--stories`); their own problems are not reported.
pub fn check(
    files: &[SourceFile],
    library: &[SourceFile],
    registry: &dyn ActionRegistry,
    options: &CheckOptions,
) -> CheckOutput {
    let parser = TemplateParser::new();
    let filters = templates::filter_names();
    let tcx = templates::TemplateCx {
        parser: &parser,
        env: &options.env,
        filters: &filters,
        parsed: Default::default(),
    };
    let mut diagnostics = Vec::new();
    let mut stories = Vec::new();
    let mut checked = Vec::new();

    for source in files {
        if let Some(story) = check_one(source, registry, options, &tcx, &mut diagnostics) {
            checked.push(stories.len());
            stories.push(story);
        }
    }
    // Library stories already in the checked set are not loaded twice.
    for source in library {
        if files.iter().any(|f| f.path == source.path) {
            continue;
        }
        let mut ignored = Vec::new();
        if let Some(loaded) = load::load_story(&source.path, &source.text, registry, &options.limits, &mut ignored) {
            stories.push(graph::build(loaded, &mut ignored));
        }
    }

    duplicate_ids(&stories, &checked, &mut diagnostics);
    duplicate_paths(&stories, &checked, &mut diagnostics);
    calls::check_calls(&stories, &checked, &mut diagnostics);
    let library = stories.split_off(checked.len());

    if options.strict {
        for d in &mut diagnostics {
            d.severity = Severity::Error;
        }
    }
    diagnostics
        .sort_by(|a, b| (&a.file, a.span.line, a.span.col, a.code).cmp(&(&b.file, b.span.line, b.span.col, b.code)));
    diagnostics.dedup();
    let diagnostics = cap_repeats(once_per_name(diagnostics));
    CheckOutput {
        diagnostics,
        stories,
        library,
    }
}

/// One warning per credential or resource not configured, per file: the
/// first place carries it, the others are labels on it ("also read
/// here"), instead of the same warning at every use.
fn once_per_name(diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    use crate::diagnostic::Code;
    let mut out: Vec<Diagnostic> = Vec::with_capacity(diagnostics.len());
    let mut first: std::collections::HashMap<(Arc<PathBuf>, Code, String), usize> = Default::default();
    for d in diagnostics {
        if !matches!(d.code, Code::MissingCredential | Code::MissingResource) {
            out.push(d);
            continue;
        }
        match first.get(&(d.file.clone(), d.code, d.message.clone())) {
            Some(&at) => {
                out[at].secondary.push(crate::diagnostic::Label {
                    file: d.file.clone(),
                    span: d.span,
                    message: "also read here".into(),
                });
            }
            None => {
                first.insert((d.file.clone(), d.code, d.message.clone()), out.len());
                out.push(d);
            }
        }
    }
    out
}

/// Most diagnostics of one code shown per file: 16,000 repeated keys are
/// one mistake made many times, not 16,000 things to read.
pub const MAX_REPEATS: usize = 50;

/// Keeps the first [`MAX_REPEATS`] diagnostics of each code in each file
/// (sorted input); the last one kept says how many more there were.
fn cap_repeats(diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    use std::collections::HashMap;
    let mut counts: HashMap<(Arc<PathBuf>, crate::diagnostic::Code), usize> = HashMap::new();
    for d in &diagnostics {
        *counts.entry((d.file.clone(), d.code)).or_default() += 1;
    }
    if counts.values().all(|n| *n <= MAX_REPEATS) {
        return diagnostics;
    }
    let mut seen: HashMap<(Arc<PathBuf>, crate::diagnostic::Code), usize> = HashMap::new();
    let mut out = Vec::with_capacity(diagnostics.len().min(counts.len() * (MAX_REPEATS + 1)));
    for mut d in diagnostics {
        let key = (d.file.clone(), d.code);
        let n = seen.entry(key.clone()).or_default();
        *n += 1;
        if *n < MAX_REPEATS {
            out.push(d);
        } else if *n == MAX_REPEATS {
            let more = counts[&key] - MAX_REPEATS;
            if more > 0 {
                d.message = format!(
                    "{} (and {more} more {} in this file, not shown)",
                    d.message,
                    d.code.code()
                );
            }
            out.push(d);
        }
    }
    out
}

fn check_one(
    source: &SourceFile,
    registry: &dyn ActionRegistry,
    options: &CheckOptions,
    tcx: &templates::TemplateCx<'_>,
    out: &mut Vec<Diagnostic>,
) -> Option<Story> {
    let loaded = load::load_story(&source.path, &source.text, registry, &options.limits, out)?;
    let story = graph::build(loaded, out);
    for action in &story.actions {
        if let Some(config) = &action.config {
            config.check(&mut ValueCx {
                file: &story.file,
                diagnostics: out,
            });
        }
    }
    let map = templates::SourceMap::new(&source.text);
    templates::check_story(&story, &map, tcx, out);
    env::check_story(&story, &map, &options.env, out);
    Some(story)
}

/// Two webhooks on one path: `tale serve` could route requests to only one.
fn duplicate_paths(stories: &[Story], checked: &[usize], out: &mut Vec<Diagnostic>) {
    let mut seen: std::collections::HashMap<String, (usize, crate::span::Span)> = Default::default();
    for &i in checked {
        let story = &stories[i];
        for action in &story.actions {
            let Some((path, span)) = action.config.as_ref().and_then(|c| c.webhook_path()) else {
                continue;
            };
            let key = path.trim_matches('/').to_owned();
            match seen.get(&key) {
                Some(&(first, first_span)) => out.push(
                    Diagnostic::new(
                        crate::diagnostic::Code::DuplicateWebhookPath,
                        &story.file,
                        span,
                        format!("another webhook already listens on `/webhook/{key}`"),
                    )
                    .label("same path")
                    .secondary(&stories[first].file, first_span, "the other webhook")
                    .help("each webhook needs its own `path`"),
                ),
                None => {
                    seen.insert(key, (i, span));
                }
            }
        }
    }
}

fn duplicate_ids(stories: &[Story], checked: &[usize], out: &mut Vec<Diagnostic>) {
    let mut seen: std::collections::HashMap<&str, usize> = Default::default();
    for &i in checked {
        let story = &stories[i];
        if let Some(&first) = seen.get(story.id.value.as_str()) {
            let other = &stories[first];
            out.push(
                Diagnostic::new(
                    crate::diagnostic::Code::DuplicateStoryId,
                    &story.file,
                    story.id.span,
                    format!(
                        "story id `{}` is also the id of {}",
                        story.id.value,
                        other.file.display()
                    ),
                )
                .secondary(&other.file, other.id.span, "the other story")
                .help("calls find stories by id: give one of them another `id:`"),
            );
        } else {
            seen.insert(&story.id.value, i);
        }
    }
}
