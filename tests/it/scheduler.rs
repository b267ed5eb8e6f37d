//! The one executor's timers, without sockets: on the virtual clock of dry
//! runs and tests (timers fire in due order when nothing else runs) and on
//! a manual clock moved by the test, as time passes under `tale serve`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value as J, json};
use tale_engine::check::{CheckOptions, SourceFile, check};
use tale_engine::runtime::build::{BuiltStory, build};
use tale_engine::runtime::clock::{Clock, ManualClock, VirtualClock};
use tale_engine::runtime::durable::{Applied, Delivery, Durable, DurableStore, Loaded, Transaction, WorkItem};
use tale_engine::runtime::event::{Event, RunId};
use tale_engine::runtime::exec::{Runtime, WebhookRequest};
use tale_engine::runtime::http::MockHttp;
use tale_engine::runtime::mail::NoMailer;
use tale_engine::runtime::memory::MemoryDurableStore;
use tale_engine::runtime::redact::Redactor;
use tale_engine::runtime::scope::Globals;
use tale_engine::runtime::store::StoreError;
use tale_engine::template::TemplateParser;

const START: i64 = 1_800_000_000_000;

fn built(yaml: &str) -> Arc<BuiltStory> {
    let files = [SourceFile::new("s.yaml", yaml)];
    let checked = check(&files, &[], &tale_actions::Registry, &CheckOptions::default());
    assert_eq!(checked.errors(), 0, "{:?}", checked.diagnostics);
    let parser = TemplateParser::new();
    Arc::new(build(&checked.stories[0], &parser, Globals::default()).expect("builds"))
}

