//! `tale test [PATH…]`: story tests. A `<story>.test.yaml` beside a story
//! gives cases (an event, HTTP mocks, credentials and resources, a clock) and
//! expectations on what each action emits and which requests went out. Cases
//! run on the dry-run engine: no network, a virtual clock, an in-memory store.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Deserialize;
use serde_json::{Value as J, json};
use tale_engine::diagnostic::{Code, Diagnostic};
use tale_engine::files::{self, FileKind};
use tale_engine::runtime::clock::VirtualClock;
use tale_engine::runtime::exec::Runtime;
use tale_engine::runtime::http::HttpRequest;
use tale_engine::runtime::http::MockHttp;
use tale_engine::runtime::mail::RecordingMailer;
use tale_engine::runtime::scope::Globals;
use tale_engine::yaml;

use super::run::{MockSpec, build_with_library, entry_of, mocks_from_json, request, runtime};
use super::yaml_file::{FileProblems, YamlFile};
use crate::ExitStatus;
use tale_engine::checked::{Checked, check_paths};

mod update;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestFormat {
    Human,
    Json,
    Github,
    Junit,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Test files (`*.test.yaml`) and folders searched for them.
    #[arg(value_name = "PATH", default_value = ".")]
    pub paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = TestFormat::Human)]
    pub format: TestFormat,
    /// Run only the cases whose `file › name` contains this text.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
    /// List the actions and branches no case reached.
    #[arg(long)]
    pub coverage: bool,
    /// Folders of sub-stories.
    #[arg(long = "stories", value_name = "DIR")]
    pub stories: Vec<PathBuf>,
    /// Rewrite the failing checks with what the run emitted, in the file's
    /// own YAML style (passing checks and comments stay as written), then run again.
    #[arg(long)]
    pub update: bool,
}

