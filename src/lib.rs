//! The `tale` command line as a library, so that tests run it in-process:
//! [`run`] takes the arguments and the output streams and returns the exit
//! status (0 success, 1 the story is invalid or the run failed, 2 usage or
//! internal error).

mod commands;
pub use tale_server as serve;

use std::ffi::OsString;
use std::io::Write;

use clap::{Parser, Subcommand};

pub use commands::check::CheckArgs;
pub use commands::graph::GraphArgs;
pub use commands::inspect::{EventsArgs, RunsArgs};
pub use commands::record::RecordArgs;
pub use commands::run::{DryRunArgs, RunArgs};
pub use commands::schema::SchemaArgs;
pub use commands::test::TestArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitStatus {
    Success = 0,
    Failure = 1,
    Error = 2,
}

#[derive(Debug, Parser)]
#[command(
    name = "tale",
    version,
    about = "A declarative story engine: security automation as YAML stories"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check stories: syntax, keys, graph, templates, calls and environment.
    #[command(after_help = "Examples:\n  \
        tale check stories examples\n  \
        tale check --strict --format github stories\n  \
        tale check --credentials creds.yaml --resources resources.yaml triage.yaml")]
    Check(CheckArgs),
    /// Print the story JSON Schema, or with --tests the test-file schema (for editor completion).
    #[command(after_help = "Examples:\n  \
        tale schema > story.schema.json\n  \
        tale schema --tests > story-test.schema.json")]
    Schema(commands::schema::SchemaArgs),
    /// Draw a story's graph as Mermaid or Graphviz DOT.
    #[command(after_help = "Examples:\n  \
        tale graph examples/alert-triage/alert-triage.yaml\n  \
        tale graph --format dot triage.yaml | dot -Tsvg > triage.svg")]
    Graph(GraphArgs),
    /// Run a story for real: deliver an event to its entry webhook and print its events.
    #[command(after_help = "Examples:\n  \
        tale run examples/quickstart/alert-summary.yaml --event examples/quickstart/alerts.json\n  \
        tale run triage.yaml --event alert.json --db sqlite:tale.db --stories stories\n  \
        echo '{\"alert_id\": \"a1\"}' | tale run stories/graph-alert.yaml --event -")]
    Run(RunArgs),
    /// Run a story with every request mocked and a virtual clock, and trace it.
    #[command(after_help = "Examples:\n  \
        tale dry-run triage.yaml --event sample-event.json\n  \
        tale dry-run triage.yaml --event sample-event.json --mocks triage.mocks.yaml --stories stories\n  \
        tale dry-run triage.yaml --format json | jq .trace")]
    DryRun(DryRunArgs),
    /// Run story tests (`*.test.yaml`): mocked HTTP, expectations on events and requests.
    #[command(after_help = "Examples:\n  \
        tale test stories examples\n  \
        tale test --format junit stories > tale-tests.xml\n  \
        tale test --update stories/graph-alert.test.yaml")]
    Test(TestArgs),
    /// Run a story for real and save its HTTP exchanges as a new story-test case.
    #[command(after_help = "Examples:\n  \
        tale record stories/graph-alert.yaml --event alert.json --name \"a real alert\"\n  \
        tale record triage.yaml --event alert.json --credentials creds.yaml --out triage.test.yaml")]
    Record(commands::record::RecordArgs),
    /// Convert a Tines story export into tale stories, with a report of what did not carry over.
    #[command(after_help = "Examples:\n  \
        tale import phishing-triage.json --out imported\n  \
        tale import export.json --out stories/phishing && tale check stories/phishing")]
    Import(commands::import::ImportArgs),
    /// Serve stories: webhooks, schedules, durable runs on SQLite, API and metrics.
    #[command(after_help = "Examples:\n  \
        tale serve --stories flows --stories stories --db sqlite:/var/lib/tale/tale.db\n  \
        TALE_API_TOKEN=… tale serve --stories examples --listen 0.0.0.0:8080 --log-format json\n  \
        tale serve --stories flows --strict --credentials /etc/tale/credentials.yaml")]
    Serve(Box<serve::ServeArgs>),
    /// List the runs stored in a database.
    #[command(after_help = "Examples:\n  \
        tale runs --db sqlite:tale.db\n  \
        tale runs --db sqlite:tale.db --story triage --status failed --limit 50\n  \
        tale runs --db sqlite:tale.db --json | jq .id\n  \
        tale runs show 01a214b5-ef94-7d23-818d-fbf3a383809f --db sqlite:tale.db\n  \
        tale runs show 01a214b5-ef94-7d23-818d-fbf3a383809f --db sqlite:tale.db --json")]
    Runs(commands::inspect::RunsArgs),
    /// Print the events of a stored run as JSON lines.
    #[command(after_help = "Examples:\n  \
        tale events 01a214b5-ef94-7d23-818d-fbf3a383809f --db sqlite:tale.db\n  \
        tale events 01a214b5-ef94-7d23-818d-fbf3a383809f --db sqlite:tale.db | jq 'select(.action == \"report\") | .output'")]
    Events(commands::inspect::EventsArgs),
    /// Explain a diagnostic: its section of the reference (why, wrong and right examples).
    #[command(after_help = "Examples:\n  \
        tale explain E404\n  \
        tale explain not-upstream")]
    Explain(commands::explain::ExplainArgs),
}

/// Whether `args` (the first is the program name) is a valid command line:
/// parsed only, nothing runs (the tests check every `--help` example).
pub fn parses<I, T>(args: I) -> Result<(), String>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    Cli::try_parse_from(args).map(|_| ()).map_err(|e| e.to_string())
}

/// Runs the command line `args` (the first is the program name).
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> ExitStatus
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let status = if e.use_stderr() {
                ExitStatus::Error
            } else {
                ExitStatus::Success
            };
            let rendered = e.render();
            let text = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                rendered.ansi().to_string()
            } else {
                rendered.to_string()
            };
            let target: &mut dyn Write = if e.use_stderr() { err } else { out };
            let _ = write!(target, "{text}");
            return status;
        }
    };
    let result = match cli.command {
        Command::Check(args) => commands::check::run(&args, out, err),
        Command::Schema(args) => commands::schema::run(&args, out),
        Command::Graph(args) => commands::graph::run(&args, out, err),
        Command::Run(args) => commands::run::run(&args, out, err),
        Command::DryRun(args) => commands::run::dry_run(&args, out, err),
        Command::Test(args) => commands::test::run(&args, out, err),
        Command::Record(args) => commands::record::run(&args, out, err),
        Command::Import(args) => commands::import::run(&args, out),
        Command::Serve(args) => serve::run(&args).map(|()| ExitStatus::Success),
        Command::Runs(args) => commands::inspect::runs(&args, out),
        Command::Events(args) => commands::inspect::events(&args, out, err),
        Command::Explain(args) => commands::explain::run(&args, out, err),
    };
    match result {
        Ok(status) => status,
        Err(e) => {
            let _ = writeln!(err, "error: {e:#}");
            ExitStatus::Error
        }
    }
}
