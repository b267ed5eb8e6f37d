//! `tale run` and `tale dry-run`: deliver an event to a story's entry
//! webhook and run the story to completion, for real or with every side
//! effect mocked and a virtual clock.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde::Deserialize;
use serde_json::{Value as J, json};
use tale_engine::runtime::build::{BuiltStory, build};
use tale_engine::runtime::call::Library;
use tale_engine::runtime::clock::{RealClock, VirtualClock};
use tale_engine::runtime::exec::{RunReport, Runtime, WebhookRequest};
use tale_engine::runtime::http::{HttpResponse, Mock, MockHttp, RealHttp};
use tale_engine::runtime::mail::{Mailer, NoMailer, RecordingMailer, SmtpMailer};
use tale_engine::runtime::redact::Redactor;
use tale_engine::runtime::scope::Globals;
use tale_engine::runtime::store::MemoryStore;
use tale_engine::story::Story;
use tale_engine::template::TemplateParser;
use tale_engine::yaml;

use super::check::checked_story;
use crate::ExitStatus;
use tale_engine::checked::check_paths;

/// What `run`, `dry-run` and `record` are given about the story to run.
#[derive(Debug, Clone, Args)]
pub struct StoryArgs {
    /// The story file.
    pub story: PathBuf,
    /// The request body delivered to the entry webhook: a JSON file, or `-` for standard input.
    #[arg(long, value_name = "FILE")]
    pub event: Option<PathBuf>,
    /// Where the run starts: a webhook (when the story has several and no
    /// `entry`), a scheduled action, or an action without `from` (started by
    /// hand; it gets no event).
    #[arg(long, value_name = "SLUG")]
    pub action: Option<String>,
    /// Folders of sub-stories.
    #[arg(long = "stories", value_name = "DIR")]
    pub stories: Vec<PathBuf>,
    /// Resource files besides the resources.yaml beside the story.
    #[arg(long = "resources", value_name = "FILE")]
    pub resources: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub input: StoryArgs,
    /// Run on the durable engine of `tale serve` and keep the run in this
    /// database (`sqlite:PATH`); without it the run lives in memory.
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// A credentials file (typed credentials: text, basic, header,
    /// oauth2_client_credentials); also `TALE_CREDENTIALS_FILE`.
    #[arg(long, value_name = "FILE", env = "TALE_CREDENTIALS_FILE")]
    pub credentials: Option<PathBuf>,
    /// Refuse requests to loopback, private, link-local and other internal
    /// addresses (names checked after resolution, redirects included).
    #[arg(long, env = "TALE_DENY_INTERNAL_ADDRESSES")]
    pub deny_internal_addresses: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TraceFormat {
    Human,
    Json,
}

/// `tale dry-run`: what `run` takes, less what a dry run never uses (a
/// database, a credentials file, the internal-address guard).
#[derive(Debug, Args)]
pub struct DryRunArgs {
    #[command(flatten)]
    pub input: StoryArgs,
    /// Canned HTTP answers (method + URL pattern → status, headers, body).
    #[arg(long, value_name = "FILE")]
    pub mocks: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = TraceFormat::Human)]
    pub format: TraceFormat,
}

/// Checks and builds the story; diagnostics and `Err` when it cannot run.
/// A story ready to run: built, its entry, and the stories it may call.
pub(crate) type Prepared = (Arc<BuiltStory>, usize, Arc<Library>);

