//! Story files from disk to diagnostics: discovery, reading, the
//! environment (credentials and resources files, the process environment)
//! and the checker, for every command that starts from paths.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::action::ActionRegistry;
use crate::check::{CheckOptions, CheckOutput, Environment, SourceFile, check};
use crate::diagnostic::Diagnostic;
use crate::files;
use crate::report::Sources;

/// What `check` found, with the sources needed to render it.
pub struct Checked {
    pub output: CheckOutput,
    pub sources: Sources,
    pub files: usize,
}

/// Discovers, reads and checks story files (with the sub-stories they may
/// call, the credentials file and the resources files): what `tale check`,
/// `run`, `test`, `graph` and `serve` do first.
pub fn check_paths(
    paths: &[PathBuf],
    library_dirs: &[PathBuf],
    strict: bool,
    credentials: Option<&Path>,
    resources: &[PathBuf],
    registry: &dyn ActionRegistry,
) -> Checked {
    let found = files::discover(paths);
    let mut pre: Vec<Diagnostic> = found.diagnostics;
    let mut env = Environment::default();
    env.add_vars(std::env::vars());
    let mut sources: Sources = Default::default();
    if let Some(path) = credentials {
        let file = std::sync::Arc::new(path.to_path_buf());
        match crate::environment::read_private_text(path) {
            Ok(text) => {
                env.add_credentials_text(&file, &text, &mut pre);
                sources.insert(file, text.into());
            }
            Err(problem) => {
                let mut d = Diagnostic::new(
                    crate::diagnostic::Code::FileRead,
                    &file,
                    crate::span::Span::start_of_file(),
                    format!("cannot read the credentials file: {problem}"),
                );
                if crate::files::permission_problem(path).is_some() {
                    d = d.help(format!("run `chmod 600 {}`", path.display()));
                }
                pre.push(d);
            }
        }
    }
    // The resources.yaml beside each story given, and any named with --resources.
    let mut resource_paths: Vec<PathBuf> = resources.to_vec();
    for story in &found.stories {
        let beside = story.path.parent().unwrap_or(Path::new("")).join("resources.yaml");
        let known = found.resources.iter().any(|r| *r.path == beside) || resource_paths.contains(&beside);
        if !known && beside.is_file() {
            resource_paths.push(beside);
        }
    }
    let extra_resources = files::discover(&resource_paths);
    pre.extend(extra_resources.diagnostics);
    for r in found
        .resources
        .iter()
        .chain(&extra_resources.resources)
        .chain(&extra_resources.stories)
    {
        env.add_resources_file(&r.path, &r.text, &mut pre);
        sources.insert(r.path.clone(), r.text.clone());
    }

    // Sub-stories: the checked files' folders (read only when some story
    // calls another), then --stories.
    let mut library: Vec<SourceFile> = Vec::new();
    let calls = found.stories.iter().any(|s| s.text.contains("send_to_story"));
    let dirs: BTreeSet<PathBuf> = found
        .stories
        .iter()
        .filter(|_| calls)
        .filter_map(|s| s.path.parent().map(Path::to_path_buf))
        .collect();
    for dir in &dirs {
        library.extend(siblings(dir));
    }
    for dir in library_dirs {
        library.extend(files::library(dir));
    }

    let options = CheckOptions {
        strict,
        env,
        ..CheckOptions::default()
    };
    let mut output = check(&found.stories, &library, registry, &options);
    if strict {
        for d in &mut pre {
            d.severity = crate::diagnostic::Severity::Error;
        }
    }
    pre.append(&mut output.diagnostics);
    output.diagnostics = pre;
    for s in found.stories.iter().chain(&library) {
        sources.insert(s.path.clone(), s.text.clone());
    }
    Checked {
        output,
        sources,
        files: found.stories.len() + found.unreadable,
    }
}

fn siblings(dir: &Path) -> Vec<SourceFile> {
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && files::classify(p) == Some(files::FileKind::Story))
        .map(|p| {
            if dir.as_os_str().is_empty() {
                PathBuf::from(p.file_name().unwrap_or_default())
            } else {
                p
            }
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| {
            crate::files::read_regular_text(&p, crate::files::MAX_FILE_BYTES)
                .ok()
                .map(|t| SourceFile::new(p, t))
        })
        .collect()
}
