//! The store conformance suite: every backend of the durable store contract
//! (`DurableStore`) is held to the same behaviour — completion counting,
//! due times kept as data, cancellations, schedule ticks that fire once,
//! action state, waking the caller of a sub-story, crash counting and clean
//! restarts, recovery with input events. Runs on the memory backend and on
//! a real SQLite file, and on a real PostgreSQL database when a test server
//! is given.

use std::sync::Arc;

use serde_json::{Value as J, json};
use tale_engine::runtime::durable::{CLEAN_STOP, CallLink, DurableStore, PARKED, Transaction, WorkItem};
use tale_engine::runtime::event::{Event, RunId, new_id};
use tale_engine::runtime::memory::MemoryDurableStore;
use tale_engine::runtime::store::StatePut;
use tale_store::postgres::{PgStore, PgUrl};
use tale_store::sqlite::{SqliteStore, Sync};
use uuid::Uuid;

/// A fresh store of each backend, with what keeps it alive. PostgreSQL
/// joins when a test server is given (`support::postgres_server`).
async fn backends() -> Vec<(&'static str, Arc<dyn DurableStore>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = SqliteStore::open(&dir.path().join("conformance.db"), Sync::Normal).expect("sqlite");
    let mut all: Vec<(&'static str, Arc<dyn DurableStore>, Option<tempfile::TempDir>)> = vec![
        ("memory", Arc::new(MemoryDurableStore::new()), None),
        ("sqlite", sqlite, Some(dir)),
    ];
    if let Some(url) = crate::support::fresh_postgres().await {
        let url: PgUrl = url.parse().expect("a PostgreSQL URL");
        all.push((
            "postgres",
            PgStore::open(&url, Default::default()).await.expect("postgres"),
            None,
        ));
    }
    all
}

fn item(run: RunId, action: &str, due_ms: i64, input: Option<Arc<Event>>) -> WorkItem {
    WorkItem {
        id: new_id(),
        run_id: run,
        story: "s".into(),
        action: action.into(),
        input,
        wake: None,
        due_ms,
        attempts: 0,
        mark: false,
        holder: 0,
    }
}

fn event(run: RunId, action: &str, output: J) -> Arc<Event> {
    Arc::new(Event::new(run, "s".into(), action.into(), Vec::new(), output, 0))
}

/// A transaction starting `run` with `items`.
fn start(run: RunId, items: Vec<WorkItem>) -> Transaction {
    Transaction {
        started: vec![(run, "s".into(), 0)],
        items,
        ..Transaction::default()
    }
}

fn done(run: RunId, ids: &[Uuid]) -> Transaction {
    Transaction {
        done: ids.iter().map(|i| (*i, run)).collect(),
        ..Transaction::default()
    }
}