pub(crate) fn prepare(args: &RunArgs, dry: bool, err: &mut dyn Write) -> anyhow::Result<Option<Prepared>> {
    let checked = check_paths(
        std::slice::from_ref(&args.input.story),
        &args.input.stories,
        false,
        None,
        &args.input.resources,
        &tale_actions::Registry,
    );
    let Some(story) = checked_story(&checked, &args.input.story, "cannot run", err)? else {
        return Ok(None);
    };
    let vault = load_vault(args.credentials.as_deref(), dry)?;
    let mut globals = tale_engine::environment::globals(story, &args.input.story, &args.input.resources, &vault, dry)?;
    if dry {
        // The sub-stories it may call share these globals: their credentials too.
        if let J::Object(o) = &mut *globals.credentials {
            for other in &checked.output.library {
                tale_engine::environment::add_stand_ins(other, o);
            }
        }
    }
    let (built, library) = build_with_library(story, &checked.output.library, globals)?;
    let entry = entry_of(&built, args.input.action.as_deref(), "name one with --action")?;
    if !built.actions[entry].is_webhook && !built.starts_without_event(entry) {
        bail!(
            "`{}` has a `from`: a run starts at a webhook, a scheduled action or an action without `from`",
            built.actions[entry].slug
        );
    }
    Ok(Some((built, entry, library)))
}

/// Links outside `tale serve`: `{% story_run_link %}` points at the page
/// the run would have under a `tale serve` at `TALE_PUBLIC_URL` (default
/// `http://127.0.0.1:8080`); `{% prompt %}` links render (signed with a
/// fixed key: dry runs and tests stay repeatable) but nothing waits for
/// them: only `tale serve` answers prompts.
pub(crate) fn offline_links() -> Option<Arc<tale_engine::runtime::links::Links>> {
    answering_links(Default::default())
}

/// [`offline_links`] for a story test case: its `prompts:` answered at once.
pub(crate) fn answering_links(
    answers: std::collections::BTreeMap<String, String>,
) -> Option<Arc<tale_engine::runtime::links::Links>> {
    let base = std::env::var("TALE_PUBLIC_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".to_owned());
    let links = tale_engine::runtime::links::Links::new(&base, b"tale offline links", 3 * 24 * 3600 * 1000, false);
    Some(Arc::new(links.answering(answers)))
}

/// A prepared story and the body of its event.
pub(crate) type PreparedRun = (Arc<BuiltStory>, usize, Arc<Library>, Vec<u8>);

/// What a story's output must not show: its credential values, and the
/// secrets (and tokens fetched so far) of its typed credentials.
pub(crate) fn redactor_of(story: &BuiltStory) -> Redactor {
    story.globals.redactor()
}

/// Checks and builds the story and reads its event (`tale record`).
pub(crate) fn prepare_run(args: &RunArgs, err: &mut dyn Write) -> anyhow::Result<Option<PreparedRun>> {
    if args.db.is_some() {
        bail!("`tale record` runs in memory: leave out --db");
    }
    let Some((story, entry, library)) = prepare(args, false, err)? else {
        return Ok(None);
    };
    let body = read_event(args.input.event.as_deref())?;
    Ok(Some((story, entry, library, body)))
}

/// Builds a story, and the stories it may call (sharing its credentials and
/// resources). A library story with errors cannot be built: calling it fails
/// at run time.
pub(crate) fn build_with_library(
    story: &Story,
    library_stories: &[Story],
    globals: Globals,
) -> anyhow::Result<(Arc<BuiltStory>, Arc<Library>)> {
    let parser = TemplateParser::new();
    let built = Arc::new(build(story, &parser, globals.clone())?);
    let mut library = Library::new();
    library.insert(built.id.to_string(), built.clone());
    for other in library_stories {
        let own = Globals {
            story: json!({"id": other.id.value, "name": other.name}),
            ..globals.clone()
        };
        if let Ok(b) = build(other, &parser, own) {
            library.entry(b.id.to_string()).or_insert_with(|| Arc::new(b));
        }
    }
    Ok((built, Arc::new(library)))
}

/// The webhook a run enters by: `action`, else the story's `entry` or only webhook.
pub(crate) fn entry_of(built: &BuiltStory, action: Option<&str>, hint: &str) -> anyhow::Result<usize> {
    match action {
        Some(slug) => built
            .action(slug)
            .with_context(|| format!("the story has no action `{slug}`")),
        None => built
            .default_entry()
            .with_context(|| format!("the story has no `entry` and not exactly one webhook: {hint}")),
    }
}