/// A story test file (`<story>.test.yaml`): see docs/testing.md.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "tale story tests")]
pub(crate) struct TestFile {
    /// The story, relative to the test file (default: its name without `.test`).
    story: Option<String>,
    /// Folders of sub-stories the story calls, relative to the test file.
    #[serde(default)]
    stories: Vec<String>,
    #[serde(default)]
    credentials: serde_json::Map<String, J>,
    #[serde(default)]
    resources: serde_json::Map<String, J>,
    /// The virtual clock's start: RFC 3339 or unix milliseconds.
    #[schemars(with = "Option<serde_json::Value>")]
    clock: Option<J>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// The body posted to the entry webhook.
    #[serde(default)]
    event: Option<J>,
    /// Or a JSON file holding it, relative to the test file.
    event_file: Option<String>,
    /// Where the run starts: a webhook (when the story has several and no
    /// `entry`), a scheduled action, or an action without `from`.
    action: Option<String>,
    /// Headers of the request to the webhook (names any case), besides
    /// `content-type: application/json`; and its query string.
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    query: std::collections::BTreeMap<String, String>,
    /// HTTP answers by method and URL pattern (`*` matches any run of characters).
    #[serde(default)]
    #[schemars(with = "Vec<super::run::MockSpec>")]
    mocks: Vec<J>,
    #[serde(default)]
    credentials: serde_json::Map<String, J>,
    #[serde(default)]
    resources: serde_json::Map<String, J>,
    /// Assertions on the requests the story sent.
    #[serde(default)]
    requests: Vec<RequestExpectation>,
    /// Per action slug: what it must emit: `never`, a list of outputs (each a
    /// subset of the actual one, in order), or `{count, equals, subset, jsonpath}`.
    #[serde(default)]
    expect: serde_json::Map<String, J>,
    /// Requests no mock answers are failures unless this is set.
    #[serde(default)]
    allow_unmatched: bool,
    /// Answers to `{% prompt %}` links, by action slug: the action's
    /// execution gets this status at once, as if a person clicked it.
    #[serde(default)]
    prompts: std::collections::BTreeMap<String, String>,
    /// Actions expected to fail, by slug: text their error contains. Any
    /// other failure fails the case, and so does one of these not failing.
    #[serde(default)]
    errors: std::collections::BTreeMap<String, String>,
    /// The story state (`STATE.name`) the run starts with, by name.
    #[serde(default)]
    state: serde_json::Map<String, J>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RequestExpectation {
    #[serde(default = "any")]
    method: String,
    url: String,
    /// How many matching requests (default: at least one).
    count: Option<usize>,
    #[serde(default)]
    headers: serde_json::Map<String, J>,
    /// The JSON body must contain this (a subset).
    body: Option<J>,
    /// JSONPath → expected value, over the JSON body.
    #[serde(default)]
    jsonpath: serde_json::Map<String, J>,
    /// Check only the n-th matching request (1-based, in the order sent).
    nth: Option<usize>,
    /// `every` (default): each matching request satisfies the checks;
    /// `any`: at least one does.
    #[serde(rename = "match")]
    match_mode: Option<MatchMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
enum MatchMode {
    Every,
    Any,
}

/// What one request fails of an assertion's checks (headers, body, JSONPath).
fn request_failures(want: &RequestExpectation, r: &HttpRequest) -> Vec<String> {
    let mut failures = Vec::new();
    for (name, value) in &want.headers {
        let expected = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
        let got = r
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone());
        if got.as_deref() != Some(expected.as_str()) {
            failures.push(format!(
                "request to {}: header `{name}` is {got:?}, expected {expected:?}",
                r.url
            ));
        }
    }
    let body: J = r
        .body
        .as_ref()
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or(J::Null);
    let text = r
        .body
        .as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    if let Some(J::String(e)) = want.body.as_ref().filter(|_| body.is_null() && !text.is_empty()) {
        // A body that is not JSON (JSON lines, a form, XML): the text must contain it.
        if !text.contains(e.as_str()) {
            failures.push(format!(
                "request to {}: the body does not contain {e:?}; it is:\n{}",
                r.url,
                text.chars().take(2000).collect::<String>()
            ));
        }
    } else if let Some(e) = &want.body {
        if !contains(&body, e) {
            failures.push(format!(
                "request to {}: the body does not contain the expected subset:\n{}",
                r.url,
                diff(e, &body)
            ));
        }
    }
    for (path, expected) in &want.jsonpath {
        let found = jsonpath(&body, path);
        let got = if found.len() == 1 {
            found[0].clone()
        } else {
            J::Array(found)
        };
        if &got != expected {
            failures.push(format!("request to {}: {path} is {got}, expected {expected}", r.url));
        }
    }
    failures
}

fn any() -> String {
    "*".into()
}

/// The result of one case.
#[derive(Debug)]
struct Outcome {
    file: PathBuf,
    line: u32,
    name: String,
    failures: Vec<String>,
    reached: Vec<(String, Option<String>)>,
    millis: u128,
    /// The case's position in its file.
    index: usize,
    /// What each action emitted, in order (for `--update`).
    actual: Vec<(String, Vec<J>)>,
    /// The `expect` keys whose checks failed (for `--update`).
    failed_keys: Vec<String>,
}

/// `actual` contains everything `expected` says (objects by key, arrays
/// element by element, other values equal).
fn contains(actual: &J, expected: &J) -> bool {
    match (actual, expected) {
        (J::Object(a), J::Object(e)) => e.iter().all(|(k, v)| a.get(k).is_some_and(|av| contains(av, v))),
        (J::Array(a), J::Array(e)) => a.len() == e.len() && a.iter().zip(e).all(|(x, y)| contains(x, y)),
        (a, e) => a == e,
    }
}

/// A line diff of pretty JSON: `-` expected, `+` actual.
fn diff(expected: &J, actual: &J) -> String {
    let e = serde_json::to_string_pretty(expected).unwrap_or_default();
    let a = serde_json::to_string_pretty(actual).unwrap_or_default();
    let (el, al): (Vec<&str>, Vec<&str>) = (e.lines().collect(), a.lines().collect());
    let mut out = String::new();
    let mut i = 0;
    let mut j = 0;
    while i < el.len() || j < al.len() {
        match (el.get(i), al.get(j)) {
            (Some(x), Some(y)) if x == y => {
                out.push_str(&format!("      {x}\n"));
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) => {
                // Resynchronise on the next equal line, if any.
                if let Some(k) = al[j..].iter().position(|l| l == x) {
                    for l in &al[j..j + k] {
                        out.push_str(&format!("    + {l}\n"));
                    }
                    j += k;
                } else {
                    out.push_str(&format!("    - {x}\n    + {y}\n"));
                    i += 1;
                    j += 1;
                }
            }
            (Some(x), None) => {
                out.push_str(&format!("    - {x}\n"));
                i += 1;
            }
            (None, Some(y)) => {
                out.push_str(&format!("    + {y}\n"));
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

fn jsonpath(value: &J, path: &str) -> Vec<J> {
    let path = tale_engine::template::filters::data::normalize_jsonpath(path);
    jsonpath_rust::JsonPath::query(value, &path)
        .map(|found| found.into_iter().cloned().collect())
        .unwrap_or_default()
}

/// Checks one action's events against its expectation.
fn check_action(slug: &str, outputs: &[&J], expectation: &J, failures: &mut Vec<String>) {
    match expectation {
        J::String(s) if s == "never" => {
            if !outputs.is_empty() {
                failures.push(format!("`{slug}` emitted {} event(s), expected never", outputs.len()));
            }
        }
        J::Array(expected) => {
            if outputs.len() != expected.len() {
                failures.push(format!("`{slug}` emitted {} event(s), expected {}", outputs.len(), expected.len()));
            }
            for (n, (e, a)) in expected.iter().zip(outputs).enumerate() {
                if !contains(a, e) {
                    failures.push(format!("`{slug}` event {} does not match (subset):\n{}", n + 1, diff(e, a)));
                }
            }
        }
        J::Object(spec) => {
            if let Some(count) = spec.get("count").and_then(J::as_u64) {
                if outputs.len() as u64 != count {
                    failures.push(format!("`{slug}` emitted {} event(s), expected {count}", outputs.len()));
                }
            }
            let Some(first) = outputs.first() else {
                if spec.keys().any(|k| k != "count") {
                    failures.push(format!("`{slug}` emitted nothing"));
                }
                return;
            };
            if let Some(e) = spec.get("equals") {
                if *first != e {
                    failures.push(format!("`{slug}` output differs:\n{}", diff(e, first)));
                }
            }
            if let Some(e) = spec.get("subset") {
                if !contains(first, e) {
                    failures.push(format!("`{slug}` output does not contain the expected subset:\n{}", diff(e, first)));
                }
            }
            if let Some(J::Object(paths)) = spec.get("jsonpath") {
                for (path, want) in paths {
                    let found = jsonpath(first, path);
                    let got = if found.len() == 1 { found[0].clone() } else { J::Array(found) };
                    if &got != want {
                        failures.push(format!("`{slug}` {path} is {got}, expected {want}"));
                    }
                }
            }
        }
        other => failures.push(format!("the expectation of `{slug}` must be `never`, a list of outputs or {{count, equals, subset, jsonpath}}, found {other}")),
    }
}

struct Loaded {
    path: PathBuf,
    file: TestFile,
    lines: Vec<u32>,
}

fn load(path: &Path) -> anyhow::Result<Loaded> {
    let mut yaml = YamlFile::read(path)?;
    let root = yaml.root.clone();
    let lines = match root.get("cases").map(|c| &c.kind) {
        Some(yaml::NodeKind::Seq(items)) => items.iter().map(|n| n.span.line).collect(),
        _ => Vec::new(),
    };
    // Each case, and each of its mocks and request assertions, on its own:
    // a mistake in one does not hide those after it.
    if let Some(yaml::NodeKind::Seq(cases)) = root.get("cases").map(|c| &c.kind) {
        for (n, case) in cases.iter().enumerate() {
            let name = match case.get("name").and_then(yaml::Node::as_str) {
                Some(name) => format!("`{name}`"),
                None => format!("#{}", n + 1),
            };
            yaml.decode::<Case>(case, format!("test case {name}"));
            if let Some(yaml::NodeKind::Seq(mocks)) = case.get("mocks").map(|m| &m.kind) {
                for mock in mocks {
                    yaml.decode::<MockSpec>(mock, format!("a mock of test case {name}"));
                }
            }
            if let Some(yaml::NodeKind::Seq(requests)) = case.get("requests").map(|m| &m.kind) {
                for request in requests {
                    yaml.decode::<RequestExpectation>(request, format!("a request assertion of test case {name}"));
                }
            }
        }
    }
    let file = yaml.decode::<TestFile>(&root, "the test file".into());
    if let Some(clock) = root.get("clock") {
        if clock_start(Some(&clock.to_json())).is_none() {
            let d = Diagnostic::new(Code::InvalidValue, &yaml.file, clock.span, "`clock` is not a time")
                .label("not RFC 3339 or unix milliseconds")
                .help("write a time such as `2026-12-01T09:00:00Z`, or milliseconds since 1970");
            yaml.diagnostics.push(d);
        }
    }
    yaml.finish()?;
    let file = file.ok_or_else(|| anyhow::anyhow!("{}: not a test file (see docs/testing.md)", path.display()))?;
    Ok(Loaded {
        path: path.to_path_buf(),
        file,
        lines,
    })
}

/// How expectations name an action's output: `slug` for its main output,
/// `slug.branch` for a branch.
pub(crate) fn output_key(action: &str, branch: Option<&str>) -> String {
    match branch {
        Some(b) => format!("{action}.{b}"),
        None => action.to_owned(),
    }
}

/// An output without the ids made during the run (run and event ids,
/// UUIDv7; an explode's `guid`, a UUIDv8 derived from an event id — text
/// not in the case's event), which differ on every run; expectations are
/// subsets, so leaving them out keeps the rest.
pub(crate) fn without_run_ids(value: &J, event_text: &str) -> J {
    let volatile = |s: &str| {
        uuid::Uuid::parse_str(s).is_ok_and(|u| matches!(u.get_version_num(), 7 | 8)) && !event_text.contains(s)
    };
    match value {
        J::Object(o) => J::Object(
            o.iter()
                .filter(|(_, v)| !v.as_str().is_some_and(volatile))
                .map(|(k, v)| (k.clone(), without_run_ids(v, event_text)))
                .collect(),
        ),
        J::Array(a) => J::Array(a.iter().map(|v| without_run_ids(v, event_text)).collect()),
        other => other.clone(),
    }
}

/// `--stories` and the file's own `stories:`.
fn library_dirs(test: &Path, file: &TestFile, stories: &[PathBuf]) -> Vec<PathBuf> {
    let dir = test.parent().unwrap_or(Path::new(""));
    stories
        .iter()
        .cloned()
        .chain(file.stories.iter().map(|s| dir.join(s)))
        .collect()
}

fn story_path(test: &Path, file: &TestFile) -> PathBuf {
    let dir = test.parent().unwrap_or(Path::new(""));
    match &file.story {
        Some(s) => dir.join(s),
        None => {
            let name = test.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let stem = name
                .trim_end_matches(".yaml")
                .trim_end_matches(".yml")
                .trim_end_matches(".test");
            dir.join(format!("{stem}.yaml"))
        }
    }
}

/// The virtual clock's start in unix milliseconds; `None` when `clock` is
/// neither RFC 3339 nor a whole number.
fn clock_start(value: Option<&J>) -> Option<i64> {
    match value {
        Some(J::Number(n)) => n.as_i64(),
        Some(J::String(s)) => time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64),
        None | Some(J::Null) => Some(1_700_000_000_000),
        Some(_) => None,
    }
}

/// The story a test file tests, checked with its library (`--stories` and
/// the file's own `stories:`).
fn check_story(loaded: &Loaded, stories: &[PathBuf]) -> Checked {
    let story_file = story_path(&loaded.path, &loaded.file);
    let dirs = library_dirs(&loaded.path, &loaded.file, stories);
    check_paths(
        std::slice::from_ref(&story_file),
        &dirs,
        false,
        None,
        &[],
        &tale_actions::Registry,
    )
}

/// Runs every case of a file that passes the filter.
fn run_file(loaded: &Loaded, stories: &[PathBuf], filter: Option<&str>) -> Vec<Outcome> {
    let test = &loaded.path;
    let checked = check_story(loaded, stories);
    let errors: Vec<String> = checked
        .output
        .diagnostics
        .iter()
        .filter(|d| d.severity == tale_engine::diagnostic::Severity::Error)
        .map(|d| format!("{}:{}: {} {}", d.file.display(), d.span, d.code.code(), d.message))
        .collect();
    let mut results = Vec::new();
    for (i, case) in loaded.file.cases.iter().enumerate() {
        let label = format!("{} › {}", test.display(), case.name);
        if filter.is_some_and(|f| !label.contains(f)) {
            continue;
        }
        let started = std::time::Instant::now();
        let mut outcome = Outcome {
            file: test.clone(),
            line: loaded.lines.get(i).copied().unwrap_or(1),
            name: case.name.clone(),
            failures: Vec::new(),
            reached: Vec::new(),
            millis: 0,
            index: i,
            actual: Vec::new(),
            failed_keys: Vec::new(),
        };
        match checked.output.stories.first().filter(|_| errors.is_empty()) {
            None => outcome
                .failures
                .push(format!("the story does not check: {}", errors.join("; "))),
            Some(story) => {
                if let Err(e) = run_case(test, &loaded.file, case, story, &checked.output.library, &mut outcome) {
                    outcome.failures.push(format!("{e:#}"));
                }
            }
        }
        outcome.millis = started.elapsed().as_millis();
        results.push(outcome);
    }
    results
}

/// `expect: {STATE: {name: value}}`: each name holds that value after the
/// run (`null`: the name is not set).
fn check_state(expected: &J, actual: &serde_json::Map<String, J>, failures: &mut Vec<String>) {
    let Some(expected) = expected.as_object() else {
        failures.push("`STATE` expects a mapping of state names to values".to_owned());
        return;
    };
    for (name, want) in expected {
        let got = actual.get(name).unwrap_or(&J::Null);
        if got != want {
            failures.push(format!("STATE.{name} is {got}, expected {want}"));
        }
    }
}

fn run_case(
    test: &Path,
    file: &TestFile,
    case: &Case,
    story: &tale_engine::story::Story,
    library_stories: &[tale_engine::story::Story],
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let mut credentials = file.credentials.clone();
    credentials.extend(case.credentials.clone());
    let mut resources = file.resources.clone();
    resources.extend(case.resources.clone());
    let globals = Globals {
        credentials: J::Object(credentials).into(),
        resources: J::Object(resources),
        story: json!({"id": story.id.value, "name": story.name}),
        ..Globals::default()
    };
    let (built, library) = build_with_library(story, library_stories, globals)?;
    let entry = entry_of(&built, case.action.as_deref(), "give the case an `action`")?;
    if !built.actions[entry].is_webhook && !built.starts_without_event(entry) {
        anyhow::bail!(
            "`{}` has a `from`: a case starts at a webhook, a scheduled action or an action without `from`",
            built.actions[entry].slug
        );
    }
    let event = match (&case.event, &case.event_file) {
        (_, Some(f)) => {
            let path = test.parent().unwrap_or(Path::new("")).join(f);
            tale_engine::files::read_regular(&path, tale_engine::files::MAX_FILE_BYTES)
                .with_context(|| format!("cannot read {}", path.display()))?
        }
        (Some(e), None) => serde_json::to_vec(e)?,
        (None, None) => Vec::new(),
    };
    let mocks = mocks_from_json(J::Array(case.mocks.clone()), &test.display().to_string())?;
    let clock: Arc<dyn tale_engine::runtime::clock::Clock> = Arc::new(VirtualClock::new(
        clock_start(file.clock.as_ref()).unwrap_or(1_700_000_000_000),
    ));
    let http = Arc::new(MockHttp::new(mocks).with_clock(clock.clone()));
    let rt = Runtime {
        library,
        links: super::run::answering_links(case.prompts.clone()),
        story_state: case.state.clone(),
        ..Runtime::contained(http.clone(), Arc::new(RecordingMailer::default()), clock)
    };
    // A webhook gets the event; a scheduled action runs as one tick.
    let webhook_request = built.actions[entry].is_webhook.then(|| {
        let mut request = request(&built, entry, event);
        for (name, value) in &case.headers {
            let name = name.to_ascii_lowercase();
            request.headers.retain(|(k, _)| *k != name);
            request.headers.push((name, value.clone()));
        }
        request.query = case.query.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        request
    });
    let report = match webhook_request {
        Some(webhook_request) => runtime()?.block_on(rt.run_webhook(built.clone(), entry, webhook_request))?,
        None => runtime()?.block_on(rt.run_scheduled(built.clone(), entry))?,
    };
    for (action, error) in &report.errors {
        let expected = case
            .errors
            .get(action)
            .is_some_and(|want| error.contains(want.as_str()));
        if !expected {
            outcome.failures.push(format!("action `{action}` failed: {error}"));
        }
    }
    for (action, want) in &case.errors {
        if !report
            .errors
            .iter()
            .any(|(a, e)| a == action && e.contains(want.as_str()))
        {
            outcome.failures.push(format!(
                "action `{action}` was expected to fail with “{want}”, and did not"
            ));
        }
    }
    outcome.reached = report
        .events
        .iter()
        .map(|e| (e.action.to_string(), e.branch.map(str::to_owned)))
        .collect();
    // Every event of each action, by output as expectations name them:
    // `slug` (the main output) and `slug.branch`.
    for e in &report.events {
        let key = output_key(&e.action, e.branch);
        match outcome.actual.iter_mut().find(|(k, _)| *k == key) {
            Some((_, outputs)) => outputs.push(e.output().clone()),
            None => outcome.actual.push((key, vec![e.output().clone()])),
        }
    }

    for (key, expectation) in &case.expect {
        // `STATE`: the story state after the run, by name (`null`: not set).
        if key == "STATE" {
            check_state(expectation, &report.state, &mut outcome.failures);
            continue;
        }
        // `slug` is the main output only; `slug.no_match`, `slug.failure` a branch.
        let (slug, branch) = match key.split_once('.') {
            Some((s, b)) => (s, Some(b)),
            None => (key.as_str(), None),
        };
        let Some(index) = built.action(slug) else {
            let hint = tale_engine::diagnostic::did_you_mean(slug, built.actions.iter().map(|a| &*a.slug));
            outcome.failures.push(match hint {
                Some(hint) => format!("the story has no action `{slug}`: {hint}"),
                None => format!("the story has no action `{slug}`"),
            });
            continue;
        };
        if let Some(b) = branch {
            let branches = built.actions[index].branches;
            if !branches.contains(&b) {
                let known = if branches.is_empty() {
                    format!("`{slug}` has no branches")
                } else {
                    format!("its branches are {}", tale_engine::diagnostic::one_of(branches))
                };
                outcome.failures.push(format!("`{slug}` has no `{b}` branch ({known})"));
                continue;
            }
        }
        let outputs: Vec<&J> = report
            .events
            .iter()
            .filter(|e| &*e.action == slug && e.branch == branch)
            .map(|e| e.output())
            .collect();
        let before = outcome.failures.len();
        check_action(key, &outputs, expectation, &mut outcome.failures);
        if outcome.failures.len() > before {
            outcome.failed_keys.push(key.clone());
        }
    }

    let requests = http.requests.lock().map(|r| r.clone()).unwrap_or_default();
    for want in &case.requests {
        let matching: Vec<_> = requests
            .iter()
            .filter(|r| {
                (want.method == "*" || want.method.eq_ignore_ascii_case(&r.method))
                    && tale_engine::runtime::http::glob_match(&want.url, &r.url)
            })
            .collect();
        match want.count {
            Some(n) if matching.len() != n => outcome.failures.push(format!(
                "{} request(s) to {} {}, expected {n}",
                matching.len(),
                want.method,
                want.url
            )),
            None if matching.is_empty() => outcome
                .failures
                .push(format!("no request to {} {}", want.method, want.url)),
            _ => {}
        }
        // The requests the checks apply to, and how many must pass.
        let checked: Vec<&&HttpRequest> = match want.nth {
            Some(0) => {
                outcome.failures.push("`nth` counts from 1".to_owned());
                continue;
            }
            Some(n) => match matching.get(n - 1) {
                Some(r) => vec![r],
                None => {
                    outcome.failures.push(format!(
                        "no request #{n} to {} {} ({} were sent)",
                        want.method,
                        want.url,
                        matching.len()
                    ));
                    continue;
                }
            },
            None => matching.iter().collect(),
        };
        let results: Vec<Vec<String>> = checked.iter().map(|r| request_failures(want, r)).collect();
        if want.match_mode == Some(MatchMode::Any) && want.nth.is_none() {
            if !results.is_empty() && results.iter().all(|f| !f.is_empty()) {
                outcome.failures.push(format!(
                    "none of the {} request(s) to {} {} satisfies the checks (`match: any`); the first: {}",
                    results.len(),
                    want.method,
                    want.url,
                    results[0].join("; ")
                ));
            }
        } else {
            outcome.failures.extend(results.into_iter().flatten());
        }
    }
    if !case.allow_unmatched {
        for r in http.unmatched.lock().map(|u| u.clone()).unwrap_or_default() {
            outcome.failures.push(format!(
                "no mock answers {} {} (add one, or `allow_unmatched: true`)",
                r.method.to_ascii_uppercase(),
                r.url
            ));
        }
    }
    for (mock, calls) in case.mocks.iter().zip(http.calls()) {
        if calls == 0 {
            outcome.failures.push(format!(
                "the mock of {} {} was never called",
                mock["method"].as_str().unwrap_or("*"),
                mock["url"].as_str().unwrap_or("?")
            ));
        }
    }
    Ok(())
}

fn find_tests(paths: &[PathBuf]) -> Vec<PathBuf> {
    let found = files::discover(paths);
    let mut tests: Vec<PathBuf> = found
        .skipped
        .into_iter()
        .filter(|(_, k)| *k == FileKind::StoryTest)
        .map(|(p, _)| p)
        .collect();
    tests.sort();
    tests
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(crate) fn run(args: &TestArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<ExitStatus> {
    let tests = find_tests(&args.paths);
    if tests.is_empty() {
        writeln!(err, "no test files (*.test.yaml) found")?;
        return Ok(ExitStatus::Error);
    }
    let mut loaded = Vec::new();
    let mut results = Vec::new();
    for t in &tests {
        match load(t) {
            Ok(l) => loaded.push(l),
            Err(e) => results.push(Outcome {
                file: t.clone(),
                line: e.downcast_ref::<FileProblems>().map_or(1, FileProblems::line),
                name: "(file)".into(),
                failures: vec![format!("{e:#}")],
                reached: Vec::new(),
                millis: 0,
                index: 0,
                actual: Vec::new(),
                failed_keys: Vec::new(),
            }),
        }
    }
    // Files in parallel, one worker per core.
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(loaded.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let collected = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(l) = loaded.get(i) else { break };
                    let r = run_file(l, &args.stories, args.filter.as_deref());
                    collected.lock().unwrap_or_else(|p| p.into_inner()).push((i, r));
                }
            });
        }
    });
    let mut by_file = collected.into_inner().unwrap_or_else(|p| p.into_inner());
    by_file.sort_by_key(|(i, _)| *i);
    if args.update {
        for (i, outcomes) in &mut by_file {
            let failing: Vec<&Outcome> = outcomes.iter().filter(|o| !o.failures.is_empty()).collect();
            if failing.is_empty() {
                continue;
            }
            let l = &loaded[*i];
            let n = update::update_file(&l.path, &l.file.cases, &failing)?;
            writeln!(err, "updated the expectations of {n} case(s) in {}", l.path.display())?;
            let reloaded = load(&l.path)?;
            *outcomes = run_file(&reloaded, &args.stories, args.filter.as_deref());
        }
    }
    results.extend(by_file.into_iter().flat_map(|(_, r)| r));

    let failed = results.iter().filter(|r| !r.failures.is_empty()).count();
    let passed = results.len() - failed;
    match args.format {
        TestFormat::Human => {
            for r in &results {
                if r.failures.is_empty() {
                    writeln!(out, "✓ {} › {}", r.file.display(), r.name)?;
                } else {
                    writeln!(
                        out,
                        "✗ {} › {} ({}:{})",
                        r.file.display(),
                        r.name,
                        r.file.display(),
                        r.line
                    )?;
                    for f in &r.failures {
                        for (n, line) in f.lines().enumerate() {
                            writeln!(out, "    {}{line}", if n == 0 { "- " } else { "" })?;
                        }
                    }
                }
            }
        }
        TestFormat::Json => {
            let doc = json!({
                "passed": passed,
                "failed": failed,
                "cases": results.iter().map(|r| json!({
                    "file": r.file.display().to_string(),
                    "line": r.line,
                    "name": r.name,
                    "passed": r.failures.is_empty(),
                    "failures": r.failures,
                    "millis": r.millis as u64,
                })).collect::<Vec<_>>(),
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        TestFormat::Github => {
            for r in results.iter().filter(|r| !r.failures.is_empty()) {
                let message = format!("{}: {}", r.name, r.failures.join("\n"))
                    .replace('%', "%25")
                    .replace('\r', "%0D")
                    .replace('\n', "%0A");
                writeln!(
                    out,
                    "::error file={},line={},title=tale test::{message}",
                    r.file.display(),
                    r.line
                )?;
            }
        }
        TestFormat::Junit => {
            writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
            writeln!(out, "<testsuites tests=\"{}\" failures=\"{failed}\">", results.len())?;
            for t in &tests {
                let cases: Vec<&Outcome> = results.iter().filter(|r| &r.file == t).collect();
                let fails = cases.iter().filter(|r| !r.failures.is_empty()).count();
                writeln!(
                    out,
                    "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{fails}\">",
                    xml(&t.display().to_string()),
                    cases.len()
                )?;
                for r in cases {
                    let secs = r.millis as f64 / 1000.0;
                    if r.failures.is_empty() {
                        writeln!(
                            out,
                            "    <testcase name=\"{}\" classname=\"{}\" time=\"{secs:.3}\"/>",
                            xml(&r.name),
                            xml(&t.display().to_string())
                        )?;
                    } else {
                        writeln!(
                            out,
                            "    <testcase name=\"{}\" classname=\"{}\" time=\"{secs:.3}\">",
                            xml(&r.name),
                            xml(&t.display().to_string())
                        )?;
                        writeln!(
                            out,
                            "      <failure message=\"{}\">{}</failure>",
                            xml(r.failures[0].lines().next().unwrap_or("")),
                            xml(&r.failures.join("\n"))
                        )?;
                        writeln!(out, "    </testcase>")?;
                    }
                }
                writeln!(out, "  </testsuite>")?;
            }
            writeln!(out, "</testsuites>")?;
        }
    }
    if args.coverage {
        coverage(&loaded, &results, &args.stories, err)?;
    }
    writeln!(err, "{passed} passed, {failed} failed")?;
    Ok(if failed == 0 {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

/// Actions and branches that no case reached, per story.
fn coverage(loaded: &[Loaded], results: &[Outcome], stories: &[PathBuf], err: &mut dyn Write) -> anyhow::Result<()> {
    for l in loaded {
        let story_file = story_path(&l.path, &l.file);
        let checked = check_story(l, stories);
        let Some(story) = checked.output.stories.first() else {
            continue;
        };
        let reached: Vec<&(String, Option<String>)> = results
            .iter()
            .filter(|r| r.file == l.path)
            .flat_map(|r| &r.reached)
            .collect();
        let mut missing = Vec::new();
        for a in &story.actions {
            let slug = &a.slug.value;
            if !reached.iter().any(|(s, _)| s == slug) {
                missing.push(slug.clone());
            }
            for b in a.config.as_ref().map_or(&[][..], |c| c.branches()) {
                let used = story.actions.iter().any(|x| {
                    x.sources
                        .iter()
                        .any(|s| &s.slug == slug && s.branch.as_deref() == Some(*b))
                });
                if used && !reached.iter().any(|(s, br)| s == slug && br.as_deref() == Some(*b)) {
                    missing.push(format!("{slug}.{b}"));
                }
            }
        }
        if missing.is_empty() {
            writeln!(
                err,
                "coverage {}: every action and branch reached",
                story_file.display()
            )?;
        } else {
            writeln!(
                err,
                "coverage {}: not reached: {}",
                story_file.display(),
                missing.join(", ")
            )?;
        }
    }
    Ok(())
}
