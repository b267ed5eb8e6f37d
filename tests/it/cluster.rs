//! Several `tale serve` processes on one PostgreSQL database
//! (`TALE_TEST_POSTGRES`): killed, restarted, paused past their lease;
//! schedules and stateful actions fed from every node.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value as J, json};

use crate::mock_server::{Reply, Server as Mock};
use crate::serve::{SECRET, client, eventually, forward_story, serve_process_on, wait_ready, write_story};
use crate::support::{free_port, fresh_postgres};

/// The lease of the test nodes: short, so that a death is seen quickly.
const LEASE: &str = "1s";

struct Node {
    name: String,
    port: u16,
    child: Child,
}

impl Node {
    fn start(dir: &Path, db: &str, name: &str, port: u16, sink: &str) -> Node {
        let child = serve_process_on(
            dir,
            db,
            port,
            &["--node-name", name, "--node-lease", LEASE],
            &[("TALE_RESOURCE_SINK", sink)],
        );
        Node {
            name: name.to_owned(),
            port,
            child,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {}", self.name);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.signal_quietly();
        self.kill();
    }
}

impl Node {
    /// A paused node must be resumed to be killed.
    fn signal_quietly(&self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

async fn admin(db: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(db, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.expect(sql).get(0)
}

/// Three nodes under webhook load: one SIGKILLed for good, another
/// SIGKILLed and restarted under its name. Every webhook answered 2xx is
/// delivered, every run ends, no item is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_lose_nothing_when_one_dies_and_one_restarts() {
    let Some(db) = fresh_postgres().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    mock.route("/sink", vec![Reply::json(200, "{}").delayed(Duration::from_millis(50))]);
    write_story(
        dir.path(),
        "forward.yaml",
        &forward_story("{{ RESOURCE.sink }}").replace("max_body_bytes: 256", "max_body_bytes: 4096"),
    );
    let sink = mock.url("/sink");
    let mut nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|name| Node::start(dir.path(), &db, name, free_port(), &sink))
        .collect();
    for node in &nodes {
        wait_ready(node.port).await;
    }
    let urls: Vec<String> = nodes.iter().map(|n| n.url(&format!("/webhook/fwd/{SECRET}"))).collect();
    let acknowledged = Arc::new(Mutex::new(Vec::<i64>::new()));
    let mut clients = Vec::new();
    for c in 0..6i64 {
        let (urls, acknowledged) = (urls.clone(), acknowledged.clone());
        clients.push(tokio::spawn(async move {
            let http = client();
            for i in 0..250i64 {
                let id = c * 100_000 + i;
                // Round robin; a node that is down sends the client on.
                for k in 0..urls.len() {
                    let url = &urls[(c as usize + i as usize + k) % urls.len()];
                    match http.post(url).json(&json!({"id": id})).send().await {
                        Ok(r) if r.status().is_success() => {
                            acknowledged.lock().expect("lock").push(id);
                            break;
                        }
                        _ => continue,
                    }
                }
            }
        }));
    }
    let acked = || acknowledged.lock().expect("lock").len();
    eventually("some load", Duration::from_secs(30), async || acked() >= 300).await;
    nodes[0].kill();
    eventually("more load", Duration::from_secs(30), async || acked() >= 600).await;
    nodes[1].kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    nodes[1] = Node::start(dir.path(), &db, "n2", nodes[1].port, &sink);
    for c in clients {
        c.await.expect("client");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(acknowledged.len() >= 1400, "{} acknowledged", acknowledged.len());
    let start = Instant::now();
    let mut lost = acknowledged.len();
    while start.elapsed() < Duration::from_secs(60) {
        let got: HashSet<i64> = mock.received_ids().into_iter().collect();
        lost = acknowledged.iter().filter(|id| !got.contains(id)).count();
        if lost == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lost, 0, "acknowledged webhooks never delivered");
    let db = admin(&db).await;
    eventually(
        "every run ends and no item is left",
        Duration::from_secs(30),
        async || {
            count(&db, "SELECT count(*) FROM runs WHERE status = 'running'").await == 0
                && count(&db, "SELECT count(*) FROM items").await == 0
        },
    )
    .await;
    // n1's death was declared by another node; n2's by its own restart.
    assert_eq!(count(&db, "SELECT count(*) FROM nodes WHERE alive").await, 2);
    // Someone claimed what n1 left, and says so in its metrics.
    let mut claimed = 0;
    for node in &nodes[1..] {
        let text = metrics(node).await;
        claimed += metric(&text, &format!("tale_cluster_claimed_items{{node=\"{}\"}}", node.name));
    }
    assert!(claimed > 0, "no node reports a claim");
}

/// A node's metrics page.
async fn metrics(node: &Node) -> String {
    client()
        .get(node.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of one sample in a metrics page (0 when absent).
fn metric(text: &str, sample: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as i64)
}

/// A node paused (SIGSTOP) past its lease: the others declare it dead and
/// run its delayed work; resumed (SIGCONT), it learns it before running
/// anything it held, and joins again. Each delayed request is sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_is_fenced_and_the_others_do_its_work() {
    let Some(db) = fresh_postgres().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    mock.route("/sink", vec![Reply::json(200, "{}")]);
    write_story(
        dir.path(),
        "later.yaml",
        &format!(
            r#"name: Later
actions:
  hook:
    type: webhook
    path: later
    secret: {SECRET}
  wait:
    type: transform
    mode: delay
    from: hook
    seconds: 2
  send:
    type: http_request
    from: wait
    method: post
    url: "{{{{ RESOURCE.sink }}}}"
    payload: "{{{{ hook.body | as_object }}}}"
"#
        ),
    );
    let sink = mock.url("/sink");
    let paused = Node::start(dir.path(), &db, "n1", free_port(), &sink);
    let other = Node::start(dir.path(), &db, "n2", free_port(), &sink);
    wait_ready(paused.port).await;
    wait_ready(other.port).await;
    let url = paused.url(&format!("/webhook/later/{SECRET}"));
    for id in 0..20 {
        let r = client().post(&url).json(&json!({"id": id})).send().await.expect("post");
        assert!(r.status().is_success(), "{}", r.status());
    }
    paused.signal("STOP");
    let db_client = admin(&db).await;
    eventually("the other node declares n1 dead", Duration::from_secs(10), async || {
        count(&db_client, "SELECT count(*) FROM nodes WHERE name = 'n1' AND NOT alive").await == 1
    })
    .await;
    eventually(
        "the other node delivers n1's delayed work",
        Duration::from_secs(20),
        async || mock.received_ids().len() >= 20,
    )
    .await;
    paused.signal("CONT");
    eventually("n1 joins again", Duration::from_secs(10), async || {
        count(&db_client, "SELECT count(*) FROM nodes WHERE name = 'n1' AND alive").await == 1
    })
    .await;
    // Its timers have fired by now: it ran none of them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = metrics(&paused).await;
    assert_eq!(metric(&text, "tale_cluster_lease_losses{node=\"n1\"}"), 1, "{text}");
    let mut got = mock.received_ids();
    got.sort_unstable();
    assert_eq!(got, (0..20).collect::<Vec<_>>(), "each delayed request sent once");
    assert_eq!(count(&db_client, "SELECT count(*) FROM items").await, 0);
    assert_eq!(
        count(&db_client, "SELECT count(*) FROM runs WHERE status <> 'succeeded'").await,
        0
    );
    drop(other);
}

/// A per-second schedule on three nodes: one run per tick, also when one of
/// them is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_second_schedule_fires_once_per_tick_across_three_nodes() {
    let Some(db) = fresh_postgres().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    mock.route("/tick", vec![Reply::json(200, "{}")]);
    write_story(
        dir.path(),
        "tick.yaml",
        r#"name: Every second
actions:
  tick:
    type: http_request
    schedule: { cron: "* * * * * *" }
    method: post
    url: "{{ RESOURCE.sink }}"
    payload: { run: "{% story_run_guid %}" }
"#,
    );
    let sink = mock.url("/tick");
    let mut nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|name| Node::start(dir.path(), &db, name, free_port(), &sink))
        .collect();
    for node in &nodes {
        wait_ready(node.port).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    nodes[0].kill();
    tokio::time::sleep(Duration::from_secs(4)).await;
    for node in &mut nodes {
        node.kill();
    }
    let db = admin(&db).await;
    let ticks: Vec<(i64, i64)> = db
        .query(
            "SELECT started_at, count(*) FROM runs GROUP BY started_at ORDER BY started_at",
            &[],
        )
        .await
        .expect("ticks")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(ticks.len() >= 5, "{ticks:?}");
    assert!(ticks.iter().all(|(_, n)| *n == 1), "a tick fired twice: {ticks:?}");
    // Consecutive seconds, the kill included.
    for pair in ticks.windows(2) {
        assert_eq!(pair[1].0 - pair[0].0, 1000, "a tick was missed: {ticks:?}");
    }
    // Every tick's run reached the sink. The node killed may have sent its
    // tick's request and died before committing it: the node that takes
    // the item over sends it again (at least once; a crash repeats at most
    // one request, docs/decisions.md), so one request more is allowed.
    let received = mock.received();
    let runs: HashSet<String> = received
        .iter()
        .map(|r| serde_json::from_str::<J>(&r.body).unwrap_or(J::Null)["run"].to_string())
        .collect();
    assert_eq!(runs.len(), ticks.len(), "one run per tick reached the sink: {ticks:?}");
    assert!(
        received.len() <= ticks.len() + 1,
        "{} requests for {} ticks: more than the killed node's one repeated",
        received.len(),
        ticks.len()
    );
}

/// Deduplicate and implode fed from every node act once: the action's
/// lane runs on one node at a time, whichever node receives the events.
/// The nodes poll instead of listening (`tale_poll_only`, as behind
/// PgBouncer in transaction mode): items handed over still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deduplicate_and_implode_fed_from_every_node_act_once() {
    let Some(db) = fresh_postgres().await else { return };
    let polling = format!("{db}?tale_poll_only=true");
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    mock.route("/sink", vec![Reply::json(200, "{}")]);
    write_story(
        dir.path(),
        "state.yaml",
        &format!(
            r#"name: Stateful
actions:
  hook:
    type: webhook
    path: state
    secret: {SECRET}
  unique:
    type: transform
    mode: deduplicate
    from: hook
    path: "{{{{ hook.body.key }}}}"
  first_sighting:
    type: http_request
    from: unique
    method: post
    url: "{{{{ RESOURCE.sink }}}}"
    payload: {{ kind: unique, key: "{{{{ hook.body.key }}}}" }}
  collect:
    type: transform
    mode: implode
    from: hook
    guid_path: "{{{{ hook.body.batch }}}}"
    size_path: "30"
    seconds: 3600
  collected:
    type: http_request
    from: collect
    method: post
    url: "{{{{ RESOURCE.sink }}}}"
    payload: {{ kind: imploded, count: "{{{{ collect | size }}}}" }}
"#
        ),
    );
    let sink = mock.url("/sink");
    let nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|name| Node::start(dir.path(), &polling, name, free_port(), &sink))
        .collect();
    for node in &nodes {
        wait_ready(node.port).await;
    }
    // 30 events from three nodes at once: 5 keys, one batch.
    let mut posts = Vec::new();
    for i in 0..30 {
        let url = nodes[i % 3].url(&format!("/webhook/state/{SECRET}"));
        posts.push(tokio::spawn(async move {
            let r = client()
                .post(&url)
                .json(&json!({"key": format!("k{}", i % 5), "batch": "b"}))
                .send()
                .await
                .expect("post");
            assert!(r.status().is_success(), "{}", r.status());
        }));
    }
    for p in posts {
        p.await.expect("post");
    }
    let kinds = || {
        let mut by: HashMap<String, Vec<J>> = HashMap::new();
        for r in mock.received() {
            let body: J = serde_json::from_str(&r.body).expect("json");
            by.entry(body["kind"].as_str().unwrap_or("").to_owned())
                .or_default()
                .push(body);
        }
        by
    };
    eventually(
        "five unique keys and one implode",
        Duration::from_secs(20),
        async || {
            let by = kinds();
            by.get("unique").map_or(0, Vec::len) >= 5 && by.get("imploded").map_or(0, Vec::len) >= 1
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let by = kinds();
    let mut keys: Vec<&str> = by["unique"].iter().filter_map(|b| b["key"].as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["k0", "k1", "k2", "k3", "k4"], "each key once");
    assert_eq!(by["imploded"].len(), 1, "one implode");
    assert_eq!(by["imploded"][0]["count"], json!("30"), "all 30 events collected");
    // Both stateful actions ran through lanes, each held by one node.
    let db = admin(&db).await;
    let lanes: Vec<String> = db
        .query("SELECT key FROM lanes ORDER BY key", &[])
        .await
        .expect("lanes")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(lanes, ["state#collect", "state#unique"]);
    drop(nodes);
}

/// A sub-story call whose node dies during the child's delay: another node
/// finishes the child, wakes the parked caller and runs the rest of the
/// parent. One child run, one report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_outlives_the_node_that_made_it() {
    let Some(db) = fresh_postgres().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    mock.route("/sink", vec![Reply::json(200, "{}")]);
    write_story(dir.path(), "slow-lookup.yaml", &crate::durable_calls::child(2));
    write_story(
        dir.path(),
        "triage.yaml",
        &crate::durable_calls::parent(&mock.url("/sink")),
    );
    let sink = mock.url("/sink");
    let mut caller = Node::start(dir.path(), &db, "n1", free_port(), &sink);
    let other = Node::start(dir.path(), &db, "n2", free_port(), &sink);
    wait_ready(caller.port).await;
    wait_ready(other.port).await;
    let r = client()
        .post(caller.url(&format!("/webhook/triage/{SECRET}")))
        .json(&json!({"user": "alice@contoso.com"}))
        .send()
        .await
        .expect("post");
    assert!(r.status().is_success(), "{}", r.status());
    let db = admin(&db).await;
    eventually("the child waits in its delay", Duration::from_secs(10), async || {
        count(&db, "SELECT count(*) FROM items WHERE action = 'wait'").await == 1
    })
    .await;
    caller.kill();
    eventually("the other node reports", Duration::from_secs(20), async || {
        !mock.received().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = mock.received();
    assert_eq!(received.len(), 1, "one report");
    let body: J = serde_json::from_str(&received[0].body).expect("json");
    assert_eq!(body, json!({"upn": "alice@contoso.com", "risk": "low"}));
    eventually("both runs end", Duration::from_secs(10), async || {
        count(&db, "SELECT count(*) FROM runs WHERE status = 'succeeded'").await == 2
    })
    .await;
    assert_eq!(count(&db, "SELECT count(*) FROM runs").await, 2, "one child run");
    assert_eq!(count(&db, "SELECT count(*) FROM items").await, 0);
    drop(other);
}
