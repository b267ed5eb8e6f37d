//! `tale record STORY --event FILE`: runs a story for real and writes its
//! HTTP exchanges as a new case of `<story>.test.yaml`: the event, one mock
//! per request with the answer that came back, and what each action emitted.
//! Credential values are redacted everywhere in what is written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Args;
use futures_util::future::BoxFuture;
use serde_json::{Value as J, json};
use tale_engine::runtime::clock::RealClock;
use tale_engine::runtime::exec::Runtime;
use tale_engine::runtime::http::{HttpClient, HttpError, HttpRequest, HttpResponse, RealHttp};
use tale_engine::runtime::mail::{Mailer, NoMailer, SmtpMailer};
use tale_engine::runtime::store::MemoryStore;
use tale_engine::yaml::{self, Limits};

use super::run::{RunArgs, prepare_run, request, runtime};
use tale_engine::runtime::event::RunId;

mod stored;
use crate::ExitStatus;

#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// The case's name (default: "recorded <time>").
    #[arg(long, value_name = "TEXT")]
    pub name: Option<String>,
    /// The test file to add the case to (default: `<story>.test.yaml` beside the story).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Record a run `tale serve` stored instead of running the story: its
    /// input event, the answers its requests got as mocks, its outputs as
    /// expectations (needs --db).
    #[arg(long = "run", value_name = "RUN", requires = "db", conflicts_with_all = ["event", "action"])]
    pub from_run: Option<RunId>,
}

/// The real client, keeping every exchange.
struct Recording {
    inner: RealHttp,
    exchanges: Mutex<Vec<(HttpRequest, Result<HttpResponse, HttpError>)>>,
}

impl HttpClient for Recording {
    fn send(&self, request: HttpRequest) -> BoxFuture<'_, Result<HttpResponse, HttpError>> {
        Box::pin(async move {
            let result = self.inner.send(request.clone()).await;
            self.exchanges
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((request, result.clone()));
            result
        })
    }
}

/// A mock answering like the recorded exchange (a network error becomes a
/// long delay: the request times out again in the test).
fn mock_of(request: &HttpRequest, result: &Result<HttpResponse, HttpError>) -> J {
    let mut mock = serde_json::Map::new();
    mock.insert("method".into(), json!(request.method.to_ascii_uppercase()));
    mock.insert("url".into(), json!(request.url));
    match result {
        Ok(r) => {
            mock.insert("status".into(), json!(r.status));
            // Every header, so that the replayed response is the recorded one.
            let headers: serde_json::Map<String, J> = r
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), J::String(v.clone())))
                .collect();
            mock.insert("headers".into(), J::Object(headers));
            let text = String::from_utf8_lossy(&r.body).into_owned();
            let body = serde_json::from_str::<J>(&text).unwrap_or(J::String(text));
            mock.insert("body".into(), body);
        }
        Err(_) => {
            mock.insert("delay_secs".into(), json!(request.timeout.as_secs_f64() + 1.0));
        }
    }
    J::Object(mock)
}

