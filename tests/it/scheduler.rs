//! The one executor's timers, without sockets: on the virtual clock of dry
//! runs and tests (timers fire in due order when nothing else runs) and on
//! a manual clock moved by the test, as time passes under `tale serve`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value as J, json};
use tale_engine::check::{CheckOptions, SourceFile, check};
use tale_engine::runtime::build::{BuiltStory, build};
use tale_engine::runtime::clock::{Clock, ManualClock, VirtualClock};
use tale_engine::runtime::durable::{Delivery, Durable, Loaded};
use tale_engine::runtime::exec::{Runtime, WebhookRequest};
use tale_engine::runtime::http::MockHttp;
use tale_engine::runtime::mail::NoMailer;
use tale_engine::runtime::memory::MemoryDurableStore;
use tale_engine::runtime::redact::Redactor;
use tale_engine::runtime::scope::Globals;
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