fn request(story: &BuiltStory, body: J) -> WebhookRequest {
    let entry = story.default_entry().expect("entry");
    WebhookRequest {
        method: "post".into(),
        path: story.actions[entry].webhook_path.clone().unwrap_or_default(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
        trusted: true,
        ..WebhookRequest::default()
    }
}

const DELAYS: &str = r#"
actions:
  hook: {type: webhook, path: d, secret: s}
  slow:
    type: transform
    mode: delay
    from: hook
    seconds: 60
  fast:
    type: transform
    mode: delay
    from: hook
    seconds: 10
  after_slow: {type: transform, mode: message_only, from: slow, payload: {which: slow}}
  after_fast: {type: transform, mode: message_only, from: fast, payload: {which: fast}}
"#;

#[tokio::test]
async fn virtual_time_fires_timers_in_due_order() {
    let story = built(DELAYS);
    let clock = Arc::new(VirtualClock::new(START));
    let runtime = Runtime::contained(Arc::new(MockHttp::default()), Arc::new(NoMailer), clock.clone());
    let entry = story.default_entry().expect("entry");
    let report = runtime
        .run_webhook(story.clone(), entry, request(&story, json!({})))
        .await
        .expect("runs");
    let order: Vec<(&str, i64)> = report
        .events
        .iter()
        .filter(|e| e.action.starts_with("after_"))
        .map(|e| (&*e.action, e.created_at - START))
        .collect();
    assert_eq!(order, [("after_fast", 10_000), ("after_slow", 60_000)]);
    // The clock moved only as far as the last timer.
    assert_eq!(clock.now_ms(), START + 60_000);
}

/// The executor of `tale serve` on a manual clock: nothing fires before
/// its time, everything fires once it is reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_wait_for_the_clock_under_serve() {
    let story = built(DELAYS);
    let clock = Arc::new(ManualClock::new(START));
    let store = Arc::new(MemoryDurableStore::new());
    let mut runtime = Runtime::contained(Arc::new(MockHttp::default()), Arc::new(NoMailer), clock.clone());
    runtime.store = store.clone();
    runtime.max_in_flight = 4;
    runtime.library = Arc::new([(story.id.to_string(), story.clone())].into_iter().collect());
    let durable = Durable::start(
        Loaded::new(runtime, Arc::new(Redactor::default())),
        store.clone(),
        4,
        1_000,
        None,
    );
    let entry = story.default_entry().expect("entry");
    let run = match durable
        .deliver_to(story.clone(), entry, request(&story, json!({})))
        .await
    {
        Ok(Delivery::Started { run_id, .. }) => run_id,
        other => panic!("not started: {other:?}"),
    };
    let fired = |slug: &'static str| {
        let store = store.clone();
        move || store.events(run).iter().any(|e| &*e.action == slug)
    };
    let settle = || async {
        for _ in 0..200 {
            if durable.queue_depth() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    settle().await;
    assert_eq!(durable.waiting(), 2, "both delays wait");
    assert!(!fired("after_fast")() && !fired("after_slow")());
    clock.advance(Duration::from_secs(9));
    settle().await;
    assert!(!fired("after_fast")(), "fired early");
    clock.advance(Duration::from_secs(1));
    wait_for(fired("after_fast")).await;
    assert!(!fired("after_slow")(), "the slow delay fired with the fast one");
    clock.advance(Duration::from_secs(50));
    wait_for(fired("after_slow")).await;
    wait_for(|| store.run_status(run) == Some(tale_engine::runtime::memory::RunStatus::Succeeded)).await;
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out");
}

/// An implode whose list never completes closes when its window does.
#[tokio::test]
async fn an_implode_window_closes_at_its_time_on_the_virtual_clock() {
    let story = built(
        r#"
actions:
  hook: {type: webhook, path: i, secret: s}
  each: {type: transform, mode: explode, from: hook, path: "{{ hook.body.items | as_object }}", to: item}
  keep:
    type: trigger
    from: each
    rules: [{type: field==value, path: "{{ each.item }}", value: keep}]
  collect:
    type: transform
    mode: implode
    from: keep
    guid_path: "{{ each.guid }}"
    size_path: "{{ each.size }}"
    item_path: "{{ each.item }}"
    seconds: 30
"#,
    );
    let clock = Arc::new(VirtualClock::new(START));
    let runtime = Runtime::contained(Arc::new(MockHttp::default()), Arc::new(NoMailer), clock.clone());
    let entry = story.default_entry().expect("entry");
    let report = runtime
        .run_webhook(
            story.clone(),
            entry,
            request(&story, json!({"items": ["keep", "drop", "keep"]})),
        )
        .await
        .expect("runs");
    let collected: Vec<(&J, i64)> = report
        .events
        .iter()
        .filter(|e| &*e.action == "collect")
        .map(|e| (e.output(), e.created_at - START))
        .collect();
    assert_eq!(collected, [(&json!(["keep", "keep"]), 30_000)]);
}

/// The executor redacts what a step writes before any store sees it: a
/// backend stores what it is given (here the memory store), while the
/// actions after the step still read the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_redacted_before_the_store() {
    let story = built(
        r#"
actions:
  hook: {type: webhook, path: r, secret: s}
  echo: {type: transform, mode: message_only, from: hook, payload: {token: "{{ hook.body.token }}"}}
  length: {type: transform, mode: message_only, from: echo, payload: {n: "{{ echo.token | size }}"}}
"#,
    );
    let clock = Arc::new(VirtualClock::new(START));
    let store = Arc::new(MemoryDurableStore::new());
    let mut runtime = Runtime::contained(Arc::new(MockHttp::default()), Arc::new(NoMailer), clock);
    runtime.store = store.clone();
    runtime.library = Arc::new([(story.id.to_string(), story.clone())].into_iter().collect());
    let redactor = Arc::new(Redactor::from_pairs([("graph", "tok-9f8e7d6c5b4a")]));
    let durable = Durable::start(Loaded::new(runtime, redactor), store.clone(), 1, 1_000, None);
    let entry = story.default_entry().expect("entry");
    let body = json!({"token": "tok-9f8e7d6c5b4a"});
    let run = match durable.deliver_to(story.clone(), entry, request(&story, body)).await {
        Ok(Delivery::Started { run_id, .. }) => run_id,
        other => panic!("not started: {other:?}"),
    };
    wait_for(|| store.run_status(run) == Some(tale_engine::runtime::memory::RunStatus::Succeeded)).await;
    let stored: Vec<J> = store.events(run).iter().map(|e| e.output().clone()).collect();
    let text = serde_json::to_string(&stored).expect("json");
    assert!(
        !text.contains("tok-9f8e7d6c5b4a"),
        "the store was given the value: {text}"
    );
    assert!(text.contains("[credential:graph]"), "{text}");
    // The next action read the real value (16 characters), not the placeholder.
    let length = stored.iter().find(|o| o.get("n").is_some()).expect("length");
    assert_eq!(length["n"], json!("16"), "{stored:?}");
}

