//! `--db postgres://…`: `tale serve`, `tale runs` and `tale events` on a
//! real PostgreSQL server (`TALE_TEST_POSTGRES`; each test makes its own
//! database). The store contract itself is held by `store_conformance`,
//! which runs on PostgreSQL too.

use std::time::Duration;

use serde_json::{Value as J, json};

use crate::mock_server::{Reply, Server as Mock};
use crate::serve::{SECRET, args, client, eventually, forward_story, get_json, write_story};
use crate::support::fresh_postgres;
use tale_store::postgres::{PgStore, PgUrl};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres_stores_forwards_lists_and_reemits() {
    let Some(db) = fresh_postgres().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    mock.route("/sink", vec![Reply::json(200, "{}")]);
    write_story(dir.path(), "forward.yaml", &forward_story(&mock.url("/sink")));
    let mut serve = args(dir.path());
    serve.db = db.clone();
    let server = tale::serve::start(&serve, None).await.expect("serve");
    // A second node joins the same database (a cluster; see `cluster`).
    let mut other = serve.clone();
    other.node_name = Some("second".into());
    let second = tale::serve::start(&other, None).await.expect("a second node");
    second.stop().await.expect("stop the second node");

    let url = format!("http://{}/webhook/fwd/{SECRET}", server.addr);
    for id in [7, 8] {
        let r = client().post(&url).json(&json!({"id": id})).send().await.expect("post");
        assert_eq!(r.status(), 200);
    }
    eventually("two forwarded bodies", Duration::from_secs(10), async || {
        mock.received().len() == 2
    })
    .await;
    eventually("two finished runs", Duration::from_secs(10), async || {
        get_json(&server, "/api/runs?status=succeeded").await["runs"]
            .as_array()
            .map_or(0, Vec::len)
            == 2
    })
    .await;
    let page = get_json(&server, "/api/runs?story=forward&limit=1").await;
    let next = page["next"].as_str().expect("a next page").to_owned();
    let page2 = get_json(&server, &format!("/api/runs?story=forward&limit=1&after={next}")).await;
    assert_ne!(page2["runs"][0]["id"], page["runs"][0]["id"]);
    let run_id = page["runs"][0]["id"].as_str().expect("id").to_owned();
    let events = get_json(&server, &format!("/api/runs/{run_id}/events")).await;
    assert_eq!(events["events"].as_array().map(Vec::len), Some(2), "{events}");
    assert_eq!(events["by_action"]["send"][0]["output"]["status"], 200);
    assert!(!events.to_string().contains(SECRET), "the webhook secret was stored");
    // Re-emitting the webhook's event (loaded with its ancestry) runs again.
    let hook_event = events["by_action"]["hook"][0]["id"]
        .as_str()
        .expect("event id")
        .to_owned();
    let r = client()
        .post(format!("http://{}/api/events/{hook_event}/reemit", server.addr))
        .send()
        .await
        .expect("reemit");
    assert_eq!(r.status(), 202);
    eventually("the re-emitted run", Duration::from_secs(10), async || {
        mock.received().len() == 3
    })
    .await;
    server.stop().await.expect("stop");

    // `tale runs` and `tale events` read the same database (no password
    // in it here; the URL is shown without one anyway).
    let out = crate::support::tale(&["runs", "--db", &db, "--json"]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 3, "{}", out.stdout);
    let out = crate::support::tale(&["events", &run_id, "--db", &db]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let lines: Vec<J> = crate::support::json_lines(&out.stdout);
    assert_eq!(lines.len(), 2, "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_on_postgres_loses_no_acknowledged_request() {
    let Some(db) = fresh_postgres().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    // Steps commit over the network: a slower sink keeps work in flight.
    crate::serve::kill_under_load(dir.path(), &db, Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_postgres_resumes_pending_delays_and_an_open_implode() {
    let Some(db) = fresh_postgres().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut serve = args(dir.path());
    serve.db = db;
    crate::serve::resume_after_restart(&serve).await;
}

/// A wrong URL, a server that does not answer, a password shown nowhere.
#[test]
fn a_bad_postgres_url_or_an_absent_server_is_a_clear_error_without_the_password() {
    for (url, says) in [
        ("postgres://", "names no host"),
        ("postgres://u@h", "names no database"),
        ("postgres://u@h/db?sslmode=sometimes", "unknown sslmode `sometimes`"),
    ] {
        let out = crate::support::tale(&["runs", "--db", url]);
        assert_eq!(out.status, 2, "{url}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{url}: {}", out.stderr);
    }
    let port = crate::support::free_port();
    let url = format!("postgres://tale:hunter2-secret@127.0.0.1:{port}/tale?sslmode=disable");
    let out = crate::support::tale(&["runs", "--db", &url]);
    assert_eq!(out.status, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("cannot read postgres://tale@127.0.0.1:{port}/tale")),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("hunter2"), "the password leaked: {}", out.stderr);
}

/// TLS: `require` encrypts (without checking the certificate, as libpq),
/// `verify-full` checks it against `sslrootcert` and the host name, and a
/// certificate it cannot verify is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_require_encrypts_and_verify_full_checks_the_certificate() {
    let Ok(ca) = std::env::var("TALE_TEST_POSTGRES_CA") else {
        assert!(
            std::env::var("TALE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "TALE_REQUIRE_POSTGRES=1 but TALE_TEST_POSTGRES_CA names no certificate authority"
        );
        eprintln!("skipped: no TLS test server (set TALE_TEST_POSTGRES_CA)");
        return;
    };
    let with = |db: &str, query: &str| -> PgUrl {
        let mut url = url::Url::parse(db).expect("url");
        url.set_host(Some("localhost")).expect("host");
        url.set_query(Some(query));
        url.as_str().parse().expect("a PostgreSQL URL")
    };
    let Some(db) = fresh_postgres().await else { return };
    let store = PgStore::open(&with(&db, "sslmode=require"), Default::default())
        .await
        .expect("require connects");
    drop(store);
    let Some(db) = fresh_postgres().await else { return };
    let verified = with(&db, &format!("sslmode=verify-full&sslrootcert={ca}"));
    PgStore::open(&verified, Default::default())
        .await
        .expect("verify-full connects with the authority");
    let Some(db) = fresh_postgres().await else { return };
    let err = PgStore::open(&with(&db, "sslmode=verify-full"), Default::default())
        .await
        .expect_err("an unknown authority is refused");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
}

/// The node's hold on the database is its connection holding the owner
/// lock: when that connection is cut (the server restarted, a network
/// failure, an administrator), another node may take over, so this one
/// stops writing: `/readyz` fails and webhooks answer 503.
/// A node the others declared dead (as they do when its lease ends) finds
/// out at its next renewal, forgets what it held, and joins again under a
/// new id; its work was released to whoever claims it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_declared_dead_joins_again_under_a_new_id() {
    let Some(db) = fresh_postgres().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    write_story(
        dir.path(),
        "plain.yaml",
        &format!("name: Plain\nactions:\n  hook:\n    type: webhook\n    path: plain\n    secret: {SECRET}\n"),
    );
    let mut serve = args(dir.path());
    serve.db = db.clone();
    serve.node_name = Some("n1".into());
    serve.node_lease = Duration::from_millis(800);
    let server = tale::serve::start(&serve, None).await.expect("serve");
    let hook = format!("http://{}/webhook/plain/{SECRET}", server.addr);
    assert_eq!(client().post(&hook).send().await.expect("post").status(), 200);
    let (admin, connection) = tokio_postgres::connect(&db, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let first: String = admin
        .query_one("SELECT id FROM nodes WHERE name = 'n1' AND alive", &[])
        .await
        .expect("the node registered")
        .get(0);
    // What another node does when this one's lease ends.
    admin
        .execute("UPDATE nodes SET alive = false WHERE id = $1", &[&first])
        .await
        .expect("declare dead");
    eventually("the node joins again", Duration::from_secs(5), async || {
        admin
            .query_opt(
                "SELECT 1 FROM nodes WHERE name = 'n1' AND alive AND id <> $1",
                &[&first],
            )
            .await
            .expect("nodes")
            .is_some()
    })
    .await;
    assert_eq!(client().post(&hook).send().await.expect("post").status(), 200);
    eventually("two finished runs", Duration::from_secs(5), async || {
        get_json(&server, "/api/runs?status=succeeded").await["runs"]
            .as_array()
            .map_or(0, Vec::len)
            == 2
    })
    .await;
    let ready = client()
        .get(format!("http://{}/readyz", server.addr))
        .send()
        .await
        .expect("get");
    assert_eq!(ready.status(), 200);
    server.stop().await.expect("stop");
    // A clean stop leaves: no node of that name is alive.
    let alive: i64 = admin
        .query_one("SELECT count(*) FROM nodes WHERE name = 'n1' AND alive", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(alive, 0);
}

/// A connection that breaks while `COMMIT` is on its way: when the server
/// got it (committed, answer lost) the store learns so and goes on; when it
/// did not (rolled back) the step is tried again. Either way every webhook
/// answered 2xx is forwarded exactly once, every run ends, no item is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_broken_during_commit_neither_loses_nor_repeats_a_step() {
    let Some(db) = fresh_postgres().await else { return };
    let proxy = commit_cutter::CommitCutter::start(&db).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start();
    mock.route("/sink", vec![Reply::json(200, "{}")]);
    write_story(dir.path(), "forward.yaml", &forward_story(&mock.url("/sink")));
    let mut serve = args(dir.path());
    serve.db = proxy.url.clone();
    let server = tale::serve::start(&serve, None).await.expect("serve");
    // From here every fifth COMMIT loses its connection, alternately after
    // and before the server has it.
    proxy.arm(5);
    let url = format!("http://{}/webhook/fwd/{SECRET}", server.addr);
    let mut answered = Vec::new();
    for id in 0..60 {
        for _ in 0..50 {
            let r = client().post(&url).json(&json!({"id": id})).send().await.expect("post");
            if r.status().is_success() {
                answered.push(id);
                break;
            }
            assert!(r.status().is_server_error(), "{}", r.status());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(answered.len(), 60, "every webhook answered 2xx in the end");
    eventually("every run ends", Duration::from_secs(60), async || {
        get_json(&server, "/api/runs?status=succeeded&limit=500").await["runs"]
            .as_array()
            .map_or(0, Vec::len)
            == 60
    })
    .await;
    let (cut_after, cut_before) = proxy.cuts();
    assert!(
        cut_after >= 3 && cut_before >= 3,
        "cuts: {cut_after} after, {cut_before} before"
    );
    server.stop().await.expect("stop");
    let mut forwarded = mock.received_ids();
    forwarded.sort_unstable();
    assert_eq!(forwarded, (0..60).collect::<Vec<_>>(), "each forwarded exactly once");

    let (admin, connection) = tokio_postgres::connect(&db, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let count = async |sql: &str| admin.query_one(sql, &[]).await.expect(sql).get::<_, i64>(0);
    assert_eq!(count("SELECT count(*) FROM items").await, 0, "no item left");
    assert_eq!(count("SELECT count(*) FROM runs").await, 60, "one run per webhook");
    assert_eq!(count("SELECT count(*) FROM events").await, 120, "two events per run");
    assert_eq!(
        count("SELECT count(*) FROM runs WHERE status <> 'succeeded' OR pending <> 0 OR events <> 2").await,
        0,
        "every run's counters add up"
    );
}

/// A TCP proxy in front of PostgreSQL that reads the client's messages and,
/// once armed, breaks the connection at every n-th `COMMIT`: alternately
/// after passing it on (the server commits, its answer never arrives) and
/// instead of passing it on (the server rolls back).
mod commit_cutter {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    #[derive(Default)]
    struct Counters {
        every: AtomicUsize,
        commits: AtomicUsize,
        cut_after: AtomicUsize,
        cut_before: AtomicUsize,
    }

    pub(crate) struct CommitCutter {
        pub(crate) url: String,
        counters: Arc<Counters>,
    }

    impl CommitCutter {
        pub(crate) async fn start(db: &str) -> Self {
            let mut url = url::Url::parse(db).expect("url");
            let upstream = format!("{}:{}", url.host_str().expect("host"), url.port().unwrap_or(5432));
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            url.set_port(Some(listener.local_addr().expect("addr").port()))
                .expect("port");
            url.set_query(Some("sslmode=disable"));
            let counters = Arc::new(Counters::default());
            let c = counters.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        continue;
                    };
                    tokio::spawn(relay(client, server, c.clone()));
                }
            });
            CommitCutter {
                url: url.to_string(),
                counters,
            }
        }

        pub(crate) fn arm(&self, every: usize) {
            self.counters.every.store(every, Ordering::SeqCst);
        }

        pub(crate) fn cuts(&self) -> (usize, usize) {
            (
                self.counters.cut_after.load(Ordering::SeqCst),
                self.counters.cut_before.load(Ordering::SeqCst),
            )
        }
    }

    async fn relay(client: TcpStream, server: TcpStream, c: Arc<Counters>) {
        // One write per message, sent at once (Nagle's delay would cost
        // tens of milliseconds a message).
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (mut from_client, mut to_client) = client.into_split();
        let (mut from_server, mut to_server) = server.into_split();
        let answers = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
            (from_server, to_client)
        });
        // The startup message has no type byte.
        let Ok(len) = from_client.read_i32().await else { return };
        let mut startup = vec![0; (len.max(4) - 4) as usize];
        if from_client.read_exact(&mut startup).await.is_err() {
            return;
        }
        let mut first = len.to_be_bytes().to_vec();
        first.extend(&startup);
        if to_server.write_all(&first).await.is_err() {
            return;
        }
        loop {
            let Ok(kind) = from_client.read_u8().await else { return };
            let Ok(len) = from_client.read_i32().await else { return };
            let mut body = vec![0; (len.max(4) - 4) as usize];
            if from_client.read_exact(&mut body).await.is_err() {
                return;
            }
            let every = c.every.load(Ordering::SeqCst);
            if kind == b'Q' && body == b"COMMIT\0" && every > 0 {
                let n = c.commits.fetch_add(1, Ordering::SeqCst) + 1;
                if n.is_multiple_of(every) {
                    // Nothing more reaches the client, whatever the server says.
                    answers.abort();
                    let after = (n / every) % 2 == 1;
                    if after {
                        let _ = to_server.write_all(&message(kind, len, &body)).await;
                        c.cut_after.fetch_add(1, Ordering::SeqCst);
                        // Closing at once could reset the connection before the
                        // server reads the COMMIT.
                        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    } else {
                        c.cut_before.fetch_add(1, Ordering::SeqCst);
                    }
                    return;
                }
            }
            if to_server.write_all(&message(kind, len, &body)).await.is_err() {
                return;
            }
        }
    }

    fn message(kind: u8, len: i32, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(body.len() + 5);
        m.push(kind);
        m.extend(len.to_be_bytes());
        m.extend(body);
        m
    }
}
