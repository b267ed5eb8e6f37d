//! `tale record STORY --run RUN --db URL`: a run `tale serve` stored,
//! turned into a story test case, so that a production incident becomes a
//! regression test in one command. The case gets the run's input event
//! (or, for a run started by a schedule or by hand, its `action`), a mock
//! per request with the answer its stored trace and event tell (every
//! attempt in turn), and the run's outputs as `expect`. What the database
//! holds is redacted already; the case goes through the story's redactor
//! again anyway.

use std::io::Write;

use anyhow::{Context, bail};
use serde_json::{Map, Value as J, json};
use tale_engine::runtime::event::RunId;
use tale_engine::runtime::runlog::RunLog;
use tale_engine::runtime::trace::StepTrace;

use super::{RecordArgs, case_name};
use crate::ExitStatus;
use crate::commands::inspect::{block_on, open};

/// How deep the runs of `send_to_story` calls are followed for mocks.
const CALL_DEPTH: usize = 8;
/// What a network error is replayed as: a delay beyond the default
/// request timeout (30 s), so that the request times out again.
const NETWORK_ERROR_DELAY_SECS: f64 = 31.0;

/// A stored run and the runs it called: (events, traces) of each.
type Stored = Vec<(Vec<J>, Vec<StepTrace>)>;

async fn read(log: &dyn RunLog, run: RunId, depth: usize, out: &mut Stored) -> anyhow::Result<()> {
    let (events, traces, children) = (
        log.events_json(run).await?,
        log.traces(run).await?,
        log.called_by(run).await?,
    );
    out.push((events, traces));
    if depth < CALL_DEPTH {
        for child in children {
            if let Ok(id) = child.id.parse::<RunId>() {
                Box::pin(read(log, id, depth + 1, out)).await?;
            }
        }
    }
    Ok(())
}

