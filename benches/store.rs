//! The durable store's cost per W1 event, without HTTP: the two steps
//! `tale serve` commits for webhook → transform → http_request (the run
//! with the webhook's and the transform's events, their traces and the
//! request's item; then the item done with the response's event and
//! trace), applied by 32 callers at once as 32 webhook connections do.
//! Prints events/s and the process's CPU per event on the SQLite backend
//! and, as the baseline measured in the same run, on the memory backend
//! (what the engine's side of the contract costs with no database).
//!
//!     cargo bench --bench store [-- EVENTS]

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tale_engine::runtime::durable::{DurableStore, Transaction, WorkItem};
use tale_engine::runtime::event::{Event, RunId, new_id};
use tale_engine::runtime::memory::MemoryDurableStore;
use tale_engine::runtime::trace::{StepStatus, StepTrace};
use tale_store::sqlite::{SqliteStore, Sync, WRITER_THREAD};

/// Concurrent callers, as the harness's 32 connections.
const CALLERS: usize = 32;

/// User and system CPU seconds in a `/proc/…/stat` file (fields 14 and
/// 15, in clock ticks: 100 per second on Linux).
fn stat_cpu_seconds(stat: &std::path::Path) -> f64 {
    let stat = std::fs::read_to_string(stat).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn cpu_seconds() -> f64 {
    stat_cpu_seconds("/proc/self/stat".as_ref())
}

/// CPU seconds of this process's threads named `name` (`/proc` keeps the
/// first 15 characters of a thread's name).
fn thread_cpu_seconds(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| name.starts_with(c.trim()) && !c.trim().is_empty())
        })
        .map(|t| stat_cpu_seconds(&t.path().join("stat")))
        .sum()
}

fn trace(run: RunId, action: &str, input: Option<&Arc<Event>>, at: i64) -> StepTrace {
    StepTrace {
        run_id: run,
        action: action.into(),
        input: input.map(|e| e.id),
        at_ms: at,
        duration_us: 40,
        status: StepStatus::Succeeded,
        branch: None,
        emitted: 1,
        error: None,
        detail: None,
    }
}

/// One W1 event's two steps, as the engine hands them to the store.
async fn w1_event(store: &Arc<dyn DurableStore>, n: usize) {
    let story: Arc<str> = "bench-w1".into();
    let run = RunId::new();
    let at = 1_800_000_000_000 + n as i64;
    let hook = Arc::new(Event::new(
        run,
        story.clone(),
        "alert".into(),
        Vec::new(),
        json!({"body": {"id": n, "severity": "high", "title": "Impossible travel", "tenant": "contoso",
                        "sent_us": 1_800_000_000_000_000i64 + n as i64,
                        "entities": [{"type": "account", "value": "alice@contoso.com"}]},
               "headers": {"content-type": "application/json"}, "method": "post"}),
        at,
    ));
    let shaped = Arc::new(Event::new(
        run,
        story.clone(),
        "shape".into(),
        vec![hook.clone()],
        json!({"alert_id": n, "sev": "HIGH", "summary": "Impossible travel on alice@contoso.com",
               "tenant": "contoso", "sent_us": 1_800_000_000_000_000i64 + n as i64}),
        at,
    ));
    let forward = WorkItem {
        id: new_id(),
        run_id: run,
        story: story.clone(),
        action: "forward".into(),
        input: Some(shaped.clone()),
        wake: None,
        due_ms: 0,
        attempts: 0,
        mark: false,
        holder: 0,
    };
    let forward_id = forward.id;
    let first = Transaction {
        started: vec![(run, story.clone(), at)],
        traces: vec![trace(run, "alert", None, at), trace(run, "shape", Some(&hook), at)],
        events: vec![hook, shaped.clone()],
        items: vec![forward],
        ..Transaction::default()
    };
    store.apply(first, true).await.expect("the webhook's step");
    let answered = Arc::new(Event::new(
        run,
        story.clone(),
        "forward".into(),
        vec![shaped.clone()],
        json!({"status": 200, "headers": {"content-type": "application/json"}, "body": {"ok": true}}),
        at,
    ));
    let second = Transaction {
        done: vec![(forward_id, run)],
        traces: vec![trace(run, "forward", Some(&shaped), at)],
        events: vec![answered],
        ..Transaction::default()
    };
    store.apply(second, true).await.expect("the request's step");
}

/// What applying W1 events measured.
struct Measured {
    per_second: f64,
    /// The whole process's CPU per event, µs.
    cpu_us: f64,
    /// The SQLite writer thread's CPU per event, µs (0 on the memory backend).
    writer_us: f64,
    /// How busy that thread was.
    writer_busy: f64,
}

/// Applies `events` W1 events through `CALLERS` callers.
async fn measure(store: Arc<dyn DurableStore>, events: usize) -> Measured {
    let (cpu, writer, wall) = (cpu_seconds(), thread_cpu_seconds(WRITER_THREAD), Instant::now());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (store, next) = (store.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= events {
                        break;
                    }
                    w1_event(&store, n).await;
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.expect("a caller");
    }
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    Measured {
        per_second: events as f64 / wall,
        cpu_us: cpu * 1e6 / events as f64,
        writer_us: (thread_cpu_seconds(WRITER_THREAD) - writer) * 1e6 / events as f64,
        writer_busy: (thread_cpu_seconds(WRITER_THREAD) - writer) / wall,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a number is how many events.
    let events = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let memory: Arc<dyn DurableStore> = Arc::new(MemoryDurableStore::new());
        let memory = measure(memory, events).await;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let sqlite = SqliteStore::open(&dir.path().join("bench.db"), Sync::Normal).expect("a SQLite store");
        // Warm-up: the first pages of every table and index, and the WAL.
        measure(sqlite.clone(), events / 10).await;
        let sqlite = measure(sqlite, events).await;
        println!("store/w1 ({events} events, {CALLERS} callers)");
        println!(
            "  memory (baseline) {:>9.0} events/s  {:>6.1} µs CPU/event",
            memory.per_second, memory.cpu_us
        );
        println!(
            "  sqlite            {:>9.0} events/s  {:>6.1} µs CPU/event, of which the writer thread {:.1} (busy {:.0} %)",
            sqlite.per_second,
            sqlite.cpu_us,
            sqlite.writer_us,
            sqlite.writer_busy * 100.0
        );
        println!(
            "  sqlite/memory      CPU per event x{:.2}",
            sqlite.cpu_us / memory.cpu_us
        );
    });
}
