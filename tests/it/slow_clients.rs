//! Slow and idle clients: half-sent heads, slow bodies and idle keep-alive
//! connections are closed by their timeouts, and the connection cap holds
//! however many arrive, so `/healthz` keeps answering.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::serve::{SECRET, args, client, write_story};

async fn start(dir: &std::path::Path, max_connections: usize) -> tale::serve::Server {
    write_story(
        dir,
        "plain.yaml",
        &format!("name: Plain\nactions:\n  hook:\n    type: webhook\n    path: plain\n    secret: {SECRET}\n"),
    );
    let mut a = args(dir);
    a.header_timeout = Duration::from_millis(800);
    a.body_timeout = Duration::from_millis(800);
    a.max_connections = Some(max_connections);
    tale::serve::start(&a, None).await.expect("serve")
}

/// Waits until the server closes `stream` (EOF or reset); false past `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_heads_are_closed_and_the_cap_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), 40).await;
    let mut slow = Vec::new();
    for _ in 0..120 {
        let mut s = TcpStream::connect(server.addr).await.expect("connect");
        s.write_all(b"POST /webhook/plain HTTP/1.1\r\nhost: x\r\n")
            .await
            .expect("write");
        slow.push(s);
    }
    // Never more than the cap open, while all 120 are cycled through.
    let watcher = {
        let started = Instant::now();
        let mut most = 0;
        let mut all_closed = true;
        for s in &mut slow {
            let left = Duration::from_secs(20).saturating_sub(started.elapsed());
            most = most.max(server.connections());
            all_closed &= closed_within(s, left).await;
            most = most.max(server.connections());
        }
        (most, all_closed)
    };
    assert!(watcher.0 <= 40, "{} connections open with a cap of 40", watcher.0);
    assert!(watcher.1, "a half-sent head was left open");
    let r = client()
        .get(format!("http://{}/healthz", server.addr))
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.status(), 200);
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_gets_408_and_an_idle_connection_is_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), 100).await;
    // A body announced and never finished.
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    s.write_all(
        format!("POST /webhook/plain/{SECRET} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"a\":")
            .as_bytes(),
    )
    .await
    .expect("write");
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut answer))
        .await
        .expect("answered")
        .expect("read");
    let head = String::from_utf8_lossy(&answer[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    // A keep-alive connection that goes quiet after a request.
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let n = idle.read(&mut answer).await.expect("read");
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        closed_within(&mut idle, Duration::from_secs(10)).await,
        "an idle connection stayed open"
    );
    server.stop().await.expect("stop");
}