async fn apply(store: &Arc<dyn DurableStore>, tx: Transaction) -> tale_engine::runtime::durable::Applied {
    store.apply(tx, true).await.expect("apply")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_ends_when_its_last_item_is_done() {
    for (name, store, _keep) in backends().await {
        let run = RunId::new();
        let (a, b) = (item(run, "a", 0, None), item(run, "b", 0, None));
        let (ida, idb) = (a.id, b.id);
        let applied = apply(&store, start(run, vec![a, b])).await;
        assert!(applied.finished.is_empty(), "{name}: a run with work is not finished");
        let applied = apply(&store, done(run, &[ida])).await;
        assert!(applied.finished.is_empty(), "{name}: one item is left");
        let mut last = done(run, &[idb]);
        last.events.push(event(run, "b", json!({"n": 1})));
        let applied = apply(&store, last).await;
        assert_eq!(applied.finished, vec![(run, "s".to_owned(), true)], "{name}");
        assert_eq!(store.run_events(run).await.expect("events").len(), 1, "{name}");
    }
}

/// Many steps at once (a store may commit them together, as SQLite's
/// writer and PostgreSQL's committers do): each is applied as if alone,
/// each run ends once, with its events and its error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_applied_at_once_each_count_as_if_alone() {
    for (name, store, _keep) in backends().await {
        let runs: Vec<(RunId, WorkItem, WorkItem)> = (0..60)
            .map(|_| {
                let run = RunId::new();
                (run, item(run, "a", 0, None), item(run, "b", 0, None))
            })
            .collect();
        let starts = runs.iter().map(|(run, a, b)| {
            let mut tx = start(*run, vec![a.clone(), b.clone()]);
            tx.events.push(event(*run, "hook", json!({"run": run.to_string()})));
            apply(&store, tx)
        });
        for applied in futures_util::future::join_all(starts).await {
            assert!(applied.finished.is_empty(), "{name}: a run with work is not finished");
        }
        // Each run's two items finish in two separate steps, all at once;
        // every third run records an error on the way.
        let mut steps = Vec::new();
        for (i, (run, a, b)) in runs.iter().enumerate() {
            for (n, id) in [a.id, b.id].into_iter().enumerate() {
                let mut tx = done(*run, &[id]);
                tx.events.push(event(*run, if n == 0 { "a" } else { "b" }, json!(n)));
                if i % 3 == 0 && n == 0 {
                    tx.errors.push((*run, "a: it broke".into()));
                }
                steps.push(apply(&store, tx));
            }
        }
        let mut finished: Vec<(RunId, String, bool)> = futures_util::future::join_all(steps)
            .await
            .into_iter()
            .flat_map(|a| a.finished)
            .collect();
        finished.sort();
        let mut expected: Vec<(RunId, String, bool)> = runs
            .iter()
            .enumerate()
            .map(|(i, (run, _, _))| (*run, "s".to_owned(), i % 3 != 0))
            .collect();
        expected.sort();
        assert_eq!(
            finished, expected,
            "{name}: each run ends once, failed when it had an error"
        );
        for (run, _, _) in &runs {
            assert_eq!(store.run_events(*run).await.expect("events").len(), 3, "{name}");
        }
        assert!(store.recover().await.expect("recover").is_empty(), "{name}: items left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_fails_the_run_and_new_work_keeps_it_open() {
    for (name, store, _keep) in backends().await {
        let run = RunId::new();
        let a = item(run, "a", 0, None);
        let ida = a.id;
        apply(&store, start(run, vec![a])).await;
        // Done, but with new work in the same step: still running.
        let c = item(run, "c", 0, None);
        let idc = c.id;
        let mut step = done(run, &[ida]);
        step.items.push(c);
        step.errors.push((run, "a: boom".into()));
        assert!(apply(&store, step).await.finished.is_empty(), "{name}");
        let applied = apply(&store, done(run, &[idc])).await;
        assert_eq!(applied.finished, vec![(run, "s".to_owned(), false)], "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_times_are_data_and_parked_items_stay_in_the_store() {
    for (name, store, _keep) in backends().await {
        let run = RunId::new();
        let input = event(run, "hook", json!({"alert": 7}));
        let later = item(run, "delay", 1_900_000_000_000, Some(input.clone()));
        let parked = item(run, "call", PARKED, Some(input.clone()));
        let (later_id, parked_id) = (later.id, parked.id);
        let mut tx = start(run, vec![later, parked]);
        tx.events.push(input);
        apply(&store, tx).await;
        let recovered = store.recover().await.expect("recover");
        assert_eq!(recovered.len(), 1, "{name}: the parked caller is not recovered");
        assert_eq!(recovered[0].id, later_id, "{name}");
        assert_eq!(recovered[0].due_ms, 1_900_000_000_000, "{name}: the due time is kept");
        let input = recovered[0].input.as_ref().expect("the input event");
        assert_eq!(input.output(), &json!({"alert": 7}), "{name}");
        assert!(recovered.iter().all(|i| i.id != parked_id), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_item_ends_its_run() {
    for (name, store, _keep) in backends().await {
        let run = RunId::new();
        let window = item(run, "implode", 1_900_000_000_000, None);
        let window_id = window.id;
        apply(&store, start(run, vec![window])).await;
        // Another run's step cancels the window (an implode completed early).
        let other = RunId::new();
        let x = item(other, "x", 0, None);
        let idx = x.id;
        apply(&store, start(other, vec![x])).await;
        let mut step = done(other, &[idx]);
        step.cancelled.push(window_id);
        let mut finished = apply(&store, step).await.finished;
        finished.sort();
        let mut expected = vec![(run, "s".to_owned(), true), (other, "s".to_owned(), true)];
        expected.sort();
        assert_eq!(finished, expected, "{name}");
        assert!(store.recover().await.expect("recover").is_empty(), "{name}");
    }
}

/// A step that adds an item and cancels it leaves no such item: items go in
/// before the cancelled ones are taken out, on every backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_added_and_cancelled_in_one_step_is_not_kept() {
    for (name, store, _keep) in backends().await {
        let run = RunId::new();
        let first = item(run, "a", 0, None);
        let first_id = first.id;
        apply(&store, start(run, vec![first])).await;
        let later = item(run, "b", 1_900_000_000_000, None);
        let later_id = later.id;
        let mut step = done(run, &[first_id]);
        step.items.push(later);
        step.cancelled.push(later_id);
        apply(&store, step).await;
        assert!(store.recover().await.expect("recover").is_empty(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_tick_fires_once() {
    for (name, store, _keep) in backends().await {
        let key = "s/tick".to_owned();
        let first = RunId::new();
        let mut tx = start(first, vec![item(first, "tick", 0, None)]);
        tx.tick = Some((key.clone(), 100));
        assert!(apply(&store, tx).await.fired, "{name}");
        // The same tick again (another node, a restart): nothing is written.
        let again = RunId::new();
        let mut tx = start(again, vec![item(again, "tick", 0, None)]);
        tx.tick = Some((key.clone(), 100));
        assert!(!apply(&store, tx).await.fired, "{name}");
        assert!(
            store
                .recover()
                .await
                .expect("recover")
                .iter()
                .all(|i| i.run_id != again),
            "{name}: the refused tick left work"
        );
        let next = RunId::new();
        let mut tx = start(next, vec![item(next, "tick", 0, None)]);
        tx.tick = Some((key.clone(), 200));
        assert!(apply(&store, tx).await.fired, "{name}");
        assert_eq!(store.last_tick(&key).await.expect("last tick"), Some(200), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_state_is_set_pushed_and_deleted_with_the_step() {
    for (name, store, _keep) in backends().await {
        let tx = Transaction {
            state: vec![
                StatePut::set("s/dedup/seen", json!(["a"])),
                StatePut::push("s/implode/g", json!(1)),
                StatePut::push("s/implode/g", json!(2)),
                StatePut::push("s/implode/lists", json!([1])),
            ],
            ..Transaction::default()
        };
        apply(&store, tx).await;
        assert_eq!(
            store.state("s/dedup/seen").await.expect("state"),
            Some(json!(["a"])),
            "{name}"
        );
        assert_eq!(
            store.state_list("s/implode/g").await.expect("list"),
            vec![json!(1), json!(2)],
            "{name}"
        );
        // The same list as one JSON text (what an implode of a million
        // items is joined from), and through an overlay of pushes not yet
        // committed.
        let text = store.state_list_text("s/implode/g").await.expect("text");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).ok(),
            Some(json!([1, 2])),
            "{name}"
        );
        assert_eq!(
            store.state_list_text("s/none").await.expect("text").trim(),
            "[]",
            "{name}"
        );
        let base: Arc<dyn tale_engine::runtime::store::StateStore> = store.clone();
        use tale_engine::runtime::store::StateStore as _;
        let overlay = tale_engine::runtime::store::Overlay::new(base);
        overlay.apply(&[
            StatePut::push("s/implode/g", json!({"x": "y"})),
            StatePut::push("s/new", json!(3)),
        ]);
        let text = overlay.state_list_text("s/implode/g").await.expect("text");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).ok(),
            Some(json!([1, 2, {"x": "y"}])),
            "{name}"
        );
        // Items that are lists: one bracket off each end, not all of them.
        overlay.apply(&[StatePut::push("s/implode/lists", json!([2]))]);
        let text = overlay.state_list_text("s/implode/lists").await.expect("text");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).ok(),
            Some(json!([[1], [2]])),
            "{name}"
        );
        let text = overlay.state_list_text("s/new").await.expect("text");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).ok(),
            Some(json!([3])),
            "{name}"
        );
        let tx = Transaction {
            state: vec![StatePut::delete("s/dedup/seen"), StatePut::delete("s/implode/g")],
            ..Transaction::default()
        };
        apply(&store, tx).await;
        assert_eq!(store.state("s/dedup/seen").await.expect("state"), None, "{name}");
        assert!(
            store.state_list("s/implode/g").await.expect("list").is_empty(),
            "{name}"
        );
    }
}

/// A parent run whose caller item is parked on a child run; the child's
/// one item is returned.
async fn call(store: &Arc<dyn DurableStore>) -> (RunId, RunId, Uuid, Uuid) {
    let parent = RunId::new();
    let hook = item(parent, "hook", 0, None);
    let hook_id = hook.id;
    apply(store, start(parent, vec![hook])).await;
    let caller = item(parent, "call", PARKED, None);
    let caller_id = caller.id;
    let child = RunId::new();
    let work = item(child, "work", 0, None);
    let work_id = work.id;
    let mut step = done(parent, &[hook_id]);
    step.started.push((child, "s".into(), 0));
    step.items = vec![caller, work];
    step.calls.push(CallLink {
        child,
        parent,
        parent_event: None,
        caller_item: caller_id,
        depth: 1,
    });
    let applied = apply(store, step).await;
    assert!(applied.finished.is_empty());
    (parent, child, caller_id, work_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_storys_first_exit_wakes_its_caller_once() {
    for (name, store, _keep) in backends().await {
        let (_parent, child, caller, work) = call(&store).await;
        let exit = event(child, "work", json!({"verdict": "malicious"}));
        let mut step = done(child, &[work]);
        step.exits.push((child, exit.id));
        step.events.push(exit);
        let applied = apply(&store, step).await;
        assert_eq!(applied.woken.len(), 1, "{name}");
        let woken = &applied.woken[0];
        assert_eq!(woken.id, caller, "{name}");
        assert_eq!(woken.due_ms, 0, "{name}: due now");
        let called = &woken.wake.as_ref().expect("wake")["called"];
        assert_eq!(called["output"], json!({"verdict": "malicious"}), "{name}");
        assert_eq!(called["run_id"], json!(child.to_string()), "{name}");
        assert_eq!(applied.finished, vec![(child, "s".to_owned(), true)], "{name}");
        // The woken caller is ordinary work now: recovered like any item.
        assert!(
            store.recover().await.expect("recover").iter().any(|i| i.id == caller),
            "{name}"
        );
        // A second exit (a later branch of the child) wakes nobody.
        let second = event(child, "other_exit", json!({"verdict": "benign"}));
        let step = Transaction {
            exits: vec![(child, second.id)],
            events: vec![second],
            ..Transaction::default()
        };
        assert!(apply(&store, step).await.woken.is_empty(), "{name}: woken twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_story_that_ends_without_an_exit_wakes_its_caller_with_its_errors() {
    for (name, store, _keep) in backends().await {
        let (parent, child, caller, work) = call(&store).await;
        let mut step = done(child, &[work]);
        step.errors.push((child, "work: the API answered 500".into()));
        let applied = apply(&store, step).await;
        assert_eq!(applied.finished, vec![(child, "s".to_owned(), false)], "{name}");
        assert_eq!(applied.woken.len(), 1, "{name}");
        let called = &applied.woken[0].wake.as_ref().expect("wake")["called"];
        assert_eq!(called["output"], J::Null, "{name}");
        assert!(called["errors"].to_string().contains("500"), "{name}: {called}");
        // The parent ends once its woken caller is done.
        let applied = apply(&store, done(parent, &[caller])).await;
        assert_eq!(applied.finished, vec![(parent, "s".to_owned(), true)], "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_starts_are_counted_and_a_clean_stop_forgets_them() {
    for (name, store, _keep) in backends().await {
        let run = RunId::new();
        let a = item(run, "a", 0, None);
        let ida = a.id;
        apply(&store, start(run, vec![a])).await;
        store.mark_started(ida).await.expect("mark");
        store.mark_started(ida).await.expect("mark");
        assert_eq!(store.recover().await.expect("recover")[0].attempts, 2, "{name}");
        assert!(
            !store.clean_restart().await.expect("clean"),
            "{name}: no clean stop was recorded"
        );
        let tx = Transaction {
            state: vec![StatePut::set(CLEAN_STOP, json!(true))],
            ..Transaction::default()
        };
        apply(&store, tx).await;
        assert!(store.clean_restart().await.expect("clean"), "{name}");
        assert_eq!(
            store.recover().await.expect("recover")[0].attempts,
            0,
            "{name}: counts forgotten"
        );
        assert!(
            !store.clean_restart().await.expect("clean"),
            "{name}: the marker is used once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_write_is_refused_whole_and_not_worth_retrying() {
    for (name, store, _keep) in backends().await {
        let run = RunId::new();
        let a = item(run, "a", 0, None);
        let ida = a.id;
        apply(&store, start(run, vec![a])).await;
        // The same run started again (a step applied twice): refused, and
        // nothing of it is written.
        let mut again = start(run, vec![item(run, "b", 0, None)]);
        again.state.push(StatePut::set("s/x", json!(1)));
        let err = store.apply(again, true).await.expect_err("a conflict");
        assert!(
            matches!(err, tale_engine::runtime::store::StoreError::Conflict(_)),
            "{name}: {err:?}"
        );
        assert!(!err.is_retryable(), "{name}");
        assert_eq!(store.state("s/x").await.expect("state"), None, "{name}: half applied");
        let recovered = store.recover().await.expect("recover");
        assert_eq!(recovered.len(), 1, "{name}");
        assert_eq!(recovered[0].id, ida, "{name}");
    }
}