/// The typed credentials of a credentials file, read once and shared by
/// every story (one token cache). A dry run never fetches a token nor sees a
/// value: its vault is empty.
pub(crate) fn load_vault(
    file: Option<&Path>,
    dry: bool,
) -> anyhow::Result<Arc<tale_engine::runtime::credentials::Vault>> {
    Ok(Arc::new(match (file, dry) {
        (Some(file), false) => tale_engine::environment::read_credentials_file(file)?,
        _ => tale_engine::runtime::credentials::Vault::default(),
    }))
}

fn read_event(path: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match path {
        None => Ok(Vec::new()),
        Some(p) if p.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read the event from standard input")?;
            Ok(buf)
        }
        Some(p) => tale_engine::files::read_regular(p, tale_engine::files::MAX_FILE_BYTES)
            .with_context(|| format!("cannot read the event {}", p.display())),
    }
}

pub(crate) fn request(story: &BuiltStory, entry: usize, body: Vec<u8>) -> WebhookRequest {
    WebhookRequest {
        method: "post".into(),
        path: story.actions[entry].webhook_path.clone().unwrap_or_default(),
        query: Vec::new(),
        headers: vec![("content-type".into(), "application/json".into())],
        body,
        secret: None,
        trusted: true,
        whole_output: false,
    }
}

/// One thread: a run's concurrency is in its in-flight requests, which one
/// thread drives; and events are allocated and freed on the same thread.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(crate) fn run(args: &RunArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitStatus> {
    let Some((story, entry, library)) = prepare(args, false, err)? else {
        return Ok(ExitStatus::Failure);
    };
    let body = read_event(args.input.event.as_deref())?;
    if let Some(db) = &args.db {
        return run_stored(
            db,
            args.deny_internal_addresses,
            (story, entry, library, body),
            out,
            err,
        );
    }
    let mail: Arc<dyn Mailer> = match SmtpMailer::from_env() {
        Some(m) => Arc::new(m?),
        None => Arc::new(NoMailer),
    };
    // Credential values never reach the output (SPEC §5). Events are printed
    // as they are committed, and not kept: memory follows the work in progress.
    let redactor = Arc::new(redactor_of(&story));
    let printer = redactor.clone();
    let (lines, mut printed) = tokio::sync::mpsc::unbounded_channel::<String>();
    let rt = Runtime {
        http: Arc::new(RealHttp::with_guard(8, args.deny_internal_addresses)?),
        mail,
        clock: Arc::new(RealClock),
        store: Arc::new(MemoryStore::new()),
        max_in_flight: 64,
        trace: false,
        on_event: Some(Arc::new(move |event| {
            let _ = lines.send(printer.json(&event.to_json()).to_string());
        })),
        keep_events: false,
        library,
        links: offline_links(),
        story_state: Default::default(),
        progress: Some(Arc::new(|events, pending| {
            eprintln!("… {events} events so far, {pending} action runs waiting");
        })),
    };
    let request = request(&story, entry, body);
    // The run and the printing of its events go side by side on one thread.
    let result = runtime()?.block_on(async {
        let run = async {
            let r = if story.actions[entry].is_webhook {
                rt.run_webhook(story, entry, request).await
            } else {
                rt.run_scheduled(story, entry).await
            };
            drop(rt); // closes the channel: the printer ends
            r
        };
        let print = async {
            while let Some(line) = printed.recv().await {
                writeln!(out, "{line}")?;
            }
            std::io::Result::Ok(())
        };
        let (r, p) = tokio::join!(run, print);
        p.map(|()| r)
    })?;
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            writeln!(err, "error: {}", redactor.text(&e.to_string()))?;
            return Ok(ExitStatus::Failure);
        }
    };
    out.flush()?;
    finish(&report, &redactor, err)
}

