//! Limits of outgoing traffic: the per-host concurrency cap holds however
//! many requests are ready at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tale_engine::runtime::http::{HttpClient, HttpRequest, RealHttp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_requests_than_per_host_are_in_flight_to_one_host() {
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let app = {
        let (now, most) = (now.clone(), most.clone());
        Router::new().route(
            "/slow",
            get(move || {
                let (now, most) = (now.clone(), most.clone());
                async move {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    "ok"
                }
            }),
        )
    };
    let addr = crate::mock_server::spawn_router(app);
    let http = Arc::new(RealHttp::new(3).expect("client"));
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            http.send(HttpRequest {
                method: "get".into(),
                url: format!("http://{addr}/slow"),
                headers: Vec::new(),
                body: None,
                timeout: Duration::from_secs(10),
                verify_tls: true,
                max_response_bytes: 1024,
            })
            .await
            .expect("request")
            .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 200);
    }
    // Never above the cap; and the requests did overlap (the cap, not a
    // queue of one, is what held them).
    let most = most.load(Ordering::SeqCst);
    assert!((2..=3).contains(&most), "{most} in flight at once with a cap of 3");
}