pub(super) fn record(
    args: &RecordArgs,
    run: RunId,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitStatus> {
    let db = args
        .run
        .db
        .as_deref()
        .context("--run reads a database: give it with --db")?;
    // The story as it is now: where the case goes, which credentials and
    // resources it names. Stand-ins for credentials: nothing is sent.
    let Some((story, _, _)) = crate::commands::run::prepare(&args.run, true, err)? else {
        return Ok(ExitStatus::Failure);
    };
    let (row, stored) = block_on(async {
        let log = open(db).await?;
        let row = log.run(run).await?;
        let mut stored = Stored::new();
        if row.is_some() {
            read(&*log, run, 0, &mut stored).await?;
        }
        anyhow::Ok((row, stored))
    })??;
    let Some(row) = row else {
        bail!("no run {run} in {db}");
    };
    if row.story != *story.id {
        bail!(
            "run {run} is a run of story `{}`, not of `{}` ({})",
            row.story,
            story.id,
            args.run.input.story.display()
        );
    }
    let Some((events, traces)) = stored.first() else {
        bail!("no run {run} in {db}");
    };
    let Some(root) = events.first() else {
        bail!("run {run} has no stored event (its events were pruned?)");
    };
    let mut case = Map::new();
    case.insert("name".into(), json!(case_name(args)));
    let root_action = root["action"].as_str().unwrap_or_default();
    let first_start = traces.first().filter(|t| t.input.is_none());
    let event_text;
    match story.action(root_action) {
        Some(i) if story.actions[i].is_webhook => {
            // The request body is what a case delivers to the webhook.
            let body = root["output"]["body"].clone();
            event_text = body.to_string();
            case.insert("event".into(), body);
        }
        _ => match first_start {
            Some(start)
                if story
                    .action(&start.action)
                    .is_some_and(|i| story.starts_without_event(i)) =>
            {
                event_text = String::new();
                case.insert("action".into(), json!(&*start.action));
            }
            _ => bail!(
                "run {run} did not start at a webhook, a schedule or by hand (a re-emit of `{root_action}`?): it has no input to replay"
            ),
        },
    }
    let mut mocks = Vec::new();
    let mut paged = false;
    for (events, traces) in &stored {
        for t in traces {
            paged |= mocks_of(t, events, &mut mocks);
        }
    }
    let untraced = traces.is_empty()
        && events.iter().any(|e| {
            story
                .action(e["action"].as_str().unwrap_or_default())
                .is_some_and(|i| story.actions[i].type_name == "http_request")
        });
    if untraced {
        writeln!(
            err,
            "warning: run {run} has no stored traces (served with --no-traces, or before traces): its requests cannot be mocked"
        )?;
    }
    if paged {
        writeln!(
            err,
            "warning: a request followed pages: the pages' bodies are not stored (the merged output is); edit their mocks"
        )?;
    }
    // The webhook request's headers (host, length, client) differ from the
    // case's: outputs that carry them are expected without them.
    let headers = root["output"]["headers"].clone();
    let mut expect = Map::new();
    for e in events.iter().skip(1) {
        let key = super::super::test::output_key(e["action"].as_str().unwrap_or_default(), e["branch"].as_str());
        let list = expect.entry(key).or_insert_with(|| J::Array(Vec::new()));
        if let J::Array(l) = list {
            let stable = super::super::test::without_run_ids(&e["output"], &event_text);
            l.push(without(&stable, &headers));
        }
    }
    let n_mocks = mocks.len();
    case.insert("mocks".into(), J::Array(mocks));
    case.insert("expect".into(), J::Object(expect));
    let path = super::save_case(args, &story, case)?;
    writeln!(
        out,
        "recorded run {run} ({}, {} mock(s), {} event(s)) as a case of {}",
        row.status,
        n_mocks,
        events.len(),
        path.display()
    )?;
    if row.status == tale_engine::runtime::runlog::RunState::Failed {
        writeln!(
            err,
            "note: the run failed; the case replays it and fails the same way until the story handles it"
        )?;
    }
    Ok(ExitStatus::Success)
}

/// `value` without any member equal to `part` (expectations are subsets).
fn without(value: &J, part: &J) -> J {
    match value {
        J::Object(o) if part.is_object() => J::Object(
            o.iter()
                .filter(|(_, v)| *v != part)
                .map(|(k, v)| (k.clone(), without(v, part)))
                .collect(),
        ),
        J::Array(a) => J::Array(a.iter().map(|v| without(v, part)).collect()),
        other => other.clone(),
    }
}

/// The mocks of one execution's requests, pushed to `mocks`: one per URL,
/// its attempts answered in turn, the last with the stored response (the
/// event the execution emitted). True when the execution followed pages.
fn mocks_of(t: &StepTrace, events: &[J], mocks: &mut Vec<J>) -> bool {
    let detail: Vec<J> = t
        .detail
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default();
    let attempts: Vec<&J> = detail.iter().filter(|d| d["method"].is_string()).collect();
    if attempts.is_empty() {
        return false;
    }
    let input = t.input.map(|i| i.to_string());
    let emitted = events.iter().find(|e| {
        e["action"].as_str() == Some(&*t.action)
            && match &input {
                Some(id) => e["parent_ids"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|x| x.as_str() == Some(id))),
                None => e["parent_ids"].as_array().is_none_or(Vec::is_empty),
            }
    });
    // Requests by URL, in the order they were first made.
    let mut urls: Vec<(&str, &str, Vec<&J>)> = Vec::new();
    for a in &attempts {
        let (method, url) = (
            a["method"].as_str().unwrap_or("GET"),
            a["url"].as_str().unwrap_or_default(),
        );
        match urls.iter_mut().find(|(m, u, _)| *m == method && *u == url) {
            Some((_, _, list)) => list.push(a),
            None => urls.push((method, url, vec![a])),
        }
    }
    let paged = urls.len() > 1;
    let last_url = urls.len().saturating_sub(1);
    for (i, (method, url, tries)) in urls.iter().enumerate() {
        let answer = |a: &J, last: bool| -> J {
            let mut m = Map::new();
            match a["status"].as_u64() {
                Some(status) => {
                    m.insert("status".into(), json!(status));
                    // The stored response is the execution's output: its last request's.
                    if last
                        && i == last_url
                        && let Some(e) = emitted
                    {
                        let out = &e["output"];
                        if out["headers"].is_object() {
                            m.insert("headers".into(), out["headers"].clone());
                        }
                        m.insert("body".into(), out["body"].clone());
                    }
                }
                None => {
                    m.insert("delay_secs".into(), json!(NETWORK_ERROR_DELAY_SECS));
                }
            }
            J::Object(m)
        };
        let mut mock = Map::new();
        mock.insert("method".into(), json!(method));
        mock.insert("url".into(), json!(url));
        if tries.len() == 1 {
            if let J::Object(a) = answer(tries[0], true) {
                mock.extend(a);
            }
        } else {
            let n = tries.len();
            let responses: Vec<J> = tries.iter().enumerate().map(|(k, a)| answer(a, k + 1 == n)).collect();
            mock.insert("responses".into(), J::Array(responses));
        }
        mocks.push(J::Object(mock));
    }
    paged
}
