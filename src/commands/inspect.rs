//! `tale runs` and `tale events`: read the database of `tale serve` (also
//! while it runs) from the command line.

use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand};
use futures_util::future::BoxFuture;
use serde_json::{Value as J, json};
use tale_engine::runtime::event::RunId;
use tale_engine::runtime::runlog::{RunFilter, RunLog, RunState};
use tale_store::backend::Database;

use super::run::runtime;
use crate::ExitStatus;

#[derive(Debug, Clone, Args)]
pub struct RunsArgs {
    /// The database: `sqlite:PATH`.
    #[arg(long, value_name = "URL", default_value = "sqlite:tale.db")]
    pub db: String,
    /// Only the runs of this story (its id: the file name without `.yaml`).
    #[arg(long, value_name = "ID")]
    pub story: Option<String>,
    /// Only runs with this status: running, succeeded, failed.
    #[arg(long, value_parser = parse_state)]
    pub status: Option<RunState>,
    /// How many runs, newest first.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<RunsCommand>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RunsCommand {
    /// One run as a person reads it: its events in order, the runs its
    /// calls started (indented), its errors.
    Show(ShowArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// The run.
    pub run: RunId,
    /// The database: `sqlite:PATH`.
    #[arg(long, value_name = "URL", default_value = "sqlite:tale.db")]
    pub db: String,
    /// One JSON document (the run, its events, the runs it called) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// The run.
    pub run: RunId,
    /// The database: `sqlite:PATH`.
    #[arg(long, value_name = "URL", default_value = "sqlite:tale.db")]
    pub db: String,
}

fn parse_state(s: &str) -> Result<RunState, String> {
    s.parse()
}

/// Waits for a store read. A command may be called from async code (the
/// tests call commands in process): there it waits on a thread of its own.
pub(crate) fn block_on<F: std::future::Future + Send>(read: F) -> anyhow::Result<F::Output>
where
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return Ok(runtime()?.block_on(read));
    }
    std::thread::scope(|s| s.spawn(|| Ok(runtime()?.block_on(read))).join())
        .map_err(|_| anyhow::anyhow!("a store read panicked"))?
}

pub(crate) async fn open(db: &str) -> anyhow::Result<Box<dyn RunLog>> {
    let database: Database = db.parse()?;
    database
        .open_log()
        .await
        .with_context(|| format!("cannot read {database}"))
}

pub(crate) fn runs(args: &RunsArgs, out: &mut dyn Write) -> anyhow::Result<ExitStatus> {
    if let Some(RunsCommand::Show(show)) = &args.command {
        return self::show(show, out);
    }
    let filter = RunFilter {
        story: args.story.clone(),
        status: args.status,
        limit: args.limit,
        ..RunFilter::default()
    };
    let runs = block_on(async { anyhow::Ok(open(&args.db).await?.runs(&filter).await?) })??;
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
    let (run, events) = block_on(async {
        let reader = open(&args.db).await?;
        anyhow::Ok((reader.run(args.run).await?, reader.events_json(args.run).await?))
    })??;
    let Some(run) = run else {
        anyhow::bail!("no run {} in {}", args.run, args.db);
    };
    // Standard output stays JSON lines; the link to the caller is a note.
    if let Some(parent) = &run.parent_run {
        let event = run.parent_event.as_deref().unwrap_or("-");
        writeln!(err, "run {} was called by run {parent} (event {event})", args.run)?;
    }
    for e in events {
        writeln!(out, "{e}")?;
    }
    Ok(ExitStatus::Success)
}

/// How deep `runs show` follows calls into sub-stories.
const SHOW_DEPTH: usize = 16;

fn show(args: &ShowArgs, out: &mut dyn Write) -> anyhow::Result<ExitStatus> {
    let doc = block_on(async { run_doc(&*open(&args.db).await?, args.run, 0).await })??;
    let Some(doc) = doc else {
        anyhow::bail!("no run {} in {}", args.run, args.db);
    };
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        write_run(&doc, 0, out)?;
    }
    Ok(ExitStatus::Success)
}

/// `{run, events, children}`, children recursively.
fn run_doc(reader: &dyn RunLog, id: RunId, depth: usize) -> BoxFuture<'_, anyhow::Result<Option<J>>> {
    Box::pin(async move {
        let Some(run) = reader.run(id).await? else {
            return Ok(None);
        };
        let events = reader.events_json(id).await?;
        let traces: Vec<J> = reader.traces(id).await?.iter().map(|t| t.to_json()).collect();
        let mut children = Vec::new();
        if depth < SHOW_DEPTH {
            for child in reader.called_by(id).await? {
                let Ok(child_id) = child.id.parse::<RunId>() else {
                    continue;
                };
                if let Some(doc) = run_doc(reader, child_id, depth + 1).await? {
                    children.push(doc);
                }
            }
        }
        Ok(Some(
            json!({"run": run, "events": events, "traces": traces, "children": children}),
        ))
    })
}