/// `tale run --db`: the run goes through the durable executor and the SQLite
/// store of `tale serve` (every step committed), then its stored events are
/// printed.
fn run_stored(
    db: &str,
    deny_internal: bool,
    (story, entry, library, body): PreparedRun,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitStatus> {
    use tale_engine::runtime::durable::{Delivery, Durable, Loaded};
    use tale_engine::runtime::runlog::RunState;
    use tale_store::backend::Database;
    use tale_store::backend::Sync;
    let database: Database = db.parse()?;
    let mail: Arc<dyn Mailer> = match SmtpMailer::from_env() {
        Some(m) => Arc::new(m?),
        None => Arc::new(NoMailer),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let request = request(&story, entry, body);
    let store = rt.block_on(database.open(Sync::Normal, Default::default()))?;
    let (store, run_id) = rt.block_on(async {
        let redactor = Arc::new(redactor_of(&story));
        let runtime = Runtime {
            http: Arc::new(RealHttp::with_guard(8, deny_internal)?),
            mail,
            clock: Arc::new(RealClock),
            store: store.clone(),
            max_in_flight: 64,
            trace: false,
            progress: None,
            on_event: None,
            keep_events: false,
            library,
            links: offline_links(),
            story_state: Default::default(),
        };
        let durable = Durable::start(Loaded::new(runtime, redactor), store.clone(), 64, 100_000, None);
        let delivered = if story.actions[entry].is_webhook {
            durable.deliver_to(story.clone(), entry, request).await?
        } else {
            let run_id = durable.run_now(&story, entry).await?;
            Delivery::Started {
                run_id,
                response: tale_engine::runtime::exec::WebhookResponse {
                    status: 200,
                    content_type: String::new(),
                    headers: Vec::new(),
                    body: String::new(),
                },
            }
        };
        let run_id = match delivered {
            Delivery::Started { run_id, .. } => run_id,
            Delivery::Ignored(_) => return Ok((store, None)),
            Delivery::Refused { status, message } => bail!("the webhook refused the request ({status}): {message}"),
            Delivery::NoSuchWebhook => bail!("`{}` is not a webhook", story.actions[entry].slug),
        };
        loop {
            match store.run(run_id).await? {
                Some(run) if run.status != RunState::Running => break,
                _ => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
        // A sub-story's exit wakes its caller, but the child run may go on
        // (a branch beside the exit): let every stored run finish, then
        // stop cleanly so that nothing left is counted as crashed.
        while durable.queue_depth() > 0 || durable.waiting() > 0 {
            let soon = tokio::time::Instant::now() + std::time::Duration::from_millis(50);
            durable.wait_queue_below(1, Some(soon)).await;
        }
        durable.stopped_cleanly().await;
        anyhow::Ok((store, Some(run_id)))
    })?;
    let Some(run_id) = run_id else {
        writeln!(err, "the webhook's rules did not match: no run started")?;
        return Ok(ExitStatus::Success);
    };
    for event in rt.block_on(store.events_json(run_id))? {
        writeln!(out, "{event}")?;
    }
    let run = rt
        .block_on(store.run(run_id))?
        .context("the run vanished from the database")?;
    writeln!(
        err,
        "run {run_id} {} with {} events, stored in {}",
        run.status, run.events, database
    )?;
    if let Some(errors) = run.errors.as_array().filter(|e| !e.is_empty()) {
        for e in errors {
            writeln!(err, "error: {}", e.as_str().unwrap_or_default())?;
        }
        return Ok(ExitStatus::Failure);
    }
    Ok(ExitStatus::Success)
}

fn finish(report: &RunReport, redactor: &Redactor, err: &mut dyn Write) -> anyhow::Result<ExitStatus> {
    for (action, message) in &report.logged {
        writeln!(err, "warning: action `{action}`: {}", redactor.text(message))?;
    }
    for (action, message) in &report.errors {
        writeln!(err, "error: action `{action}` failed: {}", redactor.text(message))?;
    }
    writeln!(
        err,
        "run {}: {} event{}, {}",
        report.run_id,
        report.event_count,
        if report.event_count == 1 { "" } else { "s" },
        if report.succeeded() {
            "succeeded".to_owned()
        } else {
            format!("{} action(s) failed", report.errors.len())
        }
    )?;
    Ok(if report.succeeded() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// One mock of a mocks file: one response, or `responses` in turn (the
/// last repeats).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MockSpec {
    #[serde(default = "any_method")]
    method: String,
    url: String,
    status: Option<u16>,
    headers: Option<serde_json::Map<String, J>>,
    body: Option<J>,
    /// The body from a file, relative to the mocks (or test) file: JSON when
    /// it parses as JSON, else text.
    body_file: Option<String>,
    /// Seconds the answer takes (on the run's clock); at or beyond the
    /// request's `timeout_secs` the request times out.
    delay_secs: Option<f64>,
    responses: Option<Vec<ResponseSpec>>,
}

fn any_method() -> String {
    "*".into()
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ResponseSpec {
    #[serde(default = "ok")]
    status: u16,
    #[serde(default)]
    headers: serde_json::Map<String, J>,
    #[serde(default)]
    body: Option<J>,
    #[serde(default)]
    body_file: Option<String>,
    #[serde(default)]
    delay_secs: Option<f64>,
}

fn ok() -> u16 {
    200
}

impl ResponseSpec {
    fn into_response(self) -> HttpResponse {
        let mut headers: Vec<(String, String)> = self
            .headers
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                )
            })
            .collect();
        let body = match self.body {
            None => b"{}".to_vec(),
            Some(J::String(s)) => s.into_bytes(),
            Some(other) => {
                if !headers.iter().any(|(k, _)| k == "content-type") {
                    headers.push(("content-type".into(), "application/json".into()));
                }
                other.to_string().into_bytes()
            }
        };
        HttpResponse {
            status: self.status,
            headers,
            body,
        }
    }
}

fn read_mocks(path: &Path) -> anyhow::Result<Vec<Mock>> {
    let mut file = super::yaml_file::YamlFile::read(path)?;
    // A list of mocks, or a mapping with `mocks:` (a test case's shape).
    let list = file.root.get("mocks").unwrap_or(&file.root).clone();
    match &list.kind {
        yaml::NodeKind::Seq(mocks) => {
            for (n, mock) in mocks.iter().enumerate() {
                file.decode::<MockSpec>(mock, format!("mock #{}", n + 1));
            }
        }
        _ => {
            let d = tale_engine::diagnostic::Diagnostic::new(
                tale_engine::diagnostic::Code::WrongType,
                &file.file,
                list.span,
                format!(
                    "mocks are a list of {{method, url, status, headers, body}}, found {}",
                    list.type_name()
                ),
            );
            file.diagnostics.push(d);
        }
    }
    file.finish()?;
    mocks_from_json(list.to_json(), &path.display().to_string())
}

/// Mocks from their JSON form (a mocks file, or the `mocks` of a test case).
pub(crate) fn mocks_from_json(json: J, origin: &str) -> anyhow::Result<Vec<Mock>> {
    let path = std::path::Path::new(origin);
    let specs: Vec<MockSpec> = serde_json::from_value(json).with_context(|| {
        format!(
            "{}: mocks are a list of {{method, url, status, headers, body}}",
            path.display()
        )
    })?;
    let dir = path.parent().unwrap_or(Path::new(""));
    // `body_file` → `body`, read once.
    let load = |body: Option<J>, file: Option<String>, url: &str| -> anyhow::Result<Option<J>> {
        match (body, file) {
            (Some(_), Some(_)) => anyhow::bail!(
                "{}: the mock of {url} gives both `body` and `body_file`",
                path.display()
            ),
            (body, None) => Ok(body),
            (None, Some(f)) => {
                let file = dir.join(&f);
                let text = tale_engine::files::read_regular_text(&file, tale_engine::files::MAX_FILE_BYTES)
                    .with_context(|| format!("{}: cannot read the mock body {}", path.display(), file.display()))?;
                Ok(Some(serde_json::from_str(&text).unwrap_or(J::String(text))))
            }
        }
    };
    specs
        .into_iter()
        .map(|mut s| {
            s.body = load(s.body.take(), s.body_file.take(), &s.url)?;
            if let Some(list) = &mut s.responses {
                for r in list {
                    r.body = load(r.body.take(), r.body_file.take(), &s.url)?;
                }
            }
            if s.responses.is_some()
                && (s.status.is_some() || s.body.is_some() || s.headers.is_some() || s.delay_secs.is_some())
            {
                anyhow::bail!(
                    "{}: the mock of {} gives both `responses` and a single response",
                    path.display(),
                    s.url
                );
            }
            let specs: Vec<ResponseSpec> = match s.responses {
                Some(list) if !list.is_empty() => list,
                _ => vec![ResponseSpec {
                    status: s.status.unwrap_or(200),
                    headers: s.headers.unwrap_or_default(),
                    body: Some(s.body.unwrap_or_else(|| json!({}))),
                    body_file: None,
                    delay_secs: s.delay_secs,
                }],
            };
            let mut delays = Vec::with_capacity(specs.len());
            for spec in &specs {
                let secs = spec.delay_secs.unwrap_or(0.0);
                if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
                    anyhow::bail!(
                        "{}: the mock of {}: `delay_secs` must be between 0 and 86400",
                        path.display(),
                        s.url
                    );
                }
                delays.push(std::time::Duration::from_secs_f64(secs));
            }
            Ok(Mock {
                method: s.method,
                url: s.url,
                responses: specs.into_iter().map(ResponseSpec::into_response).collect(),
                delays,
            })
        })
        .collect()
}

pub(crate) fn dry_run(args: &DryRunArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitStatus> {
    let run = RunArgs {
        input: args.input.clone(),
        db: None,
        credentials: None,
        deny_internal_addresses: false,
    };
    let Some((story, entry, library)) = prepare(&run, true, err)? else {
        return Ok(ExitStatus::Failure);
    };
    let body = read_event(run.input.event.as_deref())?;
    let mocks = args.mocks.as_deref().map(read_mocks).transpose()?.unwrap_or_default();
    let clock: Arc<dyn tale_engine::runtime::clock::Clock> =
        Arc::new(VirtualClock::new(tale_engine::runtime::event::now_millis()));
    let http = Arc::new(MockHttp::new(mocks).with_clock(clock.clone()));
    let rt = Runtime {
        trace: true,
        library,
        links: offline_links(),
        ..Runtime::contained(http.clone(), Arc::new(RecordingMailer::default()), clock)
    };
    let request = request(&story, entry, body);
    let run = async {
        if story.actions[entry].is_webhook {
            rt.run_webhook(story.clone(), entry, request).await
        } else {
            rt.run_scheduled(story.clone(), entry).await
        }
    };
    let report = match runtime()?.block_on(run) {
        Ok(r) => r,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(ExitStatus::Failure);
        }
    };
    match args.format {
        TraceFormat::Json => {
            let doc = json!({
                "run_id": report.run_id.to_string(),
                "succeeded": report.succeeded(),
                "response": report.response.as_ref().map(|r| json!({"status": r.status, "content_type": r.content_type, "body": r.body})),
                "trace": report.trace.iter().map(|t| t.to_json()).collect::<Vec<_>>(),
                "events": report.events.iter().map(|e| e.to_json()).collect::<Vec<_>>(),
                "errors": report.errors.iter().map(|(a, e)| json!({"action": a, "error": e})).collect::<Vec<_>>(),
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        TraceFormat::Human => write_trace(&report, out)?,
    }
    finish(&report, &Redactor::default(), err)
}

fn short(value: &J) -> String {
    let s = value.to_string();
    if s.chars().count() > 160 {
        format!("{}…", s.chars().take(160).collect::<String>())
    } else {
        s
    }
}

fn write_trace(report: &RunReport, out: &mut dyn Write) -> std::io::Result<()> {
    if let Some(root) = report.events.first() {
        writeln!(out, "● {} received {}", root.action, short(root.output()))?;
    }
    let start = report.trace.first().map_or(0, |t| t.at_ms);
    for t in &report.trace {
        let at = (t.at_ms - start) as f64 / 1000.0;
        writeln!(out, "▸ {} (+{at:.1}s)", t.action)?;
        writeln!(out, "    input:   {}", short(&t.input_output))?;
        for d in &t.details {
            if let Some(id) = d.get("sub_story").and_then(J::as_str) {
                writeln!(
                    out,
                    "    call:    story `{id}`, run {} ({} events)",
                    d["run_id"].as_str().unwrap_or(""),
                    d["events"]
                )?;
                for sub in d["trace"].as_array().into_iter().flatten() {
                    let emitted = sub["emitted"].as_array().map_or(0, Vec::len);
                    let state = match (sub["error"].as_str(), sub["skipped"].as_str()) {
                        (Some(e), _) => format!("error: {e}"),
                        (None, Some(s)) => format!("skipped: {s}"),
                        _ => format!("{emitted} emitted"),
                    };
                    writeln!(out, "      ▸ {} — {state}", sub["action"].as_str().unwrap_or(""))?;
                }
            } else if let Some(method) = d.get("method").and_then(J::as_str) {
                let answer = match (d.get("status"), d.get("error").and_then(J::as_str)) {
                    (Some(status), _) => format!(" → {status}"),
                    (None, Some(e)) => format!(" → {e}"),
                    _ => String::new(),
                };
                writeln!(
                    out,
                    "    request: {method} {} (attempt {}){answer}",
                    d["url"].as_str().unwrap_or(""),
                    d["attempt"]
                )?;
                if let Some(body) = d.get("body").and_then(J::as_str) {
                    writeln!(out, "             body {}", short(&J::String(body.to_owned())))?;
                }
            } else if let Some(rules) = d.get("rules").and_then(J::as_array) {
                for r in rules {
                    let mark = if r["matched"] == true { "matched" } else { "no match" };
                    let text = |v: &J| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    let value = r.get("value").map(|v| format!(" `{}`", text(v))).unwrap_or_default();
                    writeln!(
                        out,
                        "    rule:    `{}` {}{value}: {mark}",
                        text(&r["path"]),
                        r["rule"].as_str().unwrap_or("")
                    )?;
                }
            } else if let Some(attempt) = d.pointer("/retry/attempt").and_then(J::as_u64) {
                // A stored retry: the execution ends and comes back.
                writeln!(
                    out,
                    "    retry:   attempt {} once the wait is over (stored)",
                    attempt + 1
                )?;
            } else {
                writeln!(out, "    note:    {}", short(d))?;
            }
        }
        if let Some(s) = t.skipped {
            writeln!(out, "    skipped: {s}")?;
        }
        for (branch, output) in &t.emitted {
            match branch {
                Some(b) => writeln!(out, "    emitted ({b}): {}", short(output))?,
                None => writeln!(out, "    emitted: {}", short(output))?,
            }
        }
        if let Some(e) = &t.error {
            writeln!(out, "    error:   {e}")?;
        }
    }
    if let Some(r) = &report.response {
        writeln!(
            out,
            "◂ response {} {}: {}",
            r.status,
            r.content_type,
            short(&J::String(r.body.clone()))
        )?;
    }
    Ok(())
}