/// A store whose commits wait at a gate the test opens.
struct Gated {
    inner: Arc<MemoryDurableStore>,
    gate: Arc<tokio::sync::Semaphore>,
    /// The runs started through it.
    started: Arc<std::sync::Mutex<Vec<RunId>>>,
}

impl tale_engine::runtime::store::StateStore for Gated {
    fn state<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<J>, StoreError>> {
        self.inner.state(key)
    }
    fn state_list<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<J>, StoreError>> {
        self.inner.state_list(key)
    }
}

impl DurableStore for Gated {
    fn apply(&self, tx: Transaction, wait: bool) -> BoxFuture<'static, Result<Applied, StoreError>> {
        let (inner, gate) = (self.inner.clone(), self.gate.clone());
        let started = self.started.clone();
        Box::pin(async move {
            gate.acquire()
                .await
                .map_err(|e| StoreError::Failed(e.to_string()))?
                .forget();
            let runs: Vec<RunId> = tx.started.iter().map(|(run, _, _)| *run).collect();
            let applied = inner.apply(tx, wait).await;
            started.lock().expect("runs").extend(runs);
            applied
        })
    }
    fn mark_started(&self, item: uuid::Uuid) -> BoxFuture<'static, Result<(), StoreError>> {
        self.inner.mark_started(item)
    }
    fn clean_restart(&self) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.inner.clean_restart()
    }
    fn recover(&self) -> BoxFuture<'_, Result<Vec<WorkItem>, StoreError>> {
        self.inner.recover()
    }
    fn last_tick<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<i64>, StoreError>> {
        self.inner.last_tick(key)
    }
    fn run_events(&self, run: RunId) -> BoxFuture<'_, Result<Vec<Arc<Event>>, StoreError>> {
        self.inner.run_events(run)
    }
}

/// A webhook whose caller goes away while its step is being committed (a
/// client that hung up): the step still commits, and the work it stored
/// still runs, without waiting for a restart.
#[tokio::test]
async fn a_caller_gone_mid_commit_leaves_no_work_unstarted() {
    let story = built(
        r#"
actions:
  hook: {type: webhook, path: g, secret: s}
  post: {type: http_request, from: hook, method: post, url: "http://127.0.0.1:9/x", payload: {n: 1}}
"#,
    );
    let clock = Arc::new(VirtualClock::new(START));
    let inner = Arc::new(MemoryDurableStore::new());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = Arc::new(Gated {
        inner: inner.clone(),
        gate: gate.clone(),
        started: started.clone(),
    });
    let mut runtime = Runtime::contained(Arc::new(MockHttp::default()), Arc::new(NoMailer), clock);
    runtime.store = inner.clone();
    runtime.library = Arc::new([(story.id.to_string(), story.clone())].into_iter().collect());
    let durable = Durable::start(
        Loaded::new(runtime, Arc::new(Redactor::default())),
        store,
        2,
        1_000,
        None,
    );
    let entry = story.default_entry().expect("entry");
    let delivered = tokio::time::timeout(
        Duration::from_millis(100),
        durable.deliver_to(story.clone(), entry, request(&story, json!({}))),
    )
    .await;
    assert!(delivered.is_err(), "answered before the store did: {delivered:?}");
    // The caller is gone; the store now takes the step, and the next.
    gate.add_permits(1_000);
    let run = || started.lock().expect("runs").first().copied();
    wait_for(|| run().is_some()).await;
    let run = run().expect("a run");
    wait_for(|| inner.run_status(run) == Some(tale_engine::runtime::memory::RunStatus::Succeeded)).await;
    assert!(
        inner.events(run).iter().any(|e| &*e.action == "post"),
        "the request did not run"
    );
}