fn write_run(doc: &J, depth: usize, out: &mut dyn Write) -> anyhow::Result<()> {
    let pad = "    ".repeat(depth);
    let run = &doc["run"];
    let started = run["started_at"].as_i64().unwrap_or(0);
    let when = chrono::DateTime::from_timestamp_millis(started)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string())
        .unwrap_or_default();
    let took = run["finished_at"]
        .as_i64()
        .map(|f| format!(", {:.3} s", (f - started) as f64 / 1000.0))
        .unwrap_or_default();
    writeln!(
        out,
        "{pad}run {}  {}  {}  ({} events, started {when}{took})",
        run["id"].as_str().unwrap_or_default(),
        run["story"].as_str().unwrap_or_default(),
        run["status"].as_str().unwrap_or_default(),
        run["events"]
    )?;
    let children = doc["children"].as_array().cloned().unwrap_or_default();
    let traces = doc["traces"].as_array().filter(|t| !t.is_empty());
    if let Some(traces) = traces {
        // Action by action, in the order they ran (an action after those
        // that fed it), with the runs each call started right after it.
        for t in traces {
            write_execution(t, started, &pad, out)?;
            for child in children.iter().filter(|c| c["run"]["parent_event"] == t["input_event"]) {
                write_run(child, depth + 1, out)?;
            }
        }
    }
    for event in doc["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|_| traces.is_none())
    {
        let at = event["created_at"].as_i64().unwrap_or(started) - started;
        let action = event["action"].as_str().unwrap_or_default();
        let output = &event["output"];
        // A branch with an error says the error; any other event its output.
        let what = match (event["branch"].as_str(), output.get("error").and_then(J::as_str)) {
            (Some(b), Some(e)) => format!("{action}.{b}: {e}"),
            (Some(b), None) => format!("{action}.{b}  {}", excerpt(output)),
            (None, _) => format!("{action}  {}", excerpt(output)),
        };
        writeln!(out, "{pad}  +{:>7.3} s  {what}", at as f64 / 1000.0)?;
        // The runs this event's action started, right after it.
        for child in children.iter().filter(|c| c["run"]["parent_event"] == event["id"]) {
            write_run(child, depth + 1, out)?;
        }
    }
    for e in run["errors"].as_array().into_iter().flatten() {
        writeln!(out, "{pad}  error: {}", e.as_str().unwrap_or_default())?;
    }
    Ok(())
}

/// One execution of a stored trace: when, status, duration, branch,
/// then its requests (each attempt with its answer), rules and error.
fn write_execution(t: &J, started: i64, pad: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let at = t["at"].as_i64().unwrap_or(started) - started;
    let branch = t["branch"]
        .as_str()
        .map(|b| format!("  branch {b}"))
        .unwrap_or_default();
    let emitted = match t["emitted"].as_i64().unwrap_or(0) {
        0 => String::new(),
        1 => "  1 event".to_owned(),
        n => format!("  {n} events"),
    };
    writeln!(
        out,
        "{pad}  +{:>7.3} s  {:<24} {:<9} {:>9.3} ms{branch}{emitted}",
        at as f64 / 1000.0,
        t["action"].as_str().unwrap_or_default(),
        t["status"].as_str().unwrap_or_default(),
        t["duration_ms"].as_f64().unwrap_or(0.0),
    )?;
    for d in t["detail"].as_array().into_iter().flatten() {
        if let Some(method) = d["method"].as_str() {
            let answer = match (d.get("status"), d["error"].as_str()) {
                (Some(s), _) => format!("→ {s}"),
                (None, Some(e)) => format!("→ {e}"),
                _ => String::new(),
            };
            writeln!(
                out,
                "{pad}               {method} {} (attempt {}) {answer}",
                d["url"].as_str().unwrap_or_default(),
                d["attempt"]
            )?;
        } else if let Some(rules) = d["rules"].as_array() {
            for r in rules {
                let value = r["value"].as_str().map(|v| format!(" `{v}`")).unwrap_or_default();
                let mark = if r["matched"] == true { "matched" } else { "no match" };
                writeln!(
                    out,
                    "{pad}               rule `{}` {}{value}: {mark}",
                    r["path"].as_str().unwrap_or_default(),
                    r["rule"].as_str().unwrap_or_default()
                )?;
            }
        } else if let Some(note) = d["log_error"].as_str() {
            writeln!(out, "{pad}               note: {note}")?;
        }
    }
    if let Some(e) = t["error"].as_str() {
        writeln!(out, "{pad}               error: {e}")?;
    }
    Ok(())
}

/// An output on one line, cut at 100 characters.
fn excerpt(output: &J) -> String {
    let text = output.to_string();
    match text.char_indices().nth(100) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}
