//! `tale check [PATH…]`: every problem of every story, at file:line:col.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use tale_engine::checked::{Checked, check_paths};
use tale_engine::report;

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
        &tale_actions::Registry,
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