pub(crate) fn run(args: &RecordArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitStatus> {
    if let Some(run) = args.from_run {
        return stored::record(args, run, out, err);
    }
    let Some((story, entry, library, body)) = prepare_run(&args.run, err)? else {
        return Ok(ExitStatus::Failure);
    };
    let mail: Arc<dyn Mailer> = match SmtpMailer::from_env() {
        Some(m) => Arc::new(m?),
        None => Arc::new(NoMailer),
    };
    let http = Arc::new(Recording {
        inner: RealHttp::with_guard(8, args.run.deny_internal_addresses)?,
        exchanges: Mutex::default(),
    });
    let rt = Runtime {
        http: http.clone(),
        mail,
        clock: Arc::new(RealClock),
        store: Arc::new(MemoryStore::new()),
        max_in_flight: 1,
        trace: false,
        progress: None,
        on_event: None,
        keep_events: true,
        library,
        links: super::run::offline_links(),
        story_state: Default::default(),
    };
    let event: J = serde_json::from_slice(&body).unwrap_or(J::Null);
    let report = if story.actions[entry].is_webhook {
        runtime()?.block_on(rt.run_webhook(story.clone(), entry, request(&story, entry, body)))?
    } else {
        runtime()?.block_on(rt.run_scheduled(story.clone(), entry))?
    };

    let exchanges = http.exchanges.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mocks: Vec<J> = exchanges.iter().map(|(q, r)| mock_of(q, r)).collect();
    let mut expect = serde_json::Map::new();
    for e in report.events.iter().skip(1) {
        let list = expect
            .entry(super::test::output_key(&e.action, e.branch))
            .or_insert_with(|| J::Array(Vec::new()));
        if let J::Array(l) = list {
            l.push(e.output().clone());
        }
    }
    let name = case_name(args);
    let mut case = serde_json::Map::new();
    case.insert("name".into(), json!(name));
    if story.actions[entry].is_webhook {
        case.insert("event".into(), event.clone());
    } else {
        case.insert("action".into(), json!(&*story.actions[entry].slug));
    }
    case.insert("mocks".into(), J::Array(mocks));
    let event_text = event.to_string();
    let stable: serde_json::Map<String, J> = expect
        .into_iter()
        .map(|(k, v)| (k, super::test::without_run_ids(&v, &event_text)))
        .collect();
    case.insert("expect".into(), J::Object(stable));
    let path = save_case(args, &story, case)?;
    writeln!(
        out,
        "recorded {} request(s) and {} event(s) as a case of {}",
        exchanges.len(),
        report.event_count,
        path.display()
    )?;
    if !report.succeeded() {
        writeln!(
            err,
            "note: the run had failing actions; the case records them as they were"
        )?;
    }
    Ok(ExitStatus::Success)
}

/// The case's name: `--name`, else "recorded <now>".
pub(crate) fn case_name(args: &RecordArgs) -> String {
    args.name.clone().unwrap_or_else(|| {
        format!(
            "recorded {}",
            time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        )
    })
}

/// Writes `case` to the test file of `args` (`--out`, else beside the
/// story), through the story's redactor (URLs, bodies, outputs); its path.
fn save_case(
    args: &RecordArgs,
    story: &tale_engine::runtime::build::BuiltStory,
    case: serde_json::Map<String, J>,
) -> anyhow::Result<PathBuf> {
    let case = super::run::redactor_of(story).json(&J::Object(case));
    let path = args.out.clone().unwrap_or_else(|| test_path(&args.run.input.story));
    let names: Vec<String> = story
        .globals
        .credentials
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    write_case(&path, &case, &names, &story.globals.resources)?;
    Ok(path)
}

fn test_path(story: &Path) -> PathBuf {
    let stem = story.file_stem().and_then(|s| s.to_str()).unwrap_or("story");
    story.with_file_name(format!("{stem}.test.yaml"))
}

/// Adds `case` to the file: a new file names the credentials (their values
/// left as placeholders) and the resources; an existing one gets the case at
/// the end of its `cases`, the rest of it unchanged.
fn write_case(path: &Path, case: &J, credentials: &[String], resources: &J) -> anyhow::Result<()> {
    let case_yaml = format!("  - {}\n", case);
    if !path.exists() {
        let creds: serde_json::Map<String, J> = credentials
            .iter()
            .map(|n| (n.clone(), json!(format!("[credential:{n}]"))))
            .collect();
        let text = format!(
            "# Story tests (`tale test`); recorded with `tale record`.\ncredentials: {}\nresources: {}\ncases:\n{case_yaml}",
            J::Object(creds),
            resources
        );
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        return Ok(());
    }
    let text = tale_engine::files::read_regular_text(path, tale_engine::files::MAX_FILE_BYTES)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let node = yaml::parse(&text, &Limits::default()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let cases = node
        .get("cases")
        .with_context(|| format!("{}: no `cases` to add to", path.display()))?;
    let yaml::NodeKind::Seq(items) = &cases.kind else {
        anyhow::bail!("{}: `cases` is not a list", path.display());
    };
    let (at, indent) = match items.last() {
        Some(last) => (last.span.end, last.span.col.saturating_sub(3) as usize),
        None => (cases.span.end, 2),
    };
    let at = text[at..].find('\n').map_or(text.len(), |n| at + n + 1);
    let mut new = text.clone();
    let insertion = format!("{}- {}\n", " ".repeat(indent), case);
    if at == text.len() && !text.ends_with('\n') {
        new.push('\n');
        new.push_str(&insertion);
    } else {
        new.insert_str(at, &insertion);
    }
    std::fs::write(path, new).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
