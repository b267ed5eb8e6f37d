//! `tale check [PATH…]`: every problem of every story, at file:line:col.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use tale_engine::check::{CheckOptions, CheckOutput, Environment, SourceFile, check};
use tale_engine::diagnostic::Diagnostic;
use tale_engine::files;
use tale_engine::report::{self, Sources};

use crate::ExitStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
    Github,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Story files and folders (searched recursively for *.yaml and *.yml).
    #[arg(value_name = "PATH", default_value = ".")]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Treat warnings (environment problems) as errors.
    #[arg(long)]
    pub strict: bool,
    /// Folders of sub-stories that calls may target (repeatable).
    #[arg(long = "stories", value_name = "DIR")]
    pub stories: Vec<PathBuf>,
    /// A credentials file (names, types and allowed hosts are read).
    #[arg(long, value_name = "FILE", env = "TALE_CREDENTIALS_FILE")]
    pub credentials: Option<PathBuf>,
    /// A resources file besides the resources.yaml found among PATHs (repeatable).
    #[arg(long = "resources", value_name = "FILE")]
    pub resources: Vec<PathBuf>,
    /// When to colour human output.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
}

/// What `check` found, with the sources needed to render it.
pub(crate) struct Checked {
    pub(crate) output: CheckOutput,
    pub(crate) sources: Sources,
    pub(crate) files: usize,
}

/// Discovers, reads and checks; shared by `check` and `graph`.
pub(crate) fn check_paths(
    paths: &[PathBuf],
    library_dirs: &[PathBuf],
    strict: bool,
    credentials: Option<&Path>,
    resources: &[PathBuf],
) -> Checked {
    let found = files::discover(paths);
    let mut pre: Vec<Diagnostic> = found.diagnostics;
    let mut env = Environment::default();
    env.add_vars(std::env::vars());
    let mut sources: Sources = Default::default();
    if let Some(path) = credentials {
        let file = std::sync::Arc::new(path.to_path_buf());
        match tale_engine::environment::read_private_text(path) {
            Ok(text) => {
                env.add_credentials_text(&file, &text, &mut pre);
                sources.insert(file, text.into());
            }
            Err(problem) => {
                let mut d = Diagnostic::new(
                    tale_engine::diagnostic::Code::FileRead,
                    &file,
                    tale_engine::span::Span::start_of_file(),
                    format!("cannot read the credentials file: {problem}"),
                );
                if tale_engine::files::permission_problem(path).is_some() {
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
    let mut output = check(&found.stories, &library, &tale_actions::Registry, &options);
    if strict {
        for d in &mut pre {
            d.severity = tale_engine::diagnostic::Severity::Error;
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
            tale_engine::files::read_regular_text(&p, tale_engine::files::MAX_FILE_BYTES)
                .ok()
                .map(|t| SourceFile::new(p, t))
        })
        .collect()
}

pub(crate) fn use_color(color: Color) -> bool {
    match color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::env::var_os("NO_COLOR").is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout()),
    }
}

pub(crate) fn run(args: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitStatus> {
    let checked = check_paths(
        &args.paths,
        &args.stories,
        args.strict,
        args.credentials.as_deref(),
        &args.resources,
    );
    let diagnostics = &checked.output.diagnostics;
    match args.format {
        Format::Human => {
            write!(
                out,
                "{}",
                report::human(diagnostics, &checked.sources, use_color(args.color))
            )?;
            writeln!(err, "{}", report::summary(diagnostics, checked.files))?;
        }
        Format::Json => {
            let doc = report::json(diagnostics, &checked.sources, checked.files);
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        Format::Github => {
            write!(out, "{}", report::github(diagnostics, &checked.sources))?;
            writeln!(err, "{}", report::summary(diagnostics, checked.files))?;
        }
    }
    let failed = diagnostics
        .iter()
        .any(|d| d.severity == tale_engine::diagnostic::Severity::Error);
    Ok(if failed {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

/// The one story `path` holds, checked; or its errors written to `err` and
/// `None` (`doing` says what could not be done: "cannot draw", "cannot run").
pub(crate) fn checked_story<'a>(
    checked: &'a Checked,
    path: &Path,
    doing: &str,
    err: &mut dyn Write,
) -> std::io::Result<Option<&'a tale_engine::story::Story>> {
    let errors: Vec<_> = checked
        .output
        .diagnostics
        .iter()
        .filter(|d| d.severity == tale_engine::diagnostic::Severity::Error)
        .cloned()
        .collect();
    match checked.output.stories.first().filter(|_| errors.is_empty()) {
        Some(story) => Ok(Some(story)),
        None => {
            write!(
                err,
                "{}",
                report::human(&errors, &checked.sources, use_color(Color::Auto))
            )?;
            writeln!(err, "{} {doing}: fix the errors above first", path.display())?;
            Ok(None)
        }
    }
}
