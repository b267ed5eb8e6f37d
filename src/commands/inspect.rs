//! `tale runs` and `tale events`: read the database of `tale serve` (also
//! while it runs) from the command line.

use std::io::Write;

use anyhow::Context;
use clap::Args;
use tale_engine::runtime::sqlite::{RunFilter, RunState, SqliteReader};
use uuid::Uuid;

use crate::ExitStatus;

#[derive(Debug, Clone, Args)]
pub struct RunsArgs {
    /// The database: `sqlite:PATH`.
    #[arg(long, default_value = "sqlite:tale.db")]
    pub db: String,
    /// Only the runs of this story.
    #[arg(long)]
    pub story: Option<String>,
    /// Only runs with this status: running, succeeded, failed.
    #[arg(long, value_parser = parse_state)]
    pub status: Option<RunState>,
    /// How many runs, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// The run.
    pub run: Uuid,
    /// The database: `sqlite:PATH`.
    #[arg(long, default_value = "sqlite:tale.db")]
    pub db: String,
}

fn parse_state(s: &str) -> Result<RunState, String> {
    s.parse()
}

fn open(db: &str) -> anyhow::Result<SqliteReader> {
    let path = crate::serve::sqlite_path(db)?;
    SqliteReader::open(&path).with_context(|| format!("cannot read {}", path.display()))
}

pub(crate) fn runs(args: &RunsArgs, out: &mut dyn Write) -> anyhow::Result<ExitStatus> {
    let reader = open(&args.db)?;
    let runs = reader.runs(&RunFilter {
        story: args.story.clone(),
        status: args.status,
        limit: args.limit,
        ..RunFilter::default()
    })?;
    if args.json {
        for r in &runs {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        }
        return Ok(ExitStatus::Success);
    }
    writeln!(
        out,
        "{:<36}  {:<24}  {:<9}  {:>6}  started",
        "run", "story", "status", "events"
    )?;
    for r in &runs {
        let started = chrono::DateTime::from_timestamp_millis(r.started_at)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string())
            .unwrap_or_default();
        writeln!(
            out,
            "{:<36}  {:<24}  {:<9}  {:>6}  {started}",
            r.id, r.story, r.status, r.events
        )?;
        if let Some(parent) = &r.parent_run {
            let event = r.parent_event.as_deref().unwrap_or("-");
            writeln!(out, "    called by run {parent} (event {event})")?;
        }
        if let Some(errors) = r.errors.as_array() {
            for e in errors {
                writeln!(out, "    error: {}", e.as_str().unwrap_or_default())?;
            }
        }
    }
    Ok(ExitStatus::Success)
}

pub(crate) fn events(args: &EventsArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitStatus> {
    let reader = open(&args.db)?;
    let Some(run) = reader.run(args.run)? else {
        anyhow::bail!("no run {} in {}", args.run, args.db);
    };
    // Standard output stays JSON lines; the link to the caller is a note.
    if let Some(parent) = &run.parent_run {
        let event = run.parent_event.as_deref().unwrap_or("-");
        writeln!(err, "run {} was called by run {parent} (event {event})", args.run)?;
    }
    for e in reader.events_json(args.run)? {
        writeln!(out, "{e}")?;
    }
    Ok(ExitStatus::Success)
}
