//! The HTTP accept loop of `tale serve`: hyper's HTTP/1 with the limits
//! `axum::serve` does not set. A client gets `--header-timeout` to send its
//! request head, also when idle between keep-alive requests (hyper starts
//! that timer whenever it waits for a head); a webhook body gets
//! `--body-timeout` (in the handler); at most `--max-connections` are open,
//! below the process's file descriptor limit, so slow or idle clients can
//! neither exhaust descriptors nor stop `/healthz` and the store from
//! working: past the cap, new connections wait in the listen backlog until
//! a timeout frees a slot.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The limits of incoming connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    pub(crate) header_timeout: Duration,
    pub(crate) max_connections: usize,
}

/// The default connection cap: 4,096, or three quarters of the soft limit
/// on open files when that is lower (the rest is for the database, the
/// outgoing requests, the story files).
pub(crate) fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits").ok().and_then(|text| {
        text.lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|n| n.parse::<usize>().ok())
    });
    soft.map_or(4096, |n| (n * 3 / 4).clamp(16, 4096))
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets the
/// open connections finish their requests. `open` counts the connections.
pub(crate) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnLimits,
    open: Arc<AtomicUsize>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        // A free slot first: past the cap, connections wait in the backlog.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or a reset before accept: wait a little.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let connection = graceful.watch(connection);
        let open = open.clone();
        open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            // A client that goes away mid-request is its own business.
            let _ = connection.await;
            open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
