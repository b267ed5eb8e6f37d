//! Helpers: run the CLI in-process, compare with snapshot files.

use std::path::{Path, PathBuf};

pub(crate) struct Output {
    pub(crate) status: u8,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `tale <args>` in-process.
pub(crate) fn tale(args: &[&str]) -> Output {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut argv = vec!["tale"];
    argv.extend_from_slice(args);
    let status = tale::run(argv, &mut out, &mut err) as u8;
    Output {
        status,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    }
}

/// The JSON lines of `tale run`'s output (its events), other lines skipped.
pub(crate) fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The output of the first event of `action`.
pub(crate) fn output_of<'a>(events: &'a [serde_json::Value], action: &str) -> Option<&'a serde_json::Value> {
    events.iter().find(|e| e["action"] == action).map(|e| &e["output"])
}

/// A port free on 127.0.0.1 now (for a `tale serve` process to listen on).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compares `actual` with the snapshot file `path`. With `UPDATE_SNAPSHOTS=1`
/// (or when the file is missing outside CI) the file is (re)written.
pub(crate) fn assert_snapshot(path: &Path, actual: &str) -> Result<(), String> {
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    match std::fs::read_to_string(path) {
        Ok(expected) if expected == actual => Ok(()),
        Ok(_) | Err(_) if update || (!path.exists() && std::env::var_os("CI").is_none()) => {
            std::fs::write(path, actual).map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        Ok(expected) => Err(format!(
            "snapshot {} differs (run with UPDATE_SNAPSHOTS=1 to accept):\n{}",
            path.display(),
            diff(&expected, actual)
        )),
        Err(_) => Err(format!(
            "snapshot {} is missing (run with UPDATE_SNAPSHOTS=1)",
            path.display()
        )),
    }
}

fn diff(expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let mut out = String::new();
    for i in 0..e.len().max(a.len()) {
        match (e.get(i), a.get(i)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => {
                if let Some(x) = x {
                    out.push_str(&format!("-{:>4} {x}\n", i + 1));
                }
                if let Some(y) = y {
                    out.push_str(&format!("+{:>4} {y}\n", i + 1));
                }
            }
        }
    }
    out
}

/// The test PostgreSQL server (`TALE_TEST_POSTGRES`, a URL with rights to
/// create databases; `.ci/postgres.sh` starts one). `None` skips a test;
/// under CI (`TALE_REQUIRE_POSTGRES=1`) a missing server is a failure.
pub(crate) fn postgres_server() -> Option<String> {
    match std::env::var("TALE_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("TALE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "TALE_REQUIRE_POSTGRES=1 but TALE_TEST_POSTGRES names no server"
            );
            eprintln!("skipped: no PostgreSQL server (set TALE_TEST_POSTGRES)");
            None
        }
    }
}

/// The URL of a new, empty database on the test server (each test gets its
/// own: a database has one owner at a time).
pub(crate) async fn fresh_postgres() -> Option<String> {
    let server = postgres_server()?;
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .expect("the test PostgreSQL server answers");
    tokio::spawn(connection);
    let name = format!("tale_{}", uuid::Uuid::now_v7().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a test database");
    let mut url = url::Url::parse(&server).expect("TALE_TEST_POSTGRES is a URL");
    url.set_path(&name);
    Some(url.to_string())
}
